import { createPrivateKey, X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import tls from 'node:tls';
import { StartRefused } from '../listening.js';
import { readRegularFile } from '../regular-file.js';
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
  try {
    const [key, cert] = await Promise.all([readRegularFile(join(certsDir, TLS_KEY)), readRegularFile(join(certsDir, TLS_CERT))]);
    tls.createSecureContext({ key, cert });
    // OpenSSL compares a key only with a certificate of its own type: an RSA key beside the default
    // ECDSA certificate passed, and every handshake failed after it (found by a review).
    if (!new X509Certificate(cert).checkPrivateKey(createPrivateKey(key))) throw new Error('key values mismatch: the key is of another type');
    return { key, cert };
  } catch (err) {
    // A refusal in the operator's words, one line: not a stack for a file to put right.
    throw new StartRefused(`TLS certificate ${TLS_CERT} with key ${TLS_KEY} (in ${certsDir}) cannot be used: ${plainReason((err as Error).message)}`);
  }
}

/** OpenSSL's reason for the most common mistake, a renewal's certificate beside the old key, in words; others as they come. */
function plainReason(message: string): string {
  return /key values mismatch/.test(message) ? `the key is not the certificate's (${message})` : message;
}
