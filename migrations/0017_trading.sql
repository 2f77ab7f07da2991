-- Trading, part one: settlement dates. A trade that settles after its trade date is a hold that
-- the ledger posts by itself at its settlement time, and it may settle in parts before that:
-- each `PendingPosted` that leaves the rest reserved is listed in `hold_parts` (inline: the
-- writer restores an open hold's remaining postings from the latest of them).
--
-- Every book gets the same changes: `public` (ledger `default`) here, and each other ledger's
-- schema in the loop at the end.
CREATE FUNCTION pg_temp.trading_settlement(book TEXT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'CREATE TABLE %I.hold_parts (
            position        BIGINT  PRIMARY KEY,
            transaction_id  UUID    NOT NULL
        )', book);
    EXECUTE format('CREATE INDEX hold_parts_by_transaction ON %I.hold_parts (transaction_id, position)', book);
END
$$;

SELECT pg_temp.trading_settlement('public');
SELECT pg_temp.trading_settlement(schema_name) FROM ledgers WHERE schema_name <> 'public';
