//! お知らせ (`/my/notices`): what Sekimori told the person (an approval waits, a request was
//! decided or lapsed, a review opened, a grant ended), newest first. Showing them marks them
//! read; the ones unread until now are marked new.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum_extra::extract::cookie::CookieJar;

use crate::clock::japan_minute;
use crate::notify;
use crate::App;

use super::super::login::choose_lang;
use super::super::pages;
use super::super::{Lang, Msg};
use super::{nav, page_or_login, viewer, Nav, PageQuery};

pub const PATH: &str = "/my/notices";

#[derive(askama::Template)]
#[template(path = "notices.html")]
pub struct NoticesPage {
    pub lang: Lang,
    pub switch_href: String,
    pub nav: Nav,
    pub notices: Vec<NoticeView>,
}

pub struct NoticeView {
    pub subject: String,
    pub body: String,
    pub at: String,
    pub new: bool,
}

pub async fn page(State(app): State<App>, jar: CookieJar, Query(q): Query<PageQuery>) -> Response {
    let (jar, lang) = choose_lang(&app, jar, q.lang.as_deref());
    let built = async {
        let Some(viewer) = viewer(&app, &jar).await? else { return Ok(None) };
        let notices: Vec<NoticeView> = notify::list_for_person(app.store.pool(), &viewer.person_id, 100)
            .await?
            .into_iter()
            .map(|n| NoticeView { subject: n.subject, body: n.body, at: japan_minute(n.created_at), new: !n.read })
            .collect();
        if notices.iter().any(|n| n.new) {
            let mut tx = app.store.begin().await?;
            notify::mark_read(&mut tx, app.clock.now(), &viewer.person_id).await?;
            tx.commit().await?;
        }
        let nav = nav(&app, &viewer, PATH).await?;
        let page = NoticesPage { lang, switch_href: format!("{PATH}?lang={}", lang.other().code()), nav, notices };
        Ok::<_, crate::Error>(Some((jar, pages::render(StatusCode::OK, &page)).into_response()))
    }
    .await;
    page_or_login(lang, PATH, built)
}
