//! R10, R11, R13, R17: マイページ, a person's own page on Sekimori — their account, password
//! age, cards, the sessions they are logged in with (and the systems each signed in to; any can
//! be ended), and their recent sign-ins with the failed attempts at their login ID. Reached by
//! the direct login (`/login` without a consuming system).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::{Cookie, CookieJar};
use serde::Deserialize;

use crate::audit::sign_ins::{self, Method};
use crate::audit::Actor;
use crate::authenticators;
use crate::clock::{japan_date, japan_minute};
use crate::directory;
use crate::oidc::refresh;
use crate::password::policy;
use crate::revocation::{self, Target};
use crate::sessions::{self, Session};
use crate::App;

use super::csrf::{self, CheckedForm};
use super::login::choose_lang;
use super::pages::{self, internal};
use super::{session_from_jar, Lang, Msg};

/// Sekimori's own pages a direct login may return to. The browser names one by its path;
/// anything else returns to マイページ, so that `next` can never send anyone elsewhere.
pub const OWN_PAGES: [&str; 8] =
    ["/my", "/password", "/authenticators", "/my/access", "/my/approvals", "/my/systems", "/my/reviews", "/my/notices"];

pub fn own_page(next: Option<&str>) -> &'static str {
    OWN_PAGES.into_iter().find(|page| Some(*page) == next).unwrap_or("/my")
}

/// A logged-out visit to one of Sekimori's own pages goes to the login, and back after it.
pub fn to_login(own_page: &'static str) -> Response {
    Redirect::to(&format!("/login?next={own_page}")).into_response()
}

#[derive(askama::Template)]
#[template(path = "my.html")]
pub struct MyPage {
    pub lang: Lang,
    pub switch_href: String,
    pub csrf_token: String,
    pub notice: Option<Msg>,
    pub name: String,
    pub login_id: String,
    pub employee_number: String,
    pub section: Option<String>,
    pub password: PasswordView,
    pub cards: Vec<CardView>,
    pub sessions: Vec<SessionView>,
    pub grants: Vec<GrantView>,
    pub sign_ins: Vec<SignInView>,
    /// The menu of マイページ, with the access pages.
    pub nav: super::access::Nav,
}

/// A system's standing access (`offline_access`), which outlives every session.
pub struct GrantView {
    pub family_id: String,
    pub system: String,
    pub granted: String,
    pub last_refreshed: String,
    pub expires: String,
}

pub struct PasswordView {
    pub changed: Option<String>,
    pub expires: Option<String>,
    pub must_change: bool,
}

pub struct CardView {
    pub label: String,
    pub management_number: Option<String>,
    pub active: bool,
    pub enrolled: String,
    pub last_used: Option<String>,
}

pub struct SessionView {
    pub id: String,
    pub current: bool,
    pub started: String,
    pub last_seen: String,
    pub source_ip: String,
    pub method: Msg,
    pub systems: String,
}

pub struct SignInView {
    pub at: String,
    pub succeeded: bool,
    pub method: Option<Msg>,
    pub source_ip: String,
    pub systems: String,
}

#[derive(Deserialize)]
pub struct MyQuery {
    lang: Option<String>,
    ended: Option<String>,
    revoked: Option<String>,
}

/// How a session or sign-in was authenticated, in words.
fn method_msg(amr: &[String]) -> Msg {
    let card = amr.iter().any(|m| m == "hwk");
    let password = amr.iter().any(|m| m == "pwd");
    match (password, card) {
        (true, true) => Msg::MethodPasswordAndCard,
        (false, true) => Msg::MethodCard,
        _ => Msg::MethodPassword,
    }
}

pub async fn my_page(State(app): State<App>, jar: CookieJar, Query(q): Query<MyQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    let session = match session_from_jar(&app, &jar).await {
        Ok(Some(session)) => session,
        Ok(None) => return to_login("/my"),
        Err(e) => return internal(lang, e),
    };
    let notice = match (q.ended.is_some(), q.revoked.is_some()) {
        (true, _) => Some(Msg::SessionEnded),
        (_, true) => Some(Msg::GrantEnded),
        _ => None,
    };
    match build(&app, lang, &session, notice).await {
        Ok(Some(mut page)) => {
            let (jar, token) = csrf::issue(&app, jar);
            page.csrf_token = token;
            (jar, pages::render(StatusCode::OK, &page)).into_response()
        }
        Ok(None) => to_login("/my"),
        Err(e) => internal(lang, e),
    }
}

