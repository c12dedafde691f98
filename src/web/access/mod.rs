//! The access pages of マイページ (R5, R6): a person's roles and requests ([`mine`]), the
//! approvals waiting for a manager or deputy ([`approvals`]), the systems their section owns
//! with direct grants and deputies ([`systems`]), reviews ([`reviews`]) and the notices
//! Sekimori wrote for them ([`notices`]). Every change goes through `crate::access`, which
//! decides who may do what; these handlers read the form, call it, and show what it said.

pub mod approvals;
pub mod mine;
pub mod notices;
pub mod reviews;
pub mod systems;

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum_extra::extract::cookie::CookieJar;
use serde::Deserialize;

use crate::access::catalog::{self, Offered};
use crate::access::org::{self, Capacity};
use crate::access::requests::{self, Step};
use crate::access::{AccessError, Classification};
use crate::directory::{self, today_in_japan};
use crate::notify;
use crate::store::Tx;
use crate::App;

use super::my::to_login;
use super::pages::{self, internal};
use super::{session_from_jar, Lang, Msg};

/// The logged-in person and the units they decide for today.
pub struct Viewer {
    pub person_id: String,
    pub decides: Vec<(String, Capacity)>,
}

impl Viewer {
    /// The units they manage themselves (a deputy does not name another deputy).
    pub fn manages(&self) -> impl Iterator<Item = &str> {
        self.decides.iter().filter(|(_, c)| *c == Capacity::Manager).map(|(u, _)| u.as_str())
    }

    pub fn decides_for(&self, unit: &str) -> bool {
        self.decides.iter().any(|(u, _)| u == unit)
    }
}

/// A read-only transaction (on SQLite, on the readers' pool: it takes no write lock) for the
/// domain's read functions that take a transaction.
pub async fn read(app: &App) -> Result<Tx, sqlx::Error> {
    app.store.begin_read().await
}

/// The person of this browser's session, if any.
pub async fn viewer(app: &App, jar: &CookieJar) -> Result<Option<Viewer>, crate::Error> {
    let Some(session) = session_from_jar(app, jar).await? else { return Ok(None) };
    Ok(Some(viewer_of(app, &session.person_id).await?))
}

/// `person_id` with the units they decide for today.
pub async fn viewer_of(app: &App, person_id: &str) -> Result<Viewer, crate::Error> {
    let mut tx = read(app).await?;
    let decides = org::units_decided_by(&mut tx, person_id, today_in_japan(app.clock.now())).await?;
    Ok(Viewer { person_id: person_id.to_owned(), decides })
}

/// The menu of マイページ: the manager's pages only for those who decide for a unit today.
pub struct Nav {
    pub current: &'static str,
    pub decides: bool,
    pub unread: usize,
    pub waiting: usize,
}

impl Nav {
    pub fn is(&self, path: &str) -> bool {
        self.current == path
    }
}

pub async fn nav(app: &App, viewer: &Viewer, current: &'static str) -> Result<Nav, crate::Error> {
    let unread =
        notify::list_for_person(app.store.pool(), &viewer.person_id, 100).await?.iter().filter(|n| !n.read).count();
    let decides = !viewer.decides.is_empty();
    let waiting = if decides {
        let mut tx = read(app).await?;
        requests::waiting_for(&mut tx, &viewer.person_id, app.clock.now()).await?.len()
    } else {
        0
    };
    Ok(Nav { current, decides, unread, waiting })
}

/// `?lang=` and what was just done (shown as a status message).
#[derive(Deserialize)]
pub struct PageQuery {
    pub lang: Option<String>,
    pub done: Option<String>,
}

/// An error shown next to the field it is about (`field` is the input's id) and in the summary
/// at the top of the page, which takes the focus.
#[derive(Debug, Clone)]
pub struct FieldError {
    pub field: String,
    pub msg: Msg,
    /// The domain's own words, when no message of ours says it (English, marked as such).
    pub detail: Option<String>,
}

impl FieldError {
    pub fn new(field: impl Into<String>, msg: Msg) -> Self {
        FieldError { field: field.into(), msg, detail: None }
    }
}

/// What a refused form comes to: errors on its fields (the page again, 422 or 409), or a page
/// of its own (not found, not yours to do), or an internal failure.
pub enum Refused {
    Fields(StatusCode, Vec<FieldError>),
    Page(StatusCode, Msg),
    Internal(crate::Error),
}

impl From<sqlx::Error> for Refused {
    fn from(e: sqlx::Error) -> Self {
        Refused::Internal(e.into())
    }
}

impl From<crate::Error> for Refused {
    fn from(e: crate::Error) -> Self {
        Refused::Internal(e)
    }
}

impl From<directory::DirectoryError> for Refused {
    fn from(e: directory::DirectoryError) -> Self {
        Refused::Internal(e.into())
    }
}

