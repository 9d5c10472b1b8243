-- Bearer tokens of the admin API (`sluice admin token create NAME`). Only the
-- SHA-256 of each token is kept: the token is 256 random bits, so its hash
-- cannot be searched back to it, and a stolen database grants nothing.
CREATE TABLE admin_tokens (
  name       TEXT    PRIMARY KEY,
  hash       BLOB    NOT NULL UNIQUE,        -- SHA-256 of the token
  created_at INTEGER NOT NULL,               -- unix ms
  last_used  INTEGER                         -- unix ms; NULL = never
) WITHOUT ROWID;
