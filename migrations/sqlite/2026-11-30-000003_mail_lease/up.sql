-- The worker that holds a mail row's lease (a random id per running worker): only that worker
-- renews the lease, records the outcome, or releases the row when it stops.
ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
