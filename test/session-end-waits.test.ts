import assert from 'node:assert/strict';
import { readdirSync, writeFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { FXP, Writer } from '../src/sftp/codec.js';
import { sluice } from './helpers/cli.js';
import { until } from './helpers/probe.js';
import { TestServer } from './helpers/server.js';
import { initialised, sshConnect } from './helpers/ssh.js';

/*
 * A session that ends (its client gone) while changes it asked for still run:
 * found by an adversarial review of be2dc1f. The session's end waited for its
 * transfers only, then let its quota ledger go; with workers the primary
 * dropped the handle, so a MKDIR, SYMLINK or size change that landed after it
 * was never charged (the usage drifted low: a user ended above its quota,
 * and repeating it grew without bound until the next start's recount), and
 * a REMOVE or rename that landed after it failed at its last step, its
 * record never written (a file deleted without a trace in the trail). The
 * end now waits for the changes under way, and refuses new ones.
 */
describe('a session ended while its changes run', () => {
  let srv: TestServer;
  const ROUNDS = 6;
  const PER_ROUND = 40;

  before(async () => {
    srv = await TestServer.start({
      env: { SLUICE_WORKERS: '2' },
      users: [
        { name: 'mia', password: 'mia-secret-1', args: ['--perms', 'all', '--quota-files', '100000'] },
        { name: 'ned', password: 'ned-secret-1', args: ['--perms', 'all', '--quota-files', '100000'] },
      ],
    });
  });
  after(() => srv.stop());

  /** Sends `packets` in one write on a fresh SFTP channel of `user`, and drops the connection right after. */
  const sendAndGo = async (user: string, packets: Buffer[]): Promise<void> => {
    const conn = await sshConnect({ port: srv.sftpPort, username: user, password: `${user}-secret-1` });
    conn.on('error', () => undefined);
    const { ch } = await initialised(conn);
    ch.write(Buffer.concat(packets));
    setImmediate(() => conn.end());
    await new Promise<void>((resolve) => conn.once('close', () => resolve()));
  };
  /**
   * Once each of the user's `sessions` has logged out: as many logouts as logins alone held too early, with the
   * last session's login not on record yet (5 of 5 seen, then the sixth's removal counted missing).
   */
  const noSessionsOf = async (user: string, sessions: number) =>
    assert.ok(await until(30_000, async () => {
      const events = records(user).map((e) => e.event);
      const logouts = events.filter((e) => e === 'logout').length;
      return logouts >= sessions && events.filter((e) => e === 'login').length === logouts;
    }), `${user}'s sessions did not all end`);
  const records = (user: string) =>
    sluice(srv.dir, ['audit', 'query', '--user', user, '--json']).stdout.split('\n').filter(Boolean)
      .map((l) => JSON.parse(l) as { event: string; path?: string; session: string });

  it('directories made as it ended are all charged, and on record before its logout', { timeout: 180_000 }, async () => {
    for (let r = 0; r < ROUNDS; r++) {
      const mkdirs = Array.from({ length: PER_ROUND }, (_, i) => new Writer(FXP.MKDIR, i + 1).string(`/d${r}-${i}`).uint32(0).finish());
      await sendAndGo('mia', mkdirs);
    }
    await noSessionsOf('mia', ROUNDS);
    const onDisk = readdirSync(srv.home('mia')).length;
    assert.ok(onDisk > 0, 'no directory the client asked for before it left was made');
    const stored = () => (JSON.parse(sluice(srv.dir, ['user', 'show', 'mia', '--json']).stdout) as { usedFiles: number }).usedFiles;
    // The primary writes the usage within a tick: waited for, never assumed.
    await until(10_000, async () => stored() === onDisk);
    assert.equal(stored(), onDisk, `names on disk ${onDisk}, charged ${stored()}: changes that landed after the session's end were not charged`);
    const made = records('mia').filter((e) => e.event === 'mkdir').length;
    assert.equal(made, onDisk, `${onDisk} directories made, ${made} on record`);
    assertLogoutLast(records('mia'));
  });

  it('files removed as it ended are all on record', { timeout: 180_000 }, async () => {
    let removed = 0;
    for (let r = 0; r < ROUNDS; r++) {
      for (let i = 0; i < PER_ROUND; i++) writeFileSync(`${srv.home('ned')}/f${r}-${i}`, 'x');
      const removes = Array.from({ length: PER_ROUND }, (_, i) => new Writer(FXP.REMOVE, i + 1).string(`/f${r}-${i}`).finish());
      await sendAndGo('ned', removes);
      removed += PER_ROUND;
    }
    await noSessionsOf('ned', ROUNDS);
    const gone = removed - readdirSync(srv.home('ned')).length;
    // Before, each removal failed once the ledger was gone (its lock asked of a handle released), or did its unlink unrecorded.
    assert.ok(gone > 0, 'no removal the client sent before it left was carried out');
    const onRecord = records('ned').filter((e) => e.event === 'delete').length;
    assert.equal(onRecord, gone, `${gone} files removed, ${onRecord} on record`);
    assertLogoutLast(records('ned'));
  });
});

/** Each session's logout is its last record: nothing it did comes after its end. */
function assertLogoutLast(events: { event: string; session: string }[]): void {
  const ended = new Set<string>();
  for (const e of events) {
    assert.ok(!ended.has(e.session), `a ${e.event} record after its session's logout`);
    if (e.event === 'logout') ended.add(e.session);
  }
}
