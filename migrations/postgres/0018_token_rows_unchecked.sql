-- R22: access and refresh token rows no longer have their references checked on PostgreSQL.
--
-- PostgreSQL checks a foreign key by locking the row it refers to (FOR KEY SHARE). Every token
-- row written took such a lock on its system's row in `clients`, on its person's and on its
-- session's, so the group-commit batches written side by side all locked the same `clients`
-- row, which PostgreSQL must record as a multixact. Without the checks, refresh on PostgreSQL
-- went from 1790–1796 to 2195–2288 rotations/s, alternating runs (BENCHMARKS.md, twelfth run).
--
-- What the checks guarded still holds by how these rows are written and removed: a token row
-- is written only in the transaction that read the person, session and code it names
-- (`oidc::grants`), for a system that authenticated; people, sessions and systems are never
-- deleted (they are retired, ended, disabled); a code is swept only once no access token names
-- it (`jobs::sweep`). SQLite keeps its checks: there a check is an index lookup that locks
-- nothing, and removing them made no difference that could be measured.
ALTER TABLE access_tokens
    DROP CONSTRAINT access_tokens_client_id_fkey,
    DROP CONSTRAINT access_tokens_person_id_fkey,
    DROP CONSTRAINT access_tokens_session_id_fkey,
    DROP CONSTRAINT access_tokens_code_id_fkey;
ALTER TABLE refresh_tokens
    DROP CONSTRAINT refresh_tokens_client_id_fkey,
    DROP CONSTRAINT refresh_tokens_person_id_fkey,
    DROP CONSTRAINT refresh_tokens_session_id_fkey;
