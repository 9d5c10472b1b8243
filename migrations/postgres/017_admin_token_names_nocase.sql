-- Admin token names are compared without case, as user names are: they are
-- an operator's labels, and `ops` beside `OPS` were two tokens, the one
-- `token remove ops` left in force the other. Names already stored that
-- differ from an older token's in case alone get its name and the first 8
-- hex digits of their own hash (`OPS-1a2b3c4d`): both tokens go on working,
-- and each can be named again. Names are ASCII, so lower() folds exactly
-- what SQLite's NOCASE folds; look-ups use lower(name) = lower($1).
-- When a token has that name already (an operator's own `OPS-1a2b3c4d`),
-- the whole hash is taken instead: longer than the 64 characters `token
-- create` allows, so no name given there is it, and hashes are unique. The
-- index below failed on the name taken, and no server of this version
-- started (found by a review).
UPDATE admin_tokens AS t SET name = t.name || '-' || (
  CASE WHEN EXISTS (
    SELECT 1 FROM admin_tokens AS taken
    WHERE lower(taken.name) = lower(t.name || '-' || substr(encode(t.hash, 'hex'), 1, 8))
  ) THEN encode(t.hash, 'hex') ELSE substr(encode(t.hash, 'hex'), 1, 8) END)
WHERE EXISTS (
  SELECT 1 FROM admin_tokens AS older
  WHERE lower(older.name) = lower(t.name) AND older.name <> t.name
    AND (older.created_at < t.created_at OR (older.created_at = t.created_at AND older.name < t.name))
);
CREATE UNIQUE INDEX admin_tokens_name_nocase ON admin_tokens (lower(name));
