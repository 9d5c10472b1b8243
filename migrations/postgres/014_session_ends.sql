-- Sessions an administrator ended on every node (store/postgres/session-ends.ts):
-- an address banned (admin API, `sluice ban add`) or a user's sessions ended
-- (DELETE /users/NAME/sessions). Each is stored here and sent with its number
-- on sluice_session_ends, in one statement: a node that was not listening
-- then (its notices connection down) reads the ones it missed, by number,
-- when it listens again, and ends those sessions as the notice would have
-- (found by a review: they went on). The statements that add one prune
-- those older than a day.
CREATE TABLE session_ends (
  seq       BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at        TIMESTAMPTZ NOT NULL DEFAULT now(),
  address   TEXT,                 -- an address banned, or
  user_name TEXT,                 -- a user whose sessions end,
  reason    TEXT,                 -- with this reason
  CHECK ((address IS NULL) <> (user_name IS NULL))
);
CREATE INDEX session_ends_at ON session_ends (at);
