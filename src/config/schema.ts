import { isIP } from 'node:net';
import type * as Zod from 'zod';
import { parseCidr } from '../auth/ip-rules.js';
import { bytesOf } from './size.js';
import { HOOK_EVENTS, HOOK_FIELDS, unknownPlaceholders } from '../hooks/events.js';
import { placeholderInCode, placeholderInText } from '../hooks/inline-code.js';
import { MAX_PACKET } from '../sftp/codec.js';
import { adminEndpoint } from '../admin/endpoint.js';
import * as z from './zod.js';

/**
 * Text the system takes as a path or an argument: no NUL byte, which no path
 * or argument can hold. Taken, `uploads.quarantineDir: "q\0"` ran a server
 * whose every scan failed, and `audit.file` stopped the start with Node's
 * "The argument 'path' must be ... without null bytes".
 */
const text = () => z.string().refine((s) => !s.includes('\0'), 'holds a NUL byte, which no path or argument can');

/**
 * The longest unix socket path Node binds as given on Linux (sun_path's 108
 * bytes): a longer one was cut to its first 108 without a word, the admin API
 * listened there, unprotected until a chmod of the path as given failed, and
 * serve neither started nor ended, SIGTERM included.
 */
const MAX_SOCKET_PATH = 108;

/** A port to listen on; 0 switches the listener off. */
const port = z.number().int().min(0).max(65535);
/**
 * Pure: whether the port after the last colon of `HOST:PORT` is one to bind
 * or call, 1-65535 (0 would be any port: nobody could find the listener).
 */
