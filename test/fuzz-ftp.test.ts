import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { Client } from 'basic-ftp';
import { Readable } from 'node:stream';
import { COMMANDS } from '../src/ftp/commands/table.js';
import { LineReader, isHttpVerb } from '../src/ftp/lines.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { FUZZ_SERVER_ENV, assertBounded, fuzzRuns, fuzzSeed, fuzzYaml, usageOf, type Usage } from './helpers/fuzz.js';
import { TestServer } from './helpers/server.js';

/**
 * Random command lines against the real server, before and after login.
 * Oracle: every line the server's reader yields gets exactly one final reply
 * (preliminary 1xx aside), in time, except where the protocol says the
 * connection ends (QUIT, an HTTP verb, AUTH TLS); the connection still
 * answers afterwards; the server neither dies nor leaks.
 */

const USER = 'fuzz';
const PASSWORD = 'fuzz password';

// PASS is left out: failed logins are delayed and counted, which tests the login policy, not the parser.
// PASV/EPSV take no argument and open a port a data verb would then wait on.
const VERBS = Object.keys(COMMANDS).filter((v) => !['PASS', 'PASV', 'EPSV'].includes(v));

const hostileArg = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.constantFrom(
    '../../../../etc/passwd', '/..', '..\\..\\..\\windows', '%s%n%x%p', '*', '**/*', '-la /', '-R /', '~root', '\u202e\u0000',
    'a/./b//c/', '.', '..', '/', '', ' ', 'TLS', 'tls-c', 'P', 'C', 'E', '0', '-1', '18446744073709551616', '4294967296',
    '127,0,0,1,0,21', '127,0,0,1,300,1', '|1|127.0.0.1|21|', '|2|::1|21|', '|||', 'UTF8 ON', 'MLST size*;type*;', 'CHMOD 777 /',
    'x HTTP/1.1',
  ),
  fc.integer({ min: 1, max: 9000 }).map((n) => 'A'.repeat(n)),
);

const verb = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...VERBS) },
  { weight: 2, arbitrary: fc.constantFrom(...VERBS).map((v) => v.toLowerCase()) },
  { weight: 1, arbitrary: fc.string({ minLength: 1, maxLength: 8 }) },
);

/**
 * Bytes a hostile client slips into a line: NUL, lone CR, Telnet IAC
 * sequences (a lone IAC, an option eating the newline), bad UTF-8. A
 * subnegotiation is always closed (IAC SE): Telnet discards everything until
 * then, so an open one would leave nothing to answer.
 */
const injection = fc.constantFrom(
  [0x00], [0x0d], [0xff], [0xff, 0xff], [0xff, 0xf4], [0xff, 0xf2], [0xff, 0xfb, 0x01], [0xff, 0xfd, 0x0a],
  [0xff, 0xfa, 0x18, 0x01, 0xff, 0xf0], [0xff, 0xfa, 0x18, 0x0a, 0x0a, 0xff, 0xf0], [0xc3], [0xed, 0xa0, 0x80],
);

const line = fc
  .record({
    verb,
    sep: fc.constantFrom(' ', '  ', '\t', ''),
    arg: hostileArg,
    inject: fc.option(fc.tuple(injection, fc.nat()), { freq: 3 }),
    end: fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', '\r', ''),
  })
  .map(({ verb: v, sep, arg, inject, end }) => {
    let bytes = Buffer.from(`${v}${sep}${arg}`, 'utf8');
    if (inject) {
      const [inj, at] = inject;
      const i = at % (bytes.length + 1);
      bytes = Buffer.concat([bytes.subarray(0, i), Buffer.from(inj), bytes.subarray(i)]);
    }
    return Buffer.concat([bytes, Buffer.from(end)]);
  });

/**
 * What the server must answer to a batch: lines read as its reader reads
 * them, until the connection is meant to end. `loggedIn`: the connection's
 * state before it (REIN in it logs out; PASS is never sent).
 */
