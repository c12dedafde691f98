//! THE one place that revokes. Card loss, retirement, transfer, suspected compromise,
//! emergency stop, logout, refresh-token reuse, RFC 7009 revocation and code replay all come
//! here, so that whatever is revoked ends everything obtained through it, in the caller's
//! transaction, with its audit event and the back-channel logout notices it owes.
//!
//! What hangs off what:
//! - a browser session → the access tokens issued in it, the refresh-token families bound to it
//!   (not `offline_access` ones: OpenID Back-Channel Logout §2.7), and one logout notice to
//!   every consuming system the session signed in to;
//! - a grant (refresh-token family, whose id is the id of the authorization code that began
//!   it) → its refresh tokens and every access token minted from it;
//! - a person → all of the above, offline families included;
//! - a leaver → everything of the person, and their authenticators and unredeemed codes too:
//!   nothing they hold works again, even if their account were opened by mistake;
//! - a consuming system (client) → every token issued to it and every code not yet redeemed,
//!   but not the sessions of the people who used it: they are the people's, not the system's.
//!   Its own (client_credentials) tokens have no rows: raising its token generation, which
//!   their jti carries, ends every one issued so far;
//! - a role grant (need-based access) → the person's tokens for that system, offline ones
//!   included (they carry the role), and one logout notice to the system for every live
//!   session that signed in to it, so the system logs the person in again with what they hold
//!   now; the sessions themselves stay.

use sqlx::Row;

use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::store::Tx;

