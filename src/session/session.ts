import { setTimeout as sleep } from 'node:timers/promises';
import type { Actor, AuditEvent, AuditSink, Replaced } from '../audit/events.js';
import type { MetricsSink } from '../metrics/events.js';
import { shareOf, type Account, type Protocol } from './account.js';
import { SluiceError, Unseen, movedMeanwhile, sessionClosed, sizeNotWritable, toSluiceError } from './errors.js';
import { inPlaceFence } from './fence.js';
import { linkInfo, toFileInfo, type FileInfo } from './file-info.js';
import { LazyMap, LazySet } from './lazy-collections.js';
import type { LiveConnection, LiveRegistry, LiveSession } from './live.js';
import { DirectoryListing } from './listing.js';
import type { HandleBook, UserHandles } from './open-handles.js';
import {
  checkName, isClientName, lookupPath, namesDirectory, parentOf, relativeVirtual, resolveStrict, resolveVirtual, splitVirtual, visibleLinkTarget,
} from './paths.js';
import { allows, carriesOverride, narrows, permissionsAt, seesNames, type Permission, type PermissionRules } from './permissions.js';
import { addName, dropThrough, lookingAgain, moveUnderLock, NameChanged, outsideInPlaceWrites, removeDirectory, type Ledger, type Ledgers, type NamesBusy } from './quota.js';
import type { RateLimit } from './rate-limit.js';
import type { ConnectionBudget, ConnectionBudgets } from './connection-budgets.js';
import { replacedFields, replacedThrough } from './replaced.js';
import { scansWith, type UploadScanning } from './scanning.js';
import { SessionChecksums, WHOLE_FILE, hashRange, type Checksum, type ChecksumRange, type HashAlgorithm, type UploadReceipts } from './checksum.js';
import type { SharedLogin } from './shared-login.js';
import { nodeKey, type Location, type NodeStat, type OpenFile, type StagedFile, type Storage, type StorageOpener, type StorageSpace } from './storage/storage.js';
import { Download, Upload, type TransferOptions } from './transfer.js';
import type { TransferRecord } from './transfer-record.js';
import { planUpload, type UploadRefusal } from './upload-plan.js';

export interface SessionContext {
  /** Connection id: the login event and every later event of the connection carry it. */
  readonly id: string;
  readonly protocol: Protocol;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** What the client is counted as by every per-client limit: its address, or its IPv6 network (limits.ipv6Prefix). */
  readonly source: string;
  /** The login this session serves with others (an SSH connection's channels), which records the logout; absent: the session is its login's one, and records it. */
  readonly login?: SharedLogin;
}

export interface SessionDeps {
  /** null: the audit trail is switched off, and transfers are not hashed. */
  readonly audit: AuditSink | null;
  /** Sessions, transfers and quota refusals are counted here, with the audit trail on or off. */
  readonly metrics: MetricsSink;
  /** After a resumed upload, hash the whole file for the audit record (a second read). */
  readonly hashResumedUploads: boolean;
  /** Each user's quota ledger, shared by all their sessions wherever they run. */
  readonly quotas: Ledgers;
  /** Open files and directories per user, across sessions. */
  readonly openHandles: HandleBook;
  /** Fresh uploads go to a temporary name and replace the target only when complete. */
  readonly atomicUploads: boolean;
  /** Where a home's files are. */
  readonly storage: StorageOpener;
  /** Hashes of whole uploads, so a checksum of what was just uploaded needs no read. */
  readonly receipts: UploadReceipts;
  /** The bandwidth limits and hashing rate, shared by the sessions of one connection. */
  readonly budgets: ConnectionBudgets;
  /** Quarantine mode (uploads.scan); null: off. */
  readonly scanning: UploadScanning | null;
  /** Told of each transfer as it starts, when a process other than this one must record it should this one die. */
  readonly inFlight?: InFlightTransfers;
  /** This process's logged-in sessions: each is added at open and removed at close. */
  readonly live: LiveRegistry;
}

/** See SessionDeps.inFlight: the transfer's audit record, when it comes, closes it. */
export interface InFlightTransfers {
  started(actor: Actor, direction: 'upload' | 'download', path: string, offset: number, started: Date): void;
}

export interface WriteOptions {
  /** Start writing here (resume); the file is not truncated. */
  offset?: number;
  /** Every write goes to the end of the file (FTP APPE, SFTP APPEND). */
  append?: boolean;
  /** Fail if the file exists (SFTP CREAT|EXCL, FTP STOU). */
  exclusive?: boolean;
  /** Do not create a missing file (SFTP OPEN without CREAT). */
  mustExist?: boolean;
  /** Empty an existing file first; default true unless offset or append is given. */
  truncate?: boolean;
  /** The front-end converts line endings on the way (FTP TYPE A), for the audit record. */
  convertedLineEndings?: boolean;
  /**
   * The client opens the file for reading too (SFTP OPEN with READ, or without WRITE): read where the
   * user may download (see readsBack), and the reads are recorded as a download (see ReadBack);
   * elsewhere they are refused as not allowed, and without it as not asked for (Upload.readRefusal).
   */
  read?: boolean;
  /**
   * false: the open only empties or creates the file, and its writes and size changes are refused
   * (SFTP OPEN with TRUNC, or CREAT|EXCL, without WRITE, which OpenSSH's sftp-server opens read-only).
   * Default true.
   */
  write?: boolean;
}

/** Room for a user's files (see Session.space); bytes, and names. */
export interface Space {
  /** The file system's block size, the unit to show the rest in. */
  blockSize: number;
  totalBytes: number;
  /** Free, including what only the superuser may use. */
  freeBytes: number;
  /** Free for this user. */
  availableBytes: number;
  files: number;
  freeFiles: number;
}

export interface ReadOptions {
  /** Start reading here (resume). */
  offset?: number;
  /** The front-end converts line endings on the way (FTP TYPE A), for the audit record. */
  convertedLineEndings?: boolean;
}

/** What a rename does when the target name exists. */
export type IfExists = 'replace' | 'fail';

/**
 * A client path as an operation takes it: `path`, clean (rights, records,
 * replies), and `at`, the form the storage resolves (Storage.resolve), which
 * ends in `/` where the client named a directory (paths.ts namesDirectory).
 */
interface Named {
  readonly path: string;
  readonly at: string;
  readonly directory: boolean;
}

/** Files at the other end of server-side copies that one transfer's audit record names; more are counted. */
const MAX_COPY_PATHS = 16;
/** How long a session's end waits for its changes under way (see end): a change not stuck takes milliseconds. */
const ACTS_WAIT_MS = 10_000;

/**
 * One logged-in connection. Every file operation of every front-end goes
 * through here: clean the path, check the permission, resolve it inside the
 * home, check the quota, act, audit. Paths in and out are virtual.
 */
export class Session implements LiveSession {
  cwd = '/';
  private readonly started = Date.now();
  private readonly transfers = new LazySet<Upload | Download>();
  /** Opens under way: close() waits for them (see opened). */
  private readonly opening = new LazySet<Promise<unknown>>();
  /** Changes of the tree under way (see acting): close() waits for them too. */
  private readonly acts = new LazySet<Promise<unknown>>();
  /**
   * Listings opened and not yet closed: closed with the session. Found by a
   * review: an FTP client that sent MLSD and left at once had its listing
   * opened after its data endpoint was gone, and nothing closed the
   * directory's descriptors until a garbage collection did.
   */
  private readonly listings = new LazySet<DirectoryListing>();
  /**
   * The directory each open file really is in, links resolved: the one whose
   * permissions its handle's changes take. The path it was opened by may lead
   * through a link into a directory with other rights.
   */
  private readonly placed = new WeakMap<Upload | Download, string>();
  /** Waiting for the last transfer to end (see windDown). */
  private idleWaiters: (() => void)[] = [];
  /** Set once the server ends the session (see windDown): why, for the logout record; no transfer starts after it. */
  private endReason: string | null = null;
  private readonly unregister: () => void;
  /** Transfers a copy read from or wrote to (see copy()): the paths at the other end, the first MAX_COPY_PATHS named. */
  private readonly copies = new LazyMap<Upload | Download, { paths: Set<string>; others: number }>();
  private closed = false;
  /** Aborted as the session ends: an open waiting for the node's lease (see open's truncation) stops waiting. */
  private readonly closing = new AbortController();
  /** The user's open handles, counted across all their sessions (front-ends that hold handles use it). */
  readonly openHandles: UserHandles;
  /**
   * Its connection's limits (ConnectionBudgets), shared by the transfers in each direction of every
   * session on the connection: parallel SFTP transfers, on one channel or several, together keep the rate.
   */
  private readonly budget: ConnectionBudget;
  /** In its connection's hashing turns, at limits.hashRate; ended by close(). */
  private readonly checksums: SessionChecksums;
  /** This session's uploads are scanned (the account's setting, else the server's). */
  private readonly scanning: UploadScanning | null;

  private constructor(
    private current: Account,
    readonly context: SessionContext,
    private readonly storage: Storage,
    private readonly ledger: Ledger,
    private readonly deps: SessionDeps,
    connection: LiveConnection,
  ) {
    this.openHandles = deps.openHandles.acquire(current);
    this.budget = deps.budgets.join(context.id, current);
    this.checksums = new SessionChecksums(this.budget.hashing);
    this.scanning = scansWith(deps.scanning, current.scan) ? deps.scanning : null;
    this.unregister = deps.live.add(this, connection);
    deps.metrics.count({ m: 'session', protocol: context.protocol, change: 1 });
  }

  /**
   * `connection`: how the front-end ends this session's connection when the
   * server ends the session. `current`: the account as it may open a session
   * now, read again (an SSH channel opened a while after its login); it
   * throws when it may not. From the start, the registry knows the session
   * is opening (LiveRegistry.opening): an end or a stop that comes meanwhile
   * refuses it, and waits for it.
   */
  static async open(account: Account, context: SessionContext, deps: SessionDeps, connection: LiveConnection, current?: () => Promise<Account>): Promise<Session> {
    const opening = deps.live.opening(context.id, account, connection);
    let session: Session | null = null;
    try {
      const now = current ? await current() : account;
      const storage = await deps.storage(now.home);
      session = new Session(now, context, storage, await deps.quotas.acquire(now), deps, connection);
      // Registered from here: an end that comes now finds it, or refuses it at the next check.
      opening.check();
      if (!(await deps.live.catchUp(session))) throw new SluiceError('permission-denied', undefined, 'the user changed since the login read it and may not open a session now');
      opening.check();
      // Only a session that opened counts toward its login's end: one that did not is no part of it (see end).
      context.login?.joined();
      return session;
    } catch (err) {
      await session?.end(false);
      throw err;
    } finally {
      opening.done();
    }
  }

