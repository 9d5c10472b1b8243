import assert from 'node:assert/strict';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type tls from 'node:tls';
import { RawFtp, listingLines } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

/** What FEAT, HELP and OPTS MLST tell a client, checked against what the server then does. */
describe('FTP FEAT, HELP and OPTS MLST', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ users: [{ name: 'alice', password: 'alice password' }] });
    writeFileSync(join(srv.home('alice'), 'five.txt'), '12345');
  });
  after(() => srv.stop());

  const features = async (c: RawFtp): Promise<string[]> => {
    const r = await c.cmd('FEAT');
    assert.equal(r.code, 211);
    // Between `211-Features:` and `211 End`, one feature per line, each after a space (RFC 2389 3.2).
    return r.lines.slice(1, -1).map((l) => {
      assert.match(l, /^ \S/);
      return l.slice(1);
    });
  };

  /** The MLSD lines of the current directory over a TLS data connection. */
  const mlsd = (c: RawFtp): Promise<string[]> => listingLines(c, 'MLSD', true);

  it('advertises only features whose command answers', async () => {
    const c = await RawFtp.secureLogin(srv.ftpPort, 'alice', 'alice password');
    const feats = await features(c);
    assert.ok(feats.length >= 10, feats.join('|'));
    // Features that are not verbs, and the command that provides each.
    const probe: Record<string, string> = { UTF8: 'OPTS UTF8 ON', TVFS: 'CWD /' };
    for (const feat of feats) {
      const verb = feat.split(' ')[0] as string;
      // A verb alone: in the table it gets an answer of its own (501 missing argument at worst), never 500 or 502.
      const line = probe[verb] ?? verb;
      const r = await c.cmd(line);
      assert.ok(r.code !== 500 && r.code !== 502, `${feat}: ${line} -> ${r.text}`);
    }
    c.close();
  });

  it('HELP lists verbs that all answer, and gives the syntax of one', async () => {
    const c = await RawFtp.secureLogin(srv.ftpPort, 'alice', 'alice password');
    const help = await c.cmd('HELP');
    assert.equal(help.code, 214);
    const verbs = help.lines.slice(1, -1).flatMap((l) => l.trim().split(/\s+/));
    for (const v of ['USER', 'PASS', 'LIST', 'MLSD', 'MLST', 'SITE', 'FEAT', 'HELP', 'XMKD', 'STOU']) assert.ok(verbs.includes(v), v);
    assert.deepEqual(verbs, [...verbs].sort(), 'sorted');
    for (const v of verbs) assert.notEqual((await c.cmd(`HELP ${v}`)).code, 502, v);
    const mfmt = await c.cmd('HELP mfmt');
    assert.equal(mfmt.code, 214);
    assert.match(mfmt.text, /^214 Syntax: MFMT YYYYMMDDHHMMSS <path>$/);
    assert.equal((await c.cmd('HELP FROB')).code, 502);
    assert.match((await c.cmd('SITE HELP')).text, /SITE commands: CHMOD HELP/);
    c.close();
  });

  it('OPTS MLST selects the facts MLST and MLSD emit, per connection', async () => {
    const c = await RawFtp.secureLogin(srv.ftpPort, 'alice', 'alice password');
    const all = (await c.cmd('MLST five.txt')).lines[1] ?? '';
    assert.match(all, /^ type=file;size=5;modify=\d{14};perm=[a-z]+;unique=[0-9a-f]+g[0-9a-f]+;unix\.mode=0644; \/five\.txt$/);

    // Case-insensitive names, unknown facts ignored, the reply in the server's order.
    const opts = await c.cmd('OPTS MLST Size;type;media-type;bogus;');
    assert.equal(opts.text, '200 MLST OPTS type;size;');
    assert.ok((await features(c)).includes('MLST type*;size*;modify;perm;unique;unix.mode;'));
    assert.equal((await c.cmd('MLST five.txt')).lines[1], ' type=file;size=5; /five.txt');
    assert.deepEqual(await mlsd(c), ['type=file;size=5; five.txt']);

    // A second connection still gets every fact.
    const other = await RawFtp.secureLogin(srv.ftpPort, 'alice', 'alice password');
    assert.equal((await other.cmd('MLST five.txt')).lines[1], all);
    assert.ok((await features(other)).includes('MLST type*;size*;modify*;perm*;unique*;unix.mode*;'));
    other.close();

    // An empty list turns every fact off: entries are a space and the name (RFC 3659 7.2).
    assert.equal((await c.cmd('OPTS MLST')).text, '200 MLST OPTS');
    assert.equal((await c.cmd('MLST five.txt')).lines[1], '  /five.txt');
    assert.deepEqual(await mlsd(c), [' five.txt']);
    assert.ok((await features(c)).includes('MLST type;size;modify;perm;unique;unix.mode;'));

    assert.equal((await c.cmd('OPTS MLST modify;UNIX.MODE')).text, '200 MLST OPTS modify;unix.mode;');
    assert.match((await mlsd(c))[0] ?? '', /^modify=\d{14};unix\.mode=0644; five\.txt$/);

    // REIN resets every parameter: the next login gets every fact again, and PASV after EPSV ALL (a review found it kept).
    assert.equal((await c.cmd('EPSV ALL')).code, 200);
    assert.match((await c.cmd('REIN')).text, /^220/);
    assert.match((await c.cmd('USER alice')).text, /^331/);
    assert.match((await c.cmd('PASS alice password')).text, /^230/);
    assert.equal((await c.cmd('MLST five.txt')).lines[1], all);
    assert.equal((await c.cmd('PASV')).code, 227);
    c.close();
  });

  it('SIGHUP with no readable certificate keeps the old one and the server', async () => {
    const certs = join(srv.dir, 'certs');
    const first = await RawFtp.connect(srv.ftpsPort, true);
    assert.equal((await first.read())?.code, 220);
    const before = (first.socket as tls.TLSSocket).getPeerX509Certificate()?.fingerprint256;
    renameSync(join(certs, 'tls-cert.pem'), join(certs, 'moved.pem'));
    try {
      srv.signal('SIGHUP');
      await new Promise((r) => setTimeout(r, 500));
      assert.ok(srv.alive, 'the server lives on');
      await srv.logs(/TLS certificate reload failed/);
      assert.equal((await first.cmd('NOOP')).code, 200);
      const second = await RawFtp.connect(srv.ftpsPort, true);
      assert.equal((await second.read())?.code, 220);
      assert.equal((second.socket as tls.TLSSocket).getPeerX509Certificate()?.fingerprint256, before);
      second.close();
    } finally {
      renameSync(join(certs, 'moved.pem'), join(certs, 'tls-cert.pem'));
      first.close();
    }
  });
});
