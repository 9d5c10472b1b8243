-- Bearer tokens of the admin API (`sluice admin token create NAME`). Only the
-- SHA-256 of each token is kept: the token is 256 random bits, so its hash
-- cannot be searched back to it, and a stolen database grants nothing.
CREATE TABLE admin_tokens (
  name       TEXT    COLLATE "C" PRIMARY KEY,
  hash       BYTEA   NOT NULL UNIQUE,        -- SHA-256 of the token
  created_at BIGINT  NOT NULL,               -- unix ms
  last_used  BIGINT                          -- unix ms; NULL = never
);
