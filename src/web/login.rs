//! The login page. A failed login says the same thing, with the same status, whether the
//! login ID exists or not, and an unknown ID still costs one argon2 verification.

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar, SameSite};
use serde::Deserialize;

use crate::access::clients;
use crate::audit::{self, Actor, Event, Outcome};
use crate::directory::{self, LoginId};
use crate::oidc::authorize;
use crate::oidc::params::Params;
use crate::revocation::{self, Target};
use crate::sessions;
use crate::App;

use super::pages::{self, HomePage, LoginPage};
use super::{csrf, lang_for, remember_lang, session_from_jar, Lang, Msg, SourceIp};

#[derive(Debug, Deserialize)]
pub struct LoginQuery {
    request: Option<String>,
    lang: Option<String>,
}

fn secure(app: &App) -> bool {
    app.config.secure_cookies()
}

/// Picks the language and, when it was chosen explicitly, remembers it.
fn choose_lang(
    app: &App,
    jar: CookieJar,
    headers: &HeaderMap,
    explicit: Option<&str>,
) -> (CookieJar, Lang) {
    let lang = lang_for(&jar, headers, explicit);
    match explicit.and_then(Lang::parse) {
        Some(chosen) => (remember_lang(jar, chosen, secure(app)), lang),
        None => (jar, lang),
    }
}

pub async fn login_page(
    State(app): State<App>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let (jar, lang) = choose_lang(&app, jar, &headers, q.lang.as_deref());
    let request_id = q.request.unwrap_or_default();
    let client_name = match pending_client_name(&app, &request_id).await {
        Ok(Some(name)) => name,
        Ok(None) => {
            return (
                jar,
                pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::LoginRequestExpired),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "login page failed");
            return (
                jar,
                pages::error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, Msg::InternalError),
            )
                .into_response();
        }
    };
    let (jar, token) = csrf::issue(&app.csrf_key, jar, secure(&app));
    let page = LoginPage {
        lang,
        switch_href: format!(
            "/login?request={}&lang={}",
            urlencode(&request_id),
            lang.other().code()
        ),
        csrf_token: &token,
        request_id: &request_id,
        login_id: "",
        client_name: Some(&client_name),
        error: None,
    };
    (jar, pages::render(StatusCode::OK, &page)).into_response()
}

fn urlencode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

async fn pending_client_name(app: &App, request_id: &str) -> Result<Option<String>, crate::Error> {
    if request_id.is_empty() || request_id.len() > 64 {
        return Ok(None);
    }
    let Some(request) = authorize::load_pending(app, request_id).await? else {
        return Ok(None);
    };
    Ok(clients::get(&app.store, &request.client_id)
        .await?
        .map(|c| c.name))
}

pub async fn login_submit(
    State(app): State<App>,
    jar: CookieJar,
    headers: HeaderMap,
    SourceIp(source_ip): SourceIp,
    body: Bytes,
) -> Response {
    let form = Params::parse(&body);
    let field = |name| form.get(name).ok().flatten();
    let lang = lang_for(&jar, &headers, field("lang"));
    // CSRF first: nothing is read or written for a forged request.
    if !csrf::verify(&app.csrf_key, &jar, field("csrf_token")) {
        return pages::error_page(lang, StatusCode::FORBIDDEN, Msg::CsrfFailed);
    }
    let (Some(request_id), Some(login_id), Some(password)) =
        (field("request"), field("login_id"), field("password"))
    else {
        return pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::BadForm);
    };
    if login_id.len() > 256 || password.len() > 1024 {
        return pages::error_page(lang, StatusCode::BAD_REQUEST, Msg::BadForm);
    }
    match attempt_login(&app, jar, lang, request_id, login_id, password, source_ip).await {
        Ok(response) => response,
        Err(e) => {
            tracing::error!(error = %e, "login failed internally");
            pages::error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, Msg::InternalError)
        }
    }
}

