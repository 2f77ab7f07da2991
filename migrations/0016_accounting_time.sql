-- Accounting time. An event counts in the books at its `effective_at`, or when it was recorded;
-- the postings history keeps that time on every leg, so that balances as of a date, history in
-- effective order and trial balances are read from it. Closes and reopens of periods are events
-- of the log; `periods` lists them (inline: the writer restores the closed periods from it).
--
-- Every book gets the same changes: `public` (ledger `default`) here, and each other ledger's
-- schema in the loop at the end.
CREATE FUNCTION pg_temp.accounting_time(book TEXT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %I.postings ADD COLUMN effective_at TIMESTAMPTZ', book);
    -- Before this migration no event stated an effective time: each counted when recorded.
    EXECUTE format('UPDATE %I.postings SET effective_at = recorded_at', book);
    EXECUTE format('ALTER TABLE %I.postings ALTER COLUMN effective_at SET NOT NULL', book);
    -- Balances as of a date and history in effective order: an account's legs in effective
    -- order, with what a sum needs, read from the index alone. Not (account_id, asset, …): the
    -- planner would then take it for "an account's last leg in an asset" (ORDER BY position), which
    -- the primary key answers with one row, and sort every leg of the account instead.
    EXECUTE format(
        'CREATE INDEX postings_by_effective ON %I.postings (account_id, effective_at, position, leg)
         INCLUDE (asset, amount)', book);
    EXECUTE format(
        'CREATE TABLE %I.periods (
            position            BIGINT      PRIMARY KEY,
            period              BIGINT      NOT NULL CHECK (period > 0),
            action              TEXT        NOT NULL CHECK (action IN (''closed'', ''reopened'')),
            through             TIMESTAMPTZ,
            known_at_position   BIGINT,
            trial_balance_digest TEXT,
            reason              TEXT,
            recorded_at         TIMESTAMPTZ NOT NULL
        )', book);
END
$$;

SELECT pg_temp.accounting_time('public');
SELECT pg_temp.accounting_time(schema_name) FROM ledgers WHERE schema_name <> 'public';
