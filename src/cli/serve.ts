import cluster from 'node:cluster';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Logger } from 'pino';
import type { AdminServer } from '../admin/server.js';
import { strayNetworks, widePublicRanges } from '../auth/ip-rules.js';
import { argon2 } from '../auth/passwords.js';
import { weakKey } from '../auth/public-keys.js';
import { openAdmin, serverFilesOf, type AdminServices } from '../admin-services.js';
import { openCoordination, servicesOn, type Coordination, type Services } from '../app.js';
import { ensureKeys } from '../certs/ensure.js';
import { reportHookPrograms } from '../hooks/named-files.js';
import { superviseWorkers } from '../cluster/primary.js';
import type { Config } from '../config/schema.js';
import type { FrontEnd } from '../front-ends.js';
import { HangUps, reopenTrail } from '../hang-up.js';
import { checkDescriptorLimit } from '../security/descriptors.js';
import { startFailed } from '../listening.js';
import { holdServedPlaces } from '../served-places.js';
import { reportHomesOnServerFiles } from '../session/homes-on-server-files.js';
import { reportNestedHomes } from '../session/nested-homes.js';
import { sweepHomes } from '../session/home-sweep.js';
import { drainSummary } from '../session/live.js';
import { scanSettingIdle } from '../session/scanning.js';
import { localStorageUsable } from '../session/storage/local.js';
import { ServerPlaces } from '../session/storage/server-places.js';
import { adminServesTls, logStarted, warnExposedKeys } from '../started.js';
import { nextStopSignal, stopSignal } from '../stop-signal.js';
import type { PublicKeyRecord, UserRecord } from '../store/records.js';
import { provisionAnonymous } from '../users/anonymous.js';

/** `sluice init`: data directory, database and keys, nothing served. */
export async function init(config: Config, out: (s: string) => void): Promise<AdminServices> {
  await createKeys(config, out);
  return openAdmin(config);
}

async function createKeys(config: Config, out: (s: string) => void): Promise<void> {
  const created = await ensureKeys(config.certsDir);
  if (created.length > 0) out(`created in ${config.certsDir}: ${created.join(', ')}\n`);
}

/** config.workers as a count: 'auto' is one per core the process may use. */
export function workerCount(setting: Config['workers']): number {
  return setting === 'auto' ? availableParallelism() : setting;
}

export async function serve(config: Config, out: (s: string) => void): Promise<number> {
  if (!process.platform.startsWith('linux')) {
    out('sluice serve needs Linux (/proc/self/fd confines every file operation to the home)\n');
    return 1;
  }
  if (!(await localStorageUsable())) {
    out('sluice serve needs /proc mounted (/proc/self/fd confines every file operation to the home)\n');
    return 1;
  }
  // Loaded here, where CLI commands leave it until they hash: a binding that does not load fails the start, not a login.
  argon2();
  // The protocol code is loaded only where sessions run: the primary of workers
  // never serves one, and each module it loads is memory in one more process.
  if (cluster.isWorker) return (await import('../cluster/worker.js')).serveAsWorker(config);
  const places = holdServedPlaces(config);
  if ('refused' in places) {
    out(`sluice serve: ${places.refused}\n`);
    return 1;
  }
  try {
    return await serveHeld(config, out);
  } finally {
    places.release();
  }
}

async function serveHeld(config: Config, out: (s: string) => void): Promise<number> {
  // Listen for the stop signal first: a stop during start-up must still close cleanly. A hang-up too.
  const stopped = stopSignal();
  const hangUps = new HangUps();
  try {
    await createKeys(config, out);
    const base = await openAdmin(config);
    hangUps.noteWith(() => base.log.warn('SIGHUP with no audit trail open (before it opens, or once it closed): nothing to reload'));
    try {
      return await serveOn(base, stopped, hangUps, out);
    } finally {
      // Also when starting failed: an open PostgreSQL pool would keep the process alive.
      await base.close();
    }
  } finally {
    hangUps.dispose();
  }
}

