import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type ssh2 from 'ssh2';
import { checkName, resolveVirtual } from '../src/session/paths.js';
import { FXP, OPEN_FLAGS, STATUS, Writer } from '../src/sftp/codec.js';
import { loggedIn } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';
import { initialised, sshConnect } from './helpers/ssh.js';

/**
 * A name a client sends is bytes. Bytes that are no UTF-8 (a Latin-1 client's
 * `café` is `caf\xe9`) were decoded with U+FFFD for each bad sequence, and the
 * shared layer took the result as the name: `\xff.txt` and `\xfe.txt` were
 * both `\uFFFD.txt`, so one client upload silently replaced another of a
 * different name, and a DELETE of one removed the other. A name that is no
 * UTF-8 must be refused, never taken for another.
 */
describe('names that are no UTF-8 never stand for another name', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [{ name: 'uma', password: 'uma password', args: ['--perms', 'all'] }] });
  });
  after(() => srv.stop());

  const first = Buffer.from('/caf\xe9.txt', 'latin1');
  const second = Buffer.from('/caf\xe8.txt', 'latin1');

  it('SFTP: OPEN of caf\\xe9 then caf\\xe8: the second does not overwrite the first', async () => {
    const conn: ssh2.Client = await sshConnect({ port: srv.sftpPort, username: 'uma', password: 'uma password' });
    const results: { name: Buffer; opened: boolean }[] = [];
    try {
      const { ch, next } = await initialised(conn);
      let id = 1;
      const ask = async (w: Writer) => {
        ch.write(w.finish());
        return next();
      };
      for (const [name, content] of [[first, 'first'], [second, 'second']] as const) {
        const opened = await ask(new Writer(FXP.OPEN, id++).bytes(name).uint32(OPEN_FLAGS.WRITE | OPEN_FLAGS.CREAT | OPEN_FLAGS.TRUNC).uint32(0));
        if (opened[0] !== FXP.HANDLE) {
          assert.equal(opened[0], FXP.STATUS);
          assert.notEqual(opened.readUInt32BE(5), STATUS.OK);
          results.push({ name, opened: false });
          continue;
        }
        const handle = opened.subarray(9, 9 + opened.readUInt32BE(5));
        assert.equal((await ask(new Writer(FXP.WRITE, id++).bytes(handle).uint64(0).bytes(Buffer.from(content)))).readUInt32BE(5), STATUS.OK);
        assert.equal((await ask(new Writer(FXP.CLOSE, id++).bytes(handle))).readUInt32BE(5), STATUS.OK);
        results.push({ name, opened: true });
      }
    } finally {
      conn.end();
    }
    const files = readdirSync(srv.home('uma')).filter((n) => n.startsWith('caf'));
    const made = results.filter((r) => r.opened).length;
    assert.equal(files.length, made, `${made} upload(s) under distinct names accepted, but the home holds ${JSON.stringify(files)}: one replaced the other`);
    assert.equal(made, 0, `a name that is no UTF-8 was taken as ${JSON.stringify(files)}`);
  });

  it('FTP: STOR caf\\xe9 then DELE caf\\xe8: the delete does not remove the file stored', async () => {
    const c = await loggedIn(srv.ftpPort, 'uma', 'uma password');
    try {
      assert.equal((await c.cmd('TYPE I')).code, 200);
      const pasv = await c.passive(false);
      c.send(Buffer.concat([Buffer.from('STOR '), first.subarray(1), Buffer.from('\r\n')]));
      const opening = await c.read();
      let stored = false;
      if (opening?.code === 150) {
        const data = await pasv.open();
        data.end('kept');
        assert.equal((await c.read())?.code, 226);
        stored = true;
      } else {
        assert.equal(opening?.code, 553, `STOR of a name that is no UTF-8: ${opening?.text}`);
      }
      c.send(Buffer.concat([Buffer.from('DELE '), second.subarray(1), Buffer.from('\r\n')]));
      const dele = await c.read();
      const files = readdirSync(srv.home('uma')).filter((n) => n.startsWith('caf') && readFileSync(`${srv.home('uma')}/${n}`, 'utf8') === 'kept');
      if (stored) assert.notEqual(dele?.code, 250, `DELE caf\\xe8 answered ${dele?.text} and removed the file stored as caf\\xe9 (left: ${JSON.stringify(files)})`);
      assert.equal(stored, false, `STOR of a name that is no UTF-8 stored ${JSON.stringify(files)}`);
      assert.equal(dele?.code, 553);
    } finally {
      c.close();
    }
  });

  it('a name holding U+FFFD is refused as the names it may stand for are (FTP MKD)', async () => {
    const c = await loggedIn(srv.ftpPort, 'uma', 'uma password');
    try {
      assert.equal((await c.cmd('MKD x\uFFFDy')).code, 553);
    } finally {
      c.close();
    }
  });

  it('pure: every front-end decodes a bad sequence to U+FFFD, which the path layer refuses in a path and in a name', () => {
    const decoded = Buffer.from('caf\xe9', 'latin1').toString('utf8');
    assert.equal(decoded, 'caf\uFFFD');
    assert.throws(() => resolveVirtual('/', decoded), { kind: 'invalid-path' });
    assert.throws(() => resolveVirtual('/d', `x/${decoded}/y`), { kind: 'invalid-path' });
    assert.throws(() => checkName(decoded), { kind: 'invalid-path' });
    assert.equal(resolveVirtual('/', 'caf\u00e9'), '/caf\u00e9');
  });
});
