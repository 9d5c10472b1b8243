-- The in-place lock is each file's, whoever writes it (store/postgres/write-locks.ts):
-- two users may share a home, and with a row per user's file (010) two such
-- users logged in on two nodes appended to one file at once and interleaved
-- their bytes (found by a review). The inode is the file's name on every node
-- (010); user_id stays, saying whose session took it. Two rows of one inode
-- can only be two writers of one file already: the one kept goes on refusing
-- the others. The key of 010 stays too, for a node not yet upgraded (its
-- takes name it); such a node's take of a file another holds fails.
-- Locked first: a node not yet upgraded committing a second row of one inode
-- between the DELETE and the index would fail the index, and the start.
LOCK TABLE write_locks IN SHARE ROW EXCLUSIVE MODE;
DELETE FROM write_locks a USING write_locks b
  WHERE a.inode = b.inode AND (a.user_id, a.node_id) > (b.user_id, b.node_id);
CREATE UNIQUE INDEX write_locks_inode ON write_locks (inode);
