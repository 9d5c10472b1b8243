-- Expiries outside the years 0000 to 9999 in UTC, which releases before the
-- range check stored (`user set --expires 9999-12-31T23:59:59` west of UTC
-- made one in the year 10000): shown as +010000-..., which no date-time
-- parser reads back, so GET /users broke for its clients. Each is moved to
-- the nearest date the range holds; the account expires as it would have
-- (never in practice, or long ago).
UPDATE users SET expires_at = 253402300799999 WHERE expires_at > 253402300799999;
UPDATE users SET expires_at = -62167219200000 WHERE expires_at < -62167219200000;
