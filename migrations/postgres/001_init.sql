-- Users, their keys, address rules and per-directory permissions: the SQLite
-- schema of the same version, in PostgreSQL's dialect. Times are unix ms and
-- sizes bytes, as BIGINT. Text that is sorted or compared is COLLATE "C" so
-- lists come back in SQLite's byte order whatever the database's locale.
CREATE TABLE users (
  id            INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name          TEXT    COLLATE "C" NOT NULL,
  password_hash TEXT,
  home          TEXT    NOT NULL,
  enabled       BOOLEAN NOT NULL DEFAULT TRUE,
  expires_at    BIGINT,                        -- unix ms; NULL = never
  protocols     TEXT    NOT NULL,              -- comma list of ftp, ftps, sftp
  require_tls   BOOLEAN NOT NULL DEFAULT FALSE,
  require_key   BOOLEAN NOT NULL DEFAULT FALSE,
  permissions   TEXT    NOT NULL,              -- comma list at the home
  quota_bytes   BIGINT  NOT NULL DEFAULT 0 CHECK (quota_bytes >= 0),
  quota_files   BIGINT  NOT NULL DEFAULT 0 CHECK (quota_files >= 0),
  used_bytes    BIGINT  NOT NULL DEFAULT 0,
  used_files    BIGINT  NOT NULL DEFAULT 0,
  created_at    BIGINT  NOT NULL,
  updated_at    BIGINT  NOT NULL,
  last_login_at BIGINT
);
-- Names are unique regardless of case, as SQLite's COLLATE NOCASE makes them
-- (names are ASCII, so lower() folds exactly what NOCASE folds); look-ups use
-- the same expression so they are served by this index.
CREATE UNIQUE INDEX users_name_nocase ON users (lower(name));

CREATE TABLE user_keys (
  id          INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  algorithm   TEXT    NOT NULL,
  public_key  BYTEA   NOT NULL,                -- SSH wire format
  fingerprint TEXT    NOT NULL,                -- SHA256:base64
  comment     TEXT    NOT NULL DEFAULT '',
  created_at  BIGINT  NOT NULL,
  UNIQUE (user_id, fingerprint)
);

CREATE TABLE user_ip_rules (
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  kind    TEXT    NOT NULL CHECK (kind IN ('allow', 'deny')),
  cidr    TEXT    COLLATE "C" NOT NULL,
  PRIMARY KEY (user_id, kind, cidr)
);

CREATE TABLE user_dir_permissions (
  user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  path        TEXT    COLLATE "C" NOT NULL,    -- clean virtual directory
  permissions TEXT    NOT NULL,
  PRIMARY KEY (user_id, path)
);
