import { generateKeyPair as nodeKeyPair, randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import ssh2 from 'ssh2';

export const TLS_CERT = 'tls-cert.pem';
export const TLS_KEY = 'tls-key.pem';
export const HOST_KEYS = ['ssh_host_ed25519_key', 'ssh_host_rsa_key'] as const;

const exists = (p: string) => fsp.access(p).then(() => true, () => false);

/** Write a new file, never replacing one: 0600 for secrets, 0644 for public parts. */
async function writeNew(path: string, data: string, secret: boolean): Promise<void> {
  await fsp.writeFile(path, data, { mode: secret ? 0o600 : 0o644, flag: 'wx' });
}

/** Create whatever is missing in `dir`; returns the names created. */
export async function ensureKeys(dir: string): Promise<string[]> {
  await fsp.mkdir(dir, { recursive: true, mode: 0o700 });
  const created: string[] = [];
  if (!(await exists(join(dir, TLS_CERT))) || !(await exists(join(dir, TLS_KEY)))) {
    const { cert, key } = await selfSignedCertificate(['localhost', hostname()], ['127.0.0.1', '::1']);
    await fsp.rm(join(dir, TLS_CERT), { force: true });
    await fsp.rm(join(dir, TLS_KEY), { force: true });
    await writeNew(join(dir, TLS_KEY), key, true);
    await writeNew(join(dir, TLS_CERT), cert, false);
    created.push(TLS_CERT, TLS_KEY);
  }
  for (const name of HOST_KEYS) {
    if (await exists(join(dir, name))) continue;
    const pair = await generateHostKey(name === 'ssh_host_rsa_key' ? 'rsa' : 'ed25519');
    await fsp.rm(join(dir, `${name}.pub`), { force: true });
    await writeNew(join(dir, name), pair.private, true);
    await writeNew(join(dir, `${name}.pub`), pair.public + '\n', false);
    created.push(name, `${name}.pub`);
  }
  return created;
}

/** The SSH host keys (private, OpenSSH format) as the SFTP front-end takes them. */
export async function readHostKeys(dir: string): Promise<HostKeyFile[]> {
  return Promise.all(HOST_KEYS.map(async (name) => ({ name, data: await fsp.readFile(join(dir, name)) })));
}

export interface HostKeyFile {
  /** The file's name, for messages. */
  readonly name: string;
  readonly data: Buffer;
}

/**
 * ssh2's generator now and then writes an OpenSSH private key that its own
 * parser rejects (about 1 in 150 for ed25519): check each key, try again.
 */
export async function generateHostKey(type: 'rsa' | 'ed25519'): Promise<{ private: string; public: string }> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const pair = await generateSshKeyPair(type);
    if (!(ssh2.utils.parseKey(pair.private) instanceof Error)) return pair;
  }
  throw new Error(`could not generate a valid ${type} host key`);
}

function generateSshKeyPair(type: 'rsa' | 'ed25519'): Promise<{ private: string; public: string }> {
  return new Promise((resolve, reject) => {
    const done = (err: Error | null, keys: { private: string; public: string }) => (err ? reject(err) : resolve(keys));
    const comment = `sluice@${hostname()}`;
    if (type === 'rsa') ssh2.utils.generateKeyPair('rsa', { bits: 3072, comment }, done);
    else ssh2.utils.generateKeyPair('ed25519', { comment }, done);
  });
}

/** A self-signed RSA-3072 certificate; the key comes from Node's crypto, forge builds and signs the X.509. */
async function selfSignedCertificate(dnsNames: string[], ips: string[]): Promise<{ cert: string; key: string }> {
  const { privateKey, publicKey } = await promisify(nodeKeyPair)('rsa', {
    modulusLength: 3072,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  });
  // Loaded only here, on a first start: forge's code is about 9 MiB of heap that every
  // process of a running server (the primary and each worker) would otherwise keep.
  const { default: forge } = await import('node-forge');
  const cert = forge.pki.createCertificate();
  cert.publicKey = forge.pki.publicKeyFromPem(publicKey);
  cert.serialNumber = '01' + randomBytes(15).toString('hex');
  const now = new Date();
  cert.validity.notBefore = new Date(now.getTime() - 60_000);
  // 825 days from notBefore, not from now: one second more and auditors (testssl.sh) grade it too long.
  cert.validity.notAfter = new Date(cert.validity.notBefore.getTime() + 825 * 24 * 3600_000);
  const subject = [{ name: 'commonName', value: dnsNames[1] ?? 'localhost' }, { name: 'organizationName', value: 'sluice' }];
  cert.setSubject(subject);
  cert.setIssuer(subject);
  const unique = [...new Set(dnsNames)];
  cert.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [...unique.map((value) => ({ type: 2, value })), ...ips.map((ip) => ({ type: 7, ip }))] },
  ]);
  cert.sign(forge.pki.privateKeyFromPem(privateKey), forge.md.sha256.create());
  return { cert: forge.pki.certificateToPem(cert), key: privateKey };
}
