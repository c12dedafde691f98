-- Indexes for applying a large HR batch (the April-1 benchmark, benches/april_first.rs). Kept in
-- step with migrations/sqlite/0009_hr_apply_indexes.sql.

-- A person's pending and applied changes: the job's claim ("no earlier change of this person is
-- still pending") and its late-arrival check. Without it the claim searched every pending
-- change by status, so applying n changes cost O(n²): 61 s for 23,000 on SQLite.
CREATE INDEX person_changes_person_status ON person_changes (employee_number, status, effective_at, phase);

-- The job's page of due changes, read in its order without sorting every pending change.
DROP INDEX person_changes_due;
CREATE INDEX person_changes_due ON person_changes (status, effective_at, phase, created_at, id);

-- A leaver's or a suspended person's unredeemed codes (revocation's expire_codes).
CREATE INDEX auth_codes_person ON auth_codes (person_id);
