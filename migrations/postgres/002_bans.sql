-- Addresses banned by the defender or by `sluice ban add`. A row outlives its
-- ban so the next ban of the address can be longer; `ban remove` deletes it.
CREATE TABLE bans (
  address    TEXT    COLLATE "C" PRIMARY KEY, -- plain IP address as the server sees it
  until      BIGINT,                          -- unix ms; NULL = until removed
  count      INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1),  -- bans in a row
  reason     TEXT    NOT NULL,
  created_at BIGINT  NOT NULL                 -- start of the latest ban
);

-- Every node keeps the bans in force in memory (it answers each accept
-- without a round trip) and learns every write here, whichever node or
-- `sluice ban` made it, from this channel. The payload carries the new state,
-- and notifications arrive in commit order, so a node applies them as they come.
CREATE FUNCTION sluice_bans_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'TRUNCATE' THEN
    PERFORM pg_notify('sluice_bans', json_build_object('reload', true)::text);
    RETURN NULL;
  END IF;
  IF TG_OP = 'DELETE' OR (TG_OP = 'UPDATE' AND OLD.address <> NEW.address) THEN
    PERFORM pg_notify('sluice_bans', json_build_object('address', OLD.address, 'removed', true)::text);
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    PERFORM pg_notify('sluice_bans', json_build_object('address', NEW.address, 'until', NEW.until)::text);
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER bans_notify AFTER INSERT OR UPDATE OR DELETE ON bans
  FOR EACH ROW EXECUTE FUNCTION sluice_bans_notify();
CREATE TRIGGER bans_notify_truncate AFTER TRUNCATE ON bans
  FOR EACH STATEMENT EXECUTE FUNCTION sluice_bans_notify();
