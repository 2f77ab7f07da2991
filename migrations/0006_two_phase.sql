-- Two-phase transactions. A balance row also carries what pending transactions reserve: the
-- available balance is balance - pending_debits; max_balance bounds balance + pending_credits.
ALTER TABLE balances
    ADD COLUMN pending_debits  NUMERIC NOT NULL DEFAULT 0,
    ADD COLUMN pending_credits NUMERIC NOT NULL DEFAULT 0;

-- Pending transactions (insert-only): the event that opened each, and when it expires.
CREATE TABLE holds (
    transaction_id  UUID        PRIMARY KEY,
    position        BIGINT      NOT NULL,
    expires_at      TIMESTAMPTZ
);

-- How each hold ended (insert-only; a hold is settled once): a hold is open while it has no row.
CREATE TABLE hold_settlements (
    transaction_id  UUID        PRIMARY KEY,
    outcome         TEXT        NOT NULL CHECK (outcome IN ('posted', 'voided', 'expired')),
    position        BIGINT      NOT NULL,
    recorded_at     TIMESTAMPTZ NOT NULL
);
