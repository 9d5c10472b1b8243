import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import type { AuthRequest, Claim } from '../src/auth/authenticator.js';
import type { Account } from '../src/session/account.js';
import { SluiceError } from '../src/session/errors.js';
import { Guest, type Gate } from '../src/security/gate.js';

/** A Guest on a gate whose authenticator logs `bob` in at once and notes each logout of a login not opened. */
function guestOf() {
  const logouts: string[] = [];
  const slots = { taken: 0, freed: 0 };
  const quiet = () => undefined;
  const gate = {
    settings: { limits: { loginTimeout: 60 }, auth: { maxTries: 6, failureDelay: 0 } },
    bans: { banned: () => false },
    turnToJudge: async () => () => undefined,
    coordinator: {
      score: async () => false,
      heldBan: async () => false,
      claimUser: async () => {
        slots.taken++;
        return () => void slots.freed++;
      },
    },
    authenticator: {
      password: async (_req: AuthRequest, _password: string, claim: Claim) => {
        assert.equal(await claim('bob', 'password'), 'ok');
        return { name: 'bob' } as Account;
      },
      notOpened: (_req: AuthRequest, _user: string, reason: string) => void logouts.push(reason),
    },
    log: { warn: quiet, info: quiet, error: quiet },
  } as unknown as Gate;
  const guest = new Guest(gate, { destroy: quiet } as unknown as Socket, '127.0.0.1', 40000, '127.0.0.1', 'sftp');
  const login = () => guest.password({ username: 'bob', protocol: 'sftp', remotePort: 1, connection: 'c1' }, 'pw');
  return { guest, login, logouts, slots };
}

/** A session open the test settles: as an SFTP channel's Session.open, whose home may come back meanwhile. */
function pendingOpen() {
  let settle!: { resolve: (s: string) => void; reject: (e: unknown) => void };
  const promise = new Promise<string>((resolve, reject) => (settle = { resolve, reject }));
  const calls = { n: 0 };
  return {
    calls,
    open: () => {
      calls.n++;
      return promise;
    },
    ...settle,
  };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('Guest.enter: sessions of one login opened at once', () => {
  it('when the first cannot open, the others open no session of the ended login, and its logout is recorded once', async () => {
    const { guest, login, logouts, slots } = guestOf();
    await login();
    const [a, b, c] = [pendingOpen(), pendingOpen(), pendingOpen()];
    const entered = [guest.enter('bob', a.open), guest.enter('bob', b.open), guest.enter('bob', c.open)].map((p) =>
      p.then(
        (s) => ({ ok: true as const, s }),
        (err: unknown) => ({ ok: false as const, err }),
      ),
    );
    await tick();
    // The first fails (the home is missing); the home then comes back before the others' opens end.
    a.reject(new SluiceError('failure', undefined, 'ENOENT: home'));
    await tick();
    b.resolve('session b');
    c.resolve('session c');
    const results = await Promise.all(entered);
    assert.deepEqual(
      results.map((r) => r.ok),
      [false, false, false],
      'no session opened for a login that has ended',
    );
    assert.equal(b.calls.n + c.calls.n, 0, 'nor was one begun after the login ended');
    assert.deepEqual(logouts, ['ENOENT: home'], 'one logout for the one login');
    assert.equal(guest.loggedIn, false);
    assert.equal(slots.freed, slots.taken, 'the slot is freed and not used');
  });

  it('when the first opens, the others open too', async () => {
    const { guest, login, logouts } = guestOf();
    await login();
    const [a, b] = [pendingOpen(), pendingOpen()];
    const entered = [guest.enter('bob', a.open), guest.enter('bob', b.open)];
    await tick();
    a.resolve('session a');
    b.resolve('session b');
    assert.deepEqual(await Promise.all(entered), ['session a', 'session b']);
    assert.deepEqual(logouts, []);
    assert.equal(guest.loggedIn, true);
  });

  it('a new login after one whose session did not open may open a session (the home is back)', async () => {
    const { guest, login, logouts } = guestOf();
    await login();
    await assert.rejects(guest.enter('bob', () => Promise.reject(new SluiceError('failure', undefined, 'ENOENT: home'))));
    await login();
    assert.equal(await guest.enter('bob', async () => 'session'), 'session');
    assert.deepEqual(logouts, ['ENOENT: home']);
    assert.equal(guest.loggedIn, true);
  });
});
