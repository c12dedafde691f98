//! Rules of the use cases at a fixed `now`, called as functions — no HTTP, no waiting: a code
//! outlives its 60 seconds by not one, a rotated refresh token presented again ends its whole
//! family, and an account's lock holds to the second and then lets the right password in.

use sekimori::audit::Actor;
use sekimori::clock::Clock;
use sekimori::directory::{self, InitialPassword, LoginId, NewPerson};
use sekimori::login::{self, Attempt, Step};
use sekimori::oidc::flow::{self, AuthorizationRequest};
use sekimori::oidc::grants::{self, Grant, TokenResponse};
use sekimori::password::policy;
use sekimori::sessions::{self, NewSession, Session};
use sekimori::systems::{self, Client, NewClient};
use sekimori::App;
use serde_json::json;
use sqlx::Row;

use crate::common::{fresh_database, test_config, Db};

const PASSWORD: &str = "kawa-no-nagare-wa-taezu";
const REDIRECT: &str = "http://127.0.0.1:9001/callback";
/// A fixed instant (2026-04-01 00:00 JST): everything below happens at a time the test names.
const T0: i64 = 1_775_001_600;

/// The tax system's authorization request for `openid`.
fn request() -> AuthorizationRequest {
    AuthorizationRequest {
        client_id: "zeimu".into(),
        redirect_uri: REDIRECT.into(),
        scope: "openid".into(),
        state: None,
        nonce: None,
        code_challenge: None,
        max_age: None,
        prompt: None,
        login_hint: None,
        acr_values: None,
        claims: None,
        direct: false,
    }
}

struct World {
    app: App,
    client: Client,
    account_id: String,
    session: Session,
    database_url: String,
}

/// An app on a fresh database, not serving: one person with a password, one confidential
/// client with the code and refresh grants, one browser session opened at `T0`.
async fn world(db: Db) -> World {
    let database_url = fresh_database(db).await;
    let any: std::net::SocketAddr = "127.0.0.1:0".parse().unwrap();
    let app = App::build(test_config(&database_url, any, any), Clock::default()).await.unwrap();
    let actor = Actor::Cli;
    let mut tx = app.store.begin().await.unwrap();
    let person = directory::create_person(
        &mut tx,
        &actor,
        T0,
        serde_json::from_value::<NewPerson>(json!({
            "employee_number": "E5001", "family_name": "試験", "given_name": "次郎",
            "family_name_kana": "シケン", "given_name_kana": "ジロウ", "kind": "regular", "start_date": "2020-04-01"
        }))
        .unwrap(),
    )
    .await
    .unwrap();
    let hash = app.hasher.hash(PASSWORD.to_owned()).await.unwrap();
    let fingerprint = policy::fingerprint(&app.fingerprint_key, PASSWORD);
    let initial = InitialPassword { hash: &hash, fingerprint: &fingerprint, must_change: false };
    let account =
        directory::create_account(&mut tx, &actor, T0, &person.id, &LoginId::parse("shiken.j").unwrap(), Some(initial))
            .await
            .unwrap();
    let new_client: NewClient = serde_json::from_value(json!({
        "client_id": "zeimu", "name": "税務", "client_type": "confidential", "redirect_uris": [REDIRECT]
    }))
    .unwrap();
    let (client, _) = systems::register(&mut tx, &actor, T0, &app.config.tokens, new_client).await.unwrap();
    let new_session = NewSession {
        person_id: &person.id,
        account_id: &account.id,
        amr: &["pwd"],
        acr: sekimori::oidc::claims::ACR_PASSWORD,
        authenticator_id: None,
        source_ip: None,
    };
    let (session, _) = sessions::create(&mut tx, &app.config.session, T0, new_session).await.unwrap();
    tx.commit().await.unwrap();
    World { app, client, account_id: account.id, session, database_url }
}

impl World {
    /// A code for the session, issued at `now`.
    async fn code(&self, now: i64) -> String {
        self.code_in(&self.session, now).await
    }

    /// A code for `session`, issued at `now`.
    async fn code_in(&self, session: &Session, now: i64) -> String {
        let completion = flow::complete(&self.app, &request(), session, None, now).await.unwrap();
        let url = url::Url::parse(&completion.redirect).unwrap();
        url.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned()
    }

    async fn person_id(&self) -> String {
        sqlx::query("SELECT person_id FROM accounts WHERE id = $1")
            .bind(&self.account_id)
            .fetch_one(self.app.store.pool())
            .await
            .unwrap()
            .try_get("person_id")
            .unwrap()
    }

