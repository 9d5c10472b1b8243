-- Users, their keys, address rules and per-directory permissions.
CREATE TABLE users (
  id            INTEGER PRIMARY KEY,
  name          TEXT    NOT NULL UNIQUE COLLATE NOCASE,
  password_hash TEXT,
  home          TEXT    NOT NULL,
  enabled       INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
  expires_at    INTEGER,                       -- unix ms; NULL = never
  protocols     TEXT    NOT NULL,              -- comma list of ftp, ftps, sftp
  require_tls   INTEGER NOT NULL DEFAULT 0 CHECK (require_tls IN (0, 1)),
  require_key   INTEGER NOT NULL DEFAULT 0 CHECK (require_key IN (0, 1)),
  permissions   TEXT    NOT NULL,              -- comma list at the home
  quota_bytes   INTEGER NOT NULL DEFAULT 0 CHECK (quota_bytes >= 0),
  quota_files   INTEGER NOT NULL DEFAULT 0 CHECK (quota_files >= 0),
  used_bytes    INTEGER NOT NULL DEFAULT 0,
  used_files    INTEGER NOT NULL DEFAULT 0,
  created_at    INTEGER NOT NULL,
  updated_at    INTEGER NOT NULL,
  last_login_at INTEGER
);

CREATE TABLE user_keys (
  id          INTEGER PRIMARY KEY,
  user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  algorithm   TEXT    NOT NULL,
  public_key  BLOB    NOT NULL,                -- SSH wire format
  fingerprint TEXT    NOT NULL,                -- SHA256:base64
  comment     TEXT    NOT NULL DEFAULT '',
  created_at  INTEGER NOT NULL,
  UNIQUE (user_id, fingerprint)
);

CREATE TABLE user_ip_rules (
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  kind    TEXT    NOT NULL CHECK (kind IN ('allow', 'deny')),
  cidr    TEXT    NOT NULL,
  PRIMARY KEY (user_id, kind, cidr)
);

CREATE TABLE user_dir_permissions (
  user_id     INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  path        TEXT    NOT NULL,                -- clean virtual directory
  permissions TEXT    NOT NULL,
  PRIMARY KEY (user_id, path)
);