async function serveOn(base: AdminServices, stopped: Promise<string>, hangUps: HangUps, out: (s: string) => void): Promise<number> {
  const { config } = base;
  const places = new ServerPlaces(config.dataDir, serverFilesOf(config));
  try {
    const { madeRoot, unboundedUploads } = await provisionAnonymous(base.users, config.ftp.anonymous, places);
    // A root that did not exist is made empty, as homes are; said, so that a typo in its path shows (found by an operator's walk).
    if (madeRoot !== null) base.log.warn({ root: madeRoot }, `ftp.anonymous.root ${madeRoot} did not exist: made it, empty`);
    if (unboundedUploads) {
      const { incoming } = config.ftp.anonymous;
      base.log.warn({ incoming }, `anonymous uploads to ${incoming} are not bounded by a quota of bytes and of files: anyone can fill the disk; set both (sluice user set anonymous --quota-bytes 1G --quota-files 10000)`);
    }
    const { maxSessionsPerIp } = config.ftp.anonymous;
    const { maxPassivePortsPerUser: shared } = config.ftp;
    // Anonymous clients share their one name's passive ports, and a session holds at most one: a client holding as
    // many as that share holds it all, each session asking for a port it never connects to. What one client holds
    // is bounded by its sessions alone: a place its session takes again between transfers is never refused
    // (DataPlace.busy), so the ports of its source (ftp.maxPassivePortsPerIp) are passed (found by a review: the
    // warning was left out where they were below the share, one client's 4 sessions held all 4 with 2 per address).
    const held = Math.min(maxSessionsPerIp, config.limits.maxSessionsPerIp);
    if (config.ftp.anonymous.enabled && held >= shared) {
      base.log.warn(
        { maxSessionsPerIp, maxPassivePortsPerUser: shared },
        `ftp.anonymous.maxSessionsPerIp (${maxSessionsPerIp}) is not below ftp.maxPassivePortsPerUser (${shared}): one anonymous client can hold every passive port anonymous clients share, and the others get 425; keep it below`,
      );
    }
  } catch (err) {
    out(`${(err as Error).message}\n`);
    return 1;
  }
  const coordination = await openCoordination(base);
  // From here the trail is open: a logrotate during the start must reach it (see HangUps).
  hangUps.reloadWith(() => reopenTrail(coordination, base.log));
  try {
    return await serveWith(base, coordination, places, stopped, hangUps, out);
  } finally {
    hangUps.reloadWith(null);
    await coordination.close();
  }
}

async function serveWith(
  base: AdminServices,
  coordination: Coordination,
  places: ServerPlaces,
  stopped: Promise<string>,
  hangUps: HangUps,
  out: (s: string) => void,
): Promise<number> {
  const { config, log } = base;
  checkDescriptorLimit(config.limits.maxSessions, log);
  if ((await base.users.count()) === 0) {
    void coordination.started.logged.then(() =>
      out(
        'No users yet. Add one with:\n' +
          '  npx sluice user add alice --generate-password\n' +
          `(data in ${config.dataDir}; see README.md)\n`,
      ),
    );
  }
  // Before any session, so no upload in progress can be taken for a crash's leftover
  // and no usage changes while the homes are recounted. Not on a shared store: other
  // nodes serve the same homes while this one starts, and their uploads are in progress.
  const users = await base.users.all();
  if (base.store.kind === 'sqlite') {
    await sweepHomes(join(config.dataDir, 'homes'), users, base.users, coordination.coordinator.audit, log);
  }
  await reportNestedHomes(users, log);
  await reportHomesOnServerFiles(users, places, log);
  reportHookPrograms(config.hooks.actions, log);
  const idleScans = users.filter((u) => scanSettingIdle(config.uploads, u.scan) !== null).map((u) => u.name);
  if (idleScans.length > 0) log.warn({ users: idleScans.slice(0, 20), count: idleScans.length }, `users set to be scanned, but ${scanSettingIdle(config.uploads, true)}`);
  warnStrayNetworks(await base.bans.active(), config.limits.ipv6Prefix, log);
  warnTrustingThePublic(config, log);
  warnRefusedKeys(users, await base.users.everyKey(), log);
  let admin: AdminServer | null;
  try {
    admin = await startAdmin(base, coordination, log);
  } catch (err) {
    startFailed(log, err, 'could not start the admin API');
    return 1;
  }
  const workers = workerCount(config.workers);
  coordination.serving.expect(workers);
  const code =
    workers === 1
      ? await serveHere(servicesOn(base, coordination.coordinator), coordination, stopped, hangUps, log)
      : await superviseWorkers(workers, config, coordination, stopped, hangUps, log);
  await admin?.close();
  return code;
}

/** The admin API where the coordinator is, when admin.listen is set; its code (fastify) is loaded only then. */
async function startAdmin(base: AdminServices, coordination: Coordination, log: Logger): Promise<AdminServer | null> {
  if (base.config.admin.listen === '') return null;
  const [{ startAdminApi }, { monitorRoutes }] = await Promise.all([import('../admin/server.js'), import('../metrics/routes.js')]);
  return startAdminApi({ base, coordination, sessions: coordination.sessions }, [monitorRoutes], log);
}

