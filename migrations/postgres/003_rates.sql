-- Bandwidth limits per user, bytes per second in each direction: NULL follows
-- the server's limits.rateUp / limits.rateDown, 0 is no limit.
ALTER TABLE users ADD COLUMN rate_up BIGINT CHECK (rate_up IS NULL OR rate_up >= 0);
ALTER TABLE users ADD COLUMN rate_down BIGINT CHECK (rate_down IS NULL OR rate_down >= 0);