/// How a conflict the domain reports reads on a page. The domain says it in English words;
/// the ones a person can meet here have a message, anything else a general one with the words.
pub fn conflict_msg(text: &str) -> (Msg, Option<String>) {
    let known = [
        ("already held or asked for", Msg::AlreadyHeldOrAsked),
        ("separation of duties", Msg::IncompatibleRole),
        ("already holds this role", Msg::AlreadyHolds),
        ("not in service", Msg::NotInService),
        ("review of this scope is already open", Msg::ReviewAlreadyOpen),
        ("already been decided in this review", Msg::ReviewItemDecided),
        ("review is closed", Msg::ReviewItemDecided),
        ("designation has already ended", Msg::DeputyAlreadyEnded),
        ("the request is already", Msg::AlreadyDecided),
        ("the request has lapsed", Msg::AlreadyDecided),
        ("not in use", Msg::RoleNotAvailable),
    ];
    match known.iter().find(|(words, _)| text.contains(words)) {
        Some((_, msg)) => (*msg, None),
        None => (Msg::NotPossibleNow, Some(text.to_owned())),
    }
}

/// The usual reading of a domain error for a form whose fields are named in `fields` (the
/// domain's field name → the input's id); the caller handles the cases it knows better first.
pub fn refused(e: AccessError, fields: &[(&str, &str)], general: &str) -> Refused {
    match e {
        AccessError::Database(e) => Refused::Internal(e.into()),
        AccessError::Invalid(invalid) => {
            let id = fields.iter().find(|(name, _)| *name == invalid.field).map_or(general, |(_, id)| *id);
            let msg = match invalid.field {
                "reason" => Msg::ReasonInvalid,
                _ => Msg::BadForm,
            };
            let detail = (msg == Msg::BadForm).then_some(invalid.reason);
            Refused::Fields(StatusCode::UNPROCESSABLE_ENTITY, vec![FieldError { field: id.to_owned(), msg, detail }])
        }
        AccessError::Conflict(text) => {
            let (msg, detail) = conflict_msg(&text);
            Refused::Fields(StatusCode::CONFLICT, vec![FieldError { field: general.to_owned(), msg, detail }])
        }
        AccessError::Forbidden(_) => Refused::Page(StatusCode::FORBIDDEN, Msg::NotYoursToDo),
        AccessError::NotFound(_) => Refused::Page(StatusCode::NOT_FOUND, Msg::NotFoundHere),
    }
}

/// The message for a date the domain refused: missing, not a date, or in the past.
pub fn date_msg(value: Option<&str>, today: time::Date) -> Msg {
    match value.map(|v| directory::types::parse_date("date", v)) {
        None => Msg::DateRequired,
        Some(Err(_)) => Msg::DateInvalid,
        Some(Ok(date)) if date < today => Msg::DateInPast,
        Some(Ok(_)) => Msg::DateOutOfRange,
    }
}

/// After a change: back to the page (303), which says what was done.
pub fn done(path: &str, what: &str) -> Response {
    Redirect::to(&format!("{path}?done={what}")).into_response()
}

/// The page for a refusal that is not about a field, or for an internal failure.
pub fn refusal_page(lang: Lang, refused: Refused) -> Response {
    match refused {
        Refused::Page(status, msg) => pages::error_page(lang, status, msg),
        Refused::Internal(e) => internal(lang, e),
        Refused::Fields(status, errors) => {
            // Only reached when the form's page cannot be shown again: show the first message.
            let msg = errors.first().map_or(Msg::BadForm, |e| e.msg);
            pages::error_page(lang, status, msg)
        }
    }
}

/// A GET page's outcome: logged out goes to the login and back.
pub fn page_or_login(lang: Lang, own_page: &'static str, built: Result<Option<Response>, crate::Error>) -> Response {
    match built {
        Ok(Some(response)) => response,
        Ok(None) => to_login(own_page),
        Err(e) => internal(lang, e),
    }
}

pub fn class_msg(classification: Classification) -> Msg {
    match classification {
        Classification::Secret => Msg::ClassSecret,
        Classification::General => Msg::ClassGeneral,
    }
}

pub fn status_msg(status: &str) -> Msg {
    match status {
        "pending" => Msg::StatusPending,
        "approved" => Msg::StatusApproved,
        "rejected" => Msg::StatusRejected,
        "lapsed" => Msg::StatusLapsed,
        _ => Msg::StatusWithdrawn,
    }
}

/// One approval step as a page shows it.
pub struct StepView {
    pub kind: Msg,
    pub unit: String,
    pub state: Msg,
    pub deputy: bool,
    pub when: Option<String>,
    pub reason: Option<String>,
    /// The step the viewer decides.
    pub mine: bool,
}

