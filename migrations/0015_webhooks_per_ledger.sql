-- Webhook subscriptions per ledger. A subscription follows one ledger (`ledger`) or every ledger
-- (NULL), and keeps a cursor per ledger it follows: each ledger's positions are its own. A ledger
-- that has no cursor row yet (created after the subscription) is delivered from its start.
ALTER TABLE webhook_subscriptions
    ADD COLUMN ledger TEXT REFERENCES ledgers (name) ON DELETE CASCADE;

CREATE TABLE webhook_cursors (
    subscription_id UUID   NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    ledger          TEXT   NOT NULL REFERENCES ledgers (name) ON DELETE CASCADE,
    -- The last position of this ledger delivered (answered 2xx) or skipped (not matching).
    cursor          BIGINT NOT NULL CHECK (cursor >= 0),
    PRIMARY KEY (subscription_id, ledger)
);

-- A subscription made before there were many ledgers followed the only one: it keeps following
-- `default`, from where it was, so that its receiver gets nothing it did not ask for.
UPDATE webhook_subscriptions SET ledger = 'default';
INSERT INTO webhook_cursors (subscription_id, ledger, cursor)
SELECT id, 'default', cursor FROM webhook_subscriptions;
ALTER TABLE webhook_subscriptions DROP COLUMN cursor;

-- Each attempt names the ledger of its position.
ALTER TABLE webhook_deliveries ADD COLUMN ledger TEXT;
UPDATE webhook_deliveries SET ledger = 'default';
ALTER TABLE webhook_deliveries ALTER COLUMN ledger SET NOT NULL;
DROP INDEX webhook_deliveries_by_position;
CREATE INDEX webhook_deliveries_by_position ON webhook_deliveries (subscription_id, ledger, position);
