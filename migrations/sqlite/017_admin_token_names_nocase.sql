-- Admin token names are compared without case, as user names are: they are
-- an operator's labels, and `ops` beside `OPS` were two tokens, the one
-- `token remove ops` left in force the other. Names already stored that
-- differ from an older token's in case alone get its name and the first 8
-- hex digits of their own hash (`OPS-1a2b3c4d`): both tokens go on working,
-- and each can be named again. Names are ASCII, which NOCASE folds.
UPDATE admin_tokens SET name = name || '-' || lower(hex(substr(hash, 1, 4)))
WHERE EXISTS (
  SELECT 1 FROM admin_tokens AS older
  WHERE older.name = admin_tokens.name COLLATE NOCASE AND older.name <> admin_tokens.name
    AND (older.created_at < admin_tokens.created_at OR (older.created_at = admin_tokens.created_at AND older.name < admin_tokens.name))
);
CREATE UNIQUE INDEX admin_tokens_name_nocase ON admin_tokens (name COLLATE NOCASE);
