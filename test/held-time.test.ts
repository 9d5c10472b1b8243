import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { HeldTime } from '../src/security/held-time.js';

/* The defender's sum of time held without a login, found wanting by a review of its first version. */
describe('HeldTime', () => {
  it('sums the time of many short connections of a source into offences', () => {
    const held = new HeldTime(100, 60_000);
    assert.deepEqual([40, 40, 40, 40, 40].map((ms) => held.add('a', ms)), [0, 0, 1, 0, 1]);
    assert.equal(held.add('b', 40), 0, 'each source its own sum');
  });

  it('counts one connection as one offence at most, as one a deadline ends', () => {
    // Before: one idle admin connection the server closed after 30 s scored 9 (its address banned), and an FTP
    // connection that left at 29.9 s scored twice what one that reached the deadline did.
    const held = new HeldTime(100, 60_000);
    assert.equal(held.add('a', 3_000), 1);
    assert.equal(held.add('a', 50), 0, 'nothing carried over from the long one');
  });

  it('sums within a window from the first connection, however often the source comes back', async () => {
    const held = new HeldTime(100, 200);
    assert.equal(held.add('a', 90), 0);
    for (let t = 0; t < 4; t++) {
      await sleep(80);
      assert.equal(held.add('a', 1), 0);
    }
    assert.equal(held.add('a', 20), 0, 'the 90 ms of more than a window ago are forgotten');
  });

  it('keeps summing a new source when thousands of others have been seen (the least recent is forgotten)', () => {
    const held = new HeldTime(100, 60_000);
    for (let i = 0; i < 5_000; i++) held.add(`scanner-${i}`, 1);
    assert.deepEqual([60, 60].map((ms) => held.add('attacker', ms)), [0, 1]);
  });
});
