-- Atomic rate limits shared by every instance: one row per limited thing (e.g. one inviter in
-- one organization), its current window and the count taken in it. A unit is taken by one
-- conditional UPDATE (`n = n + 1 WHERE n < limit`), so concurrent requests never overshoot.
CREATE TABLE rate_counters (
    key TEXT PRIMARY KEY NOT NULL,
    window_start TIMESTAMP NOT NULL,
    n BIGINT NOT NULL
);
