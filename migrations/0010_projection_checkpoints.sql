-- Asynchronous projections: built after the commit by the projector, which follows the log. Each
-- keeps the position it reflects here, written in the same transaction as its rows, so that after
-- a crash it resumes exactly where its last commit left it: nothing missed, nothing applied twice.
-- A projection with no row yet (one added in a later release) is built from the start of the log.
CREATE TABLE projection_checkpoints (
    name        TEXT        PRIMARY KEY,
    position    BIGINT      NOT NULL CHECK (position >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Until now the postings history and the transactions index were written with the events: they
-- reflect exactly what the inline projections do.
INSERT INTO projection_checkpoints (name, position)
SELECT name, position FROM projection_head, (VALUES ('postings'), ('transactions')) AS p(name);
