-- The ledger's Ed25519 key for signing checkpoints, created on first start. Kept apart from the
-- events: a checkpoint an auditor stored elsewhere must not depend on the table it vouches for.
CREATE TABLE signing_key (
    singleton   BOOLEAN     PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    secret      BYTEA       NOT NULL CHECK (length(secret) = 32),
    public      BYTEA       NOT NULL CHECK (length(public) = 32),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
