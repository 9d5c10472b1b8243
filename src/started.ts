import { readRegularFile } from './regular-file.js';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { HOST_KEYS, TLS_CERT, TLS_KEY } from './certs/names.js';
import { exposedKeys } from './certs/private-modes.js';
import { certificateEnding } from './certs/expiry.js';
import { certificateFingerprint, sshKeyFingerprint } from './certs/fingerprints.js';
import type { StartRecord, StartReport } from './start-record.js';
import { ssh2Library } from './ssh2.js';

/**
 * Once, when every listener is up: where the server listens and the
 * fingerprints of its SSH host keys and TLS certificate, in the text of
 * `ssh-keygen -lf` and `openssl x509 -fingerprint -sha256`, so a user can
 * check what a client is shown on first contact; then the start line.
 */
export async function logStarted(log: Logger, record: StartRecord, started: StartReport): Promise<void> {
  const report = record.keep(started);
  for (const { protocol, address, port } of report.listeners) {
    log.info({ protocol, address, port }, `listening: ${protocol} ${address.includes(':') ? `[${address}]` : address}:${port}`);
  }
  const sftp = report.listeners.some((l) => l.protocol === 'sftp');
  const tls = report.listeners.some((l) => l.protocol !== 'sftp');
  if (sftp) {
    for (const name of HOST_KEYS) {
      await fingerprint(log, `SSH host key ${name}`, () => hostKeyFingerprint(report.certsDir, name));
    }
  }
  if (tls) {
    await fingerprint(log, `TLS certificate ${TLS_CERT}`, async () => {
      const pem = await readRegularFile(join(report.certsDir, TLS_CERT));
      const ending = certificateEnding(pem);
      if (ending) log.warn(`TLS certificate ${TLS_CERT}: ${ending}`);
      return certificateFingerprint(pem);
    });
  }
  await warnExposedKeys(log, report);
  log.info({ frontEnds: report.frontEnds, dataDir: report.dataDir, workers: report.workers }, 'sluice started');
  record.announced();
}

/**
 * A warning for each private key the listeners serve that others than its
 * owner may read: at start, and again at each SIGHUP, which reloads keys an
 * administrator may have replaced with wider modes.
 */
export async function warnExposedKeys(log: Logger, report: StartReport): Promise<void> {
  const sftp = report.listeners.some((l) => l.protocol === 'sftp');
  const tls = report.listeners.some((l) => l.protocol !== 'sftp');
  for (const { file, mode } of await exposedKeys(report.certsDir, [...(sftp ? HOST_KEYS : []), ...(tls || report.adminTls ? [TLS_KEY] : [])])) {
    log.warn({ file, mode }, `private key ${file} is readable by others than its owner (mode ${mode}): chmod 600 it`);
  }
}

async function fingerprint(log: Logger, what: string, compute: () => Promise<string>): Promise<void> {
  try {
    const text = await compute();
    log.info({ fingerprint: text }, `${what}: ${text}`);
  } catch (err) {
    // The front-ends read these files and started: a fingerprint that cannot be shown is no reason to stop.
    log.warn({ err }, `${what}: no fingerprint`);
  }
}

/** From the `.pub` file, as `ssh-keygen -lf` reads it; from the private key when there is none. */
export async function hostKeyFingerprint(certsDir: string, name: string): Promise<string> {
  const line = await readRegularFile(join(certsDir, `${name}.pub`)).then((b) => b.toString('utf8')).catch(async (err: NodeJS.ErrnoException) => {
    if (err.code !== 'ENOENT') throw err;
    const key = ssh2Library().utils.parseKey(await readRegularFile(join(certsDir, name)));
    if (!key || key instanceof Error || Array.isArray(key)) throw new Error(`host key ${name}: unreadable`);
    return `${key.type} ${key.getPublicSSH().toString('base64')} ${key.comment}`;
  });
  return sshKeyFingerprint(line.split('\n')[0] ?? '');
}

/** Whether the admin API listens (admin.listen) and serves HTTPS there (admin.tls). */
export function adminServesTls(admin: { readonly listen: string; readonly tls: boolean }): boolean {
  return admin.listen !== '' && admin.tls;
}