/// What is being revoked.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// One browser session and everything obtained through it.
    Session(&'a str),
    /// Every token issued from one authorization code (RFC 6749 §4.1.2: on code replay the
    /// server SHOULD revoke the tokens previously issued from that code).
    AuthorizationCode(&'a str),
    /// One grant: a refresh-token family and its access tokens (RFC 7009 §2.1).
    Grant(&'a str),
    /// A rotated refresh token was presented again: its family and the session it came from
    /// (RFC 9700 §4.14.2).
    ReusedGrant { family_id: &'a str, session_id: &'a str },
    /// One access token of a person (RFC 7009).
    AccessToken(&'a str),
    /// One of a system's own access tokens (client_credentials; RFC 7009). It has no row to
    /// mark: it is listed as revoked until it expires.
    ServiceAccessToken { jti: &'a str, client_id: &'a str, expires_at: UnixTime },
    /// A card or security key reported lost: the authenticator stops working, keeps the
    /// report's reference number, and everything obtained with it ends — the sessions opened
    /// or stepped up with it, their tokens, and the refresh-token families begun in them,
    /// offline ones included.
    Authenticator { id: &'a str, loss_reference: &'a str },
    /// Every session and token of one person.
    Person(&'a str),
    /// A person who has left (退職): every session and token, offline ones included, every
    /// authenticator (revoked, not lost: the card is handed back, not missing) and every
    /// authorization code not yet redeemed. Their account is disabled by `directory` in the
    /// same transaction.
    Leaver(&'a str),
    /// Every session and token of one person but the session they are using (a password
    /// change ends the others).
    PersonExceptSession { person_id: &'a str, session_id: &'a str },
    /// An admin API token (leaked, or no longer needed).
    ApiToken(&'a str),
    /// A role grant ended (end date, transfer, revocation, review): see the module's notes.
    AccessGrant { grant_id: &'a str, person_id: &'a str, client_id: &'a str },
    /// A consuming system disabled (R17's emergency stop for one system): its access tokens,
    /// refresh-token families (offline ones included), unredeemed codes and pending
    /// authorization requests end. People's sessions stay, so no back-channel notice is owed.
    Client(&'a str),
}

/// How much one revocation ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Revoked {
    /// Authenticators stopped now (0 when the one named was already stopped).
    pub authenticators: u64,
    /// Admin API tokens ended now.
    pub api_tokens: u64,
    /// Role grants ended now (0 when the one named had already ended).
    pub access_grants: u64,
    pub sessions: u64,
    /// People's access tokens ended now, and a system's own token revoked on its own. A
    /// system's own tokens ended all at once (by a new token generation) have no rows to count.
    pub access_tokens: u64,
    pub refresh_tokens: u64,
    /// Authorization codes issued but not yet redeemed, now expired.
    pub authorization_codes: u64,
    pub logout_notices: u64,
}

impl Revoked {
    fn add(&mut self, other: Revoked) {
        self.authenticators += other.authenticators;
        self.api_tokens += other.api_tokens;
        self.access_grants += other.access_grants;
        self.sessions += other.sessions;
        self.access_tokens += other.access_tokens;
        self.refresh_tokens += other.refresh_tokens;
        self.authorization_codes += other.authorization_codes;
        self.logout_notices += other.logout_notices;
    }
}

impl Target<'_> {
    /// What kind of thing is revoked, for monitoring (`sekimori_revocations_total`).
    pub fn kind(&self) -> &'static str {
        match self {
            Target::Session(_) => "session",
            Target::AuthorizationCode(_) => "authorization_code",
            Target::Grant(_) => "grant",
            Target::ReusedGrant { .. } => "reused_grant",
            Target::AccessToken(_) | Target::ServiceAccessToken { .. } => "access_token",
            Target::Authenticator { .. } => "authenticator",
            Target::Person(_) => "person",
            Target::Leaver(_) => "leaver",
            Target::PersonExceptSession { .. } => "person_except_session",
            Target::ApiToken(_) => "api_token",
            Target::AccessGrant { .. } => "access_grant",
            Target::Client(_) => "client",
        }
    }
}

/// Revokes `target`, recording who did it and why.
///
/// A revocation updates many rows at once (every token of a person, of a system), while
/// refreshes and other revocations update some of the same rows in their own order; on
/// PostgreSQL two such transactions can wait for each other, and the database then abandons
/// one of them. A revocation must not be the one that gives way — a lost card reported, a
/// leaver's access ended — so its writes run after a savepoint in the caller's transaction,
/// and if the database abandons them they are undone (their row locks released, so the other
/// transaction finishes) and done again after giving way (`store::give_way`). What the caller
/// wrote before is untouched.
pub async fn revoke(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    target: Target<'_>,
    reason: &str,
) -> Result<Revoked, sqlx::Error> {
    let mut retries = 0;
    loop {
        let mark = tx.mark().await?;
        match revoke_once(tx, actor, now, target, reason).await {
            Ok(revoked) => {
                tx.keep(mark).await?;
                return Ok(revoked);
            }
            Err(e) if crate::store::is_transient(&e) && retries < crate::store::DEADLOCK_RETRIES => {
                tracing::info!(target = target.kind(), "a revocation gave way to break a deadlock; revoking again");
                tx.back_to(mark).await?;
                crate::store::give_way(retries).await;
                retries += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn revoke_once(
    tx: &mut Tx,
    actor: &Actor,
    now: UnixTime,
    target: Target<'_>,
    reason: &str,
) -> Result<Revoked, sqlx::Error> {
    let kind = target.kind();
    tx.after_commit(Box::new(move || crate::metrics::revocation(kind)));
    let mut revoked = Revoked::default();
    let mut loss_reference = None;
    let mut token_generation = None;
    let target_text = match target {
        Target::Session(id) => {
            revoked.add(end_sessions(tx, now, reason, "id = $1", &[id]).await?);
            format!("session:{id}")
        }
        Target::AuthorizationCode(code_id) => {
            revoked.add(end_grant(tx, now, code_id).await?);
            format!("auth_code:{code_id}")
        }
        Target::Grant(family_id) => {
            revoked.add(end_grant(tx, now, family_id).await?);
            format!("grant:{family_id}")
        }
        Target::ReusedGrant { family_id, session_id } => {
            revoked.add(end_grant(tx, now, family_id).await?);
            revoked.add(end_sessions(tx, now, reason, "id = $1", &[session_id]).await?);
            format!("grant:{family_id}")
        }
        Target::Authenticator { id, loss_reference: reference } => {
            revoked.authenticators += sqlx::query(
                "UPDATE authenticators SET status = 'lost', revoked_at = $1, revoked_reason = $2, revoked_by = $3,
                     loss_reference = $4
                 WHERE id = $5 AND status = 'active'",
            )
            .bind(now)
            .bind(reason)
            .bind(actor.as_text())
            .bind(reference)
            .bind(id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            loss_reference = Some(reference);
            let in_card_sessions = "session_id IN (SELECT id FROM sessions WHERE authenticator_id = $2)";
            revoked.access_tokens += update(
                tx,
                now,
                "access_tokens",
                "family_id IN (SELECT family_id FROM refresh_tokens WHERE session_id IN
                     (SELECT id FROM sessions WHERE authenticator_id = $2))",
                &[id],
            )
            .await?;
            revoked.refresh_tokens += update(tx, now, "refresh_tokens", in_card_sessions, &[id]).await?;
            revoked.add(end_sessions(tx, now, reason, "authenticator_id = $1", &[id]).await?);
            format!("authenticator:{id}")
        }
        Target::AccessToken(jti) => {
            revoked.access_tokens += update(tx, now, "access_tokens", "jti = $2", &[jti]).await?;
            format!("access_token:{jti}")
        }
        Target::ServiceAccessToken { jti, client_id, expires_at } => {
            revoked.access_tokens += sqlx::query(
                "INSERT INTO revoked_access_tokens (jti, client_id, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT (jti) DO NOTHING",
            )
            .bind(jti)
            .bind(client_id)
            .bind(expires_at)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            format!("access_token:{jti}")
        }
        Target::Person(person_id) => {
            revoked.add(end_person(tx, now, reason, person_id).await?);
            format!("person:{person_id}")
        }
        Target::Leaver(person_id) => {
            revoked.add(end_person(tx, now, reason, person_id).await?);
            revoked.authenticators += sqlx::query(
                "UPDATE authenticators SET status = 'revoked', revoked_at = $1, revoked_reason = $2, revoked_by = $3
                 WHERE person_id = $4 AND status = 'active'",
            )
            .bind(now)
            .bind(reason)
            .bind(actor.as_text())
            .bind(person_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            // A leaver holds no role and asks for none (their tokens ended above).
            sqlx::query(
                "UPDATE access_grants SET ended_at = $1, end_reason = 'left' WHERE person_id = $2 AND ended_at IS NULL",
            )
            .bind(now)
            .bind(person_id)
            .execute(&mut **tx)
            .await?;
            sqlx::query(
                "UPDATE access_requests SET status = 'withdrawn', decided_at = $1 WHERE person_id = $2 AND status = 'pending'",
            )
            .bind(now)
            .bind(person_id)
            .execute(&mut **tx)
            .await?;
            format!("person:{person_id}")
        }
        Target::ApiToken(id) => {
            revoked.api_tokens += update(tx, now, "api_tokens", "id = $2", &[id]).await?;
            format!("api_token:{id}")
        }
        Target::AccessGrant { grant_id, person_id, client_id } => {
            // The row's update is the claim: of two revocations racing, the second finds it
            // ended (PostgreSQL makes it wait for the first) and ends nothing, records nothing.
            revoked.access_grants = sqlx::query(
                "UPDATE access_grants SET ended_at = $1, end_reason = $2 WHERE id = $3 AND ended_at IS NULL",
            )
            .bind(now)
            .bind(reason)
            .bind(grant_id)
            .execute(&mut **tx)
            .await?
            .rows_affected();
            if revoked.access_grants == 0 {
                return Ok(revoked);
            }
            revoked.add(end_person_on_client(tx, now, person_id, client_id).await?);
            format!("access_grant:{grant_id}")
        }
        Target::Client(client_id) => {
            let (ended, generation) = end_client(tx, now, client_id).await?;
            revoked.add(ended);
            token_generation = generation;
            format!("client:{client_id}")
        }
        Target::PersonExceptSession { person_id, session_id } => {
            revoked.add(end_sessions(tx, now, reason, "person_id = $1 AND id <> $2", &[person_id, session_id]).await?);
            revoked.access_tokens += update(
                tx,
                now,
                "access_tokens",
                "person_id = $2 AND (session_id IS NULL OR session_id <> $3)",
                &[person_id, session_id],
            )
            .await?;
            revoked.refresh_tokens +=
                update(tx, now, "refresh_tokens", "person_id = $2 AND session_id <> $3", &[person_id, session_id])
                    .await?;
            format!("person:{person_id}")
        }
    };
    let mut detail = serde_json::json!({
            "reason": reason,
            "authenticators": revoked.authenticators,
            "api_tokens": revoked.api_tokens,
            "access_grants": revoked.access_grants,
            "sessions": revoked.sessions,
            "access_tokens": revoked.access_tokens,
            "refresh_tokens": revoked.refresh_tokens,
            "authorization_codes": revoked.authorization_codes,
            "logout_notices": revoked.logout_notices,
    });
    if let (Some(reference), Some(fields)) = (loss_reference, detail.as_object_mut()) {
        fields.insert("loss_reference".into(), reference.into());
    }
    // The system's own tokens are not counted (they have no rows): the record says from which
    // generation on they are good again.
    if let (Some(generation), Some(fields)) = (token_generation, detail.as_object_mut()) {
        fields.insert("token_generation".into(), generation.into());
    }
    Event::success(actor, "revoke", target_text, detail).record(tx, now).await?;
    // Every node hears of it at commit, to drop whatever it may hold of the revoked (R22).
    crate::store::changes::announce(tx, crate::store::changes::Change::Revocation).await?;
    Ok(revoked)
}

/// `UPDATE table SET revoked_at = now WHERE <filter> AND revoked_at IS NULL`; `$1` is now and
/// the filter's own parameters start at `$2`. Filters are constants of this module.
async fn update(tx: &mut Tx, now: UnixTime, table: &str, filter: &str, binds: &[&str]) -> Result<u64, sqlx::Error> {
    let sql = format!("UPDATE {table} SET revoked_at = $1 WHERE {filter} AND revoked_at IS NULL");
    let mut query = sqlx::query(&sql).bind(now);
    for value in binds {
        query = query.bind(*value);
    }
    Ok(query.execute(&mut **tx).await?.rows_affected())
}

/// Every session of a person (with its notices) and every token, offline ones included.
async fn end_person(tx: &mut Tx, now: UnixTime, reason: &str, person_id: &str) -> Result<Revoked, sqlx::Error> {
    let mut revoked = end_sessions(tx, now, reason, "person_id = $1", &[person_id]).await?;
    revoked.access_tokens += update(tx, now, "access_tokens", "person_id = $2", &[person_id]).await?;
    revoked.refresh_tokens += update(tx, now, "refresh_tokens", "person_id = $2", &[person_id]).await?;
    // A code issued just before (a suspension, a compromise, a leave) must not still buy tokens.
    revoked.authorization_codes += expire_codes(tx, now, "person_id", person_id).await?;
    Ok(revoked)
}

/// Unredeemed authorization codes of one person or client expire now: a code cannot be marked
/// used (its redemption would then look like a replay and revoke what it issued).
async fn expire_codes(tx: &mut Tx, now: UnixTime, column: &'static str, id: &str) -> Result<u64, sqlx::Error> {
    let sql =
        format!("UPDATE auth_codes SET expires_at = $1 WHERE {column} = $2 AND used_at IS NULL AND expires_at > $1");
    Ok(sqlx::query(&sql).bind(now).bind(id).execute(&mut **tx).await?.rows_affected())
}

/// A grant's refresh tokens and the access tokens minted from it (the first of which came
/// from the authorization code whose id the family carries).
async fn end_grant(tx: &mut Tx, now: UnixTime, family_id: &str) -> Result<Revoked, sqlx::Error> {
    Ok(Revoked {
        refresh_tokens: update(tx, now, "refresh_tokens", "family_id = $2", &[family_id]).await?,
        access_tokens: update(tx, now, "access_tokens", "(family_id = $2 OR code_id = $2)", &[family_id, family_id])
            .await?,
        ..Revoked::default()
    })
}

/// A person's tokens for one system (offline ones included) and a logout notice to the system
/// for each of the person's live sessions that signed in to it.
async fn end_person_on_client(
    tx: &mut Tx,
    now: UnixTime,
    person_id: &str,
    client_id: &str,
) -> Result<Revoked, sqlx::Error> {
    let mut revoked = Revoked {
        access_tokens: update(tx, now, "access_tokens", "person_id = $2 AND client_id = $3", &[person_id, client_id])
            .await?,
        refresh_tokens: update(tx, now, "refresh_tokens", "person_id = $2 AND client_id = $3", &[person_id, client_id])
            .await?,
        ..Revoked::default()
    };
    let sessions = sqlx::query(
        "SELECT s.id FROM sessions s JOIN session_clients sc ON sc.session_id = s.id
         WHERE s.person_id = $1 AND sc.client_id = $2 AND s.revoked_at IS NULL AND s.absolute_expires_at > $3",
    )
    .bind(person_id)
    .bind(client_id)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?;
    for row in sessions {
        let session_id: String = row.try_get("id")?;
        revoked.logout_notices += queue_logout_notices(tx, now, &session_id, person_id, Some(client_id)).await?;
    }
    Ok(revoked)
}

/// Everything issued to one client. A code cannot be marked used (its redemption would then
/// look like a replay), so it expires now: a code that outlived a disable and enable is
/// refused as expired. Requests pending a login are dropped, so no code is issued for them.
/// Returns, beside what ended, the client's new token generation (None for an unknown client).
async fn end_client(tx: &mut Tx, now: UnixTime, client_id: &str) -> Result<(Revoked, Option<i64>), sqlx::Error> {
    // The system's own tokens carry the generation they were issued in: raising it ends them
    // all, on every node at its next check. A token request that read the old generation just
    // before this commits signs a token of that generation, which is as ended as the others.
    let generation = sqlx::query(
        "UPDATE clients SET token_generation = token_generation + 1 WHERE client_id = $1 RETURNING token_generation",
    )
    .bind(client_id)
    .fetch_optional(&mut **tx)
    .await?
    .map(|row| row.try_get::<i64, _>("token_generation"))
    .transpose()?;
    let access_tokens = update(tx, now, "access_tokens", "client_id = $2", &[client_id]).await?;
    let refresh_tokens = update(tx, now, "refresh_tokens", "client_id = $2", &[client_id]).await?;
    let authorization_codes = expire_codes(tx, now, "client_id", client_id).await?;
    sqlx::query("DELETE FROM authorization_requests WHERE client_id = $1").bind(client_id).execute(&mut **tx).await?;
    Ok((Revoked { access_tokens, refresh_tokens, authorization_codes, ..Revoked::default() }, generation))
}

/// Ends the live sessions matching `filter` (parameters from `$1`), one by one so that each
/// is ended, and its consuming systems told, exactly once even when two revocations race.
async fn end_sessions(
    tx: &mut Tx,
    now: UnixTime,
    reason: &str,
    filter: &str,
    binds: &[&str],
) -> Result<Revoked, sqlx::Error> {
    let sql = format!("SELECT id, person_id FROM sessions WHERE {filter} AND revoked_at IS NULL");
    let mut query = sqlx::query(&sql);
    for value in binds {
        query = query.bind(*value);
    }
    let rows = query.fetch_all(&mut **tx).await?;
    let mut revoked = Revoked::default();
    for row in rows {
        let id: String = row.try_get("id")?;
        let person_id: String = row.try_get("person_id")?;
        let ended = sqlx::query(
            "UPDATE sessions SET revoked_at = $1, revoked_reason = $2 WHERE id = $3 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(reason)
        .bind(&id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if ended == 0 {
            continue;
        }
        revoked.sessions += 1;
        revoked.access_tokens += update(tx, now, "access_tokens", "session_id = $2", &[&id]).await?;
        revoked.refresh_tokens += update(tx, now, "refresh_tokens", "session_id = $2 AND offline = 0", &[&id]).await?;
        revoked.logout_notices += queue_logout_notices(tx, now, &id, &person_id, None).await?;
    }
    Ok(revoked)
}

/// Writes a back-channel logout notice (the outbox `backchannel` delivers from) for every
/// consuming system that session `session_id` signed in to (or only `only_client`) and that
/// has a back-channel logout URI and is not disabled (a disabled system holds no token of the
/// session any more: there is nothing to tell it). Returns how many.
async fn queue_logout_notices(
    tx: &mut Tx,
    now: UnixTime,
    session_id: &str,
    person_id: &str,
    only_client: Option<&str>,
) -> Result<u64, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT c.client_id FROM session_clients sc JOIN clients c ON c.client_id = sc.client_id
         WHERE sc.session_id = $1 AND c.backchannel_logout_uri IS NOT NULL AND c.status = 'active'
           AND ($2 = '' OR c.client_id = $2)
         ORDER BY c.client_id",
    )
    .bind(session_id)
    .bind(only_client.unwrap_or(""))
    .fetch_all(&mut **tx)
    .await?;
    let mut queued = 0;
    for row in rows {
        let client_id: String = row.try_get("client_id")?;
        sqlx::query(
            "INSERT INTO logout_notices (id, client_id, person_id, session_id, created_at, attempts, next_attempt_at)
             VALUES ($1, $2, $3, $4, $5, 0, $5)",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(&client_id)
        .bind(person_id)
        .bind(session_id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        queued += 1;
    }
    Ok(queued)
}
