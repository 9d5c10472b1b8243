import { accessSync, constants, existsSync, mkdirSync } from 'node:fs';
import { FileTooLarge, readRegularFileSync } from '../regular-file.js';
import { errnoWords } from '../errno-words.js';
import { hostname } from 'node:os';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import type { z } from 'zod';
import { ConfigError } from './errors.js';
import { NODE_ID, NODE_ID_RULE, configSchema, type Config } from './schema.js';

// Loaded when a file is read: the parser is some 70 modules, and every CLI
// command loads the configuration, most of them with no file at all.
const yamlModule = (): typeof import('yaml') => createRequire(import.meta.url)('yaml') as typeof import('yaml');

type Raw = Record<string, unknown>;

/**
 * Environment variable -> config key, and how to read its text. An empty
 * variable is no setting (the file's value stands), except for the keys
 * whose empty value means something (`''` SQLite, no admin API, the host
 * name, no proxies): `SLUICE_ADMIN_LISTEN=` turns off the file's admin API
 * for one command, as the README shows for lifting a ban on 127.0.0.1 (found
 * by a new user's try: the file's value stood and the CLI still went to the
 * API that refused it).
 */
const ENV: readonly [string, string[], 'string' | 'port' | 'workers' | 'list' | 'number', emptyIsValue?: true][] = [
  ['SLUICE_NODE_ID', ['nodeId'], 'string', true],
  ['SLUICE_DATA_DIR', ['dataDir'], 'string'],
  ['SLUICE_CERTS_DIR', ['certsDir'], 'string'],
  ['SLUICE_BIND', ['bind'], 'string'],
  ['SLUICE_LOG_LEVEL', ['logLevel'], 'string'],
  ['SLUICE_LOG_FORMAT', ['logFormat'], 'string'],
  ['SLUICE_FTP_PORT', ['ftp', 'port'], 'port'],
  ['SLUICE_FTPS_PORT', ['ftp', 'implicitTlsPort'], 'port'],
  ['SLUICE_SFTP_PORT', ['sftp', 'port'], 'port'],
  ['SLUICE_PASV_PORTS', ['ftp', 'passivePorts'], 'string'],
  ['SLUICE_FTP_TLS', ['ftp', 'tls'], 'string'],
  ['SLUICE_FTP_TLS_MAX_VERSION', ['ftp', 'tlsMaxVersion'], 'string'],
  ['SLUICE_WORKERS', ['workers'], 'workers'],
  ['SLUICE_STORE_URL', ['store'], 'string', true],
  ['SLUICE_STORE_HOLD_TIMEOUT', ['storeHoldTimeout'], 'number'],
  ['SLUICE_FTP_PROXY_PROTOCOL', ['ftp', 'proxyProtocol'], 'string'],
  ['SLUICE_SFTP_PROXY_PROTOCOL', ['sftp', 'proxyProtocol'], 'string'],
  ['SLUICE_TRUSTED_PROXIES', ['trustedProxies'], 'list', true],
  ['SLUICE_ADMIN_LISTEN', ['admin', 'listen'], 'string', true],
  ['SLUICE_SHUTDOWN_DRAIN_TIMEOUT', ['shutdown', 'drainTimeout'], 'number'],
];

/**
 * Defaults, then the YAML file (`--config`, SLUICE_CONFIG, or ./sluice.yaml
 * if present), then the environment. Relative directories are taken from the
 * working directory. The data and certificate directories are made (and
 * must be usable) unless `makeDirs` is false. Throws ConfigError.
 */
