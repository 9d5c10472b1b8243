import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { PasswordHasher } from '../src/auth/passwords.js';
import { VerifiedPasswords } from '../src/auth/verified-passwords.js';

/** Cheap argon2 parameters: these cases are about what is kept, not about the cost. */
const FAST = { memoryCost: 1024, timeCost: 1, parallelism: 1 };

describe('verified passwords', () => {
  it('answers only the password that verified, for the hash it verified against', () => {
    const v = new VerifiedPasswords(60_000);
    v.add('$argon2id$one', 'right');
    assert.equal(v.has('$argon2id$one', 'right'), true);
    assert.equal(v.has('$argon2id$one', 'wrong'), false);
    assert.equal(v.has('$argon2id$one', 'right\0'), false);
    assert.equal(v.has('$argon2id$one', ''), false);
    // A changed password is a new hash (new salt): the old entry does not answer for it.
    assert.equal(v.has('$argon2id$two', 'right'), false);
  });

  it('forgets an entry at its time, and a hit does not extend it', () => {
    let now = 1_000;
    const v = new VerifiedPasswords(500, 10, () => now);
    v.add('h', 'pw');
    now = 1_400;
    assert.equal(v.has('h', 'pw'), true);
    now = 1_500;
    assert.equal(v.has('h', 'pw'), false);
    assert.equal(v.size, 0);
  });

  it('keeps nothing with no lifetime', () => {
    const v = new VerifiedPasswords(0);
    v.add('h', 'pw');
    assert.equal(v.has('h', 'pw'), false);
    assert.equal(v.size, 0);
  });

  it('holds at most `max` entries, dropping the oldest, and drops expired ones as it adds', () => {
    let now = 0;
    const v = new VerifiedPasswords(100, 3, () => now);
    for (const h of ['a', 'b', 'c', 'd']) v.add(h, 'pw');
    assert.equal(v.size, 3);
    assert.equal(v.has('a', 'pw'), false);
    assert.equal(v.has('d', 'pw'), true);
    now = 100;
    v.add('e', 'pw');
    assert.equal(v.size, 1);
    assert.equal(v.has('e', 'pw'), true);
  });

  it('a hasher verifies in full and keeps only what it is told to remember', async () => {
    const hasher = new PasswordHasher(2, FAST, 60_000);
    const hash = await hasher.hash('correct horse');
    assert.equal(await hasher.verify(hash, 'correct horse'), true);
    assert.equal(hasher.kept(hash, 'correct horse'), false, 'a verification alone keeps nothing');
    hasher.remember(hash, 'correct horse');
    assert.equal(hasher.kept(hash, 'correct horse'), true);
    assert.equal(hasher.kept(hash, 'correct horse '), false);
    hasher.forget(hash);
    assert.equal(hasher.kept(hash, 'correct horse'), false);
  });

  it('a kept password is answered without argon2: 200 checks take less than one verification', async () => {
    const hasher = new PasswordHasher(2, undefined, 60_000);
    const hash = await hasher.hash('correct horse');
    const t0 = process.hrtime.bigint();
    assert.equal(await hasher.verify(hash, 'correct horse'), true);
    const full = Number(process.hrtime.bigint() - t0) / 1e6;
    hasher.remember(hash, 'correct horse');
    const t1 = process.hrtime.bigint();
    for (let i = 0; i < 200; i++) assert.equal(hasher.kept(hash, 'correct horse'), true);
    const kept = Number(process.hrtime.bigint() - t1) / 1e6;
    assert.ok(kept < full, `200 kept checks took ${kept.toFixed(1)} ms, one argon2 ${full.toFixed(1)} ms`);
    // Off, nothing is kept.
    const off = new PasswordHasher(2, FAST, 0);
    off.remember(hash, 'correct horse');
    assert.equal(off.kept(hash, 'correct horse'), false);
  });
});
