import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { readRegularFile } from '../regular-file.js';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StartRefused } from '../listening.js';
import { ssh2Library } from '../ssh2.js';
import { HOST_KEYS, HOST_KEY_TYPES, TLS_CERT, TLS_KEY } from './names.js';
import { selfSignedCertificate } from './self-signed.js';


/**
 * Whether the name is there, a link included, wherever it leads: a link to a
 * file that is gone is the operator's to mend, and reading it says why. Taken
 * as missing (access follows links), a new key was written through it and
 * failed, after the public half beside it was deleted (found by a review).
 */
const exists = (p: string) => fsp.lstat(p).then(() => true, () => false);

/**
 * Put `data` in place as `path`, whole or not at all (written beside it, then
 * linked or renamed): 0600 for secrets, 0644 for public parts. `replace`
 * false never replaces a file: false when one is there, as when another
 * `init` or first start made it first (found by a walk: the second of two at
 * once failed with EEXIST, after deleting the first's new public key).
 */
async function publish(path: string, data: string, secret: boolean, replace: boolean): Promise<boolean> {
  const staged = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.new`;
  try {
    // Inside the try: a write that fails (a full disk) leaves no part of a key behind.
    await fsp.writeFile(staged, data, { mode: secret ? 0o600 : 0o644, flag: 'wx' });
    if (replace) await fsp.rename(staged, path);
    else await fsp.link(staged, path);
    return true;
  } catch (err) {
    if (!replace && (err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await fsp.rm(staged, { force: true });
  }
}

/** How long a TLS pair half there is waited for its other half before it is taken for an operator's. */
const HALF_PAIR_WAIT_MS = 1000;

/** Create whatever is missing in `dir`; returns the names created. */
export async function ensureKeys(dir: string): Promise<string[]> {
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const created: string[] = [];
  const pairThere = async () => [await exists(join(dir, TLS_CERT)), await exists(join(dir, TLS_KEY))] as const;
  // Another first start or `init` at once puts the key in place just before the certificate: a moment.
  const wholePair = async () => {
    let pair = await pairThere();
    for (let wait = 0; pair[0] !== pair[1] && wait < HALF_PAIR_WAIT_MS; wait += 50) {
      await sleep(50);
      pair = await pairThere();
    }
    return pair;
  };
  const [hasCert, hasKey] = await wholePair();
  // One half alone is an operator's (a renewal half copied in, a key moved away): a new pair would
  // overwrite it, as it did before a new user's try found it. Only a directory with neither gets one.
  if (hasCert !== hasKey) {
    const [there, missing] = hasCert ? [TLS_CERT, TLS_KEY] : [TLS_KEY, TLS_CERT];
    throw new Error(`${there} is in ${dir} without ${missing}: put ${missing} beside it, or move ${there} away to have a new self-signed pair made`);
  }
  if (!hasCert) {
    const { cert, key } = await selfSignedCertificate(['localhost', hostname()], ['127.0.0.1', '::1']);
    // Whoever puts the key in place first makes the pair; the other leaves both to it.
    if (await publish(join(dir, TLS_KEY), key, true, false)) {
      await publish(join(dir, TLS_CERT), cert, false, false);
      created.push(TLS_CERT, TLS_KEY);
    } else await wholePair(); // the other's certificate, before this process reads the pair
  }
  for (const name of HOST_KEYS) {
    if (await exists(join(dir, name))) continue;
    const pair = await generateHostKey(name === 'ssh_host_rsa_key' ? 'rsa' : 'ed25519');
    if (!(await publish(join(dir, name), pair.private, true, false))) continue;
    // A public half left from a key that is gone describes another key: this one's replaces it.
    await publish(join(dir, `${name}.pub`), pair.public + '\n', false, true);
    created.push(name, `${name}.pub`);
  }
  return created;
}

/** The SSH host keys (private, OpenSSH format) as the SFTP front-end takes them. */
export async function readHostKeys(dir: string): Promise<HostKeyFile[]> {
  return Promise.all(
    HOST_KEYS.map(async (name) => {
      try {
        return { name, dir, data: await readRegularFile(join(dir, name)), keyType: HOST_KEY_TYPES[name] };
      } catch (err) {
        throw new StartRefused(`SSH host key ${name} (in ${dir}) cannot be read: ${(err as Error).message}`);
      }
    }),
  );
}

export interface HostKeyFile {
  /** The file's name, for messages. */
  readonly name: string;
  /** The directory it is in, for messages. */
  readonly dir: string;
  readonly data: Buffer;
  /** The key type its slot is for (ssh2's name): another is refused, not served in its place. */
  readonly keyType: string;
}

/**
 * ssh2's generator now and then writes an OpenSSH private key that its own
 * parser rejects (about 1 in 150 for ed25519): check each key, try again.
 */
export async function generateHostKey(type: 'rsa' | 'ed25519'): Promise<{ private: string; public: string }> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const pair = await generateSshKeyPair(type);
    if (!(ssh2Library().utils.parseKey(pair.private) instanceof Error)) return pair;
  }
  throw new Error(`could not generate a valid ${type} host key`);
}

function generateSshKeyPair(type: 'rsa' | 'ed25519'): Promise<{ private: string; public: string }> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, keys: { private: string; public: string }) => (err ? reject(err) : resolve(keys));
    const comment = `sluice@${hostname()}`;
    if (type === 'rsa') ssh2Library().utils.generateKeyPair('rsa', { bits: 3072, comment }, done);
    else ssh2Library().utils.generateKeyPair('ed25519', { comment }, done);
  });
}
