-- The event store: the source of truth. Positions are assigned by the single writer, gap-free.
CREATE TABLE events (
    position        BIGINT      PRIMARY KEY CHECK (position > 0),
    event_id        UUID        NOT NULL UNIQUE,
    event_type      TEXT        NOT NULL,
    schema_version  SMALLINT    NOT NULL CHECK (schema_version > 0),
    payload         JSONB       NOT NULL,
    metadata        JSONB       NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    -- SHA-256 of the previous event's hash and this event's canonical bytes (docs/audit.md).
    hash            BYTEA       NOT NULL CHECK (length(hash) = 32)
);

-- Append-only, enforced by the database itself and not only by the code that writes to it.
CREATE FUNCTION events_are_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_append_only();

CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_append_only();

-- The position every inline projection reflects: written in the same transaction as the events.
CREATE TABLE projection_head (
    singleton BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    position  BIGINT  NOT NULL CHECK (position >= 0)
);
INSERT INTO projection_head (position) VALUES (0);

CREATE TABLE assets (
    code      TEXT COLLATE "C" PRIMARY KEY,
    scale     SMALLINT NOT NULL CHECK (scale BETWEEN 0 AND 18),
    position  BIGINT   NOT NULL
);

CREATE TABLE accounts (
    id              UUID        PRIMARY KEY,
    code            TEXT COLLATE "C" NOT NULL UNIQUE,
    allow_negative  BOOLEAN     NOT NULL,
    metadata        JSONB       NOT NULL,
    position        BIGINT      NOT NULL,
    opened_at       TIMESTAMPTZ NOT NULL
);
-- Codes compare byte by byte (COLLATE "C"), whatever the database's locale: listing by prefix is
-- then a range scan of the unique index, and the order is the same on every server.

-- Current balance per (account, asset) and the position of the last event that changed it.
-- Projection tables carry no foreign keys: they are written only by the writer, from events it
-- checked, and checking them again row by row would cost every batch.
CREATE TABLE balances (
    account_id  UUID    NOT NULL,
    asset       TEXT    NOT NULL,
    balance     NUMERIC NOT NULL,
    position    BIGINT  NOT NULL,
    PRIMARY KEY (account_id, asset)
);

-- Postings history: one row per account leg, with the running balance after it. The primary key
-- serves history newest first, with or without an asset filter (an account holds few assets).
CREATE TABLE postings (
    account_id      UUID        NOT NULL,
    position        BIGINT      NOT NULL,
    leg             SMALLINT    NOT NULL,
    asset           TEXT        NOT NULL,
    amount          NUMERIC     NOT NULL,
    balance_after   NUMERIC     NOT NULL,
    transaction_id  UUID        NOT NULL,
    counterparty_id UUID        NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, position, leg)
);

-- Transactions, transfers and trades by id: the event that records each.
CREATE TABLE transactions (
    id        UUID   PRIMARY KEY,
    kind      TEXT   NOT NULL,
    position  BIGINT NOT NULL
);

-- Idempotency keys with a fingerprint of the request and its outcome: the event's position when
-- accepted, the refusal when not. Written in the batch's transaction, so kept across restarts.
CREATE TABLE idempotency_keys (
    key          TEXT        PRIMARY KEY,
    fingerprint  BYTEA       NOT NULL,
    position     BIGINT,
    rejection    JSONB,
    recorded_at  TIMESTAMPTZ NOT NULL,
    CHECK ((position IS NULL) <> (rejection IS NULL))
);
