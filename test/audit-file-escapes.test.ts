import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chainLine, GENESIS, lineHash } from '../src/audit/chain.js';
import { RawFtp } from './helpers/ftp-raw.js';
import { sluice } from './helpers/cli.js';
import { TestServer } from './helpers/server.js';

/**
 * What a reader of the audit file acts on or splits lines at, beyond JSON's
 * own escapes: DEL and C1 (CSI U+009B drives a terminal, NEL U+0085 ends a
 * line for many readers: Python's str.splitlines, log shippers), U+2028 and
 * U+2029 (line and paragraph separators), the bidi controls (a name shown
 * reversed). JSON.stringify leaves all of them as they are.
 */
const RAW = /[\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/**
 * A failed login is recorded with the name the client sent, before any
 * account: anyone who can reach the port chooses it. The console log, the
 * `audit query` output and the admin API write those characters as \uNNNN
 * escapes; the audit file itself (the record an operator tails, greps or
 * ships) had them raw.
 */
describe('the audit file holds no raw C1, line separator or bidi character, whatever a client sent', () => {
  let srv: TestServer;
  before(async () => {
    srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n' });
  });
  after(() => srv.stop());

  it('pure: a chained line escapes them, parses to the same value, and its hash is of the line written', () => {
    const user = 'x\u009b2J\u0085{"seq":9}\u2028\u202egnp.exe\u007f';
    const { line, head } = chainLine({ seq: 0, prev: GENESIS }, { event: 'login-failed', user });
    assert.doesNotMatch(line, RAW);
    assert.equal((JSON.parse(line) as { user: string }).user, user);
    assert.equal(head.prev, lineHash(line));
  });

  it('FTP: a failed login as CSI, NEL, U+2028 and RLO: one escaped line, the name exact once parsed, verify passes', async () => {
    const name = 'mallory\u009b2J\u0085{"event":"login","user":"root"}\u2028\u202egnp.exe';
    const c = await RawFtp.connect(srv.ftpPort);
    try {
      await c.read();
      assert.equal((await c.cmd(`USER ${name}`)).code, 331);
      assert.equal((await c.cmd('PASS wrong')).code, 530);
    } finally {
      c.close();
    }
    const records = await srv.auditUntil((r) => r.event === 'login-failed');
    assert.ok(records.some((r) => r.event === 'login-failed' && r.user === name), 'the name is recorded exactly');
    const text = readFileSync(join(srv.dir, 'data', 'audit.log'), 'utf8');
    const line = text.split('\n').find((l) => l.includes('"login-failed"')) ?? '';
    assert.doesNotMatch(line, RAW, `raw in the audit file: ${JSON.stringify(line)}`);
    // A reader that splits at every line break Unicode knows sees each record whole.
    assert.equal(text.split(/\r\n|[\n\r\u000b\u000c\u001c-\u001e\u0085\u2028\u2029]/).filter((l) => l !== '').length, text.split('\n').filter((l) => l !== '').length);
    const verify = sluice(srv.dir, ['audit', 'verify']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
  });
});
