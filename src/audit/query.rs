//! Reading the log for an auditor (R8): filters by person, consuming system, action, outcome
//! and time, newest or oldest first, paged by sequence number so that a reader walking the
//! log meets every event once even while new ones are written. Times come in and go out in
//! ISO 8601 with an offset (events in Japan time); `seq` is the cursor.

use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::{stored_event, StoredEvent};
use crate::clock::UnixTime;
use crate::invalid::InvalidField;
use crate::store::{escape_like, Select, Store};

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidField {
    InvalidField { field, reason: reason.into() }
}

/// The query string as the auditor sends it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    pub person: Option<String>,
    pub system: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub order: Option<String>,
    pub before: Option<i64>,
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    NewestFirst,
    OldestFirst,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Exact(String),
    /// `login.*`: every action beginning `login.`.
    Prefix(String),
}

/// What to read; every part given must hold.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// The person asked for (`person`), by id.
    pub person: Option<String>,
    /// How the log names that person (see `directory::audit_names`): events with one of
    /// these as actor or target. Filled in by the caller, who can read the directory.
    pub subjects: Vec<String>,
    /// A consuming system's client_id: events it did, done to it, or naming it in `client_id`.
    pub system: Option<String>,
    pub action: Option<Action>,
    pub outcome: Option<&'static str>,
    /// From this second on (inclusive).
    pub since: Option<UnixTime>,
    /// Up to this second (exclusive), so that consecutive ranges tile.
    pub until: Option<UnixTime>,
    /// Only events with a smaller `seq`.
    pub before: Option<i64>,
    /// Only events with a greater `seq`.
    pub after: Option<i64>,
    pub order: Order,
    pub limit: i64,
}

impl Filter {
    pub fn parse(params: &Params) -> Result<Filter, InvalidField> {
        let limit = params.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(invalid("limit", "must be 1 to 1000"));
        }
        for (field, cursor) in [("before", params.before), ("after", params.after)] {
            if cursor.is_some_and(|seq| seq < 0) {
                return Err(invalid(field, "must not be negative"));
            }
        }
        let person = params.person.as_deref().map(parse_person).transpose()?;
        let system = params.system.as_deref().map(parse_system).transpose()?;
        let action = params.action.as_deref().map(parse_action).transpose()?;
        let outcome = match params.outcome.as_deref() {
            None => None,
            Some("success") => Some("success"),
            Some("failure") => Some("failure"),
            Some(_) => return Err(invalid("outcome", "must be success or failure")),
        };
        let order = match params.order.as_deref() {
            None | Some("desc") => Order::NewestFirst,
            Some("asc") => Order::OldestFirst,
            Some(_) => return Err(invalid("order", "must be desc or asc")),
        };
        let since = params.since.as_deref().map(|t| parse_time("since", t)).transpose()?;
        let until = params.until.as_deref().map(|t| parse_time("until", t)).transpose()?;
        if let (Some(since), Some(until)) = (since, until) {
            if until < since {
                return Err(invalid("until", "must not be before since"));
            }
        }
        Ok(Filter {
            subjects: person.iter().map(|id| format!("person:{id}")).collect(),
            person,
            system,
            action,
            outcome,
            since,
            until,
            before: params.before,
            after: params.after,
            order,
            limit,
        })
    }

    /// The filter as given, for the audit event that records the read.
    pub fn describe(&self) -> serde_json::Value {
        let time = |t: Option<UnixTime>| t.and_then(|t| crate::clock::japan_rfc3339(t).ok());
        serde_json::json!({
            "person": self.person,
            "system": self.system,
            "action": match &self.action {
                Some(Action::Exact(a)) => Some(a.clone()),
                Some(Action::Prefix(p)) => Some(format!("{p}*")),
                None => None,
            },
            "outcome": self.outcome,
            "since": time(self.since),
            "until": time(self.until),
            "before": self.before,
            "after": self.after,
            "order": match self.order { Order::NewestFirst => "desc", Order::OldestFirst => "asc" },
            "limit": self.limit,
        })
    }
}

/// A person id: what people ids are (UUIDs), with room for ids imported from elsewhere.
fn parse_person(id: &str) -> Result<String, InvalidField> {
    let ok = (1..=64).contains(&id.len()) && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    ok.then(|| id.to_owned()).ok_or_else(|| invalid("person", "must be a person id (1 to 64 letters, digits or '-')"))
}

/// A client_id, as consuming systems are registered with.
fn parse_system(id: &str) -> Result<String, InvalidField> {
    let ok = (3..=64).contains(&id.len())
        && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    ok.then(|| id.to_owned())
        .ok_or_else(|| invalid("system", "must be a client_id (3 to 64 characters of a-z, 0-9, '-', '_' or '.')"))
}

