-- The key that authenticates pagination cursors (HMAC-SHA-256), created on first start. It lives in
-- the database, not in the process, so a cursor keeps working across restarts and on every server
-- of the same ledger; a forged or altered cursor is refused.
CREATE TABLE cursor_key (
    singleton   BOOLEAN     PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    secret      BYTEA       NOT NULL CHECK (length(secret) = 32),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
