import { X509Certificate } from 'node:crypto';

/** A certificate with less than this left is named: a warning at start, at a reload and in /readyz. */
export const CERT_MIN_DAYS = 7;
const DAY_MS = 86_400_000;

/** Pure: what is wrong with a certificate valid until `validTo`, seen at `now`; null when nothing is. */
export function certificateProblem(validTo: Date, now: Date, minDays = CERT_MIN_DAYS): string | null {
  const left = validTo.getTime() - now.getTime();
  if (Number.isNaN(left)) return 'certificate has no readable expiry date';
  if (left <= 0) return `certificate expired at ${validTo.toISOString()}`;
  if (left <= minDays * DAY_MS) return `certificate expires in ${(left / DAY_MS).toFixed(1)} days (${validTo.toISOString()}), less than ${minDays}`;
  return null;
}

/**
 * The warning for the log at start and at a reload when the certificate
 * `pem` begins with has expired or is close to it; null when it is not.
 * /readyz says it too, but only to whoever asks: a server started on an
 * expired certificate said nothing at all, while FTPS clients that check it
 * refused every connection.
 */
export function certificateEnding(pem: Buffer, now = new Date()): string | null {
  const problem = certificateProblem(new Date(new X509Certificate(pem).validTo), now);
  return problem && `${problem}: FTPS clients that check it refuse it once it has expired; renew it, then send SIGHUP`;
}
