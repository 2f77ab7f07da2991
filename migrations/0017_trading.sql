-- Trading: settlement dates and booking methods. A trade that settles after its trade date is a hold that
-- the ledger posts by itself at its settlement time, and it may settle in parts before that:
-- each `PendingPosted` that leaves the rest reserved is listed in `hold_parts` (inline: the
-- writer restores an open hold's remaining postings from the latest of them).
--
-- `holds.settles_at` is when such a trade settles (a ledger with one keeps its writer running,
-- as one with a hold to expire does). `hold_dues` holds, per account, hold and asset, what the
-- hold still has due in and out of the account (zero once it has ended): the settlement ladder,
-- read through the partial index of open rows at the cost of the account's open holds.
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
    EXECUTE format('ALTER TABLE %I.holds ADD COLUMN settles_at TIMESTAMPTZ', book);
    EXECUTE format(
        'CREATE TABLE %I.hold_dues (
            account_id      UUID             NOT NULL,
            transaction_id  UUID             NOT NULL,
            asset           TEXT COLLATE "C" NOT NULL,
            settles_at      TIMESTAMPTZ,
            due_in          NUMERIC          NOT NULL,
            due_out         NUMERIC          NOT NULL,
            PRIMARY KEY (account_id, transaction_id, asset)
        )', book);
    EXECUTE format(
        'CREATE INDEX hold_dues_open ON %I.hold_dues (account_id)
         WHERE due_in <> 0 OR due_out <> 0', book);
    PERFORM pg_temp.trading_hold_dues(book);
END
$$;

-- The dues of the holds written before this migration, as the writer would have written them:
-- no trade had a settlement date yet, so each hold reserves what its event lists until it ends,
-- and an ended hold's rows are at zero. Every amount at its asset's scale but zero, which the
-- writer's driver sends without decimal places (`0`): so that a rebuild equals these rows.
CREATE FUNCTION pg_temp.trading_hold_dues(book TEXT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format(
        'INSERT INTO %1$I.hold_dues (account_id, transaction_id, asset, settles_at, due_in, due_out)
         SELECT a.id, h.transaction_id, m.asset, NULL,
                COALESCE(NULLIF(round(CASE WHEN s.transaction_id IS NULL THEN sum(m.due_in) ELSE 0 END, c.scale), 0), 0),
                COALESCE(NULLIF(round(CASE WHEN s.transaction_id IS NULL THEN sum(m.due_out) ELSE 0 END, c.scale), 0), 0)
         FROM %1$I.holds h
         JOIN %1$I.events e ON e.position = h.position
         LEFT JOIN %1$I.hold_settlements s ON s.transaction_id = h.transaction_id
         CROSS JOIN LATERAL jsonb_array_elements(e.payload::jsonb -> ''postings'') AS p(posting)
         CROSS JOIN LATERAL (VALUES
             (p.posting ->> ''destination'', p.posting ->> ''asset'', (p.posting ->> ''amount'')::numeric, 0::numeric),
             (p.posting ->> ''source'', p.posting ->> ''asset'', 0::numeric, (p.posting ->> ''amount'')::numeric)
         ) AS m(account, asset, due_in, due_out)
         JOIN %1$I.accounts a ON a.code = m.account
         JOIN %1$I.assets c ON c.code = m.asset
         GROUP BY a.id, h.transaction_id, m.asset, s.transaction_id, c.scale', book);
END
$$;

SELECT pg_temp.trading_settlement('public');
SELECT pg_temp.trading_settlement(schema_name) FROM ledgers WHERE schema_name <> 'public';
