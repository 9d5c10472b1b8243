import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, readlinkSync, realpathSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { World } from './helpers/world.js';

/**
 * A listing its front-end never closed ends with its session. Found by a
 * review: an FTP client that sent MLSD and left at once could have its
 * listing opened after the connection's close had dropped the data
 * endpoint; the command then failed before it handed the listing to the
 * transfer that closes it, and the directory stayed open until a garbage
 * collection (about one try in twenty, each with an error line).
 */
describe('a session closes the listings left open at its end', () => {
  let world: World;
  let site: string;
  before(async () => {
    world = await World.open();
    await world.addUser('lia');
    site = join(realpathSync(world.home('lia')), 'site');
    mkdirSync(site);
  });
  after(() => world.close());

  /** This process's descriptors on the directory. */
  const openOn = (dir: string): number =>
    readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return readlinkSync(`/proc/self/fd/${fd}`) === dir;
      } catch {
        return false; // closed while we looked
      }
    }).length;

  it('closes a listing opened and never read nor closed', async () => {
    const s = await world.session('lia', 'ftp');
    const before = openOn(site);
    await s.list('/site');
    assert.ok(openOn(site) > before, 'the listing holds the directory open');
    await s.close();
    assert.equal(openOn(site), before, 'the directory is still open after the session ended');
  });

  it('a listing closed by its owner is not closed twice, and the session still ends', async () => {
    const s = await world.session('lia', 'ftp');
    const before = openOn(site);
    const listing = await s.list('/site');
    await listing.close();
    await s.close();
    assert.equal(openOn(site), before);
  });
});
