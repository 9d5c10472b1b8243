-- Quarantine mode per user: TRUE scan this user's uploads, FALSE do not, NULL
-- follow the server's uploads.scan.
ALTER TABLE users ADD COLUMN scan BOOLEAN;