  get id(): string {
    return this.context.id;
  }

  /** Whether its uploads are scanned: decided as it opens, from its user's setting then. */
  get scans(): boolean {
    return this.scanning !== null;
  }

  /** The user as the login read it, with the permissions renewed since (see renewPermissions). */
  get account(): Account {
    return this.current;
  }

  /**
   * The user's permissions changed: every later check goes by `rules`, as a
   * new login's would. A session that kept its login's overrides could move a
   * file into a directory the change widened, which no login after it may.
   * What is open or under way stays as its own check allowed it.
   */
  renewPermissions(rules: PermissionRules): void {
    this.current = { ...this.current, permissions: rules };
  }

  get actor(): Actor {
    return {
      session: this.id,
      user: this.account.name,
      protocol: this.context.protocol,
      ip: this.context.remoteAddress,
      port: this.context.remotePort,
    };
  }

  /** Clean virtual path of a client path, relative to the cwd. */
  resolve(clientPath: string): string {
    return resolveVirtual(this.cwd, clientPath, this.storage.maxPathBytes);
  }

  /**
   * A client path made absolute, for a request that names it again later,
   * whatever the working directory is by then (FTP's RNFR, for its RNTO): it
   * names what this one does, a directory included (see Named).
   */
  absolute(clientPath: string): string {
    return this.named(clientPath).at;
  }

  private named(clientPath: string): Named {
    const path = this.resolve(clientPath);
    const directory = namesDirectory(clientPath);
    return { path, at: lookupPath(path, directory), directory };
  }

  audit(event: AuditEvent): void {
    this.deps.audit?.record(this.actor, event);
  }

  /** End of the connection: checksums are stopped, unfinished transfers aborted and recorded. */
  close(): Promise<void> {
    return this.end(true);
  }

