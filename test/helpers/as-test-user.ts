/**
 * `npm test` runs the test runner through this launcher, compiled (test/build.mjs):
 *
 *   node build/test/helpers/as-test-user.js <node arguments...>
 *
 * Run as root, it drops to an unprivileged user before starting
 * `node <node arguments...>`, so the servers under test, the clients the tests
 * drive (OpenSSH, curl, python) and the files the tests put in homes all
 * belong to one ordinary user, as in production (deploy/sluice.service runs
 * sluice as its own user). Root passes every permission check, which hid bugs
 * such as chmod 0111 then chmod 0600 being refused.
 *
 * Why a launcher and not an `--import` module: Node 20's test runner does not
 * load `--import` modules in its own process, only in the per-file children,
 * so each child would drop on its own and nothing could announce the user once.
 *
 * The user: $SLUICE_TEST_USER if set (it must exist), else `sluice-test`
 * (.ci/run creates it; required when $CI is set), else `nobody`. Not root:
 * runs as is. Run one file the same way, after `npm run build:test`:
 *
 *   node build/test/helpers/as-test-user.js --test build/test/<file>.test.js
 *
 * or from its TypeScript under tsx, with nothing compiled but dist/:
 *
 *   node --import tsx test/helpers/as-test-user.ts --import tsx --test test/<file>.test.ts
 */
import { execFileSync, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { constants as os, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { REPO } from './repo.js';

interface Account {
  name: string;
  uid: number;
  gid: number;
}

function fail(message: string): never {
  process.stderr.write(`sluice tests: ${message}\n`);
  process.exit(2);
}

function lookup(name: string): Account | null {
  let line: string;
  try {
    line = execFileSync('getent', ['passwd', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return null;
  }
  const [, , uid, gid] = line.trim().split(':');
  return { name, uid: Number(uid), gid: Number(gid) };
}

function chooseAccount(): Account | null {
  const wanted = process.env.SLUICE_TEST_USER;
  if (wanted) {
    const account = lookup(wanted);
    if (!account) fail(`SLUICE_TEST_USER=${wanted}: no such user`);
    return account;
  }
  const dedicated = lookup('sluice-test');
  // CI tests what production runs, a dedicated user; nobody is a convenience for a developer's machine.
  if (!dedicated && process.env.CI) fail('CI runs the tests as user sluice-test: create it (.ci/run does)');
  return dedicated ?? lookup('nobody');
}

const env: NodeJS.ProcessEnv = { ...process.env };
let home: string | null = null;
const account = process.getuid?.() === 0 ? chooseAccount() : null;

if (account) {
  process.setgroups?.([]);
  process.setgid?.(account.gid);
  process.setuid?.(account.uid);
  if (process.getuid?.() !== account.uid || process.getgroups?.().some((g) => g !== account.gid)) {
    fail(`could not become ${account.name}: still uid ${process.getuid?.()}, groups ${process.getgroups?.()}`);
  }
  // `pretest` builds as root: a checkout this user cannot read would fail every test, so say it once.
  // This file stands for the tests: build/test/ once compiled, test/ under tsx.
  for (const path of [join(REPO, 'dist/bin.cjs'), join(REPO, 'node_modules/tsx/package.json'), fileURLToPath(import.meta.url)]) {
    try {
      accessSync(path, constants.R_OK);
    } catch {
      fail(`user ${account.name} cannot read ${path}: make the checkout readable by it`);
    }
  }
  // A private, writable HOME: curl, lftp and python read their dot files from there, and root's
  // must not apply. (OpenSSH takes the home from the passwd entry instead; the tests pass it options.)
  home = mkdtempSync(join(tmpdir(), 'sluice-test-home-'));
  Object.assign(env, { HOME: home, USER: account.name, LOGNAME: account.name });
  process.stderr.write(`sluice tests: servers and clients run as ${account.name} (uid ${account.uid}, gid ${account.gid})\n`);
} else if (process.getuid?.() === 0) {
  process.stderr.write('sluice tests: no unprivileged user (sluice-test, nobody) found, running as root: permission bugs stay hidden\n');
} else {
  process.stderr.write(`sluice tests: servers and clients run as uid ${process.getuid?.()} (not root, nothing to drop)\n`);
}

/*
 * One TLS certificate and one set of SSH host keys for every test server of this run, made here
 * once (as the user the servers run as, so that their private keys stay 0600 and theirs):
 * test/helpers/server.ts copies them into each new server's certsDir. A server making its own
 * spent 0.4 s of CPU on the RSA-3072 key alone, at every one of the suite's hundreds of starts, on
 * a suite bound by its 2 cores. The first start's own making of them is test/serve.test.ts's
 * subject, and it starts servers of its own.
 */
const certs = mkdtempSync(join(tmpdir(), 'sluice-test-certs-'));
try {
  const { ensureKeys } = (await import(new URL('../../dist/certs/ensure.js', import.meta.url).href)) as typeof import('../../src/certs/ensure.js');
  await ensureKeys(certs);
  env.SLUICE_TEST_CERTS = certs;
} catch (err) {
  process.stderr.write(`sluice tests: no shared certificate and host keys (${(err as Error).message}): each server makes its own\n`);
}

const child = spawn(process.execPath, process.argv.slice(2), { stdio: 'inherit', env });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(sig, () => child.kill(sig));
child.on('exit', (code, signal) => {
  rmSync(certs, { recursive: true, force: true });
  if (home) rmSync(home, { recursive: true, force: true });
  process.exitCode = code ?? 128 + (signal ? os.signals[signal] : 0);
});