    /// Another password session of the person, begun at `now`.
    async fn new_session(&self, now: i64) -> Session {
        let person_id = self.person_id().await;
        let new_session = NewSession {
            person_id: &person_id,
            account_id: &self.account_id,
            amr: &["pwd"],
            acr: sekimori::oidc::claims::ACR_PASSWORD,
            authenticator_id: None,
            source_ip: None,
        };
        let mut tx = self.app.store.begin().await.unwrap();
        let (session, _) = sessions::create(&mut tx, &self.app.config.session, now, new_session).await.unwrap();
        tx.commit().await.unwrap();
        session
    }

    async fn redeem(&self, code: &str, now: i64) -> Result<TokenResponse, &'static str> {
        let grant = Grant::AuthorizationCode { code, redirect_uri: REDIRECT, code_verifier: None };
        grants::exchange(&self.app, &self.client, grant, now).await.map_err(|e| e.error)
    }

    async fn refresh(&self, token: &str, now: i64) -> Result<TokenResponse, &'static str> {
        let grant = Grant::RefreshToken { refresh_token: token, scope: None };
        grants::exchange(&self.app, &self.client, grant, now).await.map_err(|e| e.error)
    }

    /// The refresh tokens of `count` new families in `session`: codes issued at `now`,
    /// redeemed a second later.
    async fn families_in(&self, session: &Session, count: usize, now: i64) -> Vec<String> {
        let mut families = Vec::with_capacity(count);
        for _ in 0..count {
            let code = self.code_in(session, now).await;
            families.push(self.redeem(&code, now + 1).await.unwrap().refresh_token.unwrap());
        }
        families
    }

    /// A refresh with `token` at `now`, under way: its new refresh token, or the error.
    fn spawn_refresh(&self, token: &str, now: i64) -> tokio::task::JoinHandle<Result<String, &'static str>> {
        let (app, client, token) = (self.app.clone(), self.client.clone(), token.to_owned());
        tokio::spawn(async move {
            let grant = Grant::RefreshToken { refresh_token: &token, scope: None };
            grants::exchange(&app, &client, grant, now).await.map(|t| t.refresh_token.unwrap()).map_err(|e| e.error)
        })
    }

    async fn log_in(&self, password: &str, now: i64) -> Step {
        let request = request();
        let attempt = Attempt { login_id: "shiken.j", password, source: "192.0.2.10", previous_session: None };
        login::with_password(&self.app, &request, "pending", &attempt, now).await.unwrap()
    }

    async fn stop(self) {
        self.app.store.close().await;
        crate::common::drop_database(&self.database_url).await;
    }
}

async fn a_code_is_good_for_its_lifetime_and_not_a_second_more(db: Db) {
    let w = world(db).await;
    let ttl = w.app.config.tokens.code_ttl;
    let late = w.code(T0).await;
    assert_eq!(w.redeem(&late, T0 + ttl).await.err(), Some("invalid_grant"), "at its expiry the code is refused");
    let in_time = w.code(T0).await;
    let tokens = w.redeem(&in_time, T0 + ttl - 1).await.expect("a second before its expiry the code works");
    assert!(tokens.id_token.is_some() && tokens.refresh_token.is_some());
    assert_eq!(w.redeem(&in_time, T0 + ttl - 1).await.err(), Some("invalid_grant"), "and it works once");
    w.stop().await;
}

async fn a_rotated_refresh_token_presented_again_ends_its_family(db: Db) {
    let w = world(db).await;
    let code = w.code(T0).await;
    let first = w.redeem(&code, T0 + 1).await.unwrap().refresh_token.unwrap();
    let second = w.refresh(&first, T0 + 100).await.expect("rotation").refresh_token.unwrap();
    assert_ne!(first, second);
    assert_eq!(w.refresh(&first, T0 + 200).await.err(), Some("invalid_grant"), "the rotated token is refused");
    assert_eq!(w.refresh(&second, T0 + 201).await.err(), Some("invalid_grant"), "and the family ended with it");
    let live = sessions::is_live(w.app.store.pool(), T0 + 202, &w.session.id).await.unwrap();
    assert!(!live, "so did the session it came from");
    w.stop().await;
}