async fn build(app: &App, lang: Lang, session: &Session, notice: Option<Msg>) -> Result<Option<MyPage>, crate::Error> {
    let now = app.clock.now();
    let pool = app.store.pool();
    let Some(account) = directory::account_of_person(pool, &session.person_id).await? else { return Ok(None) };
    let person = &account.person;
    let section = match &person.org_unit_id {
        Some(id) => directory::get_org_unit(pool, id).await?.map(|unit| match (lang, unit.name_en) {
            (Lang::En, Some(english)) => english,
            _ => unit.name,
        }),
        None => None,
    };
    let expires = account
        .password_changed_at
        .and_then(|changed| policy::expires_at(&app.config.password, person.kind, changed))
        .map(japan_date);
    let password = PasswordView {
        changed: account.password_changed_at.map(japan_date),
        expires,
        must_change: account.must_change_password,
    };
    let cards = authenticators::list_for_person(pool, &person.id)
        .await?
        .into_iter()
        .map(|card| CardView {
            active: card.is_active(),
            enrolled: japan_minute(card.created_at),
            last_used: card.last_used_at.map(japan_minute),
            label: card.label,
            management_number: card.management_number,
        })
        .collect();
    let none = lang.t(Msg::NoneYet);
    let separator = if lang == Lang::Ja { "、" } else { ", " };
    let join = |systems: Vec<String>| if systems.is_empty() { none.to_owned() } else { systems.join(separator) };
    let mut session_views = Vec::new();
    for summary in sessions::list_of_person(&app.store, &person.id, now).await? {
        session_views.push(SessionView {
            current: summary.id == session.id,
            started: japan_minute(summary.created_at),
            last_seen: japan_minute(summary.last_seen_at),
            source_ip: summary.source_ip.unwrap_or_default(),
            method: method_msg(&summary.amr),
            systems: join(summary.systems),
            id: summary.id,
        });
    }
    let grants = refresh::offline_grants_of(pool, &person.id, now)
        .await?
        .into_iter()
        .map(|grant| GrantView {
            granted: japan_minute(grant.auth_time),
            last_refreshed: japan_minute(grant.last_refreshed),
            expires: japan_minute(grant.expires_at),
            system: grant.client_name,
            family_id: grant.family_id,
        })
        .collect();
    let mut sign_in_views = Vec::new();
    for sign_in in sign_ins::recent(&app.store, &person.id, &account.login_id, 15).await? {
        let systems = match &sign_in.session_id {
            Some(sid) => join(sessions::systems_of(&app.store, sid).await?),
            None => String::new(),
        };
        sign_in_views.push(SignInView {
            at: japan_minute(sign_in.at),
            succeeded: sign_in.succeeded(),
            method: sign_in.method.map(|m| match m {
                Method::Password => Msg::MethodPassword,
                Method::Card => Msg::MethodCard,
            }),
            source_ip: sign_in.source_ip.unwrap_or_default(),
            systems,
        });
    }
    let viewer = super::access::viewer_of(app, &session.person_id).await?;
    let nav = super::access::nav(app, &viewer, "/my").await?;
    Ok(Some(MyPage {
        nav,
        lang,
        switch_href: format!("/my?lang={}", lang.other().code()),
        csrf_token: String::new(),
        notice,
        name: person.full_name(),
        login_id: account.login_id.clone(),
        employee_number: person.employee_number.clone(),
        section,
        password,
        cards,
        sessions: session_views,
        grants,
        sign_ins: sign_in_views,
    }))
}

/// What "end" on a session came to.
enum Ended {
    NotLoggedIn,
    /// Not one of the person's unended sessions (another's, an ended one, nonsense).
    NotMine,
    Other,
    ThisBrowser,
}

/// "End" on one of my sessions: it ends through the revocation module with its tokens and the
/// logout notices it owes. Ending the session of this very browser is logging out.
pub async fn end_session(State(app): State<App>, Path(id): Path<String>, form: CheckedForm) -> Response {
    let (jar, lang) = (form.jar, form.lang);
    let result = async {
        let Some(current) = session_from_jar(&app, &jar).await? else { return Ok(Ended::NotLoggedIn) };
        if id.len() > 64 {
            return Ok(Ended::NotMine);
        }
        let now = app.clock.now();
        let mut tx = app.store.begin().await?;
        if sessions::person_of(&mut *tx, &id).await?.as_deref() != Some(current.person_id.as_str()) {
            return Ok(Ended::NotMine);
        }
        let actor = Actor::Person(current.person_id.clone());
        revocation::revoke(&mut tx, &actor, now, Target::Session(&id), "ended by the person on their page").await?;
        tx.commit().await?;
        Ok::<_, crate::Error>(if id == current.id { Ended::ThisBrowser } else { Ended::Other })
    }
    .await;
    match result {
        Ok(Ended::NotLoggedIn) => to_login("/my"),
        Ok(Ended::NotMine) => pages::error_page(lang, StatusCode::NOT_FOUND, Msg::SessionNotFound),
        Ok(Ended::Other) => Redirect::to("/my?ended=1").into_response(),
        Ok(Ended::ThisBrowser) => {
            let jar = jar.remove(Cookie::build(sessions::COOKIE_NAME).path("/").build());
            (jar, pages::message_page(lang, StatusCode::OK, Msg::LogoutButton, Msg::LoggedOut, false)).into_response()
        }
        Err(e) => internal(lang, e),
    }
}

/// "End" on a system's standing access: the refresh-token family and its access tokens end
/// through the revocation module; the system must ask the person to log in again.
pub async fn end_grant(State(app): State<App>, Path(family_id): Path<String>, form: CheckedForm) -> Response {
    let (jar, lang) = (form.jar, form.lang);
    let result = async {
        let Some(current) = session_from_jar(&app, &jar).await? else { return Ok(Ended::NotLoggedIn) };
        if family_id.len() > 64 {
            return Ok(Ended::NotMine);
        }
        let now = app.clock.now();
        let mut tx = app.store.begin().await?;
        if refresh::family_owner(&mut tx, &family_id).await?.as_deref() != Some(current.person_id.as_str()) {
            return Ok(Ended::NotMine);
        }
        let actor = Actor::Person(current.person_id.clone());
        let target = Target::Grant(&family_id);
        revocation::revoke(&mut tx, &actor, now, target, "ended by the person on their page").await?;
        tx.commit().await?;
        Ok::<_, crate::Error>(Ended::Other)
    }
    .await;
    match result {
        Ok(Ended::NotLoggedIn) => to_login("/my"),
        Ok(Ended::Other) => Redirect::to("/my?revoked=1").into_response(),
        Ok(_) => pages::error_page(lang, StatusCode::NOT_FOUND, Msg::GrantNotFound),
        Err(e) => internal(lang, e),
    }
}
