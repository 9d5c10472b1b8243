-- The notice on sluice_user_changed names the user whose row changed (its id,
-- as text), so that a node looks again only at that user's live sessions: an
-- empty payload (008) made every node read every user logged in there at each
-- change, one query each, and a portal where customers change their own
-- passwords changes users all day. A TRUNCATE names nobody and stays empty:
-- nodes then look at every user. Rows of one statement each say their user;
-- PostgreSQL sends a payload once per transaction however often it is said.
CREATE FUNCTION sluice_user_row_changed_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  changed record;
BEGIN
  IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
  IF TG_TABLE_NAME = 'users' THEN
    PERFORM pg_notify('sluice_user_changed', changed.id::text);
  ELSE
    PERFORM pg_notify('sluice_user_changed', changed.user_id::text);
    -- A row moved to another user (by hand: sluice never does it) changed its old owner too.
    IF TG_OP = 'UPDATE' THEN
      IF OLD.user_id IS DISTINCT FROM NEW.user_id THEN
        PERFORM pg_notify('sluice_user_changed', OLD.user_id::text);
      END IF;
    END IF;
  END IF;
  RETURN NULL;
END $$;

DROP TRIGGER users_changed ON users;
DROP TRIGGER user_keys_changed ON user_keys;
DROP TRIGGER user_ip_rules_changed ON user_ip_rules;
DROP TRIGGER user_dir_permissions_changed ON user_dir_permissions;

CREATE TRIGGER users_changed
  AFTER UPDATE OF name, password_hash, home, enabled, expires_at, protocols, require_tls, require_key, permissions,
    quota_bytes, quota_files, rate_up, rate_down, scan OR DELETE ON users
  FOR EACH ROW EXECUTE FUNCTION sluice_user_row_changed_notify();
CREATE TRIGGER user_keys_changed AFTER INSERT OR UPDATE OR DELETE ON user_keys
  FOR EACH ROW EXECUTE FUNCTION sluice_user_row_changed_notify();
CREATE TRIGGER user_ip_rules_changed AFTER INSERT OR UPDATE OR DELETE ON user_ip_rules
  FOR EACH ROW EXECUTE FUNCTION sluice_user_row_changed_notify();
CREATE TRIGGER user_dir_permissions_changed AFTER INSERT OR UPDATE OR DELETE ON user_dir_permissions
  FOR EACH ROW EXECUTE FUNCTION sluice_user_row_changed_notify();
CREATE TRIGGER user_keys_truncated AFTER TRUNCATE ON user_keys
  FOR EACH STATEMENT EXECUTE FUNCTION sluice_user_changed_notify();
CREATE TRIGGER user_ip_rules_truncated AFTER TRUNCATE ON user_ip_rules
  FOR EACH STATEMENT EXECUTE FUNCTION sluice_user_changed_notify();
CREATE TRIGGER user_dir_permissions_truncated AFTER TRUNCATE ON user_dir_permissions
  FOR EACH STATEMENT EXECUTE FUNCTION sluice_user_changed_notify();
