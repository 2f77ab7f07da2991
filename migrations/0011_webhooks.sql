-- Webhook subscriptions: each follows the log from its own cursor and POSTs the events that match
-- its filters, one per request, signed with its secret. They are not ledger events: like API keys
-- they live in their own tables. The secret is kept as is (it must sign), like the cursor key.
CREATE TABLE webhook_subscriptions (
    id                    UUID        PRIMARY KEY,
    url                   TEXT        NOT NULL,
    -- Event type names; empty: every type.
    event_types           TEXT[]      NOT NULL,
    -- Account code segments; an event matches when an account it touches is under them.
    account_prefix        TEXT,
    secret                TEXT        NOT NULL,
    -- The last position delivered (answered 2xx) or skipped (not matching): delivery resumes
    -- after it, so it moves only once the receiver has answered.
    cursor                BIGINT      NOT NULL CHECK (cursor >= 0),
    enabled               BOOLEAN     NOT NULL,
    disabled_reason       TEXT,
    consecutive_failures  INTEGER     NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    -- The first failure of the current run of failures (retries stop 24 h after it).
    failing_since         TIMESTAMPTZ,
    next_attempt_at       TIMESTAMPTZ NOT NULL,
    created_at            TIMESTAMPTZ NOT NULL
);

-- Every attempt, successful or not: what the receiver answered, or why nothing was sent.
CREATE TABLE webhook_deliveries (
    id               BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    subscription_id  UUID        NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    position         BIGINT      NOT NULL,
    -- 1 for the first attempt at this position, 2 for its first retry, …
    attempt          INTEGER     NOT NULL CHECK (attempt >= 1),
    outcome          TEXT        NOT NULL,
    status_code      SMALLINT,
    error            TEXT,
    latency_ms       INTEGER     NOT NULL CHECK (latency_ms >= 0),
    attempted_at     TIMESTAMPTZ NOT NULL
);
CREATE INDEX webhook_deliveries_by_subscription ON webhook_deliveries (subscription_id, id);
-- An attempt's number counts the earlier attempts at its position.
CREATE INDEX webhook_deliveries_by_position ON webhook_deliveries (subscription_id, position);