  /**
   * `loggedOut` false: a session that never opened (Session.open failed after
   * it registered), whose login records its own end (the gate's "session not
   * opened"); a logout here too made two for one login.
   */
  private async end(loggedOut: boolean): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.closing.abort();
    this.unregister();
    // Lookups still waiting, or walking, for requests the client left behind stop here (see Storage.close).
    this.storage.close();
    // Before the transfers this ends: a checksum through a handle (SFTP check-file-handle) reads its transfer's
    // file. (A front-end that closed its handles first has ended those already; that checksum then fails on the closed file.)
    await this.checksums.end();
    // An open under way (an SFTP OPEN the client closed its channel behind) ends first: its transfer is
    // then aborted and recorded (see track), and what it took from the ledger given back, before the
    // ledger goes. Otherwise it lived on unrecorded, its descriptors and temporary kept for good.
    await Promise.allSettled([...this.opening]);
    // Settled, not all: one end that fails (a bug) must not keep the others, and the releases below, from running.
    await Promise.allSettled([...this.transfers].map((t) => t.abort('connection closed')));
    await Promise.allSettled([...this.listings].map((l) => l.close()));
    // After the transfers (a copy between two of them ends with them): a change that lands once the
    // ledger is gone goes uncharged, and its last step and record fail with it (see acting). Waited for
    // at most ACTS_WAIT_MS: one stuck on something outside the server (a shared store that is down holds
    // a removal at its write lock, a hung file system) must not hold the end, and a drain, for ever. What
    // such a change settles after that may go uncounted until the next recount: the lesser harm.
    if (this.acts.size > 0) await Promise.race([Promise.allSettled([...this.acts]), sleep(ACTS_WAIT_MS, undefined, { ref: false })]);
    this.ledger.release();
    this.deps.openHandles.release(this.account);
    this.budget.leave();
    if (loggedOut) {
      const logout = (durationMs: number, reason: string | null) => this.audit({ event: 'logout', duration_ms: durationMs, ...(reason === null ? {} : { reason }) });
      if (this.context.login) this.context.login.left(this.endReason, logout);
      else logout(Date.now() - this.started, this.endReason);
    }
    this.deps.metrics.count({ m: 'session', protocol: this.context.protocol, change: -1 });
  }

  /** When the session logged in. */
  get since(): Date {
    return new Date(this.started);
  }

  /**
   * Whether a checksum is under way for its client, waiting for its turn or
   * reading: a front-end's idle timer does not count that time as idleness,
   * as a checksum waits on nothing from the client, which waits for its
   * answer (found by a review: FTP HASH, SFTP check-file and the SSH checksum
   * commands were cut unanswered at the idle timeout, 12 MiB at hashRate 1M
   * behind idleTimeout 10).
   */
  get hashing(): boolean {
    return this.checksums.busy;
  }

  /** Transfers opened and not yet ended. */
  get inProgress(): readonly (Upload | Download)[] {
    return [...this.transfers];
  }

  /**
   * The server is ending this session (an administrator, a stop): from now
   * on no transfer starts, and the logout record gives `reason`. Settles once
   * no transfer is left: those running end as their client drives them, or,
   * with `abort`, at once, recorded as aborted for `reason`.
   */
  async windDown(reason: string, abort: boolean): Promise<void> {
    this.endReason = reason;
    if (abort) await Promise.allSettled([...this.transfers].map((t) => t.abort(reason)));
    while (this.transfers.size > 0) await new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /** Whether the server is ending it (windDown): a front-end that has not served it yet must not begin. */
  get ending(): boolean {
    return this.endReason !== null;
  }

  /** Refuses a new transfer once the server is ending the session. */
  private startable(): void {
    if (this.closed) throw sessionClosed();
    if (this.endReason !== null) throw new SluiceError('failure', 'Server is ending this session');
  }

  /** Run an open, counted while it runs (see close), and track the transfer it opens. */
  private async opened<T extends Upload | Download>(open: () => Promise<T>): Promise<T> {
    const opening = open().then((transfer) => this.track(transfer));
    this.opening.add(opening);
    try {
      return await opening;
    } finally {
      this.opening.delete(opening);
    }
  }

  /**
   * A change of the tree (a name made or removed, a size, a mode), as one the
   * session's end waits for, and refused once the session is closed. Found by
   * a review: the end waited for transfers only, and let the quota ledger go
   * while a MKDIR, a size change or a REMOVE the client sent just before it
   * left still ran. With workers the primary then dropped what they settled,
   * so a user whose client left at once had names and bytes never charged,
   * again and again, and a removal failed after its unlink, unrecorded.
   */
  private async acting<T>(change: () => Promise<T>): Promise<T> {
    if (this.closed) throw sessionClosed();
    const act = change();
    this.acts.add(act);
    try {
      return await act;
    } finally {
      this.acts.delete(act);
    }
  }

  /** A transfer opened while the server began ending the session, or once it closed, ends with it. */
  private async track<T extends Upload | Download>(transfer: T): Promise<T> {
    this.transfers.add(transfer);
    const reason = this.closed ? 'connection closed' : this.endReason;
    if (reason === null) return transfer;
    await transfer.abort(reason);
    throw this.closed ? sessionClosed() : new SluiceError('failure', 'Server is ending this session');
  }

  // --- navigation and metadata -------------------------------------------

  /**
   * Change directory. Inside a drop box (see within) a user who may create
   * there enters an existing directory and gets one refusal for anything
   * else: no more than storing `NAME/x` or making `NAME` tells them. Clients
   * that upload a tree (curl --ftp-create-dirs, FileZilla) enter a directory,
   * or make it when they cannot.
   */
  async chdir(clientPath: string): Promise<string> {
    const path = this.resolve(clientPath);
    const rights = permissionsAt(this.account.permissions, path);
    const mayCreate = rights.has('upload') || rights.has('mkdir');
    await this.guard('chdir', path, () =>
      this.within(path, true, mayCreate ? 'change' : 'look', async (loc) => {
        const st = await loc.stat();
        // Whether it is there tells as a look would, so it is told only from where the rights were checked (see told).
        await inPlace(loc);
        if (!st) throw new SluiceError('not-found');
        if (st.type !== 'dir') throw new SluiceError('not-a-directory');
      }),
    );
    this.cwd = path;
    return path;
  }

  /**
   * Metadata; `follow` false describes a symlink itself. Nothing is described
   * where the user may not learn which names exist (a drop box), files and
   * directories alike, so a probe gets one answer whatever is there.
   */
  stat(clientPath: string, follow = true): Promise<FileInfo> {
    const { path, at, directory } = this.named(clientPath);
    // A symlink named as a directory is followed, as lstat("l/") follows it: `ls l/` in OpenSSH's sftp looks so.
    return this.namedOrStaged(at, () => this.statNamed(path, at, follow || directory), (upload) => upload.info());
  }

  /**
   * `named`, the operation on the name; where it finds no such name and this
   * session's own atomic upload will give it, `staged` on that upload instead,
   * as OpenSSH, which creates the file at the open, would act on the file.
   * sshfs looks at each file it creates right behind its OPEN (pipelined), and
   * sets its times by name (touch, cp -p) while it is open: a name not found
   * failed `cp` into a mount for every file. Only where the name was looked at
   * and is not there: what other sessions see of an upload under way stays
   * nothing, as atomic uploads promise. `path` as the storage takes it: one
   * named as a directory's (ending in `/`) is no upload's, which is a file.
   */
  private async namedOrStaged<T>(path: string, named: () => Promise<T>, staged: (upload: Upload) => Promise<T>): Promise<T> {
    // As the request came: its commit may have ended, and the upload left this session, by the time the look
    // has missed the name (a look ends with trips to the thread pool, and a commit's end on a loaded machine
    // can fit between them: appends in gvfs's mount still failed so).
    const asCame = this.ownStagedUploadNow(path);
    // And what the client had sent through its handle by then (WRITEs, which a rate may hold): acted on
    // beside them, a look saw part of their bytes and a SETSTAT size cut before them, answered OK for a file
    // the WRITEs then left longer (found by a review, with sshfs's pattern: WRITEs not waited for, then a
    // call by name). Not what came after: a stream of WRITEs would hold the request for as long as it flows.
    const takenAsCame = asCame?.takenSoFar();
    try {
      return await named();
    } catch (err) {
      if (!(err instanceof SluiceError) || err.kind !== 'not-found') throw err;
      const upload = (await this.ownStagedUpload(path)) ?? asCame;
      if (upload === null) throw err;
      await (upload === asCame ? takenAsCame : upload.takenSoFar());
      if (!upload.isFinished) {
        try {
          return await staged(upload);
        } catch (stagedErr) {
          if (!upload.isFinished) throw stagedErr;
        }
      }
      // Its CLOSE, run beside this request, is giving it the name: the name is what to act on once that
      // is done, as on a server running one request at a time. gvfs's FUSE mount looks at a file it is
      // writing right before it sends the CLOSE (a close(2) there returns before the CLOSE goes), and an
      // append to it (`echo >> f`) failed with ENOENT whenever that look ran during the commit.
      await upload.ended();
      return named();
    }
  }

  /**
   * This session's atomic upload under `path`, running or ending, once the
   * opens it has under way are done: a request pipelined right behind an
   * OPEN may run before that open has made the upload.
   */
  private async ownStagedUpload(path: string): Promise<Upload | null> {
    await Promise.allSettled(this.opening);
    return this.ownStagedUploadNow(path);
  }

  private ownStagedUploadNow(path: string): Upload | null {
    for (const t of this.transfers) if (t instanceof Upload && t.isStaged && t.path === path) return t;
    return null;
  }

  private statNamed(path: string, at: string, follow: boolean): Promise<FileInfo> {
    return this.guard('stat', path, () =>
      this.within(at, follow, 'look', async (loc) => {
        const st = await loc.stat();
        if (!st) throw new SluiceError('not-found');
        const info = toFileInfo(loc.isRoot ? '/' : loc.name, st);
        if (st.type !== 'symlink') return info;
        // A target leading out of the home, or no clean path, is hidden (visibleLinkTarget throws on it).
        const shown = await loc
          .readlink()
          .then((text) => visibleLinkTarget(parentOf(loc.virtualPath), text))
          .catch(() => null);
        return linkInfo(info, shown);
      }),
    );
  }

  /**
   * Canonical virtual path, symlinks resolved; the last component need not
   * exist unless it is named as a directory (`new/`), as OpenSSH's
   * sftp-server resolves it (ENOENT); `f/` of a file is f there too. Where
   * the user may not learn which names exist, the path as named: resolving
   * it would tell what is there.
   */
  realpath(clientPath: string): Promise<string> {
    const { path, directory } = this.named(clientPath);
    return this.guard('realpath', path, () =>
      this.within(path, true, 'look', async (loc) => {
        if (directory && !(await loc.stat())) throw new SluiceError('not-found');
        // A link the host made may lead to a name no client may give: the path as asked, as FTP's CWD keeps
        // it, rather than that name's ESC or bidi controls in the client's prompt (found by a review), or a
        // backslash, which the client's next path would give back as a separator, into another directory.
        return splitVirtual(loc.virtualPath).every(isClientName) ? loc.virtualPath : path;
      }).catch((err: unknown) => {
        if (err instanceof Unseen) return path;
        throw err;
      }),
    );
  }

  /**
   * Open a directory for reading. Permission and existence are checked here,
   * before the caller answers its client; entries come from the listing.
   */
  async list(clientPath: string): Promise<DirectoryListing> {
    const path = this.resolve(clientPath);
    const { reader, dir } = await this.guard('list', path, () =>
      this.within(this.checked('list', path, path), true, 'look', async (loc) => {
        this.require('list', loc.virtualPath);
        const reader = await loc.openDir();
        // Opened first: a directory where its path says once it is open had at least those rights when opened
        // (see inPlace). The directory itself, not only its parent: the listing looks again before each batch.
        try {
          if ((await reader.whereNow()) !== loc.virtualPath) throw movedMeanwhile();
          placeLooked.add(loc);
        } catch (err) {
          await reader.close();
          throw err;
        }
        return { reader, dir: loc.virtualPath };
      }),
    );
    const listing = new DirectoryListing(reader, (text) => visibleLinkTarget(dir, text), dir, () => this.listings.delete(listing));
    // Opened as the session closed: its end has passed the listings already.
    if (this.closed) {
      await listing.close();
      throw sessionClosed();
    }
    this.listings.add(listing);
    return listing;
  }

  /** The permissions over a file this session has open: those of the directory it really is in. */
  permissionsOver(transfer: Upload | Download): ReadonlySet<Permission> {
    return permissionsAt(this.account.permissions, this.dirOf(transfer));
  }

  private dirOf(transfer: Upload | Download): string {
    const dir = this.placed.get(transfer);
    if (dir === undefined) throw new SluiceError('failure', 'Not a file this session opened');
    return dir;
  }

  /** The permissions in force in a virtual directory (MLSD perm facts). */
  permissionsIn(virtualDir: string): ReadonlySet<Permission> {
    return permissionsAt(this.account.permissions, virtualDir);
  }

  /** A link's target as the user sees it: a path in this home, never a name above it. */
  async readlink(clientPath: string): Promise<string> {
    const { path, at, directory } = this.named(clientPath);
    return this.guard('readlink', path, () =>
      // `ld/` names what the link leads to, as readlink("ld/") reads it: a directory, no link (EINVAL).
      this.within(at, directory, 'look', async (loc) => {
        // The home's own path is a magic link to its real path.
        if (loc.isRoot) throw new SluiceError('invalid-argument');
        this.require('list', parentOf(loc.virtualPath));
        const shown = visibleLinkTarget(parentOf(loc.virtualPath), await loc.readlink());
        if (shown === null) throw new SluiceError('permission-denied', undefined, 'link leads outside the home');
        return shown;
      }),
    );
  }

  // --- transfers ----------------------------------------------------------

  openRead(clientPath: string, options: ReadOptions = {}): Promise<Download> {
    return this.opened(() => this.openReadNow(clientPath, options));
  }

  private async openReadNow(clientPath: string, options: ReadOptions): Promise<Download> {
    this.startable();
    const named = this.named(clientPath);
    const { path } = named;
    const offset = options.offset ?? 0;
    const download: Download = await this.readable('download', named, true, async (file, st, dir) => {
      if (offset < 0 || offset > st.size) throw new SluiceError('invalid-path', 'Offset beyond end of file');
      // The file's bytes stay on the disk while it is open, whatever becomes of its names: the quota counts them so
      // (readable registered it; the download lets go when it ends).
      const key = nodeKey(st);
      const done = (r: TransferRecord) => {
        this.ledger.doneReading(key);
        this.finished(download, r);
      };
      const opened = new Download(file, path, offset, st.size, done, this.transferOptions(options, this.budget.rates.down));
      this.placed.set(opened, dir);
      this.deps.inFlight?.started(this.actor, 'download', path, offset, opened.started);
      return opened;
    });
    return download;
  }

  /**
   * A regular file opened for reading where the user may download it, handed
   * to `use` with its metadata; closed when `use` fails, or always unless
   * `keep` (a Download owns it from then on, and lets the ledger know when it
   * lets go: doneReading). The quota's ledger knows it open (reading) before
   * `use` runs: its bytes stay on the disk whatever becomes of its names.
   */
  private readable<T>(operation: string, { path, at }: Named, keep: boolean, use: (file: OpenFile, st: NodeStat, dir: string) => Promise<T>): Promise<T> {
    return this.guard(operation, path, async () =>
      this.at(await this.storage.resolveForRead(this.checked('download', parentOf(path), at), this.unseen), 'look', async (loc) => {
        const dir = parentOf(loc.virtualPath);
        this.require('download', dir);
        const file = await loc.openRead();
        let kept = false;
        /** The file as the ledger knows it read (see reading), once it does. */
        let key: string | null = null;
        try {
          // Looked at once the file is open, before any byte is read: a lookup that followed links may
          // have taken long, its directories pinned all the while (found by a review: a download read
          // a file of a place without download, moved there into a directory moved there meanwhile).
          const [st] = await Promise.all([file.stat(), inPlace(loc)]);
          if (st.type === 'dir') throw new SluiceError('is-a-directory');
          if (st.type !== 'file') throw new SluiceError('permission-denied', 'Not a regular file');
          key = nodeKey(st);
          this.ledger.reading(key);
          // Looked at again once the ledger knows the file open: a removal done before (between the open and
          // now) was freed at once, though the open file keeps its bytes on the disk; no link left says so
          // (found by a review: a REMOVE landing between a download's open and its registration freed it).
          // Not waited for: the reply needs nothing of it (a file let go meanwhile is no longer held, and the
          // ledger ignores it). Without a quota nothing is refused by the usage: no look at all.
          if (!this.ledger.unlimited) {
            const held = key;
            void file.stat().then(
              (now) => now.nlink === 0 && this.ledger.heldGone(held, now.size),
              () => undefined,
            );
          }
          const out = await use(file, st, dir);
          kept = keep;
          return out;
        } finally {
          if (!kept) {
            await file.close();
            if (key !== null) this.ledger.doneReading(key);
          }
        }
      }),
    );
  }

  openWrite(clientPath: string, options: WriteOptions = {}): Promise<Upload> {
    return this.opened(() => this.openWriteNow(clientPath, options));
  }

  private async openWriteNow(clientPath: string, options: WriteOptions): Promise<Upload> {
    this.startable();
    const { path, at, directory } = this.named(clientPath);
    // An open that may create refuses a name given as a directory's, there or not, as open(2) with O_CREAT
    // does (EISDIR, which OpenSSH's sftp-server and scp pass on): looked up by the name alone, so that `f/`
    // of a file is refused so too, not as no directory by the look.
    const createsDirectoryName = directory && options.mustExist !== true;
    const loc = await this.guard('upload', path, () =>
      this.storage.resolve(this.checked('upload', parentOf(path), createsDirectoryName ? path : at), true, this.unseen),
    );
    let upload: Upload;
    try {
      const mayRead = options.read === true && this.readsBack(loc, path);
      upload = await this.guard('upload', path, () =>
        blindly(loc, () => told(loc, 'change', () => this.startUpload(loc, path, options, mayRead, createsDirectoryName))),
      );
    } catch (err) {
      await loc.close();
      throw err;
    }
    return upload;
  }

  /**
   * Whether an upload the client asks to read through too (WriteOptions.read) is read: where a
   * download's open would read (see readable), download by the name asked and where the file really
   * is, links followed, and no name on the way that the user may not learn of. Elsewhere it is an
   * upload as one opened for writing only, its READs refused, as before reading back was served:
   * refusing the open refused every upload of Go's sftp Client.Create (READ|WRITE|CREAT|TRUNC) into
   * a drop box or a directory without download. The rest of what a download's open refuses does not
   * apply to reading one's own upload: a special file or a directory is no upload (planUpload refuses
   * it); the bytes read are those at the name, where this user may download, or those this upload
   * wrote to a staged file nobody else names, so a scan's verdict still to come guards nothing from
   * the client that it did not send itself (and a scanned upload is always staged); and a file
   * another upload holds in place refuses this one's open already (the ledger's in-place lock).
   */
  private readsBack(loc: Location, path: string): boolean {
    return !loc.blind && allows(this.account.permissions, 'download', parentOf(path)) && allows(this.account.permissions, 'download', parentOf(loc.virtualPath));
  }

  /**
   * `read`: the client opened the file for reading and may read it (see readsBack). `createsDirectoryName`:
   * the open may create, and the client gave the name as a directory's (see openWriteNow).
   */
  private async startUpload(loc: Location, path: string, options: WriteOptions, read: boolean, createsDirectoryName: boolean): Promise<Upload> {
    if (loc.isRoot || createsDirectoryName) throw new SluiceError('is-a-directory');
    checkName(loc.name);
    const dir = parentOf(loc.virtualPath);
    this.require('upload', dir);
    const st = await loc.stat();
    const plan = planUpload(
      st,
      {
        ...(options.offset === undefined ? {} : { offset: options.offset }),
        ...(options.truncate === undefined ? {} : { truncate: options.truncate }),
        append: options.append ?? false,
        exclusive: options.exclusive ?? false,
        mustExist: options.mustExist ?? false,
      },
      { atomicUploads: this.deps.atomicUploads, blind: loc.blind, scanned: this.scanning !== null },
    );
    if ('refused' in plan) throw refusal(plan.refused);
    if (plan.needsOverwrite) this.require('overwrite', dir);
    const { atomic, truncate, append } = plan;
    // An atomic overwrite may count the old file's size as room while it runs,
    // if it is that file's only name and no other upload counts on it already;
    // what it really frees is measured again when the bytes land.
    const key = st ? nodeKey(st) : '';
    // Not claimed without a quota: there is no room to count it as, and with workers the claim and
    // its release would be a round trip to the primary each. Should a quota come meanwhile, this
    // upload's later reservations go without the credit; what the commit frees is measured then.
    const claimable = atomic && st !== null && st.nlink === 1 && !this.ledger.unlimited;
    let holdsFile = plan.createsFile;
    // Truncating in place frees the old bytes at once, whatever links the file has.
    const credit = claimable ? st.size : truncate && !atomic ? (st?.size ?? 0) : 0;
    // In place, the lock is taken before the open: a truncation would cut the file under its other writer.
    // One step with the claim and the check: with workers, one round trip to the primary.
    let lock: string | null = !atomic && st ? key : null;
    // Several nodes: read before the lock is taken, so a lock connection lost (and forget-node run) while it is
    // taken and the file opened stops this upload, even once the lock is back before its first write.
    const fenceEpoch = inPlaceFence.epoch;
    const claimed = await this.ledger.checkStart({ createsFile: holdsFile, credit, claim: claimable ? key : null, lock });
    const claim = claimed && st ? { key, ino: st.ino, dev: st.dev } : null;

    let file: OpenFile | null = null;
    let staged: StagedFile | null = null;
    // In place, the size the upload counts from is the file's under the lock: another session may have cut
    // or grown it since the look (its own step on the usage done), and counting from the size looked at took
    // that difference off the usage a second time, each round (found by a review).
    let existingSize = st ? st.size : null;
    /** An in-place upload's record: the file it emptied at the open, or the size of the one it writes into. */
    let replacedAtOpen: Replaced | null = null;
    let was: number | null = null;
    try {
      if (atomic) {
        // Permission bits only: a setuid or setgid bit is the server's to drop, as a write would (the
        // mode is set while the bytes arrive, so no write comes after it to drop them).
        staged = await stagedInPlace(loc, st ? st.mode & 0o777 : null);
        file = staged.file;
      } else if (st) {
        // Just before the open: the lookup may have taken long, its directories pinned all the while.
        await inPlace(loc);
        file = await loc.openWrite({ create: false, truncate: false, append, read });
        const now = await file.stat();
        // The file looked at, whose lock and quota steps were taken: another that took the name since is
        // refused before anything is truncated (its lock was not this one's, so a second writer got in).
        if (now.ino !== st.ino || now.dev !== st.dev) {
          throw new SluiceError('failure', 'File changed while it was opened; try again', 'another file took the name between the look and the open');
        }
        // Linked since the look, before the lock: a second name is made only under it (hardlink).
        if (now.nlink > 1) throw refusal('linked-elsewhere');
        existingSize = now.size;
        // The offset was checked against the look (planUpload): a file cut since, under its lock (another
        // upload's bytes given back over the quota, a SETSTAT size), is no longer that long, and written at
        // the offset it would get a hole of zeros its client never sent.
        if (!append && plan.offset > now.size) throw refusal('beyond-end');
        // Emptied here, whatever the upload's end: its record says what was destroyed (its hash only if known).
        if (truncate) replacedAtOpen = { size: now.size, ...knownSha(this.deps.receipts, now) };
        else was = now.size;
        if (truncate) {
          // A cut is a write in place: only while this node proves it holds its lock (see InPlaceFence).
          await inPlaceFence.wait(fenceEpoch, this.closing.signal);
          const fenced = inPlaceFence.check(fenceEpoch);
          if (fenced) throw fenced;
          await file.truncate(0);
        }
      } else {
        // Its slot becomes the name (see createInPlace).
        holdsFile = false;
        file = await this.createInPlace(loc, { append, read });
        lock = await this.lockCreated(loc, file);
      }
    } catch (err) {
      if (file && !staged) await file.close().catch(() => undefined);
      if (lock) this.ledger.unlockInPlace(lock);
      if (holdsFile) this.ledger.releaseFile();
      if (claim) this.ledger.unclaim(key);
      throw err;
    }
    // An in-place truncation has already freed the old bytes: account for them now; the name stays.
    const truncatedInPlace = truncate && !atomic && existingSize !== null;
    if (truncatedInPlace) this.ledger.settle(0, -(existingSize ?? 0), 0);
    // Not over what took the name since the look when the client asked for none to be replaced (see UploadPlan).
    const mayReplace = plan.mayReplace && allows(this.account.permissions, 'overwrite', dir);
    // The directory, pinned, may have been moved since (found by a review: a user without overwrite in
    // /archive moved the upload's directory there, then an archived file onto its name, and the end replaced it).
    const mayReplaceWhereNow = async (): Promise<boolean> => {
      const where = await loc.whereNow();
      return where !== null && allows(this.account.permissions, 'overwrite', where);
    };
    const target = { loc, existingSize: truncatedInPlace ? 0 : existingSize, staged, append, holdsFile, claim, lock, fenceEpoch, mayReplace, mayReplaceWhereNow, replacedAtOpen, was };
    // An append starts at the end of the file under its lock, not of the file looked at: another session may have
    // cut or grown it in between, and the record would say the bytes began where they did not.
    const offset = append && !truncate && existingSize !== null ? existingSize : plan.offset;
    const upload: Upload = new Upload(file, path, offset, target, this.ledger, (r) => this.finished(upload, r), {
      ...this.transferOptions(options, this.budget.rates.up),
      hashWholeFile: this.deps.hashResumedUploads,
      writes: options.write ?? true,
      reads: options.read ?? false,
      knownSha256: (node) => this.deps.receipts.of(node),
      scan: this.scanning
        ? { scanning: this.scanning, user: this.account.name, userId: this.account.id, turns: shareOf(this.account.name, this.account.method === 'anonymous', this.context.source) }
        : null,
      readBack: read
        ? {
            rate: this.budget.rates.down,
            hash: this.deps.audit !== null,
            started: (at) => this.deps.inFlight?.started(this.actor, 'download', path, 0, at),
            report: (r) => this.recorded(r),
          }
        : null,
    });
    this.placed.set(upload, dir);
    this.deps.inFlight?.started(this.actor, 'upload', path, offset, upload.started);
    return upload;
  }

  /**
   * The new file of an upload in place onto a free name, its name counted
   * before the create makes it: the slot the start held becomes that name,
   * and a create that fails takes it off again. Counted after (at the end,
   * or when the upload gave up), it could reach the ledger after another
   * session's removal of the new file, made before this upload took its
   * lock: with nothing else on the usage, which never goes below zero, that
   * removal took nothing off, and the name counted after stayed on it for
   * good (found by test/stress/one-account.ts). Counted first, whatever
   * becomes of the name is counted after it. With workers and a quota, the
   * count leaves for the primary while this upload still looks at its
   * directory (inPlace), before the create is issued; without a quota, with
   * the lock's question right after the create.
   */
  private async createInPlace(loc: Location, mode: { append: boolean; read: boolean }): Promise<OpenFile> {
    this.ledger.settle(0, 0, 1);
    this.ledger.releaseFile();
    try {
      // Just before the create: the lookup may have taken long, its directories pinned all the while.
      await inPlace(loc);
      return await loc.openWrite({ create: true, truncate: false, ...mode });
    } catch (err) {
      this.ledger.settle(0, 0, -1);
      throw err;
    }
  }

  /**
   * The in-place lock of a file this upload has just created. Until it is
   * taken the new file is anybody's: another session may open it in place as
   * a file that is there (its writer now, which counts no name for it), or
   * change its names (a removal, a rename, a hard link, an upload's end over
   * it), each under that lock. Then this upload gives up, and its name is
   * removed only under the lock, where it still leads to its file. A name
   * left is counted already (createInPlace), as the act that took the new
   * file counts on: an append that opened it counts no name, an upload's end
   * over it or a rename that moved it none made, a removal one removed.
   * Removed by its name without the lock (found by test/stress/one-account.ts:
   * the usage high by whole records), it was the other's file by then: a file
   * an append was writing, or a whole upload's, its bytes left on the usage
   * with no name on the disk.
   */
  private async lockCreated(loc: Location, file: OpenFile): Promise<string> {
    let locked: string | null = null;
    try {
      const key = nodeKey(await file.stat());
      await this.ledger.lockInPlace(key);
      locked = key;
      const [now, there] = await Promise.all([file.stat(), loc.stat()]);
      // Moved by another session between the create and the lock (a rename holds the lock only while it
      // acts): the upload's record and hooks would name a name its file no longer has (found by a review).
      if (!there || there.ino !== now.ino || there.dev !== now.dev) {
        throw new SluiceError('failure', 'File changed while it was opened; try again', 'the new file was moved before its lock');
      }
      // Written by another session between the create and the lock (an append that opened it as a file there,
      // wrote and ended, its lock let go): its bytes are counted as that writer's, and this upload, counting its
      // file from empty, counted them again at its end, and over quota cut them and removed the file (found by a
      // review). The file is the other's now, as when that writer still held the lock; its name stays counted.
      if (now.size !== 0) {
        throw new SluiceError('failure', 'File changed while it was opened; try again', 'the new file was written before its lock');
      }
      // Linked by another session between the create and the lock (a second name is made only under
      // it): a file with several names is never written in place. The link keeps the file; this name goes.
      if (now.nlink > 1) {
        if (await loc.unlink().then(() => true, () => false)) this.ledger.settle(0, 0, -1);
        throw refusal('linked-elsewhere');
      }
      return key;
    } catch (err) {
      if (locked !== null) this.ledger.unlockInPlace(locked);
      await file.close().catch(() => undefined);
      throw err;
    }
  }

  private transferOptions(options: { convertedLineEndings?: boolean }, rate: RateLimit | null): TransferOptions {
    return { hash: this.deps.audit !== null, convertedLineEndings: options.convertedLineEndings ?? false, rate };
  }

  /** A change of owner or group: never allowed (every file is the server account's), and recorded as refused. */
  refuseOwnerChange(target: string | Upload | Download): Promise<never> {
    const path = typeof target === 'string' ? this.resolve(target) : target.path;
    // An act as any other change: its refusal's record comes before the session's logout.
    return this.acting(() => this.guard('chown', path, () => Promise.reject(new SluiceError('permission-denied', 'Changing the owner is not allowed', 'owner change'))));
  }

  /**
   * SFTP FSETSTAT: change an open file through its descriptor (an atomic
   * upload's final name does not exist yet), under the same permissions as
   * the path-based calls.
   */
  changeOpenFile(
    transfer: Upload | Download,
    change: { mode?: number; atime?: Date; mtime?: Date; size?: number },
  ): Promise<void> {
    return this.acting(async () => {
      const dir = this.dirOf(transfer);
      await this.guard('setstat', transfer.path, async () => {
        if (change.mode !== undefined) this.require('chmod', dir);
        if (change.mtime !== undefined) this.require('chtimes', dir);
        if (change.size !== undefined) {
          this.require('overwrite', dir);
          if (!(transfer instanceof Upload)) throw sizeNotWritable();
          await transfer.resize(change.size);
        }
        await transfer.changeFile(change);
      }, true);
      this.auditChanged(transfer.path, change);
    });
  }

  /** The records of a change through a handle: one per attribute changed, as the path-based calls make. */
  private auditChanged(path: string, change: { mode?: number; mtime?: Date }): void {
    if (change.mode !== undefined) this.audit({ event: 'chmod', path, mode: modeText(change.mode) });
    if (change.mtime !== undefined) this.audit({ event: 'chtimes', path });
  }

  /**
   * SFTP FSETSTAT on a directory handle: the directory its listing opened,
   * through that listing's descriptor (DirectoryListing.change), under the
   * rights chmod and setTimes check by path.
   */
  changeOpenDir(listing: DirectoryListing, change: { mode?: number; atime?: Date; mtime?: Date; size?: number }): Promise<void> {
    return this.acting(async () => {
      if (!this.listings.has(listing)) throw new SluiceError('failure', 'Not a directory this session opened');
      const { path } = listing;
      await this.guard('setstat', path, async () => {
        if (change.size !== undefined) throw new SluiceError('is-a-directory');
        if (change.mode !== undefined) {
          this.require('chmod', parentOf(path));
          this.requireOwnMode(path);
        }
        if (change.mtime !== undefined) this.require('chtimes', parentOf(path));
        await listing.change(async (dir) => {
          if (change.mode !== undefined) await dir.chmod(change.mode & 0o777);
          if (change.mtime !== undefined) await dir.setTimes(change.mtime, change.atime);
        });
      });
      this.auditChanged(path, change);
    });
  }

  /**
   * Copy bytes between two files this session has open (SFTP copy-data), as
   * the server's own download and upload: each counts, hashes, is held to the
   * quota and audited as if the client had moved the bytes itself, and the
   * records name each other's path. The opens checked the permissions. At most
   * `chunk` bytes at a time, each written before the next is read. The copy
   * ends at the end the source has when it starts, whatever `length` asks (0:
   * all of it): a copy into its own file, by that name or through another link,
   * would otherwise chase the end it moves and fill the disk from one request.
   * Like OpenSSH, a copy onto the file's own name is refused outright.
   */
  async copy(from: Download, to: Upload, range: { from: number; to: number; length: number; chunk: number }): Promise<void> {
    if (!this.transfers.has(from) || !this.transfers.has(to)) throw new SluiceError('failure', 'Transfer is closed');
    if (from.path === to.path) throw new SluiceError('failure', 'Source and target are the same file');
    const size = (await from.info()).size;
    const end = range.length === 0 ? size : Math.min(size, range.from + range.length);
    this.copied(from, to.path);
    this.copied(to, from.path);
    for (let at = range.from; at < end; ) {
      const data = await from.read(at, Math.min(range.chunk, end - at));
      if (data.length === 0) break;
      await to.write(data, range.to + (at - range.from));
      at += data.length;
    }
  }

  private copied(transfer: Upload | Download, otherEnd: string): void {
    const copies = this.copies.get(transfer) ?? { paths: new Set<string>(), others: 0 };
    this.copies.set(transfer, copies);
    // One audit line per transfer: hundreds of long names copied into one file must not make a line of megabytes.
    if (copies.paths.has(otherEnd)) return;
    if (copies.paths.size < MAX_COPY_PATHS) copies.paths.add(otherEnd);
    else copies.others++;
  }

  private finished(transfer: Upload | Download, r: TransferRecord): void {
    this.transfers.delete(transfer);
    if (this.transfers.size === 0) for (const resolve of this.idleWaiters.splice(0)) resolve();
    const copied = this.copies.get(transfer);
    this.copies.delete(transfer);
    if (transfer instanceof Upload && transfer.exceededQuota) {
      this.audit({ event: 'quota-exceeded', path: r.path });
      this.quotaRefused();
    }
    if (r.quarantined) this.audit({ event: 'quarantined', path: r.path, ...r.quarantined });
    if (r.direction === 'upload' && r.result === 'ok' && r.node && !r.convertedLineEndings) {
      // The hash covers the whole file only if the upload wrote all of it, or hashed it after a resume (node: see TransferRecord).
      const whole = r.fileSha256 ?? (r.offset === 0 && r.bytes === r.size ? r.sha256 : null);
      if (whole) this.deps.receipts.remember(r.node.key, r.size, r.node.ctimeMs, whole);
    }
    this.recorded(r, copied);
  }

  /** A transfer's record in the metrics and the audit trail; `copied`: see copy(). */
  private recorded(r: TransferRecord, copied?: { paths: Set<string>; others: number }): void {
    const durationMs = Date.now() - r.started.getTime();
    this.deps.metrics.count({ m: 'transfer', protocol: this.context.protocol, direction: r.direction, bytes: r.bytes, seconds: durationMs / 1000, result: r.result });
    this.audit({
      event: r.direction,
      path: r.path,
      ...(r.openedAs === undefined ? {} : { path_at_open: r.openedAs }),
      bytes: r.bytes,
      size: r.size,
      offset: r.offset,
      resumed: r.offset > 0,
      started: r.started.toISOString(),
      duration_ms: durationMs,
      result: r.result,
      ...(r.reason === undefined ? {} : { reason: r.reason }),
      sha256: r.sha256,
      ...(r.fileSha256 === undefined ? {} : { file_sha256: r.fileSha256 }),
      type: r.convertedLineEndings ? 'ascii' : 'binary',
      ...(copied === undefined ? {} : r.direction === 'upload' ? { copied_from: [...copied.paths] } : { copied_to: [...copied.paths] }),
      ...(copied === undefined || copied.others === 0 ? {} : { copied_others: copied.others }),
      ...replacedFields(r.replaced ?? null),
      ...(r.was === undefined ? {} : { was: r.was }),
      ...(r.scan === undefined ? {} : { scan: r.scan }),
    });
  }

  /**
   * Hash receipts (FTP HASH, SFTP check-file, the SSH checksum commands): of
   * a path, or of a file the session has open. Reading the bytes is
   * downloading them, so it takes the download permission (an upload-only
   * drop box gives no hashes back). The whole file's SHA-256 comes from its
   * upload's record when the file is as that upload left it; anything else
   * is read at the session's hashing rate, one checksum after another, and
   * none goes on once the session closed.
   */
  checksum(target: string | Upload | Download, range: ChecksumRange = WHOLE_FILE, algorithm: HashAlgorithm = 'sha256'): Promise<Checksum> {
    if (typeof target !== 'string') {
      // In guard, as the checksum of a path: a drop box's upload asked for its hash is a refusal on record (found by a review).
      return this.checksums.run(async (pace) =>
        this.checksummed(
          target.path,
          await this.guard('checksum', target.path, async () => {
            if (target instanceof Upload) this.require('download', this.dirOf(target));
            return target.checksum(range, pace, algorithm);
          }),
        ),
      );
    }
    // Resolved now: the working directory may change while it waits its turn.
    const named = this.named(target);
    return this.checksums.run(async (pace) =>
      this.checksummed(
        named.path,
        await this.readable('checksum', named, false, async (file, st) => {
          const whole = range.offset === 0 && range.length === 0 && range.blockSize === 0;
          const known = whole && algorithm === 'sha256' ? this.deps.receipts.of(st) : null;
          if (known) return { algorithm, offset: 0, end: st.size, digests: [Buffer.from(known, 'hex')], fromRecord: true };
          return hashRange(file, st.size, range, pace, algorithm);
        }),
      ),
    );
  }

  /**
   * A checksum given to the client is on record: the SHA-256 of a range of a few bytes is one of a
   * few hundred values, so SFTP check-file range by range gave a client a file byte by byte with no
   * download recorded (a review read 19 bytes in 19 requests).
   */
  private checksummed(path: string, sum: Checksum): Checksum {
    this.audit({ event: 'checksum', path, algorithm: sum.algorithm, offset: sum.offset, end: sum.end, blocks: sum.digests.length, from_record: sum.fromRecord });
    return sum;
  }

  // --- changes --------------------------------------------------------------

  mkdir(clientPath: string): Promise<string> {
    return this.acting(async () => {
      // A directory is all it makes: named as one or not, the same (mkdir("f/") of a file is EEXIST, as mkdir("f")).
      const path = this.resolve(clientPath);
      await this.change('mkdir', { path, at: path, directory: false }, false, async (loc) => {
        if (loc.isRoot) throw new SluiceError('already-exists');
        checkName(loc.name);
        await addName(this.ledger, () => loc.mkdir());
      });
      this.audit({ event: 'mkdir', path });
      return path;
    });
  }

  rmdir(clientPath: string): Promise<void> {
    return this.acting(async () => {
      const named = this.named(clientPath);
      const { path } = named;
      await this.change('rmdir', named, false, async (loc) => {
        // The working directory may go, as rmdir(2) and vsftpd let it: what is named from there afterwards is not found.
        // GNOME's gvfs changes into a directory to learn that it is one, and removes it from there: refused, a folder
        // deleted in GNOME Files over FTP failed, recorded as denied for a permission the user had (found by a run).
        if (loc.isRoot) throw new SluiceError('permission-denied', undefined, 'the home itself');
        this.requireNoOverride(loc.virtualPath);
        // Again if another directory took the name between the look and the lock (see removeDirectory).
        await lookingAgain(async () => {
          const st = await loc.stat();
          if (!st) throw new SluiceError('not-found');
          if (st.type !== 'dir') {
            // A file its user may not delete is said so: Go's sftp (rclone) tries RMDIR after a REMOVE refused and
            // shows only the second answer, which was "Not a directory" for a delete the user is not allowed.
            this.require('delete', parentOf(loc.virtualPath));
            throw new SluiceError('not-a-directory');
          }
          // rmdir(2) removes only a directory, and its success says this act took the name: counted here.
          await removeDirectory(this.ledger, st, () => loc.stat(), () => loc.rmdir());
        });
        this.ledger.settle(0, 0, -1);
      });
      this.audit({ event: 'rmdir', path });
    });
  }

  remove(clientPath: string): Promise<void> {
    return this.acting(async () => {
      const named = this.named(clientPath);
      const { path } = named;
      let removed: Replaced | null = null;
      await this.change('delete', named, false, async (loc) => {
        this.requireNoOverride(loc.virtualPath);
        // Looked at through a hold, and measured through it across the unlink (see dropThrough); again if the name changed meanwhile.
        removed = await lookingAgain(async () => {
          const held = await loc.hold();
          if (!held) throw new SluiceError('not-found');
          try {
            const st = await held.stat();
            if (st.type === 'dir') throw new SluiceError('is-a-directory');
            const { gone, before, after } = await dropThrough(this.ledger, st, held, () => loc.stat(), () => loc.unlink());
            this.ledger.freed(nodeKey(st), gone.bytes, gone.names);
            // Its hash only if already known (a whole upload's receipt): the file is never read for it.
            return replacedThrough(before, after, this.deps.receipts.of(before));
          } finally {
            void held.close().catch(() => undefined);
          }
        });
      });
      this.audit({ event: 'delete', path, ...(removed === null ? {} : { removed }) });
    });
  }

  /**
   * Rename; `ifExists` says whether an existing target is replaced or an error.
   * Needs rename on both directories. A move to another directory creates a
   * name there (upload, or mkdir for a directory) and may not widen the
   * user's rights on what moves; configured directories stay where they are.
   */
  rename(fromClient: string, toClient: string, ifExists: IfExists): Promise<void> {
    return this.acting(async () => {
      const { path: from, at: fromAt } = this.named(fromClient);
      const { path: to, at: toAt } = this.named(toClient);
      let replaced: Replaced | 'unknown' | null = null;
      await this.guard('rename', from, () =>
        this.within(this.checked('rename', parentOf(from), fromAt), false, 'change', (src) =>
          this.within(this.checked('rename', parentOf(to), toAt), false, 'change', async (dst) => {
            if (src.isRoot || dst.isRoot) throw new SluiceError('permission-denied', undefined, 'the home itself');
            checkName(dst.name);
            const srcDir = parentOf(src.virtualPath);
            const dstDir = parentOf(dst.virtualPath);
            this.require('rename', srcDir);
            this.require('rename', dstDir);
            this.requireNoOverride(src.virtualPath);
            this.requireNoOverride(dst.virtualPath);
            const srcStat = await src.stat();
            if (!srcStat) throw new SluiceError('not-found');
            if (srcDir !== dstDir) {
              this.require(srcStat.type === 'dir' ? 'mkdir' : 'upload', dstDir);
              this.requireNarrows(srcDir, dstDir);
            }
            // A file's or symlink's under its lock (see moveUnderLock): not while it is written in place, and no
            // other change of its names in between.
            const move = (busy: NamesBusy) => this.moveOnto(src, dst, srcStat, ifExists, busy);
            // Begun again, the target looked at anew, if another change put a file under its name meanwhile (see dropThrough).
            replaced = await lookingAgain(() => (srcStat.type === 'dir' ? move('wait') : moveUnderLock(this.ledger, srcStat, move)));
          }),
        ),
      );
      this.audit({ event: 'rename', from, to, ...replacedFields(replaced) });
    });
  }

  /**
   * A rename's act, its checks passed, on the source looked at (`srcStat`): onto a free name without
   * replacing, or over the target, measured through a hold (see dropThrough). What it replaced, for the
   * record (null: nothing).
   */
  private async moveOnto(src: Location, dst: Location, srcStat: NodeStat, ifExists: IfExists, busy: NamesBusy): Promise<Replaced | 'unknown' | null> {
    // Looked at again, under the lock: the look of the source's resolve is older than the target's whole
    // resolve, and another session may have put another file under the name meanwhile, one written in
    // place even (found by a review: the lock was then of a file no longer there, and the move gave the
    // file written in place a second name, or moved it).
    const now = await src.stat();
    if (!now || now.dev !== srcStat.dev || now.ino !== srcStat.ino) {
      throw new SluiceError('failure', 'File changed while it was renamed; try again', 'another file took the source name after the look');
    }
    // Under the file's lock, which no in-place write holds meanwhile. The target's stat comes after its hold,
    // which makes it look anew.
    return this.deps.receipts.across(now, () => this.moveOntoTarget(src, dst, srcStat, ifExists, busy), () => dst.stat());
  }

  /** moveOnto's act, the source looked at again. */
  private async moveOntoTarget(src: Location, dst: Location, srcStat: NodeStat, ifExists: IfExists, busy: NamesBusy): Promise<Replaced | 'unknown' | null> {
    // The target looked at through a hold, and measured through it across the rename (see dropThrough).
    const held = await dst.hold();
    try {
      const dstStat = held ? await held.stat() : null;
      if (dstStat) {
        if (ifExists === 'fail') throw new SluiceError('already-exists');
        if ((dstStat.type === 'dir') !== (srcStat.type === 'dir')) {
          throw new SluiceError(dstStat.type === 'dir' ? 'is-a-directory' : 'not-a-directory');
        }
        this.require('overwrite', parentOf(dst.virtualPath));
      }
      // Checked last, just before the act: the target's lookup may take long (a deep path).
      await inPlace(src, dst);
      if (dstStat === null && srcStat.type !== 'dir') {
        // The check above is not the rename: a name taken since (another request of this user, another
        // client) must not be replaced by rename(2), which would replace it without overwrite and
        // unaccounted. A free target is taken without replacing. Should the old name have been moved or
        // removed by another session meanwhile, the new one is a name more.
        if (!(await src.moveNoReplace(dst, srcStat))) this.ledger.settle(0, 0, 1);
        return null;
      }
      if (dstStat === null) return await this.moveDirectoryOntoFree(src, dst);
      // A directory can only replace an empty directory, which rename(2) refuses for any other; a name
      // replaced by another link to the same file is left alone by rename(2).
      const replaces = dstStat !== null && held !== null && !(dstStat.ino === srcStat.ino && dstStat.dev === srcStat.dev);
      if (!replaces) {
        await src.renameTo(dst);
        return null;
      }
      const { gone, before, after } = await dropThrough(this.ledger, dstStat, held, () => dst.stat(), () => src.renameTo(dst), busy);
      this.ledger.freed(nodeKey(dstStat), gone.bytes, gone.names);
      // On record as the quota counts it: the file looked at, if it lost its name (found by a review:
      // a file destroyed by a rename over it left no trace but in the records before). Its hash only if
      // already known (a whole upload's receipt): the file is never read for it.
      return replacedThrough(before, after, this.deps.receipts.of(before)) ?? 'unknown';
    } finally {
      void held?.close().catch(() => undefined);
    }
  }

  /**
   * A directory moved onto a name free at the look. rename(2) replaces an empty directory made there
   * since (another session's mkdir), unmeasured: a name left on the usage for good (found by
   * test/stress/one-account.ts, directory renames racing mkdir). Node has no renameat2(RENAME_NOREPLACE),
   * and link(2) takes no directory: the name is taken first by an empty directory of this act's own,
   * counted, which the rename replaces, measured as any replaced target (dropThrough): another session
   * may remove it meanwhile (and count that), or replace it. One made there before fails that mkdir, and
   * the rename looks again (see lookingAgain): it is refused, or replaced measured, as any existing target.
   */
  private async moveDirectoryOntoFree(src: Location, dst: Location): Promise<null> {
    await dst.mkdir().catch((err: unknown) => {
      throw err instanceof SluiceError && err.kind === 'already-exists' ? new NameChanged() : err;
    });
    this.ledger.settle(0, 0, 1);
    const held = await dst.hold();
    if (!held) throw new NameChanged();
    try {
      const made = await held.stat();
      const { gone } = await dropThrough(this.ledger, made, held, () => dst.stat(), () => src.renameTo(dst)).catch(async (err: unknown) => {
        // Not moved: the directory made for it goes, unless it is gone already or another session filled it.
        if (!(err instanceof NameChanged) && (await dst.rmdir().then(() => true, () => false))) this.ledger.settle(0, 0, -1);
        throw err;
      });
      this.ledger.settle(0, 0, -gone.names);
    } finally {
      void held.close().catch(() => undefined);
    }
    return null;
  }

  /**
   * `follow`: a final symlink is followed; false, the name's own node is
   * changed, the one the storage opens by it, and a symlink there is refused
   * (SFTP lsetstat: a type looked at first, then a change by a path that
   * follows, changed the target of a symlink swapped in between).
   */
  async chmod(clientPath: string, mode: number, follow = true): Promise<void> {
    const named = this.named(clientPath);
    const { path } = named;
    return this.namedOrStaged(
      named.at,
      () =>
        this.acting(async () => {
          await this.change('chmod', named, follow, (loc) => {
            this.requireOwnMode(loc.virtualPath);
            return loc.chmod(mode & 0o777);
          });
          this.audit({ event: 'chmod', path, mode: modeText(mode) });
        }),
      (upload) => this.changeOpenFile(upload, { mode }),
    );
  }

  /**
   * The modification time the file keeps, read in the same act: a file
   * system keeps what it can hold (ext4 makes the year 1600 1901). Not
   * through a look of its own, which a directory whose names the user may
   * not see refuses after the change was made (found by a review: MFMT, as
   * FileZilla sends after each upload, answered 550 into a drop box).
   * `follow`: see chmod.
   */
  async setTimes(clientPath: string, mtime: Date, atime?: Date, follow = true): Promise<Date> {
    const named = this.named(clientPath);
    const { path } = named;
    return this.namedOrStaged(
      named.at,
      () =>
        this.acting(async () => {
          const kept = await this.change('chtimes', named, follow, (loc) => loc.setTimes(mtime, atime));
          this.audit({ event: 'chtimes', path });
          return kept;
        }),
      async (upload) => {
        await this.changeOpenFile(upload, { mtime, ...(atime === undefined ? {} : { atime }) });
        return (await upload.info()).mtime;
      },
    );
  }

  /**
   * SFTP SETSTAT size: cut or extend a file in place (`follow`: see chmod);
   * this session's own atomic upload under the name through its handle, as
   * FSETSTAT (truncate(2) of a file still open for writing, over sshfs).
   */
  truncate(clientPath: string, size: number, follow = true): Promise<void> {
    const named = this.named(clientPath);
    return this.namedOrStaged(named.at, () => this.truncateNamed(named, size, follow), (upload) => this.changeOpenFile(upload, { size }));
  }

  private truncateNamed(named: Named, size: number, follow: boolean): Promise<void> {
    const { path } = named;
    return this.acting(async () => {
      // Where uploads are scanned, as an in-place write is refused (scan-needs-whole): a file scanned whole
      // and clean, cut back to the bytes before its padding, was malware under its name, never scanned
      // (found by a review: EICAR plus 7 bytes, then SETSTAT size 68). Emptying it leaves nothing to scan.
      if (this.scanning && size !== 0) {
        throw new SluiceError('unsupported', 'Files are scanned here: a size may not be changed in place, send the whole file');
      }
      let was = 0;
      await this.change('overwrite', named, follow, async (loc) => {
        const file = await loc.openWrite({ create: false, truncate: false, append: false, read: false });
        try {
          const looked = await file.stat();
          if (looked.type !== 'file') throw new SluiceError('permission-denied', undefined, 'not a regular file');
          if (looked.nlink > 1) throw refusal('linked-elsewhere');
          const key = nodeKey(looked);
          await this.ledger.lockInPlace(key);
          try {
            // Looked at again under the lock: a removal of its last name, or another truncation, may have
            // come between the open and the lock, with its own step on the usage (found by a review).
            const st = await file.stat();
            if (st.nlink === 0) throw new SluiceError('not-found', undefined, 'removed while it was opened');
            if (st.nlink > 1) throw refusal('linked-elsewhere');
            was = st.size;
            const growth = size - st.size;
            if (growth > 0) await this.ledger.reserve(growth, 0);
            // Charged only once the size changed: a size the file system refuses (past its largest file)
            // changed nothing, and had put up to 8 PiB on the user's usage.
            let changed = false;
            try {
              await file.truncate(size);
              changed = true;
            } finally {
              this.ledger.settle(Math.max(0, growth), changed ? growth : 0, 0);
            }
          } finally {
            this.ledger.unlockInPlace(key);
            await this.ledger.synced();
          }
        } finally {
          await file.close();
        }
      });
      // The bytes change as an upload's would: whoever cut or grew a file is on record.
      this.audit({ event: 'truncate', path, size, was });
    });
  }

  /**
   * Create `linkClient` pointing to `targetClient`. The target is a path in
   * this home, never above it; it is stored relative so the link means the
   * same whatever the home's real location.
   */
  symlink(targetClient: string, linkClient: string): Promise<void> {
    return this.acting(async () => {
      const named = this.named(linkClient);
      const link = named.path;
      // Bounded as every client path is (resolve): a target no path may reach is no place to link to.
      const target = resolveStrict(parentOf(link), targetClient, this.storage.maxPathBytes);
      await this.change('symlink', named, false, async (loc) => {
        if (loc.isRoot) throw new SluiceError('already-exists');
        checkName(loc.name);
        this.requireNoOverride(loc.virtualPath);
        // A target named as a directory stays one: the link leads to a file no more than the path did.
        const text = relativeVirtual(parentOf(loc.virtualPath), target);
        await addName(this.ledger, () => loc.symlink(namesDirectory(targetClient) && !namesDirectory(text) ? `${text}/` : text));
      });
      this.audit({ event: 'symlink', path: link, target });
    });
  }

  /**
   * A second name for a file. It must not give the file rights it lacks
   * where it is (reading a drop box's file, writing a read-only one): it needs
   * download on the file's directory, and the link's directory may not grant
   * anything the file's does not.
   */
  hardlink(targetClient: string, linkClient: string): Promise<void> {
    return this.acting(async () => {
      const { path: target, at: targetAt } = this.named(targetClient);
      const named = this.named(linkClient);
      const link = named.path;
      await this.change('symlink', named, false, (dst) =>
        this.within(this.checked('download', parentOf(target), targetAt), false, 'look', async (src) => {
          checkName(dst.name);
          this.requireNoOverride(dst.virtualPath);
          this.require('download', parentOf(src.virtualPath));
          this.requireNarrows(parentOf(src.virtualPath), parentOf(dst.virtualPath));
          const st = await src.stat();
          if (!st) throw new SluiceError('not-found');
          if (st.type !== 'file') throw new SluiceError('permission-denied', 'Only files can be hard-linked', 'hard link to a non-file');
          await inPlace(src, dst);
          // Not while the file is written in place: the writer, which looked at its links before this one
          // came, would go on changing a file that has a second name, here (found by a review: an append
          // handle kept open, the file linked into a drop box without overwrite, then changed there).
          await outsideInPlaceWrites(this.ledger, nodeKey(st), async () => {
            // Looked at again, under the lock: another file put under the source's name since the look would be
            // linked without its own lock, which a removal of its other name counts its links under (found by a
            // review: that removal counted before the link and acted after it, no name off for its act, and the
            // link, refused below, stayed: a name on the usage for good). Under this lock the name keeps its file.
            const now = await src.stat();
            if (!now || now.dev !== st.dev || now.ino !== st.ino) {
              throw new SluiceError('failure', 'File changed while it was linked; try again', 'another file took the source name after the look');
            }
            // Counted once made: a link that goes again is taken off by the unlink that removes it.
            const linked = async () => {
              await addName(this.ledger, () => dst.link(src));
              await linkedAsLocked(this.ledger, dst, st);
            };
            await this.deps.receipts.across(now, linked, () => src.stat());
          });
        }),
      );
      this.audit({ event: 'hardlink', path: link, target });
    });
  }

  /**
   * Room where `where` lies, as `df` should show it to this user: where
   * the user has a quota, its limits and what is left of them; elsewhere the
   * file system's. An open file or directory (SFTP fstatvfs) is looked at
   * through its own descriptor, as FSTAT looks at it: by its path, a
   * directory moved away and replaced by a symlink described where the
   * symlink led, and an upload not yet in place was not found.
   */
  async space(where: string | Upload | Download | DirectoryListing): Promise<Space> {
    const fs = await this.storageSpace(where);
    const blockSize = fs.blockSize || 4096;
    const { quotaBytes, quotaFiles } = this.account;
    const used = await this.ledger.usage();
    const disk = { totalBytes: fs.blocks * blockSize, freeBytes: fs.blocksFree * blockSize, availableBytes: fs.blocksAvailable * blockSize };
    const left = Math.max(0, quotaBytes - used.bytes);
    const bytes = quotaBytes > 0 ? { totalBytes: quotaBytes, freeBytes: Math.min(disk.freeBytes, left), availableBytes: left } : disk;
    const files = quotaFiles > 0 ? { files: quotaFiles, freeFiles: Math.max(0, quotaFiles - used.files) } : { files: fs.files, freeFiles: fs.filesFree };
    return { blockSize, ...bytes, ...files };
  }

  private storageSpace(where: string | Upload | Download | DirectoryListing): Promise<StorageSpace> {
    if (typeof where !== 'string') return this.guard('statfs', where.path, () => where.space());
    const { path, at } = this.named(where);
    // A file this session is uploading atomically is looked at through its handle (statvfs(2) of a file still open for writing, over sshfs).
    return this.namedOrStaged(at, () => this.guard('statfs', path, () => this.within(at, true, 'look', (loc) => loc.space())), (upload) => this.storageSpace(upload));
  }

  // --- shared plumbing ------------------------------------------------------

  /** Check `permission` on the directory holding `path`, resolve, act. */
  private change<T = void>(
    permission: Permission,
    { path, at }: Named,
    follow: boolean,
    act: (loc: Location) => Promise<T>,
  ): Promise<T> {
    return this.guard(permission, path, () =>
      this.within(this.checked(permission, parentOf(path), at), follow, 'change', async (loc) => {
        this.require(permission, parentOf(loc.virtualPath));
        await inPlace(loc);
        return act(loc);
      }),
    );
  }

  /**
   * Resolve and act. Where a name on the way was looked up in a directory
   * whose names the user may not learn, a 'look' (what exists, what it holds)
   * is refused outright and a 'change' succeeds or fails as one Unseen
   * refusal, whatever the real cause: such a user learns a name exists only
   * by creating something under it.
   */
  private async within<T>(path: string, follow: boolean, access: 'look' | 'change', act: (loc: Location) => Promise<T>): Promise<T> {
    return this.at(await this.storage.resolve(path, follow, this.unseen), access, act);
  }

  /**
   * Act on a resolved location (refused as Unseen where the user may not
   * learn what is there), then let it go. A look's answer, and any failure,
   * is given only from where its rights were checked (see told).
   */
  private async at<T>(loc: Location, access: 'look' | 'change', act: (loc: Location) => Promise<T>): Promise<T> {
    try {
      return await blindly(loc, async () => {
        if (loc.blind && access === 'look') throw new Unseen();
        return told(loc, access, act);
      });
    } finally {
      // Not waited for: the answer need not wait on a close nothing depends on (Location.close never rejects).
      void loc.close();
    }
  }

  /** Whether looking `name` up in `dir` must not tell: configured directories are no secret. */
  private readonly unseen = (dir: string, name: string): boolean =>
    !seesNames(this.account.permissions, dir) && !carriesOverride(this.account.permissions, dir === '/' ? `/${name}` : `${dir}/${name}`);

  /** Directories with configured rights (or holding one) stay put: see carriesOverride. */
  private requireNoOverride(path: string): void {
    if (carriesOverride(this.account.permissions, path)) {
      throw new SluiceError('permission-denied', 'Permission denied', 'path carries a permission override');
    }
  }

  /**
   * The modes of the home and of directories given rights of their own (see carriesOverride) are the
   * administrator's: a user could shut the server out of them or open them to every local account.
   */
  private requireOwnMode(path: string): void {
    if (path === '/' || carriesOverride(this.account.permissions, path)) {
      throw new SluiceError('permission-denied', 'Permission denied', 'chmod of the home or a configured directory');
    }
  }

  private requireNarrows(from: string, to: string): void {
    if (!narrows(this.account.permissions, from, to)) {
      throw new SluiceError('permission-denied', 'Permission denied', `rights at ${to} exceed those at ${from}`);
    }
  }

  /** Check before touching the disk, so a refused client learns nothing of what exists. */
  private checked(permission: Permission, dir: string, path: string): string {
    this.require(permission, dir);
    return path;
  }

  private require(permission: Permission, dir: string): void {
    if (!allows(this.account.permissions, permission, dir)) {
      throw new SluiceError('permission-denied', 'Permission denied', `needs ${permission}`);
    }
  }

  /**
   * Every failure leaves here typed; refusals are audited and counted once.
   * `onTransfer`: the operation works on an open upload, whose own end counts
   * a quota refusal (see finished), so it is not counted here as well.
   */
  private async guard<T>(operation: string, path: string, fn: () => Promise<T>, onTransfer = false): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      const e = toSluiceError(err);
      if (e.kind === 'permission-denied' && e.detail !== undefined) {
        const reason = e.detail.includes('outside') ? 'outside-home' : 'permission';
        this.audit({ event: 'denied', operation, path, reason });
      }
      if (e.kind === 'quota-exceeded' && !onTransfer) {
        // A running transfer records its own; a refusal before any (mkdir, a link, an upload's open) is recorded here.
        this.audit({ event: 'quota-exceeded', path });
        this.quotaRefused();
      }
      throw e;
    }
  }

  private quotaRefused(): void {
    this.deps.metrics.count({ m: 'quota-refused', protocol: this.context.protocol });
  }
}

