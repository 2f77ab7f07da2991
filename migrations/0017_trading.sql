-- Trading: settlement dates and booking methods. A trade that settles after its trade date is a hold that
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
    -- Each account's booking method, stated at opening or changed later, from its position on.
    EXECUTE format(
        'CREATE TABLE %I.booking_methods (
            position        BIGINT  PRIMARY KEY,
            account         TEXT    NOT NULL,
            booking_method  TEXT    NOT NULL
                CHECK (booking_method IN (''fifo'', ''lifo'', ''hifo'', ''average'', ''specific''))
        )', book);
    EXECUTE format('CREATE INDEX booking_methods_by_account ON %I.booking_methods (account, position)', book);
END
$$;

SELECT pg_temp.trading_settlement('public');
SELECT pg_temp.trading_settlement(schema_name) FROM ledgers WHERE schema_name <> 'public';
