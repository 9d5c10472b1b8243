// A wildcard of LIST and NLST is matched against every name of its directory, on the event loop every
// session shares. Found by the review of what a client's choices cost: a bracket as long as a name
// takes (`*[bbb…]`, 255 bytes) was tested member by member at every character of every name, 0.8 ms a
// name of 255, so one NLST of a directory of 20,000 such names took 16 s of the server's CPU (512
// names, 0.4 s, without a pause for any other client), the kind of wildcard of vsftpd's CVE-2011-0762.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, it } from 'node:test';
import { listingLines, loggedIn, type RawFtp } from './helpers/ftp-raw.js';
import { TestServer } from './helpers/server.js';

let srv: TestServer;
/** The server's CPU so far (user and system, all threads), in ms. */
const cpuMs = () => {
  const fields = readFileSync(`/proc/${srv.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
};
/** Names of 255 characters, the longest a file system takes. */
const NAMES = Array.from({ length: 2000 }, (_, i) => `${'a'.repeat(250)}${String(i).padStart(5, '0')}`);

before(async () => {
  srv = await TestServer.start({ yaml: 'ftp:\n  tls: optional\n', users: [{ name: 'carol', password: 'carol password' }] });
  for (const name of NAMES) writeFileSync(join(srv.home('carol'), name), '');
});
after(() => srv.stop());

const nameList = (c: RawFtp, command: string): Promise<string[]> => listingLines(c, command, false);

it('NLST with a wildcard as long as a command line costs the server a bounded time per name', async () => {
  const c = await loggedIn(srv.ftpPort, 'carol', 'carol password');
  try {
    // The longest name the server takes (255 bytes), one bracket: a wildcard is the last component of a path.
    const pattern = `*[${'b'.repeat(252)}]`;
    let before = cpuMs();
    assert.equal((await nameList(c, 'NLST')).length, NAMES.length);
    const plain = cpuMs() - before;
    before = cpuMs();
    assert.deepEqual(await nameList(c, `NLST ${pattern}`), []);
    const spent = cpuMs() - before;
    // 860 ms here before (the listing's own included), against 160-230 without the wildcard; 100-140 after.
    assert.ok(spent < 300 + plain, `the server spent ${spent} ms of CPU on one NLST of ${NAMES.length} names with a wildcard, ${plain} without`);
    // A run after the last `*` that almost matches at every place of the name (0.33 ms a name before): matched once, at its end.
    before = cpuMs();
    assert.deepEqual(await nameList(c, `NLST *${'a'.repeat(253)}b`), []);
    const ending = cpuMs() - before;
    assert.ok(ending < 300 + plain, `the server spent ${ending} ms of CPU on one NLST of ${NAMES.length} names with *aaa…ab, ${plain} without`);
    // Wildcards as people write them still match long names.
    assert.deepEqual(await nameList(c, 'NLST *[0-9][0-9]7'), NAMES.filter((n) => n.endsWith('7')));
    assert.deepEqual(await nameList(c, `NLST a*a?[!x]*[a-z0-9]001[0-9][0-9]`), NAMES.filter((n) => /001\d\d$/.test(n)));
  } finally {
    c.close();
  }
});
