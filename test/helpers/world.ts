import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { openServices, type Services } from '../../src/app.js';
import type { AuditLog } from '../../src/audit/log.js';
import { toAccount } from '../../src/auth/authenticator.js';
import { configSchema, type Config } from '../../src/config/schema.js';
import type { Protocol } from '../../src/session/account.js';
import { Session } from '../../src/session/session.js';
import type { Location, Storage, StorageOpener } from '../../src/session/storage/storage.js';
import type { NewUser } from '../../src/users/admin.js';

/**
 * Descriptors this process left for garbage collection to close: Node closes a FileHandle nobody closed
 * when it is collected, and only warns. World.close() collects at once, so a leak is seen every time,
 * not only when a collection happens to come late (one did, in CI).
 */
const leaks: string[] = [];
process.on('warning', (w) => {
  if (/on garbage collection/.test(w.message)) leaks.push(w.message);
});
setFlagsFromString('--expose-gc');
/** A full collection, for tests that weigh what is still held. */
export const collectGarbage = runInNewContext('gc') as () => void;

async function assertNoLeaks(): Promise<void> {
  // A handle whose open ended in this very turn is still held by its request: collectable a turn later.
  await new Promise((r) => setImmediate(r));
  collectGarbage();
  // The warning is emitted on a later turn.
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  if (leaks.length > 0) throw new Error(`descriptors left for garbage collection to close: ${leaks.splice(0).join('; ')}`);
}

/** A real sluice data directory, database and audit log in a temp folder. */
export class World {
  private readonly sessions: Session[] = [];

  private constructor(
    readonly dir: string,
    readonly services: Services & { readonly auditLog: AuditLog | null },
  ) {}

  static async open(overrides: Partial<Config> = {}): Promise<World> {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-test-'));
    const config = configSchema.parse({ dataDir: join(dir, 'data'), certsDir: join(dir, 'certs'), logLevel: 'silent' });
    return new World(dir, await openServices({ ...config, ...overrides }));
  }

  get dataDir(): string {
    return this.services.config.dataDir;
  }

  async addUser(name: string, opts: Partial<NewUser> = {}) {
    return this.services.admin.add({ name, password: 'correct horse', keys: [], ...opts });
  }

  /** A session as a front-end would open it after login. */
  async session(name: string, protocol: Protocol = 'sftp', storage = this.services.sessionDeps.storage): Promise<Session> {
    const user = await this.services.users.get(name);
    if (!user) throw new Error(`no user ${name}`);
    // No connection to close: ending the session is closing it.
    const connection = { end: () => s.close() };
    const s: Session = await Session.open(
      toAccount(user, 'password', performance.now()),
      { id: `test-${this.sessions.length}`, protocol, remoteAddress: '127.0.0.1', remotePort: 40000, source: '127.0.0.1' },
      { ...this.services.sessionDeps, storage },
      connection,
    );
    this.sessions.push(s);
    return s;
  }

  /**
   * A session whose storage runs `meanwhile` once, just before (or just
   * after, `at`) the first call of one of `methods` on a location of `path`:
   * what another session or a shell may do between the session's look at a
   * name and its act on it, made to land in that window every time.
   */
  async sessionRacedBy(
    name: string,
    path: string,
    methods: readonly string[],
    meanwhile: () => Promise<unknown>,
    at: 'before' | 'after' = 'before',
  ): Promise<Session> {
    const real = this.services.sessionDeps.storage;
    let armed = true;
    const raced = (loc: Location): Location =>
      new Proxy(loc, {
        get(target, prop) {
          const value = Reflect.get(target, prop, target) as unknown;
          if (typeof value !== 'function') return value;
          const call = (value as (...a: unknown[]) => unknown).bind(target);
          if (!armed || target.virtualPath !== path || !methods.includes(String(prop))) return call;
          return async (...args: unknown[]) => {
            armed = false;
            if (at === 'before') await meanwhile();
            const result = await call(...args);
            if (at === 'after') await meanwhile();
            return result;
          };
        },
      });
    const storage: StorageOpener = async (home) => {
      const s = await real(home);
      return {
        maxPathBytes: s.maxPathBytes,
        resolve: async (...a) => raced(await s.resolve(...a)),
        resolveForRead: async (...a) => raced(await s.resolveForRead(...a)),
        close: () => s.close(),
      } satisfies Storage;
    };
    return this.session(name, 'sftp', storage);
  }

  home(name: string): string {
    return join(this.dataDir, 'homes', name);
  }

  /** Audit lines written so far (flushes the async writer first). */
  async auditLines(): Promise<Record<string, unknown>[]> {
    await this.services.auditLog?.flush();
    const text = readFileSync(join(this.dataDir, 'audit.log'), 'utf8');
    return text.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  async close(): Promise<void> {
    await Promise.all(this.sessions.map((s) => s.close()));
    await this.services.close();
    rmSync(this.dir, { recursive: true, force: true });
    await assertNoLeaks();
  }
}

export async function collect<T>(it: AsyncIterable<T> | Promise<AsyncIterable<T>>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of await it) out.push(x);
  return out;
}

export async function writeFile(s: Session, path: string, data: string | Buffer, options = {}): Promise<void> {
  const up = await s.openWrite(path, options);
  try {
    await up.write(Buffer.from(data));
  } catch (err) {
    await up.abort(String(err), 'failed');
    throw err;
  }
  await up.close();
}

export async function readFile(s: Session, path: string, offset = 0): Promise<string> {
  const down = await s.openRead(path, { offset });
  const chunks: Buffer[] = [];
  for (let pos = offset; ; ) {
    const b = await down.read(pos, 65536);
    if (b.length === 0) break;
    chunks.push(b);
    pos += b.length;
  }
  await down.close();
  return Buffer.concat(chunks).toString();
}
