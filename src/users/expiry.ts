/** The dates a date-time (RFC 3339, a four-digit year) can name in UTC, as the API shows them. */
const FIRST_DATE = Date.parse('0000-01-01T00:00:00.000Z');
const LAST_DATE = Date.parse('9999-12-31T23:59:59.999Z');

/**
 * Why `at` cannot be an expiry, or null. An offset (or, before, the CLI's
 * local time) can carry a date past 9999 or before 0000 in UTC: shown as
 * +010000-... or -000001-..., which no date-time parser reads back (found by
 * an attack on the API: GET /users then broke for its clients; and by a
 * review: `user set --expires 9999-12-31T23:59:59` west of UTC stored one).
 */
export function expiryOutside(at: Date): string | null {
  if (at.getTime() > LAST_DATE) return 'past 9999-12-31T23:59:59.999Z, the last date an expiry can be';
  if (at.getTime() < FIRST_DATE) return 'before 0000-01-01T00:00:00Z, the first date an expiry can be';
  return null;
}
