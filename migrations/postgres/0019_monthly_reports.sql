-- R19: the months whose self-inspection report Sekimori wrote on its own (`reports::monthly`),
-- one row a month, so that it is written once across the cluster and across restarts. `files`
-- is a JSON array of the files written, each with its size and SHA-256 (also in the audit event
-- `report.written`).
CREATE TABLE monthly_reports (
    month      TEXT PRIMARY KEY,
    written_at BIGINT NOT NULL,
    files      TEXT NOT NULL
);
