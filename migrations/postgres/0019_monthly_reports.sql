-- R19: the months whose reports Sekimori wrote on its own (`reports::monthly`), one row a
-- month: the claim that makes them written once across the cluster and across restarts. What
-- was written (each file with its size and SHA-256) is in the audit event `report.written`.
CREATE TABLE monthly_reports (
    month      TEXT PRIMARY KEY,
    written_at BIGINT NOT NULL
);
