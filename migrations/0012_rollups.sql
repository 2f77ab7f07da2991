-- Roll-up balances (asynchronous projection `rollups`): for every code prefix of whole segments
-- (`` for the whole ledger, `broker`, `broker:alice`, …, the full code itself) the sums over
-- every account whose code has that prefix, per asset, and the number of such accounts. The
-- projector adds each event's changes to them, so a read never sums accounts.
CREATE TABLE rollups (
    prefix          TEXT COLLATE "C" NOT NULL,
    asset           TEXT COLLATE "C" NOT NULL,
    -- In smallest units of the asset (whole numbers): a sum then reads the same however its
    -- terms were grouped, which a decimal zero bound as `0` rather than `0.00` would not.
    posted_units          NUMERIC NOT NULL,
    pending_debits_units  NUMERIC NOT NULL,
    pending_credits_units NUMERIC NOT NULL,
    PRIMARY KEY (prefix, asset)
);

-- Keyed by the parent prefix first, so that the next segments under a prefix are one range of
-- the index (`` is the parent of the top segments, and of `` itself).
CREATE TABLE rollup_accounts (
    parent   TEXT COLLATE "C" NOT NULL,
    prefix   TEXT COLLATE "C" NOT NULL,
    accounts BIGINT NOT NULL,
    PRIMARY KEY (parent, prefix)
);
