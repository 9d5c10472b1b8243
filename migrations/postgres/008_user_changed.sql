-- Any change to what a login decides on (a user's settings, password, keys,
-- address rules, directory permissions; not its usage counters or last login)
-- is said on channel sluice_user_changed, so that every node drops the copy of
-- users it logs in from (src/store/postgres/user-cache.ts). The payload is
-- empty: a node drops its whole copy, and changes are an administrator's, rare.
CREATE FUNCTION sluice_user_changed_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('sluice_user_changed', '');
  RETURN NULL;
END $$;
CREATE TRIGGER users_changed
  AFTER UPDATE OF name, password_hash, home, enabled, expires_at, protocols, require_tls, require_key, permissions,
    quota_bytes, quota_files, rate_up, rate_down, scan OR DELETE ON users
  FOR EACH STATEMENT EXECUTE FUNCTION sluice_user_changed_notify();
CREATE TRIGGER user_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON user_keys
  FOR EACH STATEMENT EXECUTE FUNCTION sluice_user_changed_notify();
CREATE TRIGGER user_ip_rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON user_ip_rules
  FOR EACH STATEMENT EXECUTE FUNCTION sluice_user_changed_notify();
CREATE TRIGGER user_dir_permissions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON user_dir_permissions
  FOR EACH STATEMENT EXECUTE FUNCTION sluice_user_changed_notify();
CREATE TRIGGER users_truncated AFTER TRUNCATE ON users
  FOR EACH STATEMENT EXECUTE FUNCTION sluice_user_changed_notify();