/// `open`: the request still waits (an undecided step of a finished one was never decided).
pub fn step_view(step: &Step, units: &HashMap<String, String>, mine: bool, open: bool) -> StepView {
    StepView {
        kind: if step.step == "owner" { Msg::StepOwner } else { Msg::StepRequesterManager },
        unit: units.get(&step.org_unit_id).cloned().unwrap_or_else(|| step.org_unit_name.clone()),
        state: match step.decision.as_deref() {
            Some("approved") => Msg::DecisionApproved,
            Some("rejected") => Msg::DecisionRejected,
            _ if open => Msg::DecisionUndecided,
            _ => Msg::DecisionNotTaken,
        },
        deputy: step.acting_as.as_deref() == Some("deputy"),
        when: step.decided_at.map(crate::clock::japan_minute),
        reason: step.reason.clone(),
        mine,
    }
}

/// Names of org units in the page's language, by id.
pub async fn unit_names(app: &App, lang: Lang) -> Result<HashMap<String, String>, crate::Error> {
    Ok(directory::list_org_units(&app.store)
        .await?
        .into_iter()
        .map(|unit| {
            let name = match (lang, unit.name_en) {
                (Lang::En, Some(english)) => english,
                _ => unit.name,
            };
            (unit.id, name)
        })
        .collect())
}

/// What the pages offer, with the roles' labels in the page's language.
pub struct Catalog {
    pub offered: Vec<Offered>,
    labels: HashMap<(String, String), String>,
}

impl Catalog {
    pub async fn load(app: &App, lang: Lang) -> Result<Catalog, crate::Error> {
        let mut conn = app.store.pool().acquire().await?;
        let offered = catalog::offered(&mut conn).await?;
        let mut labels = HashMap::new();
        for system in &offered {
            for role in &system.roles {
                let label = match (lang, &role.label_en) {
                    (Lang::En, Some(english)) => english.clone(),
                    _ => role.label.clone(),
                };
                labels.insert((role.client_id.clone(), role.name.clone()), label);
            }
        }
        Ok(Catalog { offered, labels })
    }

    /// A role's label in the page's language (`label`, the Japanese one, when it has none or
    /// is no longer offered).
    pub fn label(&self, client_id: &str, role: &str, label: &str) -> String {
        self.labels.get(&(client_id.to_owned(), role.to_owned())).cloned().unwrap_or_else(|| label.to_owned())
    }

    /// The role with this id, offered: (client_id, role name).
    pub fn role(&self, id: &str) -> Option<(&str, &str)> {
        self.offered
            .iter()
            .flat_map(|o| o.roles.iter())
            .find(|r| r.id == id)
            .map(|r| (r.client_id.as_str(), r.name.as_str()))
    }
}

/// A role to choose in a form, grouped by system.
pub struct OptionGroup {
    pub label: String,
    pub options: Vec<RoleOption>,
}

pub struct RoleOption {
    pub id: String,
    pub label: String,
    pub selected: bool,
}

/// The roles of `systems` as a form's choices, `chosen` selected.
pub fn role_options(
    lang: Lang,
    systems: &[&Offered],
    chosen: Option<&str>,
    mark: impl Fn(&Offered) -> bool,
) -> Vec<OptionGroup> {
    systems
        .iter()
        .filter(|o| !o.roles.is_empty())
        .map(|o| OptionGroup {
            label: if mark(o) {
                format!("{}{}", o.system.name, lang.t(Msg::OtherSectionMark))
            } else {
                o.system.name.clone()
            },
            options: o
                .roles
                .iter()
                .map(|role| {
                    let label = match (lang, &role.label_en) {
                        (Lang::En, Some(english)) => english.clone(),
                        _ => role.label.clone(),
                    };
                    let mut facts = lang.t(class_msg(role.classification)).to_owned();
                    if let Some(days) = role.max_duration_days {
                        facts.push_str(lang.t(Msg::ListSeparator));
                        facts.push_str(&format!("{}{days}{}", lang.t(Msg::UpToDays), lang.t(Msg::DaysSuffix)));
                    }
                    RoleOption {
                        label: format!("{label}{}", lang.paren(&facts)),
                        selected: chosen == Some(role.id.as_str()),
                        id: role.id.clone(),
                    }
                })
                .collect(),
        })
        .collect()
}

/// The systems whose owning section `viewer` decides for today.
pub async fn systems_decided_by<'c>(
    tx: &mut Tx,
    viewer: &Viewer,
    catalog: &'c Catalog,
) -> Result<Vec<&'c Offered>, sqlx::Error> {
    let mut mine = Vec::new();
    for offered in &catalog.offered {
        let Some(owner) = &offered.system.owner_org_unit_id else { continue };
        if let Some(unit) = org::deciding_unit(tx, owner, "").await? {
            if viewer.decides_for(&unit) {
                mine.push(offered);
            }
        }
    }
    Ok(mine)
}

/// A path id from the address bar: nothing longer than an id can be.
pub fn plausible_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64
}
