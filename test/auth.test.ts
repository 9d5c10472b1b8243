import assert from 'node:assert/strict';
import argon2 from 'argon2';
import Database from 'better-sqlite3';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { userKeyPair } from './helpers/ssh.js';
import { AuthError, Authenticator, type AuthRequest } from '../src/auth/authenticator.js';
import { addressAllowed, parseCidr } from '../src/auth/ip-rules.js';
import { PasswordHasher } from '../src/auth/passwords.js';
import { parsePublicKey } from '../src/auth/public-keys.js';
import { cpuSince } from './helpers/cpu-time.js';
import { World } from './helpers/world.js';

const req = (username: string, over: Partial<AuthRequest> = {}): AuthRequest => ({
  username, protocol: 'sftp', remoteAddress: '127.0.0.1', remotePort: 5555, connection: 'c1', ...over,
});
const because = (reason: string) => (e: unknown) => e instanceof AuthError && e.reason === reason && e.message === 'Login incorrect';

describe('authentication', () => {
  let world: World;
  let auth: Authenticator;
  before(async () => {
    world = await World.open();
    auth = world.services.authenticator;
    await world.addUser('alice', { password: 'correct horse' });
  });
  after(() => world.close());

  /** A user whose stored hash has weaker argon2 parameters than today's, as an older release wrote it. */
  async function userWithWeakHash(name: string, password: string): Promise<{ id: number; weak: string }> {
    const weak = await argon2.hash(password, { type: argon2.argon2id, memoryCost: 4096, timeCost: 1, parallelism: 1 });
    await world.addUser(name, { password: 'placeholder' });
    const id = (await world.services.users.get(name))!.id;
    await world.services.users.setPasswordHash(id, weak);
    return { id, weak };
  }

  it('stores argon2id with OWASP parameters and verifies', async () => {
    const hash = (await world.services.users.get('alice'))!.passwordHash!;
    assert.match(hash, /^\$argon2id\$v=19\$(?=.*m=19456)(?=.*t=2)(?=.*p=1)/);
    const account = await auth.password(req('alice'), 'correct horse');
    assert.equal(account.name, 'alice');
    await assert.rejects(auth.password(req('alice'), 'wrong'), because('bad-password'));
  });

  it('rehashes on login when the parameters changed', async () => {
    const { weak } = await userWithWeakHash('old', 'old password');
    await auth.password(req('old'), 'old password');
    const now = (await world.services.users.get('old'))!.passwordHash!;
    assert.notEqual(now, weak);
    assert.ok(/m=19456/.test(now) && /t=2/.test(now) && /p=1/.test(now));
    await auth.password(req('old'), 'old password');
  });

  it('unknown users cost a real verification (no timing oracle) and fail alike', async () => {
    const hasher = new PasswordHasher(2);
    const known = await hasher.hash('pw');
    // CPU time (argon2 runs on the pool's threads, which the process's count includes), not the clock's:
    // under load the clock counted a wait for a core into one side (a clean run saw 43 against 114 ms).
    const t0 = cpuSince();
    assert.equal(await hasher.verify(null, 'pw'), false);
    const tUnknown = t0();
    const t1 = cpuSince();
    assert.equal(await hasher.verify(known, 'nope'), false);
    const tKnown = t1();
    // The dummy hash has the same parameters: same order of cost (the first call also builds it).
    assert.ok(tUnknown >= tKnown * 0.5, `unknown ${tUnknown} ms vs known ${tKnown} ms of CPU`);
    await assert.rejects(auth.password(req('nobody'), 'x'), because('unknown-user'));
  });

  it('caps concurrent hashes', async () => {
    const hasher = new PasswordHasher(1);
    let maxActive = 0;
    const probe = setInterval(() => {
      maxActive = Math.max(maxActive, (hasher as unknown as { active: number }).active);
    }, 1);
    await Promise.all([1, 2, 3, 4].map((i) => hasher.hash(`p${i}`)));
    clearInterval(probe);
    assert.equal(maxActive, 1);
  });

  it('refuses a disabled account', async () => {
    await world.addUser('dis');
    await world.services.admin.update('dis', { enabled: false });
    await assert.rejects(auth.password(req('dis'), 'correct horse'), because('disabled'));
  });

  it('keeps a password only once its login went through, and forgets it when the account is refused later', async () => {
    const hasher = world.services.hasher;
    await world.addUser('kept', { allowIps: ['10.0.0.0/8'] });
    const hash = async () => (await world.services.users.get('kept'))!.passwordHash!;
    // The right password, but the address is not allowed: nothing kept, so a retry costs argon2 again.
    // (From addresses of their own: failures from one address are aggregated after ten, and a later case counts on 127.0.0.1's.)
    await assert.rejects(auth.password(req('kept', { remoteAddress: '192.0.2.7' }), 'correct horse'), because('address-not-allowed'));
    assert.equal(hasher.kept(await hash(), 'correct horse'), false);
    await auth.password(req('kept', { remoteAddress: '10.1.2.3' }), 'correct horse');
    assert.equal(hasher.kept(await hash(), 'correct horse'), true);
    await world.services.admin.update('kept', { enabled: false });
    // In CPU time (argon2's threads count in it), against the cheapest of three verifications: a
    // verification's cost doubles or triples on a thread of the pool that has not hashed yet (its
    // 19 MiB are new pages), so one against one, in the clock's time or in CPU time, failed now and
    // then (30 against 75-128 ms, either way round).
    const t0 = cpuSince();
    await assert.rejects(auth.password(req('kept', { remoteAddress: '10.1.2.3' }), 'correct horse'), because('disabled'));
    const refusedMs = t0();
    assert.equal(hasher.kept(await hash(), 'correct horse'), false);
    // As slow as a refusal that verified in full: no quicker answer tells the password was right.
    let fullMs = Infinity;
    for (let i = 0; i < 3; i++) {
      const t1 = cpuSince();
      await hasher.verify(await hash(), 'correct horse');
      fullMs = Math.min(fullMs, t1());
    }
    assert.ok(refusedMs > fullMs / 2, `refusal after a kept password took ${refusedMs.toFixed(1)} ms, a verification ${fullMs.toFixed(1)} ms`);
  });

  it('a rehashed password is kept under its new hash; a rehash the store refuses does not fail the login', async () => {
    const hasher = world.services.hasher;
    const { id, weak } = await userWithWeakHash('rh', 'rehash me');
    await auth.password(req('rh'), 'rehash me');
    const strong = (await world.services.users.get('rh'))!.passwordHash!;
    assert.notEqual(strong, weak);
    assert.equal(hasher.kept(strong, 'rehash me'), true);
    assert.equal(hasher.kept(weak, 'rehash me'), false);
    // The store refuses the next rehash (a trigger, through a second connection to the same database).
    await world.services.users.setPasswordHash(id, weak);
    const db = new Database(join(world.dataDir, 'sluice.db'));
    db.exec("CREATE TRIGGER refuse_rehash BEFORE UPDATE OF password_hash ON users BEGIN SELECT RAISE(ABORT, 'refused'); END");
    try {
      assert.equal((await auth.password(req('rh'), 'rehash me')).name, 'rh');
      assert.equal((await world.services.users.get('rh'))!.passwordHash, weak);
    } finally {
      db.exec('DROP TRIGGER refuse_rehash');
      db.close();
    }
  });

  it('a session-limit refusal keeps the password: it was right, and the reply says so anyway', async () => {
    await world.addUser('lim');
    const hash = (await world.services.users.get('lim'))!.passwordHash!;
    await auth.password(req('lim'), 'correct horse');
    await assert.rejects(auth.password(req('lim', { remoteAddress: '192.0.2.8' }), 'correct horse', async () => 'limit'), because('session-limit'));
    assert.equal(world.services.hasher.kept(hash, 'correct horse'), true);
  });

  it('refuses an expired account like a disabled one', async () => {
    await world.addUser('exp', { expiresAt: new Date(Date.now() - 1000) });
    await assert.rejects(auth.password(req('exp'), 'correct horse'), because('expired'));
    await world.services.admin.update('exp', { expiresAt: new Date(Date.now() + 3600_000) });
    await auth.password(req('exp'), 'correct horse');
  });

  it('refuses a protocol the user may not use, and plain FTP for a require-TLS user', async () => {
    await world.addUser('sftponly', { protocols: ['sftp'] });
    await assert.rejects(auth.password(req('sftponly', { protocol: 'ftps' }), 'correct horse'), because('protocol-not-allowed'));
    await world.addUser('tls', { protocols: ['ftp', 'ftps'], requireTls: true });
    await assert.rejects(auth.password(req('tls', { protocol: 'ftp' }), 'correct horse'), because('tls-required'));
    await auth.password(req('tls', { protocol: 'ftps' }), 'correct horse');
  });

  it('refuses an address outside the allow list or inside the deny list', async () => {
    await world.addUser('lan', { allowIps: ['192.168.0.0/16'], denyIps: ['192.168.66.0/24'] });
    await assert.rejects(auth.password(req('lan'), 'correct horse'), because('address-not-allowed'));
    await auth.password(req('lan', { remoteAddress: '::ffff:192.168.1.9' }), 'correct horse');
    await assert.rejects(auth.password(req('lan', { remoteAddress: '192.168.66.7' }), 'correct horse'), because('address-not-allowed'));
  });

  it('a key-only user cannot log in with a password', async () => {
    await world.addUser('keyonly', { requireKey: true });
    await assert.rejects(auth.password(req('keyonly'), 'correct horse'), because('key-required'));
  });

  it('an SSH login keeps how it proved itself: a new channel of a password login is refused once a key is required', async () => {
    await world.addUser('later', { keys: [parsePublicKey(userKeyPair().public)] });
    const byPassword = await auth.password(req('later'), 'correct horse');
    assert.equal(byPassword.method, 'password');
    const where = { protocol: 'scp', remoteAddress: '127.0.0.1' } as const;
    // scp rides the sftp login: allowed as sftp is.
    assert.equal((await auth.refreshed(byPassword, where))?.method, 'password');
    await world.services.admin.update('later', { requireKey: true });
    assert.equal(await auth.refreshed(byPassword, where), null);
    assert.equal(await auth.refreshed({ ...byPassword, method: 'publickey' }, where).then((a) => a?.method), 'publickey');
  });

  it('a new session of a password login is refused once the password changed, not after the login\'s own rehash', async () => {
    const where = { protocol: 'sftp', remoteAddress: '127.0.0.1' } as const;
    await userWithWeakHash('pwc', 'first password');
    // Two logins at once, each rehashing the weak hash: the second's rehash finds the first's stored, which its
    // password verifies against as well; both logins' sessions open.
    const logins = await Promise.all([auth.password(req('pwc'), 'first password'), auth.password(req('pwc'), 'first password')]);
    for (const login of logins) assert.equal((await auth.refreshed(login, where))?.name, 'pwc');
    assert.equal(new Set(logins.map((l) => l.passwordMark)).size, 1);
    await world.services.admin.setPassword('pwc', 'second password');
    for (const login of logins) assert.equal(await auth.refreshed(login, where), null);
    const fresh = await auth.password(req('pwc'), 'second password');
    assert.equal((await auth.refreshed(fresh, where))?.name, 'pwc');
    // What the account keeps is a mark of the hash, neither the hash nor the password.
    const stored = (await world.services.users.get('pwc'))!.passwordHash!;
    assert.ok(!stored.includes(fresh.passwordMark!) && fresh.passwordMark!.length <= 16);
  });

  it('accepts a registered public key; a query without signature is not audited', async () => {
    const pair = userKeyPair();
    const other = userKeyPair();
    await world.addUser('k', { password: null, keys: [parsePublicKey(pair.public)] });
    const blob = parsePublicKey(pair.public).blob;
    const before = (await world.auditLines()).length;
    await auth.publicKey(req('k'), blob, false);
    assert.equal((await world.auditLines()).length, before, 'a key query writes nothing');
    assert.equal((await auth.publicKey(req('k'), blob, true)).name, 'k');
    await assert.rejects(auth.publicKey(req('k'), parsePublicKey(other.public).blob, true), because('bad-key'));
  });

  it('audits success and failure with the reason, never the password or hash', async () => {
    await assert.rejects(auth.password(req('alice', { connection: 'leak' }), 'hunter2-secret'), because('bad-password'));
    const lines = await world.auditLines();
    const fail = lines.find((l) => l.session === 'leak');
    assert.equal(fail?.event, 'login-failed');
    assert.equal(fail?.reason, 'bad-password');
    const text = readFileSync(join(world.dataDir, 'audit.log'), 'utf8');
    for (const secret of ['hunter2-secret', 'correct horse', '$argon2']) assert.ok(!text.includes(secret), `audit log contains ${secret}`);
    assert.ok(lines.some((l) => l.event === 'login' && l.user === 'alice' && l.method === 'password'));
  });
});

describe('address rules (pure)', () => {
  it('parses and normalises CIDR, refusing junk', () => {
    assert.equal(parseCidr('10.0.0.1'), '10.0.0.1/32');
    assert.equal(parseCidr('::1'), '::1/128');
    assert.throws(() => parseCidr('10.0.0.0/33'), /bad prefix/);
    assert.throws(() => parseCidr('example.com'), /not an IP/);
  });
  it('deny wins; an empty allow list allows all', () => {
    assert.equal(addressAllowed('1.2.3.4', [], []), true);
    assert.equal(addressAllowed('1.2.3.4', [], ['1.2.0.0/16']), false);
    assert.equal(addressAllowed('2001:db8::5', ['2001:db8::/32'], []), true);
    assert.equal(addressAllowed('2001:db9::5', ['2001:db8::/32'], []), false);
  });
});
