-- Expiries outside the years 0000 to 9999 in UTC, which releases before the
-- range check stored (`user set --expires 9999-12-31T23:59:59` west of UTC
-- made one in the year 10000): shown as +010000-..., which no date-time
-- parser reads back, so GET /users broke for its clients. Each is moved to
-- the nearest date the range holds; the account expires as it would have
-- (never in practice, or long ago).
-- Their rows locked first, by id, as every statement that writes several
-- users' rows locks them (store/postgres/last-logins.ts, quota.ts): the two
-- UPDATEs took them in their own order (the later expiries first), and a
-- running node's batch of the same users' last logins, locked by id,
-- deadlocked with them, failing the start or the batch (found by a review).
-- The rows changed are the same; a database that ran 016 does not run it
-- again (the migrator keeps versions, not the files' contents).
SELECT 1 FROM users WHERE expires_at > 253402300799999 OR expires_at < -62167219200000
  ORDER BY id FOR NO KEY UPDATE;
UPDATE users SET expires_at = 253402300799999 WHERE expires_at > 253402300799999;
UPDATE users SET expires_at = -62167219200000 WHERE expires_at < -62167219200000;
