-- A user's access narrowed on any node (disabled, expired, removed, or one of
-- its keys removed) is said on channel sluice_users, so that every node ends
-- that user's live sessions as the node where it was changed does (#15, #16).
-- The payload names the user and what changed; nodes only end sessions on it.
CREATE FUNCTION sluice_users_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_TABLE_NAME = 'user_keys' THEN
    PERFORM pg_notify('sluice_users', json_build_object('user', u.name, 'why', 'key removed')::text)
      FROM users u WHERE u.id = OLD.user_id;
  ELSIF TG_OP = 'DELETE' THEN
    PERFORM pg_notify('sluice_users', json_build_object('user', OLD.name, 'why', 'user removed')::text);
  ELSIF NOT NEW.enabled AND OLD.enabled THEN
    PERFORM pg_notify('sluice_users', json_build_object('user', NEW.name, 'why', 'user disabled')::text);
  ELSIF NEW.expires_at IS DISTINCT FROM OLD.expires_at
    AND NEW.expires_at <= (extract(epoch FROM clock_timestamp()) * 1000)::bigint THEN
    PERFORM pg_notify('sluice_users', json_build_object('user', NEW.name, 'why', 'user expired')::text);
  END IF;
  RETURN NULL;
END $$;
CREATE TRIGGER users_revoked AFTER UPDATE OR DELETE ON users
  FOR EACH ROW EXECUTE FUNCTION sluice_users_notify();
CREATE TRIGGER user_keys_revoked AFTER DELETE ON user_keys
  FOR EACH ROW EXECUTE FUNCTION sluice_users_notify();
