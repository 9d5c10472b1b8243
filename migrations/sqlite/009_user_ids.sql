-- A user's id is never given to another user, as PostgreSQL's identity
-- column never gives one twice. SQLite's INTEGER PRIMARY KEY takes the
-- highest id in the table plus one, so removing the newest user handed its
-- id to the next user made, while servers may still hold state under it
-- (the quota ledger of sessions still closing, usage not yet written). The
-- highest id ever given is kept here; a new user takes the one after it.
CREATE TABLE user_id_high (high INTEGER NOT NULL);
INSERT INTO user_id_high (high) SELECT COALESCE(MAX(id), 0) FROM users;
CREATE TRIGGER user_id_high_after_insert AFTER INSERT ON users
BEGIN
  UPDATE user_id_high SET high = MAX(high, NEW.id);
END;
