import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { HandleBook } from '../src/session/open-handles.js';
import { SluiceError } from '../src/session/errors.js';
import { ByteBudget } from '../src/sftp/budget.js';
import type { Account } from '../src/session/account.js';

describe('ByteBudget (pure)', () => {
  it('takes while the total fits, and always lets a caller holding nothing through', () => {
    const b = new ByteBudget(100);
    assert.equal(b.tryTake(60, true), true);
    assert.equal(b.tryTake(50, false), false);
    assert.equal(b.tryTake(40, false), true);
    // Over the limit, but this caller holds nothing: one request must always be able to run.
    assert.equal(b.tryTake(500, true), true);
  });

  it('counts unsent transport bytes, and then refuses even a caller holding nothing', () => {
    let unsent = 0;
    const b = new ByteBudget(100, () => unsent);
    unsent = 70;
    assert.equal(b.tryTake(40, false), false);
    assert.equal(b.tryTake(30, false), true);
    unsent = 100;
    assert.equal(b.tryTake(1, true), false);
  });

  it('wakes its watchers when bytes come back or on wake(), until they unwatch', () => {
    const b = new ByteBudget(10);
    let woken = 0;
    const unwatch = b.watch(() => woken++);
    b.take(5);
    assert.equal(woken, 0);
    b.give(5);
    b.wake();
    assert.equal(woken, 2);
    unwatch();
    b.wake();
    assert.equal(woken, 2);
  });
});

describe('HandleBook (pure)', () => {
  const account = (id: number) => ({ id, name: `u${id}` }) as Account;

  it('shares one count among the sessions of a user, apart from other users', () => {
    const book = new HandleBook(2);
    const a1 = book.acquire(account(1));
    const a2 = book.acquire(account(1));
    const b = book.acquire(account(2));
    a1.hold();
    a2.hold();
    assert.throws(() => a1.hold(), (e: unknown) => e instanceof SluiceError && e.kind === 'failure');
    b.hold();
    a2.release();
    a1.hold();
    assert.throws(() => a2.hold(), SluiceError);
  });

  it('forgets a user when their last session ends', () => {
    const book = new HandleBook(1);
    book.acquire(account(1)).hold();
    book.release(account(1));
    // A fresh count: the one handle of before is not held against the new session.
    book.acquire(account(1)).hold();
  });
});
