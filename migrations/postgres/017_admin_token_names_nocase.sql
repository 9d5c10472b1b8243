-- Admin token names are compared without case, as user names are: they are
-- an operator's labels, and `ops` beside `OPS` were two tokens, the one
-- `token remove ops` left in force the other. Names already stored that
-- differ from an older token's in case alone get its name and the first 8
-- hex digits of their own hash (`OPS-1a2b3c4d`): both tokens go on working,
-- and each can be named again. Names are ASCII, so lower() folds exactly
-- what SQLite's NOCASE folds; look-ups use lower(name) = lower($1).
UPDATE admin_tokens AS t SET name = t.name || '-' || substr(encode(t.hash, 'hex'), 1, 8)
WHERE EXISTS (
  SELECT 1 FROM admin_tokens AS older
  WHERE lower(older.name) = lower(t.name) AND older.name <> t.name
    AND (older.created_at < t.created_at OR (older.created_at = t.created_at AND older.name < t.name))
);
CREATE UNIQUE INDEX admin_tokens_name_nocase ON admin_tokens (lower(name));