/** A mode as the chmod record gives it: its permission bits, four octal digits. */
function modeText(mode: number): string {
  return (mode & 0o777).toString(8).padStart(4, '0');
}

/** Work on a location: where it is blind, any failure is the one Unseen refusal. */
async function blindly<T>(loc: Location, work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (err) {
    throw loc.blind && !(err instanceof Unseen) ? new Unseen(err) : err;
  }
}

/**
 * Each location's directory is still where its virtual path says, which the
 * rights were checked on. It is pinned, so another request that moved it (or
 * a directory above it) since the lookup carried it along, and a rename may
 * move a directory only where the user's rights narrow: a file moved into it
 * there afterwards was then renamed out, linked, removed, changed or read
 * under the wider rights of where it had been (found by a review: an archived
 * file taken out of an /archive without delete, by a rename whose target's
 * lookup was slow; a file of an inbox without download read through links
 * whose lookup was slow). What is left, where this look comes before the
 * act, is the one trip between them, in which two requests would have to
 * land (the directory's move, then the file's). Where it comes after the
 * open or the look (downloads, listings, metadata, refusals: see told)
 * nothing is: a directory can never move to wider rights, so one where its
 * path says now had at least those rights at the open, and so had every
 * place a file in it came from.
 */
async function inPlace(...locs: Location[]): Promise<void> {
  const places = await Promise.all(locs.map((l) => l.whereNow()));
  if (places.some((place, i) => place !== parentOf((locs[i] as Location).virtualPath))) throw movedMeanwhile();
  for (const l of locs) placeLooked.add(l);
}