/// An action (`login.password`) or a prefix ending in `*` (`login.*`).
fn parse_action(text: &str) -> Result<Action, InvalidField> {
    let (name, prefix) = match text.strip_suffix('*') {
        Some(name) => (name, true),
        None => (text, false),
    };
    let ok = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.'));
    if !ok {
        return Err(invalid(
            "action",
            "must be an action such as login.password, or a prefix ending in * such as login.*",
        ));
    }
    Ok(if prefix { Action::Prefix(name.to_owned()) } else { Action::Exact(name.to_owned()) })
}

/// An RFC 3339 date-time with its offset, e.g. `2026-04-01T00:00:00+09:00` (or `Z`), as
/// Unix seconds; fractions of a second are ignored. The form is checked first, exactly as
/// openapi.yaml states it, so that the parser's leniencies are not part of the API.
pub fn parse_time(field: &'static str, text: &str) -> Result<UnixTime, InvalidField> {
    let malformed =
        || invalid(field, "must be an ISO 8601 date and time with an offset, e.g. 2026-04-01T00:00:00+09:00");
    if !has_documented_form(text) {
        return Err(malformed());
    }
    // A `+` sent unencoded in a query string arrives as a space; the form allows a space only
    // there, so it can only have been the `+` of the offset.
    let text = text.replacen(' ', "+", 1);
    OffsetDateTime::parse(&text, &Rfc3339).map(OffsetDateTime::unix_timestamp).map_err(|_| malformed())
}

/// `YYYY-MM-DDThh:mm:ss[.f{1,9}](Z|±hh:mm)`, where the `+` may have become a space.
fn has_documented_form(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |from: usize, to: usize| bytes.get(from..to).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let at = |i: usize, c: u8| bytes.get(i) == Some(&c);
    let date_time = digits(0, 4)
        && at(4, b'-')
        && digits(5, 7)
        && at(7, b'-')
        && digits(8, 10)
        && at(10, b'T')
        && digits(11, 13)
        && at(13, b':')
        && digits(14, 16)
        && at(16, b':')
        && digits(17, 19);
    if !date_time {
        return false;
    }
    let mut offset = 19;
    if at(19, b'.') {
        let fraction = bytes.get(20..).unwrap_or_default().iter().take_while(|b| b.is_ascii_digit()).count();
        if !(1..=9).contains(&fraction) {
            return false;
        }
        offset = 20 + fraction;
    }
    match bytes.get(offset..) {
        Some(b"Z") => true,
        Some([b'+' | b'-' | b' ', ..]) => {
            bytes.len() == offset + 6
                && digits(offset + 1, offset + 3)
                && at(offset + 3, b':')
                && digits(offset + 4, offset + 6)
        }
        _ => false,
    }
}

/// The events matching `filter`, at most `filter.limit`, in its order. Every value is bound.
pub async fn find(store: &Store, filter: &Filter) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let mut select = matching(
        "SELECT seq, at, actor, action, target, outcome, detail, source_ip, mac, chain_pos, prev_hash, hash FROM audit_log WHERE 1 = 1",
        filter,
    );
    select.push(match filter.order {
        Order::NewestFirst => " ORDER BY seq DESC LIMIT ",
        Order::OldestFirst => " ORDER BY seq ASC LIMIT ",
    });
    select.bind_int(filter.limit);
    let rows = select.query().fetch_all(store.pool()).await?;
    rows.iter().map(stored_event).collect()
}

/// How many events match `filter` (its limit aside).
pub async fn count(store: &Store, filter: &Filter) -> Result<i64, sqlx::Error> {
    use sqlx::Row;
    let select = matching("SELECT COUNT(*) AS n FROM audit_events WHERE 1 = 1", filter);
    select.query().fetch_one(store.pool()).await?.try_get("n")
}

/// The sequence number of the newest event (0 when there is none).
pub async fn last_seq(store: &Store) -> Result<i64, sqlx::Error> {
    use sqlx::Row;
    sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM audit_events").fetch_one(store.pool()).await?.try_get("seq")
}

