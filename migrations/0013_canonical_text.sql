-- What is hashed is what is stored is what is served. Until now an event's payload and metadata
-- were hashed as canonical JSON text and then stored as jsonb, which re-encodes: it keeps numbers
-- as numeric (so `1e16` came back as `10000000000000000`, and the hash no longer matched: a false
-- tamper alarm any client could raise), and it refuses `\u0000` (so one such string failed the
-- writer's whole batch at commit). From here on they are stored as the very text the writer
-- hashed, and read back byte for byte.
--
-- The rows already written are converted to the canonical text of what jsonb holds: keys sorted
-- by their UTF-8 bytes, no whitespace, jsonb's own string escapes (which are the canonical ones)
-- and numbers as numeric prints them. That is exactly what the ledger hashed for every event that
-- verified before, so they still verify; an event that jsonb had already respelled still fails,
-- and `ledger verify` names it as "stored form differs from hashed form" (docs/audit.md).
--
-- ALTER ... TYPE rewrites the table without firing its row triggers: the log's content (as the
-- chain covers it) is unchanged, only its storage form is.

CREATE FUNCTION ledger_canonical_json(j jsonb) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
BEGIN
    RETURN CASE jsonb_typeof(j)
        WHEN 'object' THEN '{' || COALESCE((
            SELECT string_agg(to_jsonb(e.key)::text || ':' || ledger_canonical_json(e.value), ','
                              ORDER BY convert_to(e.key, 'UTF8'))
            FROM jsonb_each(j) AS e), '') || '}'
        WHEN 'array' THEN '[' || COALESCE((
            SELECT string_agg(ledger_canonical_json(e.value), ',' ORDER BY e.n)
            FROM jsonb_array_elements(j) WITH ORDINALITY AS e(value, n)), '') || ']'
        ELSE j::text
    END;
END;
$$;

ALTER TABLE events
    ALTER COLUMN payload TYPE TEXT USING ledger_canonical_json(payload),
    ALTER COLUMN metadata TYPE TEXT USING ledger_canonical_json(metadata);

-- The projections that serve a client's metadata keep it as the same text.
ALTER TABLE accounts
    ALTER COLUMN metadata TYPE TEXT USING ledger_canonical_json(metadata);
ALTER TABLE account_status_changes
    ALTER COLUMN metadata TYPE TEXT USING ledger_canonical_json(metadata);

DROP FUNCTION ledger_canonical_json(jsonb);