/**
 * The link `dst` just made names the file that was looked at and locked
 * (`locked`), or goes again: the link is made by the source's name, and a
 * rename between the look and the link put another file there, one written
 * in place under a lock nobody took here (found by a review: 5 races in 600
 * gave a drop box a second name of a file whose in-place handle then changed
 * it).
 */
async function linkedAsLocked(ledger: Ledger, dst: Location, locked: NodeStat): Promise<void> {
  const held = await dst.hold();
  if (held === null) return;
  try {
    const made = await held.stat();
    if (made.ino === locked.ino && made.dev === locked.dev) return;
    // The link was counted: it goes under the lock of the file the name leads to now, only while the name still
    // leads there and that file has another name (as this link's has: the source's). A file with no other name is
    // not this link's: another session renamed or uploaded it onto the name after the link, counting the link's
    // name off itself. Removed by its name without the lock (found by test/stress/one-account.ts: the usage
    // 66148 B above the disk, names equal), it was that file, its bytes left on the usage. A name that cannot go
    // so stays, counted where it is. A file written in place (its writer holds that lock) is never left with a
    // second name: that one goes by its name, once seen still to lead there.
    if (made.nlink > 1) {
      const dropped = await dropThrough(ledger, made, held, () => dst.stat(), () => dst.unlink(), 'yield').catch(async (err: unknown) => {
        if (err instanceof NameChanged) return null;
        const now = await dst.stat();
        if (now?.ino === made.ino && now.dev === made.dev) await dst.unlink().then(() => ledger.settle(0, 0, -1), () => undefined);
        return null;
      });
      if (dropped) ledger.freed(nodeKey(made), dropped.gone.bytes, dropped.gone.names);
    }
  } finally {
    await held.close();
  }
  throw new SluiceError('failure', 'File changed while it was linked; try again', 'another file took the source name between the look and the link');
}

