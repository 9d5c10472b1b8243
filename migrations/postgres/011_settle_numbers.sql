-- The number of the last settle each node applied to each user's counters
-- (store/postgres/quota.ts): a settle the database did not answer (it went
-- away, perhaps after its commit) is sent again with its number, and one not
-- above the stored number changes nothing, so an upload is counted once.
-- Checked and stored in the settle's own statement. A node's rows go with
-- its holds: when a user's ledger on it closes, when it stops and, if it
-- died, when it starts again or an administrator forgets it.
CREATE TABLE quota_settles (
  node_id TEXT    NOT NULL,
  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  seq     BIGINT  NOT NULL,
  PRIMARY KEY (node_id, user_id)
);
