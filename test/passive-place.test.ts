import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PassivePlace, PLACE_LINGER_MS } from '../src/ftp/data-channel/place.js';
import { DataPlaces } from '../src/session/data-places.js';

/**
 * A session's place among the passive ports (issue #14): asked of the
 * coordinator once for transfers one after another, counted once, and always
 * given back. The coordinator here is the shares themselves (what
 * LocalCoordinator.dataPlace answers from), with its questions counted: with
 * workers each is a round trip to the primary.
 */
function counted(places: DataPlaces) {
  const asked = { n: 0 };
  return {
    asked,
    claim: async (source: string, user: string) => {
      asked.n++;
      return places.take(source, user);
    },
  };
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('PassivePlace', () => {
  it('asks once for ports one after another, counts the place only while a port listens, and gives it back after the linger', async () => {
    const places = new DataPlaces(10, 1);
    const { asked, claim } = counted(places);
    const session = new PassivePlace(claim);
    for (let i = 0; i < 20; i++) {
      const use = await session.take('10.0.0.1', 'alice');
      assert.equal(typeof use, 'object');
      // Listening: the user's one place is taken.
      assert.equal(places.take('10.0.0.2', 'alice'), 'user');
      (use as { end(): void }).end();
    }
    assert.equal(asked.n, 1, 'a question per port');
    // Kept between ports, but counted against nobody: another session of the user takes a place meanwhile
    // (found by a review: counted while kept, a client moving files back to back held it all the time).
    const other = places.take('10.0.0.2', 'alice');
    assert.equal(typeof other, 'object', 'a kept place refused another session');
    (other as { release(): void }).release();
    await pause(PLACE_LINGER_MS + 200);
    // Given back after the linger: the next port asks again.
    await session.take('10.0.0.1', 'alice');
    assert.equal(asked.n, 2, 'the place outlived PLACE_LINGER_MS');
    session.end();
    assert.equal(typeof places.take('10.0.0.2', 'alice'), 'object');
  });

  it("an older port's late end does not start the linger of the place a newer port uses", async () => {
    const places = new DataPlaces(10, 1);
    const session = new PassivePlace(counted(places).claim);
    const old = (await session.take('10.0.0.1', 'alice')) as { end(): void };
    old.end();
    await session.take('10.0.0.1', 'alice');
    // The old port's data connection closes late (a refused upload's drain): the new port still listens.
    old.end();
    await pause(PLACE_LINGER_MS + 200);
    assert.equal(places.take('10.0.0.2', 'alice'), 'user');
    session.end();
    assert.equal(typeof places.take('10.0.0.2', 'alice'), 'object');
  });

  it('gives the place back at once for active mode, and at the end of the connection, an answer after it included', async () => {
    const places = new DataPlaces(10, 1);
    const session = new PassivePlace(counted(places).claim);
    await session.take('10.0.0.1', 'alice');
    session.giveBack();
    const free = places.take('10.0.0.2', 'alice');
    assert.equal(typeof free, 'object', 'held after PORT');
    (free as { release(): void }).release();
    // The connection closes while the coordinator answers: the place it answers goes back at once.
    const asking = session.take('10.0.0.1', 'alice');
    session.end();
    assert.equal(await asking, null);
    assert.equal(typeof places.take('10.0.0.2', 'alice'), 'object', 'an answer after the close kept its place');
    assert.equal(await session.take('10.0.0.1', 'alice'), null, 'a place taken after the close');
  });

  it('says which share is used up, and counts nothing then', async () => {
    const places = new DataPlaces(1, 5);
    const a = new PassivePlace(counted(places).claim);
    const b = new PassivePlace(counted(places).claim);
    assert.equal(typeof (await a.take('10.0.0.1', 'alice')), 'object');
    assert.equal(await b.take('10.0.0.1', 'bob'), 'address');
    a.end();
    assert.equal(typeof (await b.take('10.0.0.1', 'bob')), 'object');
  });
});
