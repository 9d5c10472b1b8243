-- What several nodes on this database count together (#16): each node's
-- lease of a user's quota, offences per address, logged-in sessions per user.

-- The room of a user's quota each node holds for its uploads in flight
-- (store/postgres/quota.ts). users.held_* is the sum of the user's rows,
-- changed in the same statements, so that one conditional UPDATE of the
-- user's row grants room atomically: used + held never passes the quota.
-- A node's rows go when it stops and, if it died, when it starts again.
ALTER TABLE users
  ADD COLUMN held_bytes BIGINT NOT NULL DEFAULT 0,
  ADD COLUMN held_files BIGINT NOT NULL DEFAULT 0;

CREATE TABLE quota_holds (
  node_id TEXT    NOT NULL,
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  bytes   BIGINT  NOT NULL,
  files   BIGINT  NOT NULL,
  PRIMARY KEY (node_id, user_id)
);

-- The defender's offences per address within its window (unix ms), from
-- every node; a row whose last offence left the window is pruned
-- (store/postgres/failures.ts).
CREATE TABLE offences (
  address TEXT     PRIMARY KEY,
  times   BIGINT[] NOT NULL,
  last_at BIGINT   NOT NULL
);
CREATE INDEX offences_last_at ON offences (last_at);

-- Logged-in sessions per user on each node, and their sum per user, which
-- one conditional upsert checks and counts atomically (store/postgres/user-sessions.ts).
CREATE TABLE user_sessions (
  node_id   TEXT    NOT NULL,
  user_name TEXT    NOT NULL,
  count     INTEGER NOT NULL CHECK (count >= 0),
  PRIMARY KEY (node_id, user_name)
);
CREATE TABLE user_session_totals (
  user_name TEXT    PRIMARY KEY,
  count     INTEGER NOT NULL CHECK (count >= 0)
);
