-- Addresses banned by the defender or by `sluice ban add`. A row outlives its
-- ban so the next ban of the address can be longer; `ban remove` deletes it.
CREATE TABLE bans (
  address    TEXT    PRIMARY KEY,            -- plain IP address as the server sees it
  until      INTEGER,                        -- unix ms; NULL = until removed
  count      INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1),  -- bans in a row
  reason     TEXT    NOT NULL,
  created_at INTEGER NOT NULL                -- start of the latest ban
) WITHOUT ROWID;
