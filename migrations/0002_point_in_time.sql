-- Point-in-time reads by recorded time: recorded_at grows with position, so a BRIN index finds the
-- position for a time cheaply, and costs next to nothing on insert.
CREATE INDEX events_recorded_at ON events USING brin (recorded_at);
