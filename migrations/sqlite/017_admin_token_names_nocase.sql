-- Admin token names are compared without case, as user names are: they are
-- an operator's labels, and `ops` beside `OPS` were two tokens, the one
-- `token remove ops` left in force the other. Names already stored that
-- differ from an older token's in case alone get its name and the first 8
-- hex digits of their own hash (`OPS-1a2b3c4d`): both tokens go on working,
-- and each can be named again. Names are ASCII, which NOCASE folds.
-- When a token has that name already (an operator's own `OPS-1a2b3c4d`),
-- the whole hash is taken instead: longer than the 64 characters `token
-- create` allows, so no name given there is it, and hashes are unique. The
-- index below failed on the name taken, and no server of this version
-- started (found by a review).
UPDATE admin_tokens SET name = name || '-' || (
  CASE WHEN EXISTS (
    SELECT 1 FROM admin_tokens AS taken
    WHERE taken.name = (admin_tokens.name || '-' || lower(hex(substr(admin_tokens.hash, 1, 4)))) COLLATE NOCASE
  ) THEN lower(hex(hash)) ELSE lower(hex(substr(hash, 1, 4))) END)
WHERE EXISTS (
  SELECT 1 FROM admin_tokens AS older
  WHERE older.name = admin_tokens.name COLLATE NOCASE AND older.name <> admin_tokens.name
    AND (older.created_at < admin_tokens.created_at OR (older.created_at = admin_tokens.created_at AND older.name < admin_tokens.name))
);
CREATE UNIQUE INDEX admin_tokens_name_nocase ON admin_tokens (name COLLATE NOCASE);