async fn a_lock_holds_to_the_second_and_then_the_right_password_logs_in(db: Db) {
    let w = world(db).await;
    let config = &w.app.config.password;
    for i in 0..config.lockout_threshold {
        assert!(matches!(w.log_in("not-the-password", T0 + i).await, Step::Refused));
    }
    let locked_at = T0 + config.lockout_threshold - 1;
    let lock = config.lockout_base_seconds;
    assert!(
        matches!(w.log_in(PASSWORD, locked_at + lock - 1).await, Step::Refused),
        "the right password is refused while the lock holds"
    );
    let account = directory::get_login_account(w.app.store.pool(), &w.account_id).await.unwrap().unwrap();
    assert_eq!(account.locked_until, Some(locked_at + lock), "a refusal during the lock does not extend it");
    assert!(
        matches!(w.log_in(PASSWORD, locked_at + lock).await, Step::LoggedIn { .. }),
        "at the lock's end the right password logs in"
    );
    let row = sqlx::query("SELECT failed_logins, locked_until FROM accounts WHERE id = $1")
        .bind(&w.account_id)
        .fetch_one(w.app.store.pool())
        .await
        .unwrap();
    let state: (i64, Option<i64>) = (row.try_get("failed_logins").unwrap(), row.try_get("locked_until").unwrap());
    assert_eq!(state, (0, None), "and the count starts again");
    w.stop().await;
}