export function loadConfig(
  options: { file?: string | undefined; env?: NodeJS.ProcessEnv; cwd?: string; hostname?: string; makeDirs?: boolean } = {},
): Config & { source: string | null } {
  const env = options.env ?? process.env;
  const cwd = options.cwd ?? process.cwd();
  // Set empty, as every SLUICE_* variable, it leaves the default (README): not the directory '' resolves to.
  const explicit = options.file ?? (env.SLUICE_CONFIG || undefined);
  const file = explicit ?? (existsSync(resolve(cwd, 'sluice.yaml')) ? 'sluice.yaml' : undefined);
  const raw: Raw = file === undefined ? {} : readYaml(resolve(cwd, file));

  for (const [name, path, kind, emptyIsValue] of ENV) {
    const text = env[name];
    if (text === undefined || (text === '' && !emptyIsValue)) continue;
    // Node reads the environment as UTF-8, each byte that is not as U+FFFD: SLUICE_DATA_DIR=./donn\xe9es (Latin-1)
    // ran the server on a directory no one named, made for it, as the file's bytes did before they were refused.
    if (text.includes('\uFFFD')) throw new ConfigError(`${name}: not UTF-8 (it holds U+FFFD, what bytes that are not UTF-8 are read as): set it in UTF-8`);
    setPath(raw, path, envValue(name, text, kind));
  }

  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) throw new ConfigError(describe(parsed.error, ENV, env));
  const config = parsed.data;
  config.nodeId = nodeIdOf(config.nodeId, options.hostname ?? hostname());
  config.dataDir = resolve(cwd, config.dataDir);
  config.certsDir = resolve(cwd, config.certsDir);
  if (config.ftp.anonymous.root !== '') config.ftp.anonymous.root = resolve(cwd, config.ftp.anonymous.root);
  if (config.uploads.clamdSocket !== '') config.uploads.clamdSocket = resolve(cwd, config.uploads.clamdSocket);
  // A command that only reads (the audit readers) makes nothing: run in the wrong directory, it left data/ and certs/ there.
  if (options.makeDirs !== false) {
    ensureWritableDir('dataDir', config.dataDir);
    ensureWritableDir('certsDir', config.certsDir);
  }
  return { ...config, source: file === undefined ? null : resolve(cwd, file) };
}

/** The configured node id, or the host name when none is: a host name that is no valid id must be replaced by one. */
function nodeIdOf(configured: string, host: string): string {
  if (configured !== '') return configured;
  if (NODE_ID.test(host)) return host;
  throw new ConfigError(`config: nodeId: the host name ${JSON.stringify(host)} is no node id (${NODE_ID_RULE}): set nodeId or SLUICE_NODE_ID`);
}

/**
 * More than any configuration needs (the example, every key documented, is
 * some 20 KB): a 100 MB file held the CLI for 11 to 36 s and 1 to 3.4 GB of
 * memory in the YAML parser before any answer.
 */
export const MAX_CONFIG_BYTES = 1024 * 1024;

