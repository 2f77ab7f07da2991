-- Account lifecycle and limits: insert-only projections of AccountStatusChanged and
-- AccountLimitsSet. The current status and limits are the latest row per account (and asset); the
-- rows themselves are the account's history of such changes.
CREATE TABLE account_status_changes (
    account_id   UUID        NOT NULL,
    position     BIGINT      NOT NULL,
    status       TEXT        NOT NULL CHECK (status IN ('open', 'frozen', 'closed')),
    metadata     JSONB       NOT NULL,
    recorded_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, position)
);

-- NULL is unbounded.
CREATE TABLE account_limits (
    account_id   UUID        NOT NULL,
    asset        TEXT        NOT NULL,
    position     BIGINT      NOT NULL,
    min_balance  NUMERIC,
    max_balance  NUMERIC,
    recorded_at  TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (account_id, asset, position)
);
