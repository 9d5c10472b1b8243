-- Quarantine mode per user: 1 scan this user's uploads, 0 do not, NULL follow
-- the server's uploads.scan.
ALTER TABLE users ADD COLUMN scan INTEGER CHECK (scan IS NULL OR scan IN (0, 1));