/**
 * An atomic upload's staged file, made beside inPlace's look rather than
 * after it: one trip to the thread pool less per upload. The staged file has
 * a hidden name no client can name, and takes its own name only at the
 * commit, so making it is no act of the user's until then; the look still
 * comes before every act. Found out of place, it goes again.
 */
async function stagedInPlace(loc: Location, mode: number | null): Promise<StagedFile> {
  const [placed, staging] = await Promise.allSettled([inPlace(loc), loc.stage(mode)]);
  if (placed.status === 'rejected') {
    if (staging.status === 'fulfilled') {
      await staging.value.file.close().catch(() => undefined);
      await staging.value.discard().catch(() => undefined);
    }
    throw placed.reason;
  }
  if (staging.status === 'rejected') throw staging.reason;
  return staging.value;
}

/** Locations inPlace found in place (or, for a listing, whose directory was): told() need not look again. */
const placeLooked = new WeakSet<Location>();

/**
 * The answer of a look (stat, lstat, realpath, readlink, statvfs, and what
 * the front-ends build on them: SIZE, MDTM, MLST...), and the failure of
 * any request, is told only once the location's directory is found where
 * its path says (inPlace), after the look: the lookup may have taken long,
 * its directories pinned all the while, and one moved meanwhile into a drop
 * box, with a file of the box moved into it, gave that file's size and
 * times under the rights of its old path (found by a review); a refusal
 * (an upload's offset beyond the end, a name taken, a directory) tells of
 * the node as much. Looked at after, not alongside, the node: a directory
 * never moves to wider rights, so one in place then had at least those
 * rights when it was looked in, and so had every place its files came
 * from; nothing is left to race. One readlink a look, none where the act
 * looked already (downloads, listings, changes before they act); a change
 * that succeeds looked before it acted.
 */