/** workers: 1: the front-ends run in this process, on its own coordinator. */
async function serveHere(services: Services, coordination: Coordination, stopped: Promise<string>, hangUps: HangUps, log: Logger): Promise<number> {
  let running: FrontEnd[];
  try {
    const { startFrontEnds } = await import('../front-ends.js');
    running = await startFrontEnds(services);
  } catch (err) {
    startFailed(log, err, 'could not start');
    return 1;
  }
  const { dataDir, certsDir } = services.config;
  const report = {
    listeners: running.flatMap((fe) => fe.listeners),
    frontEnds: running.map((fe) => fe.name),
    dataDir,
    certsDir,
    workers: 1,
    adminTls: adminServesTls(services.config.admin),
  };
  // SIGHUP: new certificates and keys, and new log files after logrotate moved them (during the drain too).
  hangUps.reloadWith(() => {
    running.forEach((fe) => fe.reload?.());
    reopenTrail(coordination, log);
    void warnExposedKeys(log, report);
  });
  coordination.serving.started(0);
  const leave = coordination.sessions.join(services.live);
  await logStarted(log, coordination.started, report);
  // With every port set to 0 nothing else holds the process until a signal comes.
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const signal = await stopped;
  clearInterval(keepAlive);
  coordination.serving.stopping();
  log.info({ signal }, 'stopping');
  const hurry = nextStopSignal(log);
  const { drainFrontEnds } = await import('../front-ends.js');
  const drained = await drainFrontEnds(running, services.live, services.config.shutdown.drainTimeout, hurry.signalled);
  hurry.drained();
  leave();
  log.info(drained, drainSummary(drained));
  return 0;
}

/**
 * Keys stored before such keys were refused (an RSA key under MIN_RSA_BITS, a DSA key) log no one in: said at start,
 * so that the operator replaces them before their users find out.
 */
function warnRefusedKeys(users: readonly UserRecord[], keys: readonly { userId: number; key: PublicKeyRecord }[], log: Logger): void {
  const holders = new Set(keys.filter(({ key }) => weakKey(key.blob) !== null).map(({ userId }) => userId));
  const names = users.filter((u) => holders.has(u.id)).map((u) => u.name);
  if (names.length > 0) {
    log.warn({ users: names.slice(0, 20), count: names.length }, 'users with stored public keys no login takes (RSA under 2048 bits, DSA): sluice user key list NAME shows them; add a new key and remove those');
  }
}

/**
 * A trusted proxy range of internet addresses wider than a balancer pool (0.0.0.0/0, or two /1s) lets any client in it
 * send a PROXY header naming any address, and bans, allow and deny lists, limits and the trail take it at its word.
 * Taken as configured (a balancer whose address is not known ahead), but said at start (found by an operator-side
 * review: 0.0.0.0/0 ran in silence).
 */
function warnTrustingThePublic(config: Config, log: Logger): void {
  const wide = widePublicRanges(config.trustedProxies, WIDEST_TRUSTED);
  const fronts = (['ftp', 'sftp'] as const).filter((front) => config[front].proxyProtocol !== 'off');
  if (wide.length === 0 || fronts.length === 0) return;
  log.warn(
    { trustedProxies: wide, proxyProtocol: fronts },
    `trustedProxies holds ${wide.join(' and ')}, internet addresses wider than /${WIDEST_TRUSTED.ipv4} (IPv6 /${WIDEST_TRUSTED.ipv6}): any client from them of ${fronts.join(' and ')} may name any address in a PROXY header, and bans, allow lists and the audit trail take it at its word; list only the balancers' addresses`,
  );
}

/** The widest trusted proxy range of internet addresses taken in silence: a balancer pool is smaller. */
const WIDEST_TRUSTED = { ipv4: 16, ipv6: 48 };

/** Bans of IPv6 networks of another size than limits.ipv6Prefix (set before it changed, or by a node configured otherwise) match no client: say so at start. */
function warnStrayNetworks(bans: readonly { address: string }[], ipv6Prefix: number, log: Logger): void {
  const stray = strayNetworks(bans.map((b) => b.address), ipv6Prefix);
  if (stray.length > 0) log.warn({ bans: stray.slice(0, 20), count: stray.length, ipv6Prefix }, 'bans of IPv6 networks of another size than limits.ipv6Prefix hold no client: lift them with sluice ban remove');
}
