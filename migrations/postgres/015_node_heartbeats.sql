-- When each running node last proved, on the connection that holds its
-- node-id lock, that it still holds it (store/postgres/nodes.ts): written
-- every second. `sluice store forget-node` refuses a node seen within the
-- last few seconds (unless --force): a node cut off from PostgreSQL shows as
-- not running at once, but may still be writing files in place until its
-- own lease (a few seconds after its last heartbeat) runs out. A clean stop
-- and a forget remove the row.
CREATE TABLE node_heartbeats (
  node_id TEXT        PRIMARY KEY,
  seen_at TIMESTAMPTZ NOT NULL
);
