import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import tls from 'node:tls';
import { TLS_CERT, TLS_KEY } from './names.js';

/** The FTPS certificate chain and private key, PEM. */
export interface TlsMaterial {
  readonly key: Buffer;
  readonly cert: Buffer;
}

/**
 * Read the certificate and key `ensureKeys` keeps in the certs directory (at
 * start and on SIGHUP), and refuse a pair no handshake could use: a file cut
 * short, or a new certificate copied in before its key. Taken as they were,
 * the server would start (or reload) and fail every TLS handshake after it.
 */
export async function readTlsMaterial(certsDir: string): Promise<TlsMaterial> {
  const [key, cert] = await Promise.all([fsp.readFile(join(certsDir, TLS_KEY)), fsp.readFile(join(certsDir, TLS_CERT))]);
  try {
    tls.createSecureContext({ key, cert });
  } catch (err) {
    throw new Error(`TLS certificate ${TLS_CERT} with key ${TLS_KEY} (in ${certsDir}) cannot be used: ${(err as Error).message}`);
  }
  return { key, cert };
}
