import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { toAccount } from '../src/auth/authenticator.js';
import { configSchema } from '../src/config/schema.js';
import { Session } from '../src/session/session.js';
import type { Location, Storage, StorageOpener } from '../src/session/storage/storage.js';
import { World, writeFile } from './helpers/world.js';

const QUOTA = 1024 * 1024;

/**
 * An upload in place (a resume, SFTP OPEN without TRUNC) looks at the file,
 * then takes its quota steps and its lock (one writer in place per file),
 * then opens the name. Another session of the user may put another file
 * under that name meanwhile (the window is an IPC round trip with workers):
 * the open must not take that file for the one it looked at, whose lock it
 * holds (found by a review). The rename lands in that window here, through a
 * storage whose look at the name makes it.
 */
for (const atomic of [true, false]) describe(`an upload in place whose name was given to another file after it looked (uploads.atomic: ${atomic})`, () => {
  let world: World;
  let home: string;

  before(async () => {
    world = await World.open(atomic ? {} : { uploads: { ...configSchema.parse({}).uploads, atomic: false } });
    await world.addUser('alice', { quotaBytes: QUOTA });
    home = world.home('alice');
  });
  after(() => world.close());

  /** A session whose next look at `name` (stat of its location) runs `meanwhile` before it answers. */
  async function sessionSwapping(name: string, meanwhile: () => Promise<void>): Promise<Session> {
    const real = world.services.sessionDeps.storage;
    let armed = true;
    const onLook = (loc: Location): Location =>
      new Proxy(loc, {
        get(target, prop) {
          const value = Reflect.get(target, prop, target) as unknown;
          if (prop === 'stat' && armed && target.virtualPath === name) {
            return async () => {
              const st = await target.stat();
              armed = false;
              await meanwhile();
              return st;
            };
          }
          return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        },
      });
    const storage: StorageOpener = async (h) => {
      const s = await real(h);
      const wrapped: Storage = {
        resolve: async (...a) => onLook(await s.resolve(...a)),
        resolveForRead: async (...a) => onLook(await s.resolveForRead(...a)),
      };
      return wrapped;
    };
    const user = await world.services.users.get('alice');
    const connection = { end: () => session.close() };
    const session: Session = await Session.open(
      toAccount(user!),
      { id: 'swap', protocol: 'sftp', remoteAddress: '127.0.0.1', remotePort: 40001 },
      { ...world.services.sessionDeps, storage },
      connection,
    );
    return session;
  }

  const used = async (s: Session) => QUOTA - (await s.space('/')).availableBytes;
  const onDisk = () => readdirSync(home).reduce((sum, n) => sum + statSync(join(home, n)).size, 0);

  it('is refused, leaves the other file as it was, and the usage stays what the disk holds', async () => {
    const other = await world.session('alice');
    await writeFile(other, '/big', Buffer.alloc(1000, 1));
    await writeFile(other, '/small', Buffer.alloc(10, 2));
    assert.equal(await used(other), 1010);

    const s = await sessionSwapping('/big', () => other.rename('/small', '/big', 'replace'));
    const opening = s.openWrite('/big', { offset: 0, truncate: false });
    const up: unknown = await opening.catch((err: unknown) => err);
    if (!(up instanceof Error)) {
      // The open took the file renamed onto the name, its lock on the one it looked at: a second writer got in beside it.
      const second = await other.openWrite('/big', { offset: 0, truncate: false }).then(
        async (w) => (await w.close(), true),
        () => false,
      );
      await (up as Awaited<typeof opening>).close();
      assert.fail(`the open took the other file${second ? ', and a second writer in place got in beside it' : ''}`);
    }
    assert.match(up.message, /changed|again/i);
    assert.deepEqual(readFileSync(join(home, 'big')), Buffer.alloc(10, 2), 'the file now under the name is untouched');
    assert.equal(await used(s), onDisk(), 'usage is what the disk holds');
    if (!atomic) {
      // An overwrite is in place too then, and truncates: not the file renamed onto the name.
      await other.rename('/big', '/big2', 'replace');
      await writeFile(other, '/big', Buffer.alloc(1000, 1));
      const s2 = await sessionSwapping('/big', () => other.rename('/big2', '/big', 'replace'));
      await assert.rejects(writeFile(s2, '/big', 'x'), /changed|again/i);
      assert.deepEqual(readFileSync(join(home, 'big')), Buffer.alloc(10, 2), 'not truncated');
      assert.equal(await used(s2), onDisk());
    }
    // And the next try opens the file that is there now.
    await writeFile(s, '/big', 'hello', { offset: 0, truncate: false });
    assert.equal(readFileSync(join(home, 'big'), 'utf8'), 'hello' + Buffer.alloc(5, 2).toString());
    assert.equal(await used(s), onDisk());
  });
});