/// `head` followed by the conditions of `filter`.
fn matching(head: &'static str, filter: &Filter) -> Select {
    let mut select = Select::new(head);
    if filter.person.is_some() {
        // The (actor, seq) and (target, seq) indexes serve the two halves.
        select.push(" AND (actor IN (");
        push_list(&mut select, &filter.subjects);
        select.push(") OR target IN (");
        push_list(&mut select, &filter.subjects);
        select.push("))");
    }
    if let Some(client_id) = &filter.system {
        let name = format!("client:{client_id}");
        // Details are compact JSON that Sekimori wrote; a client_id needs no escaping in
        // JSON, and a quote inside another string would be escaped, so this finds exactly the
        // events whose detail names the system as client_id.
        let in_detail = format!("%{}%", escape_like(&format!("\"client_id\":\"{client_id}\"")));
        select.push(" AND (target = ").bind_text(name.as_str()).push(" OR actor = ").bind_text(name);
        select.push(" OR detail LIKE ").bind_text(in_detail).push(" ESCAPE '\\')");
    }
    match &filter.action {
        Some(Action::Exact(action)) => {
            select.push(" AND action = ").bind_text(action.as_str());
        }
        Some(Action::Prefix(prefix)) => {
            select.push(" AND action LIKE ").bind_text(format!("{}%", escape_like(prefix))).push(" ESCAPE '\\'");
        }
        None => {}
    }
    if let Some(outcome) = filter.outcome {
        select.push(" AND outcome = ").bind_text(outcome);
    }
    if let Some(since) = filter.since {
        select.push(" AND at >= ").bind_int(since);
    }
    if let Some(until) = filter.until {
        select.push(" AND at < ").bind_int(until);
    }
    if let Some(before) = filter.before {
        select.push(" AND seq < ").bind_int(before);
    }
    if let Some(after) = filter.after {
        select.push(" AND seq > ").bind_int(after);
    }
    select
}

/// `$a, $b, …`; never empty (an empty IN list is not SQL).
fn push_list(select: &mut Select, values: &[String]) {
    if values.is_empty() {
        select.push("NULL");
    }
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            select.push(", ");
        }
        select.bind_text(value.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_need_their_offset() {
        assert_eq!(parse_time("since", "2026-04-01T00:00:00+09:00"), Ok(1_774_969_200));
        assert_eq!(parse_time("since", "2026-03-31T15:00:00Z"), Ok(1_774_969_200));
        assert_eq!(parse_time("since", "2026-03-31T15:00:00.999Z"), Ok(1_774_969_200));
        assert_eq!(parse_time("since", "2026-04-01T00:00:00 09:00"), Ok(1_774_969_200), "an unencoded +");
        for bad in [
            "2026-04-01",
            "2026-04-01T00:00:00",
            "2026-04-01 00:00:00+09:00",
            "2026-04-01t00:00:00z",
            "2026-13-01T00:00:00+09:00",
            "2026-04-01T00:00:00+0900",
            "2026-04-01T00:00:00.+09:00",
            "2026-04-01T00:00:00+09:00junk",
            "１",
            "",
        ] {
            let refused = parse_time("until", bad).unwrap_err();
            assert_eq!(refused.field, "until", "{bad}");
        }
        assert_eq!(crate::clock::japan_rfc3339(1_774_969_200).unwrap(), "2026-04-01T00:00:00+09:00");
    }

    #[test]
    fn parameters_are_checked_one_by_one() {
        let with = |edit: fn(&mut Params)| {
            let mut params = Params::default();
            edit(&mut params);
            Filter::parse(&params)
        };
        assert_eq!(with(|p| p.limit = Some(0)).unwrap_err().field, "limit");
        assert_eq!(with(|p| p.limit = Some(1001)).unwrap_err().field, "limit");
        assert_eq!(with(|p| p.before = Some(-1)).unwrap_err().field, "before");
        assert_eq!(with(|p| p.order = Some("newest".into())).unwrap_err().field, "order");
        assert_eq!(with(|p| p.outcome = Some("ok".into())).unwrap_err().field, "outcome");
        assert_eq!(with(|p| p.action = Some("login.%".into())).unwrap_err().field, "action");
        assert_eq!(with(|p| p.action = Some("*".into())).unwrap_err().field, "action");
        assert_eq!(with(|p| p.system = Some("Zeimu".into())).unwrap_err().field, "system");
        assert_eq!(with(|p| p.person = Some("a'b".into())).unwrap_err().field, "person");
        assert_eq!(
            with(|p| {
                p.since = Some("2026-04-02T00:00:00+09:00".into());
                p.until = Some("2026-04-01T00:00:00+09:00".into());
            })
            .unwrap_err()
            .field,
            "until"
        );
        let filter = with(|p| p.action = Some("login.*".into())).unwrap();
        assert_eq!(filter.action, Some(Action::Prefix("login.".into())));
        assert_eq!(filter.order, Order::NewestFirst);
        assert_eq!(filter.limit, DEFAULT_LIMIT);
    }
}