async function told<T>(loc: Location, access: 'look' | 'change', act: (loc: Location) => Promise<T>): Promise<T> {
  let out: T;
  try {
    out = await act(loc);
  } catch (err) {
    if (!placeLooked.has(loc)) await inPlace(loc);
    throw err;
  }
  if (access === 'look' && !placeLooked.has(loc)) await inPlace(loc);
  return out;
}

/** Why an upload (or a truncation) may not write, as the client is told. */
function refusal(why: UploadRefusal): SluiceError {
  switch (why) {
    case 'is-a-directory':
    case 'already-exists':
    case 'not-found':
      return new SluiceError(why);
    case 'not-a-file':
      return new SluiceError('permission-denied');
    case 'unseen':
      return new Unseen();
    case 'linked-elsewhere':
      return new SluiceError('permission-denied', 'File has other links: upload it whole', 'in-place write to a hard-linked file');
    case 'beyond-end':
      return new SluiceError('invalid-path', 'Offset beyond end of file');
    case 'scan-needs-whole':
      return new SluiceError('unsupported', 'Uploads are scanned here: resuming or appending is not possible, send the whole file');
  }
}

/** The SHA-256 the server already holds for a file as it is (a whole upload's receipt), never read for it. */
function knownSha(receipts: UploadReceipts, st: NodeStat): { sha256?: string } {
  const sha256 = receipts.of(st);
  return sha256 === null ? {} : { sha256 };
}

/** What removing one name frees: a file's bytes go with its last link only. */
