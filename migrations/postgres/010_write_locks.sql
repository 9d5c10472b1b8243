-- Files being changed in place (an in-place upload, a truncation, a removal
-- that gives back the file's bytes), one node at a time per user's file
-- (store/postgres/write-locks.ts): each node's ledgers lock among their own
-- sessions, and a file written in place on one node must not be removed or
-- written on another meanwhile. The inode, not dev:ino: every node that
-- mounts the homes' file system sees the file under the same inode but its
-- own dev. A node's rows go when it stops and, if it died, when it starts
-- again or an administrator forgets it.
CREATE TABLE write_locks (
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  inode   TEXT    NOT NULL,
  node_id TEXT    NOT NULL,
  PRIMARY KEY (user_id, inode)
);
CREATE INDEX write_locks_node ON write_locks (node_id);
