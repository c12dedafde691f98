//! Console login: the console is an OpenID client of Sekimori itself (`sekimori-console`,
//! provisioned by `roles::provision`). The person logs in at the issuer as everywhere — with all
//! its rules: lockout, password age, the card step-up a secret-class role demands — and comes
//! back with a code, which the console redeems in-process with its PKCE verifier. Only a card
//! login (acr `urn:sekimori:acr:hwk`) by a person holding an administrative role opens a
//! console session.

use axum::extract::{Query, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use sqlx::Row;

use crate::audit::{Actor, Event};
use crate::authenticators::ACR_HWK;
use crate::crypto;
use crate::oidc::grants::{self, Grant};
use crate::oidc::introspection;
use crate::systems::{self, CONSOLE_CLIENT_ID};
use crate::App;

use super::super::roles;
use super::{lang_of, pages, render, session, Console, OrPage, PageError};

/// How long a login started at the console may take.
const LOGIN_TTL: i64 = 600;
/// The cookie binding a login under way to this browser (its `state`).
const STATE_COOKIE: &str = "sekimori_console_state";

fn secure(app: &App) -> bool {
    app.config.console_url().starts_with("https://")
}

fn cookie(app: &App, name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    let secure = if secure(app) { "; Secure" } else { "" };
    // The session cookie also goes to the JSON API (a console page's forms); the login's
    // state cookie only to the console.
    let path = if name == session::COOKIE { "/" } else { "/console" };
    HeaderValue::from_str(&format!("{name}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}")).ok()
}

/// `GET /console/login`: sends the browser to the issuer's authorization endpoint, asking for a
/// card.
pub async fn start(State(app): State<App>, headers: HeaderMap, RawQuery(query): RawQuery) -> Result<Response, PageError> {
    let lang = lang_of(&headers, query.as_deref());
    let now = app.clock.now();
    let state = crypto::random_token(24);
    let verifier = crypto::random_token(32);
    let nonce = crypto::random_token(16);
    sqlx::query("DELETE FROM console_logins WHERE expires_at <= $1")
        .bind(now)
        .execute(app.store.pool())
        .await.page(lang)?;
    sqlx::query(
        "INSERT INTO console_logins (state_hash, code_verifier, nonce, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(crypto::sha256_hex(&state))
    .bind(&verifier)
    .bind(&nonce)
    .bind(now)
    .bind(now + LOGIN_TTL)
    .execute(app.store.pool())
    .await.page(lang)?;
    let redirect_uri = roles::console_redirect_uri(&app.config.console_url());
    let challenge = crypto::sha256_b64url(verifier.as_bytes());
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("response_type", "code")
        .append_pair("client_id", CONSOLE_CLIENT_ID)
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", "openid")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("acr_values", ACR_HWK)
        .append_pair("ui_locales", lang.code())
        .finish();
    let mut response = Redirect::to(&format!("{}/authorize?{query}", app.config.issuer)).into_response();
    if let Some(c) = cookie(&app, STATE_COOKIE, &state, LOGIN_TTL) {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(response)
}

#[derive(Deserialize)]
pub struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn state_cookie(headers: &HeaderMap) -> Option<String> {
    super::cookie_named(headers, STATE_COOKIE)
}

/// `GET /console/callback`: the issuer's answer. Opens a console session for a card login by
/// a person holding an administrative role; refuses anything else, and records the refusal.
pub async fn callback(
    State(app): State<App>,
    headers: HeaderMap,
    Query(answer): Query<Callback>,
) -> Result<Response, PageError> {
    let lang = lang_of(&headers, None);
    let now = app.clock.now();
    let refuse = |status: StatusCode, ja: &str, en: &str| PageError::new(lang, status, Some(lang.pick(ja, en).to_owned()));
    let sent_state = answer.state.as_deref().unwrap_or("");
    let bound = state_cookie(&headers).unwrap_or_default();
    if sent_state.is_empty() || !crypto::ct_eq(sent_state.as_bytes(), bound.as_bytes()) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "ログインの手続きが一致しません。もう一度ログインしてください。",
            "This login does not match the one this browser began. Please log in again.",
        ));
    }
    // The login under way is used once, whatever its outcome.
    let row = sqlx::query("DELETE FROM console_logins WHERE state_hash = $1 AND expires_at > $2 RETURNING code_verifier")
        .bind(crypto::sha256_hex(sent_state))
        .bind(now)
        .fetch_optional(app.store.pool())
        .await.page(lang)?;
    let Some(row) = row else {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "ログインの有効期限が切れました。もう一度ログインしてください。",
            "The login has expired. Please log in again.",
        ));
    };
    let verifier: String = row.try_get("code_verifier").page(lang)?;
    if let Some(error) = answer.error.as_deref() {
        return Err(if error == "access_denied" {
            refuse(
                StatusCode::FORBIDDEN,
                "管理者権限がないため、管理コンソールにはログインできません。",
                "You hold no administrative role, so you cannot log in to the console.",
            )
        } else {
            refuse(StatusCode::BAD_REQUEST, "ログインできませんでした。", "The login did not succeed.")
        });
    }
    let code = answer.code.as_deref().unwrap_or("");
    let client = systems::get(&app.store, CONSOLE_CLIENT_ID)
        .await.page(lang)?
        .ok_or_else(|| PageError::new(lang, StatusCode::INTERNAL_SERVER_ERROR, None))?;
    let redirect_uri = roles::console_redirect_uri(&app.config.console_url());
    let exchanged = grants::exchange(
        &app,
        &client,
        Grant::AuthorizationCode { code, redirect_uri: &redirect_uri, code_verifier: Some(&verifier) },
        now,
    )
    .await;
    let Ok(tokens) = exchanged else {
        return Err(refuse(StatusCode::BAD_REQUEST, "ログインできませんでした。", "The login did not succeed."));
    };
    let active = introspection::check_access_token(&app, &tokens.access_token)
        .await.page(lang)?;
    let Some(active) = active else {
        return Err(refuse(StatusCode::BAD_REQUEST, "ログインできませんでした。", "The login did not succeed."));
    };
    let (Some(person_id), Some(session_id)) = (active.person_id.clone(), active.session_id.clone()) else {
        return Err(refuse(StatusCode::BAD_REQUEST, "ログインできませんでした。", "The login did not succeed."));
    };
    let mut tx = app.store.begin().await.page(lang)?;
    // Administrative work is secret-class (R6): a password alone never opens the console.
    if active.acr.as_deref() != Some(ACR_HWK) {
        Event::failure(
            &Actor::Person(person_id.clone()),
            "console.login",
            format!("person:{person_id}"),
            serde_json::json!({"reason": "no card"}),
        )
        .record(&mut tx, now)
        .await.page(lang)?;
        tx.commit().await.page(lang)?;
        return Err(refuse(
            StatusCode::FORBIDDEN,
            "管理コンソールには ICカード（FIDO 認証器）でのログインが必要です。",
            "The console needs a login with your IC card (FIDO authenticator).",
        ));
    }
    let lifetime = app.config.session.absolute_timeout.min(8 * 3600);
    let (token, _) = session::open(&mut tx, now, &person_id, &session_id, lifetime)
        .await.page(lang)?;
    tx.commit().await.page(lang)?;
    // A page, not a redirect: the console cookie is then sent on a navigation this origin
    // starts itself.
    let mut response = render(StatusCode::OK, &pages::Continue { lang });
    let headers = response.headers_mut();
    if let Some(c) = cookie(&app, session::COOKIE, &token, lifetime) {
        headers.append(header::SET_COOKIE, c);
    }
    if let Some(c) = cookie(&app, STATE_COOKIE, "", 0) {
        headers.append(header::SET_COOKIE, c);
    }
    Ok(response)
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: String,
}

/// `POST /console/logout`: ends the console session (not the browser's single sign-on).
pub async fn logout(State(app): State<App>, console: Console, Form(form): Form<LogoutForm>) -> Result<Response, PageError> {
    console.check_csrf(&form.csrf)?;
    let lang = console.lang;
    let mut tx = app.store.begin().await.page(lang)?;
    session::end(&mut tx, app.clock.now(), &console.session)
        .await.page(lang)?;
    tx.commit().await.page(lang)?;
    let mut response = render(
        StatusCode::OK,
        &pages::MessagePage {
            lang,
            title: lang.pick("ログアウトしました", "You have logged out"),
            detail: String::new(),
            login: true,
        },
    );
    if let Some(c) = cookie(&app, session::COOKIE, "", 0) {
        response.headers_mut().append(header::SET_COOKIE, c);
    }
    Ok(response)
}
