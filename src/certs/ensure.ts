import { generateKeyPair as nodeKeyPair, randomBytes, sign } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { asn1 as Asn1Types } from 'node-forge';
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

/**
 * A self-signed ECDSA P-256 certificate. Its handshake signature costs the
 * server about 0.02 ms of CPU where RSA-3072's cost 2.1 ms, a third of an FTPS
 * login's event-loop time; every TLS client in use takes P-256 (curl,
 * OpenSSL, GnuTLS in lftp, Python, FileZilla, WinSCP). The key and signature
 * come from Node's crypto; forge only encodes the X.509 structure (its own
 * signing is RSA-only).
 */
async function selfSignedCertificate(dnsNames: string[], ips: string[]): Promise<{ cert: string; key: string }> {
  const { privateKey, publicKey } = await promisify(nodeKeyPair)('ec', { namedCurve: 'prime256v1' });
  // Loaded only here, on a first start: forge's code is about 9 MiB of heap that every
  // process of a running server (the primary and each worker) would otherwise keep.
  const { default: forge } = await import('node-forge');
  const { asn1, pki } = forge;
  const { Class, Type } = asn1;
  const seq = (...items: Asn1Types.Asn1[]) => asn1.create(Class.UNIVERSAL, Type.SEQUENCE, true, items);
  // ecdsa-with-SHA256, its parameters absent (RFC 5758, 3.2).
  const algorithm = () => seq(asn1.create(Class.UNIVERSAL, Type.OID, false, asn1.oidToDer('1.2.840.10045.4.3.2').getBytes()));
  const time = (d: Date) => asn1.create(Class.UNIVERSAL, Type.UTCTIME, false, asn1.dateToUtcTime(d));
  const notBefore = new Date(Date.now() - 60_000);
  // 825 days from notBefore, not from now: one second more and auditors (testssl.sh) grade it too long.
  const notAfter = new Date(notBefore.getTime() + 825 * 24 * 3600_000);
  const name = pki.distinguishedNameToAsn1({
    attributes: [
      { type: pki.oids.commonName, value: dnsNames[1] ?? 'localhost', valueTagClass: Type.UTF8 },
      { type: pki.oids.organizationName, value: 'sluice', valueTagClass: Type.UTF8 },
    ],
  } as never);
  // forge encodes the extensions as it takes them; its typings omit the encoder of the list.
  const holder = pki.createCertificate();
  holder.setExtensions([
    { name: 'basicConstraints', cA: false },
    { name: 'keyUsage', digitalSignature: true },
    { name: 'extKeyUsage', serverAuth: true },
    { name: 'subjectAltName', altNames: [...new Set(dnsNames)].map((value) => ({ type: 2, value })).concat(ips.map((ip) => ({ type: 7, ip }) as never)) },
  ]);
  // A positive serial of 16 random bytes: the first byte's top bit clear.
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x01;
  const tbs = seq(
    asn1.create(Class.CONTEXT_SPECIFIC, 0, true, [asn1.create(Class.UNIVERSAL, Type.INTEGER, false, asn1.integerToDer(2).getBytes())]),
    asn1.create(Class.UNIVERSAL, Type.INTEGER, false, serial.toString('binary')),
    algorithm(),
    name,
    seq(time(notBefore), time(notAfter)),
    name,
    asn1.fromDer(publicKey.export({ type: 'spki', format: 'der' }).toString('binary')),
    (pki as unknown as { certificateExtensionsToAsn1(e: unknown[]): Asn1Types.Asn1 }).certificateExtensionsToAsn1(holder.extensions),
  );
  const tbsDer = Buffer.from(asn1.toDer(tbs).getBytes(), 'binary');
  const signature = sign('sha256', tbsDer, { key: privateKey, dsaEncoding: 'der' });
  const certificate = seq(tbs, algorithm(), asn1.create(Class.UNIVERSAL, Type.BITSTRING, false, '\0' + signature.toString('binary')));
  const der = Buffer.from(asn1.toDer(certificate).getBytes(), 'binary');
  const pem = `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{64}/g, '$&\n').replace(/\n?$/, '\n')}-----END CERTIFICATE-----\n`;
  return { cert: pem, key: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string };
}