/// Refresh requests arriving together are rotated in one transaction (group commit): each is
/// answered as if alone, a token presented twice at once is a reuse that ends its family and
/// session (and only that session: requests for another session's families in the same batch
/// are untouched), and the log records every token issued, in the order it was decided, in a
/// chain that verifies.
async fn refreshes_arriving_together_are_each_answered_as_if_alone(db: Db) {
    let w = world(db).await;
    // A second session of the same person, whose one family is presented twice at once.
    let other_session = w.new_session(T0).await;
    let families = w.families_in(&w.session, 40, T0).await;
    let twice = w.families_in(&other_session, 1, T0).await.remove(0);

    let presented: Vec<String> = families.iter().cloned().chain([twice.clone(), twice.clone()]).collect();
    let requests: Vec<_> = presented
        .into_iter()
        .map(|token| {
            let (app, client) = (w.app.clone(), w.client.clone());
            tokio::spawn(async move {
                let grant = Grant::RefreshToken { refresh_token: &token, scope: None };
                grants::exchange(&app, &client, grant, T0 + 200).await.map_err(|e| e.error)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }
    let pair = answers.split_off(40);
    let rotated: Vec<String> =
        answers.into_iter().map(|a| a.expect("each family rotates").refresh_token.unwrap()).collect();
    let distinct: std::collections::HashSet<&String> = rotated.iter().collect();
    assert_eq!(distinct.len(), 40, "each request its own new token");
    for (old, new) in families.iter().zip(&rotated) {
        assert_ne!(old, new);
        assert!(w.refresh(new, T0 + 300).await.is_ok(), "the new token of an untouched family works");
    }
    let (won, lost): (Vec<_>, Vec<_>) = pair.into_iter().partition(Result::is_ok);
    assert_eq!((won.len(), lost.len()), (1, 1), "one of the two presentations wins");
    assert_eq!(lost[0].as_ref().err(), Some(&"invalid_grant"));
    let winner = won[0].as_ref().unwrap();
    assert_eq!(
        w.refresh(winner.refresh_token.as_ref().unwrap(), T0 + 300).await.err(),
        Some("invalid_grant"),
        "the reuse ended the family, the winner's new token with it"
    );
    assert!(!sessions::is_live(w.app.store.pool(), T0 + 300, &other_session.id).await.unwrap(), "and its session");
    assert!(sessions::is_live(w.app.store.pool(), T0 + 300, &w.session.id).await.unwrap(), "not the other one");

    // Every token issued at T0 + 200 is recorded once, and the winner's before the revocation.
    let rows = sqlx::query("SELECT seq, action, detail FROM audit_events WHERE at = $1 ORDER BY seq")
        .bind(T0 + 200)
        .fetch_all(w.app.store.pool())
        .await
        .unwrap();
    let winner_jti = {
        use base64::Engine;
        let payload = winner.access_token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        claims["jti"].as_str().unwrap().to_owned()
    };
    let mut issued = 0;
    let mut winner_seq = None;
    let mut revoked_seq = None;
    for row in &rows {
        let action: String = row.try_get("action").unwrap();
        let detail: serde_json::Value = serde_json::from_str(&row.try_get::<String, _>("detail").unwrap()).unwrap();
        let seq: i64 = row.try_get("seq").unwrap();
        match action.as_str() {
            "token.issued" => {
                issued += 1;
                if detail["jti"] == winner_jti.as_str() {
                    winner_seq = Some(seq);
                }
            }
            "revoke" => revoked_seq = Some(seq),
            _ => {}
        }
    }
    assert_eq!(issued, 41, "forty families and the winner");
    assert!(winner_seq.unwrap() < revoked_seq.unwrap(), "the log keeps the order things were decided in");
    sekimori::audit::seal::seal(&w.app.store, w.app.clock.now()).await.unwrap();
    assert!(matches!(
        sekimori::audit::verify(&w.app.store).await.unwrap(),
        sekimori::audit::Verification::Intact { unsealed: 0, .. }
    ));
    w.stop().await;
}

/// Refreshes arriving together with no reuse among them are decided on what was read ahead and
/// written together; each is still answered as if alone, whatever the others are: rotations,
/// tokens expired or revoked (refused, with a record each), a token never issued or of another
/// client (refused, no record), a scope beyond the grant (refused, no record). The log holds
/// exactly the records of what was decided, in a chain that verifies.
async fn refreshes_with_refusals_among_them_are_each_answered_as_if_alone(db: Db) {
    let w = world(db).await;
    let now = T0 + 500;
    // The last of the fresh ones is presented by another client only.
    let mut fresh = w.families_in(&w.session, 17, T0).await;
    let elsewhere = fresh.pop().unwrap();
    let ended = w.families_in(&w.session, 4, T0).await;
    let family_of = |token: &String| {
        let pool = w.app.store.pool().clone();
        let hash = sekimori::crypto::sha256_hex(token);
        async move {
            let row = sqlx::query("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
                .bind(hash)
                .fetch_one(&pool)
                .await
                .unwrap();
            row.try_get::<String, _>("family_id").unwrap()
        }
    };
    // Two expired (their family ended before `now`), two revoked by their system.
    for token in &ended[..2] {
        sqlx::query("UPDATE refresh_tokens SET expires_at = $1 WHERE family_id = $2")
            .bind(now - 1)
            .bind(family_of(token).await)
            .execute(w.app.store.pool())
            .await
            .unwrap();
    }
    for token in &ended[2..] {
        let family_id = family_of(token).await;
        let mut tx = w.app.store.begin().await.unwrap();
        let target = sekimori::revocation::Target::Grant(&family_id);
        sekimori::revocation::revoke(&mut tx, &Actor::Cli, T0 + 2, target, "revoked by the system").await.unwrap();
        tx.commit().await.unwrap();
    }
    let other_client: NewClient = serde_json::from_value(json!({
        "client_id": "toshokan", "name": "図書館", "client_type": "confidential", "redirect_uris": [REDIRECT]
    }))
    .unwrap();
    let mut tx = w.app.store.begin().await.unwrap();
    let (other_client, _) =
        systems::register(&mut tx, &Actor::Cli, T0, &w.app.config.tokens, other_client).await.unwrap();
    tx.commit().await.unwrap();

    // (token, scope asked, client): what each request presents.
    let mut presented: Vec<(String, Option<&str>, Client)> = Vec::new();
    for (i, token) in fresh.iter().enumerate() {
        let scope = [None, Some("openid"), Some("openid profile")][i % 3];
        presented.push((token.clone(), scope, w.client.clone()));
    }
    for token in &ended {
        presented.push((token.clone(), None, w.client.clone()));
    }
    presented.push(("never-issued".into(), None, w.client.clone()));
    presented.push((elsewhere.clone(), None, other_client.clone()));
    presented.rotate_left(7);
    let requests: Vec<_> = presented
        .iter()
        .map(|(token, scope, client)| {
            let (app, client, token, scope) = (w.app.clone(), client.clone(), token.clone(), scope.map(str::to_owned));
            tokio::spawn(async move {
                let grant = Grant::RefreshToken { refresh_token: &token, scope: scope.as_deref() };
                grants::exchange(&app, &client, grant, now).await.map_err(|e| e.error)
            })
        })
        .collect();
    let mut answers = Vec::new();
    for request in requests {
        answers.push(request.await.unwrap());
    }

    let (mut issued, mut refused) = (0, 0);
    for ((token, scope, client), answer) in presented.iter().zip(&answers) {
        let what = format!("{token} asking {scope:?} as {}", client.client_id);
        if client.client_id != w.client.client_id || token == "never-issued" {
            assert_eq!(answer.as_ref().err(), Some(&"invalid_grant"), "{what}");
        } else if ended[..2].contains(token) || ended[2..].contains(token) {
            assert_eq!(answer.as_ref().err(), Some(&"invalid_grant"), "{what}");
            refused += 1;
        } else if *scope == Some("openid profile") {
            assert_eq!(answer.as_ref().err(), Some(&"invalid_scope"), "{what}");
        } else {
            let tokens = answer.as_ref().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(tokens.scope, "openid", "{what}");
            assert!(tokens.id_token.is_some(), "{what}");
            let successor = tokens.refresh_token.as_ref().unwrap();
            assert!(w.refresh(successor, now + 1).await.is_ok(), "{what}: its successor works");
            issued += 1;
        }
    }
    assert_eq!((issued, refused), (11, 4));
    // A token refused for its scope or its client was not used up: it rotates now.
    for (i, token) in fresh.iter().enumerate().filter(|(i, _)| i % 3 == 2) {
        assert!(w.refresh(token, now + 1).await.is_ok(), "token {i}, refused for its scope, still works");
    }
    assert!(w.refresh(&elsewhere, now + 1).await.is_ok(), "the token another client presented still works");

    let rows = sqlx::query("SELECT action, detail FROM audit_events WHERE at = $1")
        .bind(now)
        .fetch_all(w.app.store.pool())
        .await
        .unwrap();
    let count = |wanted: &str| rows.iter().filter(|r| r.try_get::<String, _>("action").unwrap() == wanted).count();
    assert_eq!(count("token.issued"), 11, "a record for every token issued");
    assert_eq!(count("token.refused"), 4, "and for every expired or revoked token presented");
    assert_eq!(rows.len(), 15, "and nothing else");
    sekimori::audit::seal::seal(&w.app.store, w.app.clock.now()).await.unwrap();
    assert!(matches!(
        sekimori::audit::verify(&w.app.store).await.unwrap(),
        sekimori::audit::Verification::Intact { unsealed: 0, .. }
    ));
    w.stop().await;
}

/// A rotation is one call that writes the successor and the access token only if it rotated
/// the token: a token already rotated (by a request that got there first) gets nothing written.
async fn a_token_rotated_already_gets_no_successor(db: Db) {
    use sekimori::oidc::{access_tokens::NewAccessToken, claims::AuthContext, refresh};
    let w = world(db).await;
    let code = w.code(T0).await;
    let first = w.redeem(&code, T0 + 1).await.unwrap().refresh_token.unwrap();
    let row = sqlx::query("SELECT id, family_id FROM refresh_tokens WHERE token_hash = $1")
        .bind(sekimori::crypto::sha256_hex(&first))
        .fetch_one(w.app.store.pool())
        .await
        .unwrap();
    let (id, family): (String, String) = (row.try_get("id").unwrap(), row.try_get("family_id").unwrap());
    let auth =
        AuthContext { session_id: w.session.id.clone(), auth_time: T0, acr: "x".into(), amr: vec!["pwd".into()] };
    let count = |table: &'static str| {
        let (pool, family) = (w.app.store.pool().clone(), family.clone());
        async move {
            let sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE family_id = $1");
            sqlx::query(&sql).bind(family).fetch_one(&pool).await.unwrap().try_get::<i64, _>("n").unwrap()
        }
    };
    let before = (count("refresh_tokens").await, count("access_tokens").await);
    let mut tx = w.app.store.begin().await.unwrap();
    for (attempt, jti) in ["jti-first", "jti-second"].into_iter().enumerate() {
        let successor = refresh::NewRefresh {
            family_id: &family,
            client_id: "zeimu",
            person_id: &w.session.person_id,
            offline: false,
            scope: "openid",
            claims: None,
            auth: &auth,
            expires_at: T0 + 3600,
        };
        let access = NewAccessToken {
            jti,
            client_id: "zeimu",
            person_id: &w.session.person_id,
            session_id: Some(&w.session.id),
            code_id: None,
            family_id: Some(&family),
            scope: "openid",
            claims: None,
            issued_at: T0 + 2,
            expires_at: T0 + 302,
        };
        let rotated = refresh::rotate_and_issue(&mut tx, T0 + 2, &id, successor, access).await.unwrap();
        assert_eq!(rotated.is_some(), attempt == 0, "only the first rotation of a token goes through");
    }
    tx.commit().await.unwrap();
    let after = (count("refresh_tokens").await, count("access_tokens").await);
    assert_eq!(after, (before.0 + 1, before.1 + 1), "one successor and one access token, from the first only");
    let second: i64 = sqlx::query("SELECT COUNT(*) AS n FROM access_tokens WHERE jti = 'jti-second'")
        .fetch_one(w.app.store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
    assert_eq!(second, 0);
    w.stop().await;
}

/// A person's grants refreshed while the person is revoked (a transfer, a lost card, an
/// administrator), rounds of both at once: the rotations and the revocation take the same rows
/// in opposite orders, which on PostgreSQL can deadlock. Each side still gets its own answer —
/// a refresh rotates or is refused as invalid, the revocation takes effect — never a server
/// error, and nothing survives the revocation.
async fn refreshes_and_a_revocation_of_their_person_at_once_both_get_answers(db: Db) {
    let w = world(db).await;
    let person_id = w.person_id().await;
    for round in 0..6_i64 {
        let now = T0 + 1000 * round;
        let session = w.new_session(now).await;
        let families = w.families_in(&session, 24, now).await;
        // Newest first: the opposite of the order the revocation finds them in.
        let refreshes: Vec<_> = families.iter().rev().map(|token| w.spawn_refresh(token, now + 2)).collect();
        let revocation = {
            let (app, person_id) = (w.app.clone(), person_id.clone());
            tokio::spawn(async move {
                let target = sekimori::revocation::Target::Person(&person_id);
                let mut tx = app.store.begin().await?;
                sekimori::revocation::revoke(&mut tx, &Actor::Cli, now + 2, target, "transferred").await?;
                tx.commit().await
            })
        };
        let mut rotated = Vec::new();
        for refresh in refreshes {
            match refresh.await.unwrap() {
                Ok(token) => rotated.push(token),
                Err(error) => assert_eq!(error, "invalid_grant", "round {round}: a refresh is refused, not failed"),
            }
        }
        revocation.await.unwrap().unwrap_or_else(|e| panic!("round {round}: the revocation fails: {e}"));
        for token in families.iter().chain(&rotated) {
            assert_eq!(w.refresh(token, now + 3).await.err(), Some("invalid_grant"), "round {round}: nothing survives");
        }
    }
    w.stop().await;
}

/// A reuse among refreshes arriving together ends everything of its session, whatever else the
/// same batch holds: the session's other families, presented in the batch before or after the
/// reuse is found, leave no live token, while another session's families rotate as usual.
async fn a_reuse_in_a_batch_ends_its_sessions_other_families_in_the_batch_too(db: Db) {
    let w = world(db).await;
    for round in 0..4_i64 {
        let now = T0 + 1000 * round;
        let reused_session = w.new_session(now).await;
        let of_reused = w.families_in(&reused_session, 12, now).await;
        let untouched = w.families_in(&w.session, 12, now).await;
        // The first of the reused session's tokens twice, its other tokens around it, the
        // untouched ones between them.
        let mut presented = vec![of_reused[0].clone()];
        for (a, b) in of_reused.iter().skip(1).zip(&untouched) {
            presented.push(a.clone());
            presented.push(b.clone());
        }
        presented.insert(12, of_reused[0].clone());
        let requests: Vec<_> = presented.iter().map(|token| w.spawn_refresh(token, now + 2)).collect();
        let mut answers = Vec::new();
        for request in requests {
            answers.push(request.await.unwrap());
        }
        for (token, answer) in presented.iter().zip(&answers) {
            if of_reused.contains(token) {
                if let Ok(successor) = answer {
                    let later = w.refresh(successor, now + 3).await.err();
                    assert_eq!(later, Some("invalid_grant"), "round {round}: no successor in the reused session lives");
                }
            } else {
                let successor =
                    answer.as_ref().unwrap_or_else(|e| panic!("round {round}: another session's family rotates: {e}"));
                assert!(w.refresh(successor, now + 3).await.is_ok(), "round {round}: and its successor works");
            }
        }
        for token in &of_reused {
            assert_eq!(w.refresh(token, now + 3).await.err(), Some("invalid_grant"), "round {round}");
        }
        // Nothing was issued in the session once the reuse was found (the log keeps the order
        // things were decided in): an access token, once signed, is honoured wherever it is
        // checked offline.
        let rows = sqlx::query("SELECT action, detail FROM audit_events WHERE at = $1 ORDER BY seq")
            .bind(now + 2)
            .fetch_all(w.app.store.pool())
            .await
            .unwrap();
        let mut revoked = false;
        for row in &rows {
            let action: String = row.try_get("action").unwrap();
            let detail: serde_json::Value = serde_json::from_str(&row.try_get::<String, _>("detail").unwrap()).unwrap();
            match action.as_str() {
                "revoke" => revoked = true,
                "token.issued" if detail["sid"] == reused_session.id.as_str() => {
                    assert!(!revoked, "round {round}: a token issued in the session after its revocation")
                }
                _ => {}
            }
        }
        assert!(revoked, "round {round}: the reuse was found");
        assert!(!sessions::is_live(w.app.store.pool(), now + 3, &reused_session.id).await.unwrap(), "round {round}");
    }
    w.stop().await;
}

/// A refresh that read its token just before a revocation of the token's family committed, and
/// then waited for the rows the revocation held, is refused: the revocation, committed first,
/// wins, and no successor exists to outlive it. (On PostgreSQL the refresh reads without
/// waiting and waits only at its write, where it finds the row revoked; on SQLite it waits
/// for the writer before it reads.)
async fn a_refresh_waiting_on_a_revocation_of_its_family_gets_no_successor(db: Db) {
    let w = world(db).await;
    for round in 0..3_i64 {
        let now = T0 + 1000 * round;
        let code = w.code(now).await;
        let issued = w.redeem(&code, now + 1).await.unwrap();
        let refresh_token = issued.refresh_token.unwrap();
        let family_id: String = sqlx::query("SELECT family_id FROM refresh_tokens WHERE token_hash = $1")
            .bind(sekimori::crypto::sha256_hex(&refresh_token))
            .fetch_one(w.app.store.pool())
            .await
            .unwrap()
            .try_get("family_id")
            .unwrap();
        // The revocation has written, and holds its rows, but has not committed.
        let mut revocation = w.app.store.begin().await.unwrap();
        let target = sekimori::revocation::Target::Grant(&family_id);
        sekimori::revocation::revoke(&mut revocation, &Actor::Cli, now + 2, target, "revoked by the system")
            .await
            .unwrap();
        let refresh = w.spawn_refresh(&refresh_token, now + 2);
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        revocation.commit().await.unwrap();
        let answer = refresh.await.unwrap();
        assert_eq!(answer.as_ref().err(), Some(&"invalid_grant"), "round {round}: the revoked token is refused");
        assert_eq!(w.refresh(&refresh_token, now + 3).await.err(), Some("invalid_grant"), "round {round}");
        let live: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM refresh_tokens WHERE family_id = $1 AND revoked_at IS NULL AND rotated_at IS NULL",
        )
        .bind(&family_id)
        .fetch_one(w.app.store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap();
        assert_eq!(live, 0, "round {round}: no token of the revoked family lives on");
        // Refused as revoked, not taken for a reuse (which would end the person's session too).
        assert!(sessions::is_live(w.app.store.pool(), now + 3, &w.session.id).await.unwrap(), "round {round}");
    }
    w.stop().await;
}

/// Going back to a mark undoes what followed it — here a whole revocation, its audit event
/// included — and keeps what came before; the transaction then commits the rest.
async fn going_back_to_a_mark_undoes_what_followed_it(db: Db) {
    let w = world(db).await;
    let person_id = w.person_id().await;
    let events = |w: &World| {
        let pool = w.app.store.pool().clone();
        async move {
            let row = sqlx::query("SELECT COUNT(*) AS n FROM audit_events WHERE action = 'revoke'")
                .fetch_one(&pool)
                .await
                .unwrap();
            row.try_get::<i64, _>("n").unwrap()
        }
    };
    let before = events(&w).await;
    let kept = w.new_session(T0).await;
    let mut tx = w.app.store.begin().await.unwrap();
    sekimori::revocation::revoke(&mut tx, &Actor::Cli, T0 + 1, sekimori::revocation::Target::Session(&kept.id), "kept")
        .await
        .unwrap();
    let mark = tx.mark().await.unwrap();
    let target = sekimori::revocation::Target::Person(&person_id);
    sekimori::revocation::revoke(&mut tx, &Actor::Cli, T0 + 1, target, "undone").await.unwrap();
    tx.back_to(mark).await.unwrap();
    tx.commit().await.unwrap();
    let pool = w.app.store.pool();
    assert!(!sessions::is_live(pool, T0 + 2, &kept.id).await.unwrap(), "what came before the mark is committed");
    assert!(sessions::is_live(pool, T0 + 2, &w.session.id).await.unwrap(), "what followed it is undone");
    assert_eq!(events(&w).await, before + 1, "and so is its audit event");
    let mut watch = sekimori::audit::seal::Watch::default();
    assert_eq!(
        watch.missing(&w.app.store).await.unwrap(),
        Vec::<i64>::new(),
        "the sealer is not told of the undone event (it would report it as removed)"
    );
    sekimori::audit::seal::seal(&w.app.store, w.app.clock.now()).await.unwrap();
    assert!(matches!(
        sekimori::audit::verify(&w.app.store).await.unwrap(),
        sekimori::audit::Verification::Intact { unsealed: 0, .. }
    ));
    w.stop().await;
}

on_both_databases!(
    a_code_is_good_for_its_lifetime_and_not_a_second_more,
    a_rotated_refresh_token_presented_again_ends_its_family,
    a_lock_holds_to_the_second_and_then_the_right_password_logs_in,
    refreshes_arriving_together_are_each_answered_as_if_alone,
    refreshes_with_refusals_among_them_are_each_answered_as_if_alone,
    a_token_rotated_already_gets_no_successor,
    refreshes_and_a_revocation_of_their_person_at_once_both_get_answers,
    a_refresh_waiting_on_a_revocation_of_its_family_gets_no_successor,
    a_reuse_in_a_batch_ends_its_sessions_other_families_in_the_batch_too,
    going_back_to_a_mark_undoes_what_followed_it,
);

/// Two transactions that each hold a row the other wants: PostgreSQL abandons one of them
/// (a deadlock), and this is its error.
async fn deadlock(app: &App) -> sqlx::Error {
    let pool = app.store.pool();
    sqlx::query("CREATE TABLE IF NOT EXISTS deadlock_probe (id INTEGER PRIMARY KEY, n INTEGER NOT NULL)")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO deadlock_probe (id, n) VALUES (1, 0), (2, 0) ON CONFLICT DO NOTHING")
        .execute(pool)
        .await
        .unwrap();
    let mut first = app.store.begin().await.unwrap();
    let mut second = app.store.begin().await.unwrap();
    let bump = "UPDATE deadlock_probe SET n = n + 1 WHERE id = $1";
    sqlx::query(bump).bind(1).execute(&mut *first).await.unwrap();
    sqlx::query(bump).bind(2).execute(&mut *second).await.unwrap();
    let (a, b) =
        tokio::join!(sqlx::query(bump).bind(2).execute(&mut *first), sqlx::query(bump).bind(1).execute(&mut *second));
    match (a, b) {
        (Err(e), Ok(_)) | (Ok(_), Err(e)) => e,
        other => panic!("one of the two gives way: {other:?}"),
    }
}

/// A request the database abandoned to break a deadlock hears 503 with `Retry-After` (nothing
/// was written; sent again, it goes through) at the OAuth, admin API, SCIM and page
/// boundaries, not a bare internal error; any other database failure stays a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(not(sekimori_postgres_tests), ignore = "SEKIMORI_TEST_POSTGRES_URL was not set when the tests were built")]
async fn a_request_the_database_abandons_to_break_a_deadlock_hears_503_to_send_again() {
    use axum::response::IntoResponse;
    let w = world(Db::Postgres).await;
    let abandoned = deadlock(&w.app).await;
    assert!(sekimori::store::is_transient(&abandoned), "{abandoned}");
    let oauth = sekimori::oidc::error::OAuthError::from(abandoned).into_response();
    assert_eq!(oauth.status(), 503);
    assert_eq!(oauth.headers()["retry-after"], "1");
    let body = axum::body::to_bytes(oauth.into_body(), 1 << 16).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");

    let admin = sekimori::admin::problem::Problem::from(deadlock(&w.app).await).into_response();
    assert_eq!(admin.status(), 503);
    assert_eq!(admin.headers()["retry-after"], "1");
    assert_eq!(admin.headers()["content-type"], "application/problem+json");

    let page = sekimori::web::pages::PageError::internal(sekimori::web::i18n::Lang::Ja, deadlock(&w.app).await);
    let page = page.into_response();
    assert_eq!(page.status(), 503);
    assert_eq!(page.headers()["retry-after"], "1");
    let body = axum::body::to_bytes(page.into_body(), 1 << 20).await.unwrap();
    let body = String::from_utf8(body.to_vec()).unwrap();
    assert!(body.contains("何も変更されていません"), "the page says, in Japanese, that nothing was changed: {body}");

    let scim = sekimori::scim::error::ScimError::from(deadlock(&w.app).await).into_response();
    assert_eq!(scim.status(), 503);
    assert_eq!(scim.headers()["retry-after"], "1");

    let other = sqlx::Error::Protocol("the connection broke".into());
    assert!(!sekimori::store::is_transient(&other));
    assert_eq!(sekimori::oidc::error::OAuthError::from(other).into_response().status(), 500, "anything else is 500");
    w.stop().await;
}
