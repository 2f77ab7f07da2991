-- Reversals (insert-only): each reversal and the transaction it reverses, which it can be only once.
CREATE TABLE reversals (
    transaction_id  UUID   PRIMARY KEY,
    reverses        UUID   NOT NULL UNIQUE,
    position        BIGINT NOT NULL
);