function expectations(batch: Buffer, loggedIn: boolean): { replies: number; ends: boolean } {
  let replies = 0;
  const reader = new LineReader();
  reader.feed(batch);
  for (let event = reader.next(); event; event = reader.next()) {
    if ('tooLong' in event) {
      replies++;
      continue;
    }
    const space = event.line.indexOf(' ');
    const v = (space < 0 ? event.line : event.line.slice(0, space)).toUpperCase();
    const arg = space < 0 ? '' : event.line.slice(space + 1);
    if (isHttpVerb(v, event.line, !loggedIn)) return { replies, ends: true };
    if (v === 'REIN') loggedIn = false;
    if (v === 'QUIT' || (v === 'AUTH' && /^(TLS|SSL|TLS-C|TLS-P)$/i.test(arg.trim()))) return { replies: replies + 1, ends: true };
    replies++;
  }
  return { replies, ends: false };
}

/** Send a batch at once (pipelined) and check the oracle; false when the connection ended as the protocol says. */
async function exchange(c: RawFtp, lines: Buffer[], loggedIn: boolean): Promise<boolean> {
  // Whatever the last line left unfinished is finished, so every line is due an answer.
  const batch = Buffer.concat([...lines, Buffer.from('\r\n')]);
  const want = expectations(batch, loggedIn);
  c.send(batch);
  let finals = 0;
  while (finals < want.replies) {
    const reply = await c.read(30_000);
    if (reply === null) {
      // Closing is the answer to QUIT, AUTH TLS (pipelined bytes after it are refused) and HTTP.
      assert.ok(want.ends && finals >= want.replies - 1, `connection closed after ${finals} of ${want.replies} replies`);
      return false;
    }
    assert.ok(reply.code >= 100 && reply.code < 600, `reply code ${reply.code}`);
    if (reply.code >= 200) finals++;
    if (reply.code === 234) return false;
  }
  if (want.ends) return false;
  const noop = await c.cmd('NOOP');
  assert.equal(noop.code, 200, 'the connection still answers');
  return true;
}

async function connect(port: number, login: boolean): Promise<RawFtp> {
  const c = await RawFtp.connect(port);
  assert.equal((await c.read())?.code, 220);
  if (login) assert.equal((await c.login(USER, PASSWORD)).code, 230);
  return c;
}

describe('FTP fuzz: random command lines against the running server', () => {
  let srv: TestServer;
  let baseline: Usage;
  const runs = fuzzRuns(40);
  before(async () => {
    srv = await TestServer.start({ env: FUZZ_SERVER_ENV, yaml: fuzzYaml('ftp:\n  tls: optional\n'), users: [{ name: USER, password: PASSWORD }] });
    // A first login and transfer warm the server up before its baseline is taken.
    await normalClient(srv);
    baseline = usageOf(srv.pid as number);
  });
  after(() => srv.stop());

  for (const login of [false, true]) {
    it(`${login ? 'logged-in' : 'not logged-in'} connection: every line answered, nothing crashes or hangs (${runs} runs)`, async () => {
      let c: RawFtp | null = null;
      try {
        await fc.assert(
          fc.asyncProperty(fc.array(line, { minLength: 1, maxLength: 8 }), async (lines) => {
            // A connection is reused while it lasts and is still in the state under test.
            if (c && (c.closed || (await c.cmd('PWD')).code !== 257)) {
              // Logged out (REIN): close it, or the server rightly keeps it until its idle timeout.
              c.close();
              c = null;
            }
            c ??= await connect(srv.ftpPort, login);
            const open = await exchange(c, lines, login);
            if (!open || !login) {
              c.close();
              c = null;
            }
            assert.ok(srv.alive, 'server still running');
          }),
          { numRuns: runs, seed: fuzzSeed(), endOnFailure: true },
        );
      } finally {
        (c as RawFtp | null)?.close();
      }
    });
  }

  it('afterwards: a normal client still works, descriptors and memory are bounded', async () => {
    assert.ok(srv.alive);
    await normalClient(srv);
    const now = await assertBounded(srv.pid as number, baseline);
    console.log(`# FTP fuzz: RSS ${(baseline.rssBytes / 2 ** 20).toFixed(0)} -> ${(now.rssBytes / 2 ** 20).toFixed(0)} MiB, fds ${baseline.fds} -> ${now.fds}`);
  });
});

async function normalClient(srv: TestServer): Promise<void> {
  const client = new Client(30_000);
  try {
    await client.access({ host: '127.0.0.1', port: srv.ftpPort, user: USER, password: PASSWORD });
    await client.uploadFrom(Readable.from([Buffer.from('still serving')]), 'normal.txt');
    const list = await client.list();
    assert.ok(list.some((f) => f.name === 'normal.txt'));
  } finally {
    client.close();
  }
}