function readYaml(path: string): Raw {
  let bytes: Buffer;
  try {
    bytes = readRegularFileSync(path, MAX_CONFIG_BYTES);
  } catch (err) {
    if (err instanceof FileTooLarge) throw new ConfigError(`config file ${path}: ${err.size} bytes, more than any configuration needs (at most ${MAX_CONFIG_BYTES / 1024 / 1024} MiB)`);
    throw new ConfigError(`config file ${path}: cannot read it (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  let text: string;
  try {
    // Not toString(): it made each byte that is no UTF-8 a U+FFFD without a word, and a Latin-1
    // `dataDir: ./donn\xe9es` ran the server on a directory no one named, made for it.
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError(`config file ${path}: line ${firstNonUtf8Line(bytes)} is not UTF-8: save the file as UTF-8`);
  }
  let doc: unknown;
  try {
    // A tag is refused, not warned of on stderr and dropped (`logLevel: !custom info` ran as info), nor made a
    // value no key takes (`!!binary` gave a Buffer, refused with its hundred method names as unknown keys).
    const yaml = yamlModule();
    const parsed = yaml.parseDocument(text, { resolveKnownTags: false });
    const problem = parsed.errors[0] ?? parsed.warnings[0];
    // The parser's words for this one are a programmer's (use YAML.parseAllDocuments()).
    if (problem?.code === 'MULTIPLE_DOCS') throw new ConfigError(`config file ${path}: more than one YAML document (a --- after the first): a configuration is one`);
    if (problem) throw problem;
    // A key that is a list or a mapping (`? [a, b]`) was made text by toJS(), which said so on stderr in
    // five lines of its own advice to a programmer (mapAsMap) before our one (found by an operator-side review).
    const at = collectionKeyAt(yaml, parsed);
    if (at !== null) throw new ConfigError(`config file ${path}: line ${lineAt(text, at)}: a key is a list or a mapping; keys are names`);
    doc = parsed.toJS();
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    // The parser's first line ends with a colon that led to the excerpt it shows after it.
    throw new ConfigError(`config file ${path}: not valid YAML: ${(err as Error).message.split('\n')[0]?.replace(/:$/, '')}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config file ${path}: must be a mapping of keys`);
  return doc as Raw;
}

/** Where the first key of `doc` that is a list or a mapping (itself or by an alias) begins, as an offset in its text; null if none is. */
function collectionKeyAt(yaml: typeof import('yaml'), doc: import('yaml').Document): number | null {
  let at: number | null = null;
  yaml.visit(doc, {
    Pair(_, pair) {
      const key = yaml.isAlias(pair.key) ? pair.key.resolve(doc) : pair.key;
      if (!yaml.isCollection(key)) return undefined;
      at = (yaml.isNode(pair.key) ? pair.key.range?.[0] : undefined) ?? 0;
      return yaml.visit.BREAK;
    },
  });
  return at;
}

/** Pure: the number of the line of `text` that holds offset `at`. */
function lineAt(text: string, at: number): number {
  return text.slice(0, at).split('\n').length;
}

/** Pure: the number of the first line of `bytes` that is not UTF-8 (a newline byte is never part of a longer character). */
function firstNonUtf8Line(bytes: Buffer): number {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let line = 1;
  for (let start = 0; start <= bytes.length; line++) {
    const end = bytes.indexOf(0x0a, start);
    try {
      decoder.decode(bytes.subarray(start, end === -1 ? bytes.length : end));
    } catch {
      return line;
    }
    if (end === -1) break;
    start = end + 1;
  }
  return line;
}

/** `5`, ` 5 `, `-1`, `0.5`, `1e3`: a decimal number, spaces around it allowed. */
const DECIMAL = /^\s*[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?\s*$/i;

function envValue(name: string, text: string, kind: (typeof ENV)[number][2]): unknown {
  if (kind === 'port') return parsePort(name, text);
  // A decimal number, whatever its sign, is read as one, for the schema to say what range it must be in
  // (-1 was left as text: "expected number, received string"); anything else stays text, for the schema to refuse.
  // Decimal only, as the ports: Number() read SLUICE_WORKERS=0x10 as 16 and 0b11 as 3, without a word.
  if ((kind === 'workers' || kind === 'number') && DECIMAL.test(text)) return Number(text);
  if (kind === 'list') return text === '' ? [] : text.split(',').map((item) => item.trim());
  return text;
}

function parsePort(name: string, text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535) {
    throw new ConfigError(`${name}: "${text}" is not a port number (0-65535; 0 disables)`);
  }
  return Number(text);
}

function setPath(target: Raw, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    const next = node[key];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) node[key] = {};
    node = node[key] as Raw;
  }
  node[path[path.length - 1] as string] = value;
}

/** Keys that became one setting shared by every front-end: the old name points to the new. */
const MOVED: Readonly<Record<string, string>> = {
  'sftp.maxAuthTries': 'auth.maxTries',
  'sftp.loginGraceTime': 'limits.loginTimeout',
};

/** The first problem as one line, naming the environment variable when that is where the value came from. */
function describe(error: z.ZodError, envMap: typeof ENV, env: NodeJS.ProcessEnv): string {
  const issue = error.issues[0];
  if (!issue) return 'config: invalid';
  const key = issue.path.join('.');
  if (issue.code === 'unrecognized_keys') {
    const prefix = key === '' ? '' : key + '.';
    const old = issue.keys.map((k) => prefix + k).find((k) => Object.hasOwn(MOVED, k));
    if (old) return `config: "${old}" is now "${MOVED[old]}" (one setting for every protocol)`;
    return `config: unknown key "${prefix}${issue.keys.join(`", "${prefix}`)}"`;
  }
  // A list's issue names an item (trustedProxies.1): it still came from the list's variable.
  const fromEnv = envMap.find(([name, path]) => (key === path.join('.') || key.startsWith(`${path.join('.')}.`)) && env[name]);
  return `config: ${key}${fromEnv ? ` (from ${fromEnv[0]})` : ''}: ${issue.message}`;
}

/** Make `dir` (0700) if it is not there and check it is usable; the first directory made, if any (mkdirSync's answer). */
export function ensureWritableDir(key: string, dir: string): string | undefined {
  try {
    const made = mkdirSync(dir, { recursive: true, mode: 0o700 });
    accessSync(dir, constants.R_OK | constants.W_OK | constants.X_OK);
    return made;
  } catch (err) {
    throw new ConfigError(`config: ${key}: ${dir} is not a usable directory (${errnoWords(err)})`);
  }
}
