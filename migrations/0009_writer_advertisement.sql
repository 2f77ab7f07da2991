-- Where the writer can be reached: written by the writer, on the session that holds its lock, each
-- time it takes the lock. A row is believed only while the backend it names still holds the lock
-- (see infrastructure/src/writer_lock.rs), so a stale row from a writer that is gone misleads no
-- one. Operational state, not history: it is neither in the log nor in an export.
CREATE TABLE writer_advertisement (
    singleton    BOOLEAN     PRIMARY KEY DEFAULT true CHECK (singleton),
    -- The base URL other ledger nodes forward writes to, e.g. http://10.0.0.5:8080.
    url          TEXT        NOT NULL,
    -- pg_backend_pid() of the writer's session when it took the lock.
    backend_pid  INTEGER     NOT NULL,
    taken_at     TIMESTAMPTZ NOT NULL
);
