//! The authorization endpoint as the browser meets it: parse the request, let
//! `oidc::flow` decide, and render the decision — a redirect to the client with a code, to the
//! login page or the card's step-up, or an error page for what must never be redirected.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::CookieJar;

use crate::oidc::flow::{self, Completion, Decision, FlowError, Refusal};
use crate::oidc::hint;
use crate::params::Params;
use crate::App;

use super::{lang_for, pages, session_from_jar, Lang, Msg};

pub async fn authorize_get(State(app): State<App>, jar: CookieJar, RawQuery(query): RawQuery) -> Response {
    let params = Params::parse(query.unwrap_or_default().as_bytes());
    handle(app, jar, params).await
}

pub async fn authorize_post(State(app): State<App>, jar: CookieJar, body: Bytes) -> Response {
    handle(app, jar, Params::parse(&body)).await
}

async fn handle(app: App, jar: CookieJar, params: Params) -> Response {
    let ui_locales = params.get("ui_locales").ok().flatten();
    let lang = lang_for(&jar, ui_locales);
    let decided = async {
        let request = flow::validate(&app, &params).await?;
        let hinted_subject = match params.get("id_token_hint").ok().flatten() {
            None => None,
            Some(token) => match hint::verify(&app, token) {
                Some(hint) => Some(hint.sub),
                None => {
                    let description = "id_token_hint was not issued by this provider";
                    return Err(FlowError::to_client(&request, "invalid_request", description));
                }
            },
        };
        let session = session_from_jar(&app, &jar).await?;
        flow::decide(&app, request, session, hinted_subject, app.clock.now()).await
    }
    .await;
    match decided {
        Ok(Decision::Completed(completion)) => to_client(&completion),
        Ok(Decision::StepUp { pending_id }) => {
            Redirect::to(&format!("/login/card/step-up?request={pending_id}")).into_response()
        }
        // ui_locales carries on to the login page (OIDC Core §3.1.2.1).
        Ok(Decision::Login { pending_id }) => match ui_locales.and_then(Lang::from_ui_locales) {
            Some(chosen) => Redirect::to(&format!("/login?request={pending_id}&lang={}", chosen.code())),
            None => Redirect::to(&format!("/login?request={pending_id}")),
        }
        .into_response(),
        Err(error) => error_response(&app, lang, error),
    }
}

/// The browser goes back to the client with the code.
pub fn to_client(completion: &Completion) -> Response {
    Redirect::to(&completion.redirect).into_response()
}

/// A finished authorization or its error, as the browser gets it.
pub fn respond(app: &App, lang: Lang, result: Result<Completion, FlowError>) -> Response {
    match result {
        Ok(completion) => to_client(&completion),
        Err(error) => error_response(app, lang, error),
    }
}

/// Where an authorization error goes: a page, or a redirect to the verified URI. Internal
/// errors are logged here, once.
pub fn error_response(app: &App, lang: Lang, error: FlowError) -> Response {
    match error {
        FlowError::Page(refusal) => {
            let (status, msg) = match refusal {
                Refusal::UnknownClient => (StatusCode::BAD_REQUEST, Msg::BadClient),
                Refusal::UnverifiedRedirectUri => (StatusCode::BAD_REQUEST, Msg::BadRedirectUri),
                Refusal::AccountUnusable => (StatusCode::FORBIDDEN, Msg::AccountUnusable),
            };
            pages::error_page(lang, status, msg)
        }
        FlowError::Redirect { redirect_uri, state, error, description } => {
            let issuer = &app.config.issuer;
            Redirect::to(&flow::error_redirect(&redirect_uri, state.as_deref(), error, &description, issuer))
                .into_response()
        }
        FlowError::Internal(err) => {
            tracing::error!(error = %err, "authorization endpoint failed");
            pages::error_page(lang, StatusCode::INTERNAL_SERVER_ERROR, Msg::InternalError)
        }
    }
}

/// Where a finished authorization sends the browser, for the card pages' script (which
/// navigates itself): the completion's URL, or the error's; None for errors that are not
/// redirected (the caller handles internal ones).
pub fn destination(app: &App, result: Result<Completion, FlowError>) -> Option<String> {
    match result {
        Ok(completion) => Some(completion.redirect),
        Err(error) => error.redirect_url(&app.config.issuer),
    }
}
