//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0).
//!
//! A consuming system sends the browser here, ideally with the ID token it holds
//! (`id_token_hint`). When that token names the browser's current session, the request
//! plainly comes from a system the person is using and the session ends at once; otherwise
//! the person is asked first (§2: a logout request is easy to forge, and a forced logout is a
//! nuisance the OP should not allow). Ending the session goes through the revocation module,
//! which also queues back-channel logout notices to every system the session signed in to.
//!
//! The return address must be registered for the client, character for character; an error
//! about it is shown here and never redirected.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar};

use crate::audit::Actor;
use crate::oidc::flow::redirect_uri_with;
use crate::oidc::hint;
use crate::params::Params;
use crate::revocation::{self, Target};
use crate::sessions::{self, Session};
use crate::systems::{self, Client};
use crate::App;

use super::csrf::{self, CheckedForm};
use super::pages::{self, internal, EndSessionPage};
use super::{Lang, Msg};

/// A checked logout request.
struct LogoutRequest {
    client: Option<Client>,
    /// Present only when registered for `client`.
    post_logout_redirect_uri: Option<String>,
    state: Option<String>,
    /// The session the hint's ID token was issued in.
    hinted_sid: Option<String>,
}

async fn check(app: &App, params: &Params, from_form: bool) -> Result<LogoutRequest, (StatusCode, Msg)> {
    let bad = |msg| (StatusCode::BAD_REQUEST, msg);
    if params.first_repeated().is_some() {
        return Err(bad(Msg::BadLogoutRequest));
    }
    // The confirmation form sends empty fields for what the request did not have.
    let get = |name| params.get(name).ok().flatten().filter(|v: &&str| !(from_form && v.is_empty()));
    let hint = match get("id_token_hint") {
        None => None,
        // §2: an id_token_hint that was not issued by this OP is an error.
        Some(token) => Some(hint::verify(app, token).ok_or(bad(Msg::BadLogoutRequest))?),
    };
    let hinted_client = hint.as_ref().map(|h| h.audience().ok_or(bad(Msg::BadLogoutRequest))).transpose()?;
    let client_id = match (get("client_id"), hinted_client) {
        (Some(a), Some(b)) if a != b => return Err(bad(Msg::BadLogoutRequest)),
        (Some(id), _) | (None, Some(id)) => Some(id),
        (None, None) => None,
    };
    let client = match client_id {
        None => None,
        Some(id) => Some(
            systems::get(&app.store, id)
                .await
                .map_err(|e| {
                    tracing::error!(error = %e, "logout: reading the client failed");
                    (StatusCode::INTERNAL_SERVER_ERROR, Msg::InternalError)
                })?
                .ok_or(bad(Msg::BadClient))?,
        ),
    };
    let post_logout_redirect_uri = match get("post_logout_redirect_uri") {
        None => None,
        // §3: the client must be known to check the URI against its registration.
        Some(uri) => match &client {
            Some(c) if c.has_post_logout_redirect_uri(uri) => Some(uri.to_owned()),
            _ => return Err(bad(Msg::BadPostLogoutRedirectUri)),
        },
    };
    Ok(LogoutRequest {
        client,
        post_logout_redirect_uri,
        state: get("state").map(str::to_owned),
        hinted_sid: hint.and_then(|h| h.sid),
    })
}

pub async fn end_session_get(State(app): State<App>, jar: CookieJar, RawQuery(query): RawQuery) -> Response {
    handle(app, jar, Params::parse(query.unwrap_or_default().as_bytes())).await
}

pub async fn end_session_post(State(app): State<App>, jar: CookieJar, body: Bytes) -> Response {
    handle(app, jar, Params::parse(&body)).await
}

async fn handle(app: App, jar: CookieJar, params: Params) -> Response {
    let lang = super::lang_for(&jar, params.get("ui_locales").ok().flatten());
    let request = match check(&app, &params, false).await {
        Ok(request) => request,
        Err((status, msg)) => return pages::error_page(lang, status, msg),
    };
    let session = match super::session_from_jar(&app, &jar).await {
        Ok(session) => session,
        Err(e) => return internal(lang, e),
    };
    match session {
        // Nothing to end: straight back to the client, or a page saying so.
        None => finish(lang, jar, &request),
        Some(session) if request.hinted_sid.as_deref() == Some(session.id.as_str()) => {
            match end(&app, &session).await {
                Ok(()) => finish(lang, forget_session(jar), &request),
                Err(e) => internal(lang, e),
            }
        }
        Some(_) => {
            let (jar, token) = csrf::issue(&app, jar);
            let page = EndSessionPage {
                lang,
                switch_href: format!("/?lang={}", lang.other().code()),
                csrf_token: &token,
                client_name: request.client.as_ref().map(|c| c.name.as_str()),
                client_id: request.client.as_ref().map(|c| c.client_id.as_str()).unwrap_or(""),
                post_logout_redirect_uri: request.post_logout_redirect_uri.as_deref().unwrap_or(""),
                state: request.state.as_deref().unwrap_or(""),
            };
            (jar, pages::render(StatusCode::OK, &page)).into_response()
        }
    }
}

/// The person confirmed: end the session, then go back as the request asked.
pub async fn confirm(State(app): State<App>, form: CheckedForm) -> Response {
    let lang = form.lang;
    let request = match check(&app, &form.params, true).await {
        Ok(request) => request,
        Err((status, msg)) => return pages::error_page(lang, status, msg),
    };
    let jar = form.jar;
    match super::session_from_jar(&app, &jar).await {
        Ok(Some(session)) => {
            if let Err(e) = end(&app, &session).await {
                return internal(lang, e);
            }
            finish(lang, forget_session(jar), &request)
        }
        Ok(None) => finish(lang, jar, &request),
        Err(e) => internal(lang, e),
    }
}

async fn end(app: &App, session: &Session) -> Result<(), crate::Error> {
    let mut tx = app.store.begin().await?;
    revocation::revoke(
        &mut tx,
        &Actor::Person(session.person_id.clone()),
        app.clock.now(),
        Target::Session(&session.id),
        "logout",
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

fn forget_session(jar: CookieJar) -> CookieJar {
    jar.remove(Cookie::build(sessions::COOKIE_NAME).path("/").build())
}

fn finish(lang: Lang, jar: CookieJar, request: &LogoutRequest) -> Response {
    match &request.post_logout_redirect_uri {
        Some(uri) => {
            let mut params = Vec::new();
            if let Some(state) = request.state.as_deref() {
                params.push(("state", state));
            }
            (jar, Redirect::to(&redirect_uri_with(uri, &params))).into_response()
        }
        None => {
            (jar, pages::message_page(lang, StatusCode::OK, Msg::LogoutButton, Msg::LoggedOut, false)).into_response()
        }
    }
}
