import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { TLS_CERT, TLS_KEY } from './names.js';

/** The FTPS certificate chain and private key, PEM. */
export interface TlsMaterial {
  readonly key: Buffer;
  readonly cert: Buffer;
}

/** Read the certificate and key `ensureKeys` keeps in the certs directory (at start and on SIGHUP). */
export async function readTlsMaterial(certsDir: string): Promise<TlsMaterial> {
  const [key, cert] = await Promise.all([fsp.readFile(join(certsDir, TLS_KEY)), fsp.readFile(join(certsDir, TLS_CERT))]);
  return { key, cert };
}
