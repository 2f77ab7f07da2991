-- API keys: only a SHA-256 of each key is kept; the key itself is shown once, at creation.
CREATE TABLE api_keys (
    id           UUID        PRIMARY KEY,
    -- The key's first characters, shown in lists so that people can tell keys apart.
    prefix       TEXT        NOT NULL UNIQUE,
    secret_hash  BYTEA       NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    name         TEXT        NOT NULL,
    scopes       TEXT[]      NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    revoked_at   TIMESTAMPTZ
);