function portInRange(hostPort: string): boolean {
  const n = Number(hostPort.slice(hostPort.lastIndexOf(':') + 1));
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}
const PORT_RANGE = 'the port must be 1-65535';
/** Pure: the explicit port of a URL's authority (`scheme://user:pass@host:PORT/...`) when it is outside 1-65535; null otherwise. */
function badUrlPort(url: string): string | null {
  const authority = url.replace(/^[A-Za-z][A-Za-z0-9+.-]*:\/\//, '').split(/[/?#]/)[0] ?? '';
  const m = /:(\d+)$/.exec(authority.slice(authority.lastIndexOf('@') + 1));
  return m && !portInRange(m[0]) ? (m[1] as string) : null;
}
const portRange = z
  .string()
  .regex(/^\d{1,5}-\d{1,5}$/, 'must look like 50000-50100')
  .refine((s) => {
    const [lo = 0, hi = 0] = s.split('-').map(Number);
    return lo >= 1024 && hi <= 65535 && lo <= hi;
  }, 'must be LOW-HIGH with 1024 <= LOW <= HIGH <= 65535');
/** A byte count, or a string like `100M` or `1GiB`. */
const size = z.union([z.number(), z.string()]).transform((value, ctx) => {
  const n = typeof value === 'number' ? value : bytesOf(value);
  if (!Number.isSafeInteger(n) || n < 0) {
    ctx.addIssue({ code: 'custom', message: `"${value}" is not a size (e.g. 1048576, 100M, 1G)` });
  }
  return n;
});

/** An address or CIDR block, in canonical form. */
const cidr = z.string().transform((text, ctx) => {
  try {
    return parseCidr(text);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

/** What a node id may be: it names the node's audit chain in every record and on the command line. */
export const NODE_ID = /^[A-Za-z0-9._-]{1,64}$/;
export const NODE_ID_RULE = '1 to 64 of A-Z a-z 0-9 . _ -';

/**
 * What ssh2 (1.17, on Node 20's OpenSSL) negotiates: its SUPPORTED_* lists in
 * lib/protocol/constants.js, kept here so that reading the configuration does
 * not load ssh2 (about 130 ms for every CLI command);
 * test/config-limits.test.ts asserts they equal ssh2's. A name it does not
 * know made `serve` die with an "Unsupported algorithm" stack.
 */
export const SSH_ALGORITHMS = {
  kex: [
    'curve25519-sha256@libssh.org', 'curve25519-sha256', 'ecdh-sha2-nistp256', 'ecdh-sha2-nistp384', 'ecdh-sha2-nistp521',
    'diffie-hellman-group-exchange-sha256', 'diffie-hellman-group14-sha256', 'diffie-hellman-group15-sha512',
    'diffie-hellman-group16-sha512', 'diffie-hellman-group17-sha512', 'diffie-hellman-group18-sha512',
    'diffie-hellman-group-exchange-sha1', 'diffie-hellman-group14-sha1', 'diffie-hellman-group1-sha1',
  ],
  cipher: [
    'aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'aes128-ctr', 'aes192-ctr', 'chacha20-poly1305@openssh.com', 'aes256-ctr',
    'aes256-cbc', 'aes192-cbc', 'aes128-cbc', '3des-cbc', 'aes128-gcm', 'aes256-gcm',
  ],
  hmac: [
    'hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com', 'hmac-sha1-etm@openssh.com', 'hmac-sha2-256', 'hmac-sha2-512',
    'hmac-sha1', 'hmac-md5', 'hmac-sha2-256-96', 'hmac-sha2-512-96', 'hmac-ripemd160', 'hmac-sha1-96', 'hmac-md5-96',
  ],
  /**
   * Not all ssh2 knows: only what sluice's host keys (ed25519 and RSA,
   * certs/names.ts) can sign; with only ECDSA or DSA listed it had no host
   * key to offer and every key exchange failed.
   */
  serverHostKey: ['ssh-ed25519', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
} as const satisfies Record<string, readonly string[]>;

/**
 * Key exchanges ssh2 can do as the server: its Diffie-Hellman group
 * exchanges are a client's only ("Group exchange not implemented for
 * server", lib/protocol/kex.js). Offered (they were in the defaults and the
 * example configuration), a client that preferred one failed every
 * handshake: OpenSSH told to, and old JSch, whose list has group exchange
 * before group14-sha256 and after the NIST curves sluice leaves out. A
 * configuration copied from the old example names one: its refusal says why.
 */
const CLIENT_ONLY_KEX = 'diffie-hellman-group-exchange-';
const SERVER_KEX = SSH_ALGORITHMS.kex.filter((name) => !name.startsWith(CLIENT_ONLY_KEX));

function refusedAlgorithm(name: string, what: string, known: readonly string[]): string {
  if (name.startsWith(CLIENT_ONLY_KEX) && (SSH_ALGORITHMS.kex as readonly string[]).includes(name)) {
    return `"${name}": ssh2 can do it only as a client, so no client that chose it could connect: remove it from the list`;
  }
  return `"${name}" is no ${what} (one of: ${known.join(', ')})`;
}

/** A list of names from `known`, most preferred first; `what`: how the refusal calls a name not in it. */
function algorithmList(what: string, known: readonly string[], defaults: string[]) {
  return z
    .array(z.string().refine((name) => known.includes(name), { error: (issue) => refusedAlgorithm(String(issue.input), what, known) }))
    .min(1)
    .default(defaults);
}

/** Whether connections carry a PROXY protocol header (see src/security/proxy-header.ts). */
const proxyProtocol = z.enum(['off', 'v1', 'v2', 'optional']).default('off');

/** Addresses that listen on every address of their family, and of both for `::`. */
const WILDCARD = new Set(['0.0.0.0', '::']);

/** Every key and its default, in one place; deploy/sluice.example.yaml documents them. */
export const configSchema = z
  .object({
    /**
     * This node's name in every audit record, so that the trails of several
     * nodes can be told apart and merged; '' takes the host name (load.ts).
     */
    nodeId: z
      .string()
      .refine((s) => s === '' || NODE_ID.test(s), `must be ${NODE_ID_RULE}`)
      .default(''),
    dataDir: text().min(1).default('./data'),
    certsDir: text().min(1).default('./certs'),
    // An address, not a host name: a name failed the start with getaddrinfo's stack (found by a review).
    bind: z
      .string()
      .refine((s) => isIP(s) !== 0, 'must be an IP address to listen on (0.0.0.0 or :: for every one, 127.0.0.1 for this host only)')
      .default('0.0.0.0'),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Console log: 'auto' human lines on a terminal, JSON lines otherwise; the audit file is JSON whatever this says. */
    logFormat: z.enum(['auto', 'json', 'pretty']).default('auto'),
    /**
     * Where users, keys, bans and usage live: '' SQLite in dataDir/sluice.db;
     * `postgres://USER:PASSWORD@HOST:PORT/DB` PostgreSQL, shared by every node
     * of a cluster (see README "Running several nodes").
     */
    store: z
      .string()
      .refine((s) => s === '' || /^postgres(ql)?:\/\/./.test(s), "must be '' (SQLite in dataDir) or a postgres:// URL")
      // The URL holds a password: the message names the port only.
      .refine((s) => badUrlPort(s) === null, { error: (issue) => `the port in the URL (${badUrlPort(String(issue.input))}) must be 1-65535` })
      .default(''),
    /**
     * PostgreSQL store: seconds a connection of sluice's may sit in an open
     * transaction before PostgreSQL ends it, and the locks it took go with
     * it (a node frozen in one); a write waits for a lock 5 s longer, any
     * statement 15 s longer (store/postgres/connection.ts).
     */
    storeHoldTimeout: z.number().int().min(1).max(3600).default(15),
    /** Processes serving connections: 'auto' one per core; 1 serves in the one process, without a primary. */
    workers: z
      .union([z.literal('auto'), z.number().int().min(1).max(256)], { error: "must be 'auto' (one per core) or a whole number from 1 to 256" })
      .default('auto'),
    /**
     * Seconds a worker's event loop may leave the primary's pings unanswered
     * (its thread pool: four times as long) before it is ended and another
     * started, its transfers recorded aborted; 0: never (cluster/watchdog.ts).
     */
    workerHangTimeout: z.number().int().min(0).max(3600).default(30),
    /** Load balancers whose PROXY headers are believed; nobody else may send one. */
    trustedProxies: z.array(cidr).default([]),
    ftp: z
      .object({
        port: port.default(2121),
        implicitTlsPort: port.default(2990),
        tls: z.enum(['required', 'optional']).default('required'),
        passivePorts: portRange.default('50000-50100'),
        /** Address announced in PASV replies (NAT); empty: the address the client connected to. */
        passiveAddress: z.union([z.ipv4(), z.literal('')]).default(''),
        /** Passive ports one client address (an IPv6 network: limits.ipv6Prefix), and one user, may hold open at once (the rest of the range stays for others). */
        maxPassivePortsPerIp: z.number().int().min(1).max(65535).default(10),
        maxPassivePortsPerUser: z.number().int().min(1).max(65535).default(10),
        /** Allow PORT/EPRT (active mode); always limited to the client's own address and ports >= 1024. */
        activeMode: z.boolean().default(true),
        /** Data connections must resume the control connection's TLS session (vsftpd's require_ssl_reuse). */
        requireTlsSessionReuse: z.boolean().default(true),
        /**
         * The newest TLS version offered on the control and data connections (vsftpd's ssl_tlsv1_3, ProFTPD's
         * TLSProtocol). TLSv1.2 for clients that resume a TLS 1.3 session once and get no fresh ticket on an
         * upload (PHP's ftp extension in passive mode), or none at all (Perl's Net::FTP, commons-net's reuse subclass).
         */
        tlsMaxVersion: z.enum(['TLSv1.3', 'TLSv1.2']).default('TLSv1.3'),
        /** An FTPS upload must end with the client's TLS close_notify, or it is aborted (vsftpd's strict_ssl_read_eof). */
        requireTlsCloseNotify: z.boolean().default(true),
        /** Seconds without a command before the control connection is closed. */
        idleTimeout: z.number().int().min(10).max(86400).default(300),
        /** Seconds to wait for a data connection. */
        dataTimeout: z.number().int().min(1).max(600).default(30),
        /** PROXY header from trustedProxies on control and passive data connections. */
        proxyProtocol,
        /** Logins as `anonymous` or `ftp` with any password, read-only in `root` (see users/anonymous.ts). */
        anonymous: z
          .object({
            enabled: z.boolean().default(false),
            /** The anonymous files: a directory on the host, relative to the working directory. */
            root: text().default(''),
            /** A virtual directory under root where anonymous users may only upload ('' for none). */
            incoming: z.union([z.literal(''), z.string().regex(/^\/[^\0]*[^/]$/, 'an absolute virtual path such as /incoming')]).default(''),
            /** Anonymous sessions at once, all addresses together. */
            maxSessions: z.number().int().min(1).max(100000).default(10),
            /** Of those, from one address (limits.ipv6Prefix applies; per node): one client cannot take them all. */
            maxSessionsPerIp: z.number().int().min(1).max(100000).default(3),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    sftp: z
      .object({
        port: port.default(2222),
        /** PROXY header from trustedProxies. */
        proxyProtocol,
        /** Seconds without SFTP traffic before the connection is closed. */
        idleTimeout: z.number().int().min(10).max(86400).default(300),
        /** Open files and directories per SFTP session. */
        maxHandles: z.number().int().min(4).max(4096).default(256),
        /** Open files and directories per user, all their SFTP sessions and connections together. */
        maxHandlesPerUser: z.number().int().min(4).max(65536).default(256),
        /** Session channels open at once on one SSH connection (OpenSSH's MaxSessions). */
        maxChannelsPerConnection: z.number().int().min(1).max(100).default(10),
        /** Legacy SCP (`scp -O`, `pscp -scp`) on exec channels, for users allowed SFTP. */
        scp: z.boolean().default(true),
        /** The checksum commands (md5sum, sha1sum, sha256sum, sha384sum, sha512sum) on exec channels, as rclone runs them to compare files. */
        hashCommands: z.boolean().default(true),
        /** Bytes one connection may hold for requests in progress and replies its client has not read; its SSH windows at most as much again, plus the share of each channel opened after one borrowed the rest. */
        maxQueuedBytes: size
          .refine((n) => n >= MAX_PACKET, `must be at least ${MAX_PACKET / 1024}K (one SFTP message; smaller, no request could ever be taken)`)
          .default(8388608),
        /**
         * Algorithm lists, most preferred first; the defaults exclude SHA-1, CBC, the NIST
         * curves for key exchange and encrypt-and-MAC MACs, so that `ssh-audit` grades them clean.
         */
        algorithms: z
          .object({
            kex: algorithmList('key exchange ssh2 supports as a server', SERVER_KEX, ['curve25519-sha256', 'curve25519-sha256@libssh.org', 'diffie-hellman-group14-sha256']),
            cipher: algorithmList('cipher ssh2 supports', SSH_ALGORITHMS.cipher, ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com', 'chacha20-poly1305@openssh.com', 'aes128-ctr', 'aes192-ctr', 'aes256-ctr']),
            hmac: algorithmList('MAC ssh2 supports', SSH_ALGORITHMS.hmac, ['hmac-sha2-256-etm@openssh.com', 'hmac-sha2-512-etm@openssh.com']),
            /** Host key algorithms: ssh2 knows more, sluice has ed25519 and RSA keys (ssh-rsa is SHA-1, offered only if listed). */
            serverHostKey: algorithmList("host key algorithm for sluice's ed25519 and RSA keys", SSH_ALGORITHMS.serverHostKey, ['ssh-ed25519', 'rsa-sha2-512', 'rsa-sha2-256']),
            /** Signatures accepted for public-key login (OpenSSH's PubkeyAcceptedAlgorithms); SHA-1 `ssh-rsa` only if listed. */
            userAuthSignatures: z
              .array(z.enum(['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa']))
              .min(1)
              .default(['ssh-ed25519', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521', 'rsa-sha2-512', 'rsa-sha2-256']),
          })
          .strict()
          .prefault({}),
      })
      .strict()
      .prefault({}),
    limits: z
      .object({
        /** Connections at once, all protocols; more get 421 (FTP) or are closed (SFTP). */
        maxSessions: z.number().int().min(1).max(100000).default(500),
        maxSessionsPerIp: z.number().int().min(1).max(100000).default(20),
        /**
         * IPv6 clients are one source per network of this many bits: for
         * maxSessionsPerIp, the defender's counts and its bans. A customer's
         * line holds a whole /64 and can take a new address for every try;
         * 128 counts each address alone.
         */
        ipv6Prefix: z.number().int().min(32).max(128).default(64),
        /** Logged-in sessions of one user at once, FTP and SFTP together; 0: no limit. */
        maxSessionsPerUser: z.number().int().min(0).max(100000).default(10),
        /**
         * Seconds from accept to a successful login, on every port (SSH banner
         * and authentication, FTP greeting to PASS); commands before login do not extend it.
         * Also the most an SSH key re-exchange may take, from the client's answer to the server's KEXINIT.
         */
        loginTimeout: z.number().int().min(1).max(600).default(30),
        /** Bytes per second each connection may upload / download, for users without their own limit; 0: none. */
        rateUp: size.default(0),
        rateDown: size.default(0),
        /** Bytes per second one connection may have read for checksums (FTP HASH, SFTP check-file) of files not just uploaded; 0: none, like rateUp/rateDown. */
        hashRate: size.default(134217728),
      })
      .strict()
      .prefault({}),
    uploads: z
      .object({
        /** Fresh uploads are written to a hidden temporary name and renamed when complete. */
        atomic: z.boolean().default(true),
        /** Quarantine mode for users without their own setting: each complete upload is scanned before it takes its name. */
        scan: z.enum(['off', 'clamd']).default('off'),
        /** clamd's unix socket, or its address as HOST:PORT (one of them with scan: clamd). */
        clamdSocket: text().default(''),
        clamdHost: z
          .string()
          .regex(/^[^:\s]+:\d{1,5}$/, 'HOST:PORT')
          .refine(portInRange, { error: (issue) => `"${String(issue.input)}": ${PORT_RANGE}` })
          .or(z.literal(''))
          .default(''),
        /** Seconds an upload waits for the verdict (the scanner down included); then it is refused. */
        scanTimeout: z.number().int().min(1).max(3600).default(60),
        /** Where infected uploads are kept, outside every home; relative to dataDir. */
        quarantineDir: text().min(1).default('quarantine'),
        /** Bytes of infected uploads the quarantine keeps at most, all users together; past it one is refused as ever but not kept. 0: keep none. */
        quarantineMaxBytes: size.default(1073741824),
        /** The same for each user's share of the quarantine (anonymous FTP included). */
        quarantineUserMaxBytes: size.default(104857600),
      })
      .strict()
      .prefault({}),
    hooks: z
      .object({
        /** Hooks running at once, all actions together. */
        concurrency: z.number().int().min(1).max(64).default(4),
        actions: z
          .array(
            z
              .object({
                name: z.string().min(1).max(64),
                on: z.array(z.enum(HOOK_EVENTS)).min(1),
                /** argv, each `{field}` replaced (see hooks/events.ts); never run through a shell. */
                command: z.array(text().min(1)).min(1).optional(),
                /**
                 * Names of the server's environment variables the command is
                 * given; otherwise it has only PATH, HOME, LANG, LC_ALL and TZ
                 * (hooks/runner.ts BASE_ENV), none of the server's secrets.
                 */
                env: z
                  .array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name'))
                  .max(64)
                  .default([]),
                url: z
                  .url({ protocol: /^https?$/ })
                  .refine((u) => badUrlPort(u) === null, PORT_RANGE)
                  .optional(),
                secret: z.string().default(''),
                timeout: z.number().int().min(1).max(3600).default(30),
                retries: z.number().int().min(0).max(10).default(3),
              })
              .strict()
              .superRefine((a, ctx) => {
                if (!a.command && !a.url) ctx.addIssue({ code: 'custom', message: 'a hook needs a command or a url' });
                if (!a.command && a.env.length > 0) ctx.addIssue({ code: 'custom', path: ['env'], message: 'env is given to a command; this hook has none' });
                // The line names the hook, not only its place in the list (README: "a line naming the hook"; found by an operator's walk).
                const hook = `hook ${JSON.stringify(a.name)}: `;
                const unknown = unknownPlaceholders(a.command ?? []);
                if (unknown.length > 0) {
                  ctx.addIssue({ code: 'custom', path: ['command'], message: `${hook}unknown placeholder {${unknown[0]}} (one of: ${HOOK_FIELDS.join(', ')})` });
                }
                const code = placeholderInCode(a.command ?? []);
                const text = code === null ? placeholderInText(a.command ?? []) : null;
                if (code !== null) {
                  ctx.addIssue({
                    code: 'custom',
                    path: ['command'],
                    message: `${hook}a {field} inside code a shell, an interpreter, a tool such as awk or sed, or a remote host runs (${yamlQuoted(code)}) would run what a client sends: pass it to a script as an argument of its own, as in ['sh', '-c', 'run.sh "$1"', 'sh', '{path}']`,
                  });
                } else if (text !== null) {
                  ctx.addIssue({
                    code: 'custom',
                    path: ['command'],
                    message: `${hook}a {field} with other text in its argument (${yamlQuoted(text)}) makes a string some program may parse, and run what a client sends: give each {field} as an argument of its own ('{path}') or as an option's value ('--path={path}'), not in the program's name`,
                  });
                }
              }),
          )
          .default([])
          // A hook's name is how the audit trail and the log tell which one failed.
          .superRefine((actions, ctx) => {
            const seen = new Set<string>();
            actions.forEach((a, i) => {
              if (seen.has(a.name)) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `"${a.name}" names another hook already: each needs a name of its own` });
              seen.add(a.name);
            });
          }),
      })
      .strict()
      .prefault({}),
    audit: z
      .object({
        /**
         * The audit trail and the hashing of transfers. Off only to measure
         * what it costs: without it nothing proves who transferred what.
         */
        enabled: z.boolean().default(true),
        /** The hash-chained JSON lines; relative to dataDir. */
        file: text().min(1).default('audit.log'),
        /** Start a new file (audit.log -> audit.log.1, ...) at this size; 0: only on SIGHUP after a move. */
        rotateSize: size.default(104857600),
        /**
         * Retention of rotated files (audit.log.N, .gz too), applied at start
         * and after each rotation. A file is deleted only once its last line
         * is seen to chain into the next file, and each deletion is recorded.
         * 30 x rotateSize bounds the disk (3 GiB by default). Whoever can
         * fill the log can also push old files out: keep the trail for
         * longer, and safe from that, by shipping it off the machine.
         */
        keep: z
          .object({
            /**
             * Rotated files kept, newest first; 0: no limit by count. Unset: 30 when
             * sluice rotates, none when logrotate does (rotateSize 0): its `rotate N`
             * is the limit then, and this one had deleted the weeks its config keeps.
             */
            count: z.number().int().min(0).optional(),
            /** Rotated files last written more than this many days ago are deleted; 0: no limit by age. */
            days: z.number().int().min(0).default(0),
          })
          .strict()
          .prefault({}),
        /** A second output in wu-ftpd xferlog format, relative to dataDir; empty: none. */
        xferlog: text().default(''),
        /** After a resumed upload, hash the whole file too (reads it once more). */
        hashResumedUploads: z.boolean().default(false),
      })
      .strict()
      .transform((audit) => ({ ...audit, keep: { ...audit.keep, count: audit.keep.count ?? (audit.rotateSize === 0 ? 0 : 30) } }))
      .prefault({}),
    auth: z
      .object({
        /** argon2 verifications at once; the rest queue (they share the thread pool with file I/O). */
        maxConcurrentHashes: z.number().int().min(1).max(64).default(2),
        /**
         * Seconds a password that verified is answered without argon2 on its
         * next logins (an HMAC under a per-process key, never the password:
         * src/auth/verified-passwords.ts); 0: every login runs argon2.
         */
        passwordCache: z.number().int().min(0).max(86400).default(300),
        /** Failed logins on one connection before it is closed, every protocol. */
        maxTries: z.number().int().min(1).max(100).default(3),
        /** Seconds each failed login waits before it is answered. */
        failureDelay: z.number().min(0).max(30).default(1),
      })
      .strict()
      .prefault({}),
    admin: z
      .object({
        /**
         * The admin HTTP API: '' off; `ADDRESS:PORT` (e.g. 127.0.0.1:8022), or a
         * unix socket path (anything with a / in it), created mode 0600.
         */
        listen: text()
          .refine((s) => s === '' || s.includes('/') || /^(\[[0-9A-Fa-f:.]+\]|[^:\s]+):\d{1,5}$/.test(s), 'must be ADDRESS:PORT (e.g. 127.0.0.1:8022) or a unix socket path')
          .refine((s) => s === '' || s.includes('/') || portInRange(s), { error: (issue) => `"${String(issue.input)}": ${PORT_RANGE}` })
          .refine((s) => !s.includes('/') || Buffer.byteLength(s) <= MAX_SOCKET_PATH, {
            error: (issue) => `a unix socket path is at most ${MAX_SOCKET_PATH} bytes, this one is ${Buffer.byteLength(String(issue.input))}: choose a shorter one`,
          })
          .default(''),
        /** HTTPS with the server's TLS certificate (certsDir/tls-cert.pem); TCP only. */
        tls: z.boolean().default(false),
        /** /metrics without a token (/healthz and /readyz never need one). */
        metricsPublic: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    shutdown: z
      .object({
        /** Seconds SIGTERM lets transfers in progress finish before the rest are ended (aborted); idle sessions end at once. */
        drainTimeout: z.number().min(0).max(86400).default(30),
      })
      .strict()
      .prefault({}),
    defender: z
      .object({
        /** Ban addresses that fail too often; bans added with `sluice ban add` apply even when off. */
        enabled: z.boolean().default(true),
        /** Failures (failed logins, protocol abuse, login timeouts) from one address that earn a ban... */
        threshold: z.number().int().min(1).max(1000).default(5),
        /** ...within this many seconds. */
        window: z.number().int().min(1).max(86400).default(600),
        /** Seconds of the first ban; each further ban of the address doubles it, up to maxBanTime. */
        banTime: z.number().int().min(1).max(31536000).default(900),
        /** The longest ban; an address whose last ban ended longer ago than this starts over at banTime. */
        maxBanTime: z.number().int().min(1).max(31536000).default(86400),
        /** Addresses or CIDR blocks never banned (monitoring, your own offices). */
        allowList: z.array(cidr).default([]),
      })
      .strict()
      .prefault({}),
  })
  .strict()
  .superRefine((config, ctx) => {
    if (config.admin.tls && config.admin.listen.includes('/')) {
      ctx.addIssue({ code: 'custom', path: ['admin', 'tls'], message: 'a unix socket takes no TLS: use ADDRESS:PORT in admin.listen, or tls: false' });
    }
    const { uploads } = config;
    if (uploads.scan === 'clamd' && (uploads.clamdSocket === '') === (uploads.clamdHost === '')) {
      // Both given read as neither before (found by an operator's walk): say which mistake it is.
      const message = uploads.clamdSocket === '' ? 'scan: clamd needs clamdSocket or clamdHost' : 'give clamdSocket or clamdHost, not both: scan: clamd talks to one clamd';
      ctx.addIssue({ code: 'custom', path: ['uploads', 'clamdSocket'], message });
    }
    if (uploads.scan !== 'off' && !uploads.atomic) {
      ctx.addIssue({ code: 'custom', path: ['uploads', 'atomic'], message: 'scanned uploads must be atomic (a file written in place would be there unscanned)' });
    }
    if (config.ftp.anonymous.enabled && config.ftp.anonymous.root === '') {
      ctx.addIssue({ code: 'custom', path: ['ftp', 'anonymous', 'root'], message: 'anonymous FTP needs a root directory' });
    }
    // The front-ends bind one address: two on one port would stop serve with EADDRINUSE.
    const taken = new Map<number, string>();
    for (const [front, name] of [['ftp', 'port'], ['ftp', 'implicitTlsPort'], ['sftp', 'port']] as const) {
      const value = front === 'ftp' ? config.ftp[name] : config.sftp.port;
      if (value === 0) continue;
      const other = taken.get(value);
      if (other) ctx.addIssue({ code: 'custom', path: [front, name], message: `port ${value} is ${other}'s too` });
      taken.set(value, `${front}.${name}`);
    }
    // The admin API on a front-end's port stopped serve with "the port is in use (another process listens there...)":
    // no other process, its own API (found by a hostile-input review). Refused when the two addresses overlap.
    const admin = config.admin.listen === '' ? null : adminEndpoint(config.admin.listen);
    const clash = admin && 'port' in admin ? taken.get(admin.port) : undefined;
    if (admin && 'port' in admin && clash && (WILDCARD.has(admin.host) || WILDCARD.has(config.bind) || admin.host === config.bind)) {
      ctx.addIssue({ code: 'custom', path: ['admin', 'listen'], message: `port ${admin.port} is ${clash}'s too` });
    }
    // A passive listener binds the address a client reached the control connection on, every front-end's too.
    const ftpOn = config.ftp.port !== 0 || config.ftp.implicitTlsPort !== 0;
    const [lo = 0, hi = 0] = config.ftp.passivePorts.split('-').map(Number);
    const inRange = [...taken].find(([value]) => value >= lo && value <= hi);
    if (ftpOn && inRange) {
      ctx.addIssue({ code: 'custom', path: ['ftp', 'passivePorts'], message: `${config.ftp.passivePorts} holds ${inRange[1]} (${inRange[0]}): a front-end's port is no passive port` });
    }
    // A first ban longer than the longest was cut to the longest without a word: what was asked is not what runs.
    const { banTime, maxBanTime } = config.defender;
    if (banTime > maxBanTime) {
      ctx.addIssue({ code: 'custom', path: ['defender', 'banTime'], message: `${banTime} s is longer than defender.maxBanTime (${maxBanTime} s), the longest ban: raise maxBanTime too` });
    }
    // v1/v2 with nobody trusted would refuse every connection: surely a mistake, said at start rather than at each accept.
    for (const front of ['ftp', 'sftp'] as const) {
      const mode = config[front].proxyProtocol;
      if ((mode === 'v1' || mode === 'v2') && config.trustedProxies.length === 0) {
        ctx.addIssue({ code: 'custom', path: [front, 'proxyProtocol'], message: `"${mode}" needs trustedProxies (the balancers' addresses)` });
      }
    }
  });

export type Config = Zod.z.infer<typeof configSchema>;

/**
 * A configured string quoted as the YAML it may be written in ('it''s'), for a message: the CLI escapes each
 * line it prints once (complain), and text JSON.stringify had escaped already came out escaped twice, a
 * command's quotes as \\" (found by a review).
 */
function yamlQuoted(text: string): string {
  return `'${text.replaceAll("'", "''")}'`;
}