async fn attempt_login(
    app: &App,
    jar: CookieJar,
    lang: Lang,
    request_id: &str,
    login_id: &str,
    password: &str,
    source_ip: Option<String>,
) -> Result<Response, crate::Error> {
    let Some(request) = authorize::load_pending(app, request_id).await? else {
        return Ok(pages::error_page(
            lang,
            StatusCode::BAD_REQUEST,
            Msg::LoginRequestExpired,
        ));
    };
    let parsed = LoginId::parse(login_id).ok();
    let account = match &parsed {
        Some(id) => directory::find_login_account(&app.store, id).await?,
        None => None,
    };
    let now = app.clock.now();
    // Always one argon2 verification, against a dummy hash when there is no account.
    let password_ok = app
        .hasher
        .verify(
            password.to_owned(),
            account.as_ref().and_then(|a| a.password_hash.clone()),
        )
        .await?;
    let usable = account.as_ref().filter(|a| {
        password_ok && a.account_active && a.person.may_log_in(directory::today_in_japan(now))
    });

    let mut tx = app.store.begin().await?;
    let Some(account) = usable else {
        let reason = match (&account, password_ok) {
            (None, _) => "unknown login ID",
            (Some(_), false) => "wrong password",
            (Some(_), true) => "account or person not active",
        };
        audit::record(
            &mut tx,
            now,
            Event {
                actor: &Actor::Anonymous,
                action: "login.password",
                target: format!(
                    "login_id:{}",
                    parsed.as_ref().map(LoginId::as_str).unwrap_or("(invalid)")
                ),
                outcome: Outcome::Failure,
                detail: serde_json::json!({"reason": reason}),
                source_ip,
            },
        )
        .await?;
        tx.commit().await?;
        let (jar, token) = csrf::issue(&app.csrf_key, jar, secure(app));
        let client_name = clients::get(&app.store, &request.client_id)
            .await?
            .map(|c| c.name);
        let page = LoginPage {
            lang,
            switch_href: format!(
                "/login?request={}&lang={}",
                urlencode(request_id),
                lang.other().code()
            ),
            csrf_token: &token,
            request_id,
            login_id,
            client_name: client_name.as_deref(),
            error: Some(Msg::LoginFailed),
        };
        return Ok((jar, pages::render(StatusCode::UNAUTHORIZED, &page)).into_response());
    };
    let (session, cookie_value) = sessions::create(
        &mut tx,
        &app.config.session,
        now,
        &account.person.id,
        &account.account_id,
        &["pwd"],
        "urn:sekimori:acr:password",
    )
    .await?;
    audit::record(
        &mut tx,
        now,
        Event {
            actor: &Actor::Person(account.person.id.clone()),
            action: "login.password",
            target: format!("account:{}", account.account_id),
            outcome: Outcome::Success,
            detail: serde_json::json!({"sid": session.id, "client_id": request.client_id}),
            source_ip,
        },
    )
    .await?;
    tx.commit().await?;
    let jar = jar.add(session_cookie(app, cookie_value));
    let response = match authorize::complete_in(app, &request, &session, Some(request_id)).await {
        Ok(response) => response,
        Err(authorize::AuthorizeError::Internal(e)) => return Err(e),
        Err(authorize::AuthorizeError::Page(status, msg)) => pages::error_page(lang, status, msg),
        Err(authorize::AuthorizeError::Redirect {
            redirect_uri,
            state,
            error,
            description,
        }) => {
            let mut params = vec![
                ("error", error),
                ("error_description", description.as_str()),
            ];
            if let Some(state) = state.as_deref() {
                params.push(("state", state));
            }
            params.push(("iss", app.config.issuer.as_str()));
            Redirect::to(&authorize::redirect_uri_with(&redirect_uri, &params)).into_response()
        }
    };
    Ok((jar, response).into_response())
}

fn session_cookie(app: &App, value: String) -> Cookie<'static> {
    // Lax, not Strict: the browser must send it when a consuming system redirects here.
    Cookie::build((sessions::COOKIE_NAME, value))
        .path("/")
        .http_only(true)
        .secure(secure(app))
        .same_site(SameSite::Lax)
        .build()
}

pub async fn home(
    State(app): State<App>,
    jar: CookieJar,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Response {
    let (jar, lang) = choose_lang(&app, jar, &headers, q.lang.as_deref());
    let session = match session_from_jar(&app, &jar).await {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "home page failed");
            return pages::error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, Msg::InternalError);
        }
    };
    let person = match &session {
        Some(s) => directory::get_person(app.store.pool(), &s.person_id)
            .await
            .ok()
            .flatten(),
        None => None,
    };
    let name = person.map(|p| p.full_name());
    let (jar, token) = csrf::issue(&app.csrf_key, jar, secure(&app));
    let page = HomePage {
        lang,
        switch_href: format!("/?lang={}", lang.other().code()),
        person_name: name.as_deref(),
        csrf_token: &token,
    };
    (jar, pages::render(StatusCode::OK, &page)).into_response()
}

/// Ends this browser's session (RP-initiated logout arrives with the lifecycle issue).
pub async fn logout(
    State(app): State<App>,
    jar: CookieJar,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = Params::parse(&body);
    let lang = lang_for(&jar, &headers, None);
    if !csrf::verify(&app.csrf_key, &jar, form.get("csrf_token").ok().flatten()) {
        return pages::error_page(lang, StatusCode::FORBIDDEN, Msg::CsrfFailed);
    }
    let result = async {
        if let Some(session) = session_from_jar(&app, &jar).await? {
            let now = app.clock.now();
            let mut tx = app.store.begin().await?;
            revocation::revoke(
                &mut tx,
                &Actor::Person(session.person_id.clone()),
                now,
                Target::Session(&session.id),
                "logout",
            )
            .await?;
            tx.commit().await?;
        }
        Ok::<_, crate::Error>(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "logout failed");
        return pages::error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, Msg::InternalError);
    }
    let jar = jar.remove(Cookie::build(sessions::COOKIE_NAME).path("/").build());
    let page = pages::MessagePage {
        lang,
        switch_href: format!("/?lang={}", lang.other().code()),
        title: Msg::LogoutButton,
        message: Msg::LoggedOut,
        is_error: false,
    };
    (jar, pages::render(StatusCode::OK, &page)).into_response()
}
