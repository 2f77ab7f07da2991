-- Trading, part two: lots, cost basis, realized P&L and marks, all asynchronous projections of
-- the log (`infrastructure/src/projections/lots.rs` and `prices.rs`). Per book (account,
-- instrument, cost currency): every movement, the open lots, the closed parts and the totals;
-- per pair of assets its marks. Each account's booking methods are 0017's `booking_methods`.
--
-- Every book gets the same changes: `public` (ledger `default`) here, and each other ledger's
-- schema in the loop at the end.
CREATE FUNCTION pg_temp.trading_lots(book TEXT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    -- Codes compare byte by byte, as account codes do (`accounts.code`).
    EXECUTE format(
        'CREATE TABLE %I.lot_movements (
            account         TEXT COLLATE "C" NOT NULL,
            instrument      TEXT     NOT NULL,
            currency        TEXT     NOT NULL,
            position        BIGINT   NOT NULL,
            leg             SMALLINT NOT NULL,
            lot_id          TEXT     NOT NULL,
            transaction_id  UUID     NOT NULL,
            trade_date      DATE     NOT NULL,
            quantity        NUMERIC  NOT NULL,
            amount          NUMERIC  NOT NULL,
            PRIMARY KEY (account, instrument, currency, position, leg)
        )', book);
    -- The books a reversed or settled transaction was in; an account's movements by trade date
    -- (positions as of a date).
    EXECUTE format('CREATE INDEX lot_movements_by_transaction ON %I.lot_movements (transaction_id)', book);
    EXECUTE format('CREATE INDEX lot_movements_by_date ON %I.lot_movements (account, trade_date)', book);
    EXECUTE format(
        'CREATE TABLE %I.lots (
            account         TEXT COLLATE "C" NOT NULL,
            instrument      TEXT     NOT NULL,
            currency        TEXT     NOT NULL,
            lot_id          TEXT     NOT NULL,
            leg             SMALLINT NOT NULL,
            transaction_id  UUID     NOT NULL,
            position        BIGINT   NOT NULL,
            trade_date      DATE     NOT NULL,
            quantity        NUMERIC  NOT NULL CHECK (quantity <> 0),
            cost            NUMERIC  NOT NULL,
            PRIMARY KEY (account, instrument, currency, lot_id)
        )', book);
    EXECUTE format(
        'CREATE TABLE %I.lot_closings (
            account         TEXT COLLATE "C" NOT NULL,
            instrument      TEXT     NOT NULL,
            currency        TEXT     NOT NULL,
            position        BIGINT   NOT NULL,
            part            SMALLINT NOT NULL,
            lot_id          TEXT     NOT NULL,
            transaction_id  UUID     NOT NULL,
            opened          DATE     NOT NULL,
            closed          DATE     NOT NULL,
            quantity        NUMERIC  NOT NULL CHECK (quantity > 0),
            cost            NUMERIC  NOT NULL,
            proceeds        NUMERIC  NOT NULL,
            PRIMARY KEY (account, instrument, currency, position, part)
        )', book);
    -- Realized P&L over a range of dates.
    EXECUTE format('CREATE INDEX lot_closings_by_date ON %I.lot_closings (account, closed)', book);
    EXECUTE format(
        'CREATE TABLE %I.lot_books (
            account         TEXT COLLATE "C" NOT NULL,
            instrument      TEXT     NOT NULL,
            currency        TEXT     NOT NULL,
            quantity        NUMERIC  NOT NULL,
            amount          NUMERIC  NOT NULL,
            realized        NUMERIC  NOT NULL,
            PRIMARY KEY (account, instrument, currency)
        )', book);
    EXECUTE format(
        'CREATE TABLE %I.prices (
            position        BIGINT      PRIMARY KEY,
            instrument      TEXT        NOT NULL,
            currency        TEXT        NOT NULL,
            price           NUMERIC     NOT NULL CHECK (price > 0),
            as_of           TIMESTAMPTZ NOT NULL,
            recorded_at     TIMESTAMPTZ NOT NULL
        )', book);
    -- The latest mark of a pair at or before a time; a pair's marks newest first.
    EXECUTE format(
        'CREATE INDEX prices_by_time ON %I.prices (instrument, currency, as_of DESC, position DESC)', book);
END
$$;

SELECT pg_temp.trading_lots('public');
SELECT pg_temp.trading_lots(schema_name) FROM ledgers WHERE schema_name <> 'public';
