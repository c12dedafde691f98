//! R16 (鳥栖 規則 第14条(3), 江戸川区 基準 第16条2(3): 定期的にアクセス記録等を監視、分析すること):
//! the analysis of logins over a range of days — failed logins by login ID and by source
//! address, logins outside office hours or on closed days, dormant accounts, and accounts
//! locked again and again.
//!
//! It reads the audit log as the login code writes it: a refused password login is
//! `login.password`/failure by `anonymous` at `login_id:<typed>` with the source address and
//! `locked_until` when that failure locked the account; a completed login is `login.card`, or
//! `login.password` whose detail names the session (`sid`) it opened.

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;
use time::OffsetDateTime;

use super::roster::{self, Dormant, Named, Roster, SIGN_IN_CONDITION};
use super::{holidays, CsvSheet, DateRange};
use crate::clock::{UnixTime, JAPAN};
use crate::config::ReportsConfig;
use crate::store::Store;

/// The most off-hours logins one report lists (it counts them all).
pub const OFF_HOURS_MAX: usize = 5_000;

/// How often something happened, for one login ID or source address.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Count {
    pub key: String,
    pub count: i64,
}

/// A login outside office hours or on a closed day.
#[derive(Debug, Clone, Serialize)]
pub struct OffHoursLogin {
    /// ISO 8601, Japan time.
    pub at: String,
    #[serde(flatten)]
    pub person: Named,
    pub source_ip: Option<String>,
    pub method: &'static str,
    /// `closed day: 振替休日`, `weekend`, `before office hours`, `after office hours`, …
    pub why: String,
}

/// The analysis of one range.
#[derive(Debug, Clone, Serialize)]
pub struct Analysis {
    pub from: String,
    pub to: String,
    pub office_hours: String,
    pub failed_logins: i64,
    pub failed_by_login_id: Vec<Count>,
    pub failed_by_source: Vec<Count>,
    pub off_hours_count: i64,
    pub off_hours_logins: Vec<OffHoursLogin>,
    pub dormant_days: i64,
    pub dormant_accounts: Vec<Dormant>,
    pub repeated_lockouts: Vec<Count>,
}

/// Analyses the logins of `range` (dormancy as of the end of the range, or `now` if sooner).
pub async fn analyse(
    store: &Store,
    config: &ReportsConfig,
    range: DateRange,
    now: UnixTime,
) -> Result<Analysis, crate::Error> {
    let hours = config.office_hours()?;
    let closed = config.closed_dates()?;
    let (start, end) = (range.start(), range.end());
    let top = config.top;
    let failed =
        "action = 'login.password' AND outcome = 'failure' AND target LIKE 'login_id:%' AND at >= $1 AND at < $2";
    let pool = store.pool();
    let failed_logins: i64 = sqlx::query(&format!("SELECT COUNT(*) AS n FROM audit_events WHERE {failed}"))
        .bind(start)
        .bind(end)
        .fetch_one(pool)
        .await?
        .try_get("n")?;
    let grouped = |column: &str| {
        format!(
            "SELECT {column} AS key, COUNT(*) AS n FROM audit_events WHERE {failed} AND {column} IS NOT NULL
             GROUP BY {column} ORDER BY n DESC, {column} LIMIT $3"
        )
    };
    let mut failed_by_login_id = counts(store, &grouped("target"), start, end, top).await?;
    for count in &mut failed_by_login_id {
        count.key = count.key.trim_start_matches("login_id:").to_owned();
    }
    let failed_by_source = counts(store, &grouped("source_ip"), start, end, top).await?;
    let roster = Roster::load(store).await?;
    let (off_hours_count, off_hours_logins) = off_hours(store, &roster, start, end, hours, &closed).await?;
    let as_of = end.min(now);
    let dormant_accounts = roster::dormant_accounts(store, &roster, as_of, config.dormant_days).await?;
    let repeated_lockouts = lockouts(store, &roster, start, end).await?;
    Ok(Analysis {
        from: crate::directory::types::format_date(range.from),
        to: crate::directory::types::format_date(range.to),
        office_hours: config.office_hours.clone(),
        failed_logins,
        failed_by_login_id,
        failed_by_source,
        off_hours_count,
        off_hours_logins,
        dormant_days: config.dormant_days,
        dormant_accounts,
        repeated_lockouts,
    })
}

async fn counts(store: &Store, sql: &str, start: UnixTime, end: UnixTime, top: i64) -> Result<Vec<Count>, sqlx::Error> {
    let rows = sqlx::query(sql).bind(start).bind(end).bind(top).fetch_all(store.pool()).await?;
    rows.iter().map(|r| Ok(Count { key: r.try_get("key")?, count: r.try_get("n")? })).collect()
}

/// Why a login at `at` was outside office hours, if it was.
pub fn outside_office_hours(at: UnixTime, hours: crate::config::OfficeHours, closed: &[time::Date]) -> Option<String> {
    let local = OffsetDateTime::from_unix_timestamp(at).ok()?.to_offset(JAPAN);
    let date = local.date();
    if let Some(name) = holidays::holiday_name(date) {
        return Some(format!("holiday 祝日: {name}"));
    }
    if holidays::is_year_end_closure(date) {
        return Some("year-end closure 年末年始".into());
    }
    if closed.contains(&date) {
        return Some("closed day 閉庁日".into());
    }
    if matches!(date.weekday(), time::Weekday::Saturday | time::Weekday::Sunday) {
        return Some("weekend 土日".into());
    }
    let minute = u16::from(local.hour()) * 60 + u16::from(local.minute());
    if minute < hours.start_minute {
        Some("before office hours 始業前".into())
    } else if minute >= hours.end_minute {
        Some("after office hours 終業後".into())
    } else {
        None
    }
}

async fn off_hours(
    store: &Store,
    roster: &Roster,
    start: UnixTime,
    end: UnixTime,
    hours: crate::config::OfficeHours,
    closed: &[time::Date],
) -> Result<(i64, Vec<OffHoursLogin>), sqlx::Error> {
    let sql = format!(
        "SELECT at, actor, action, source_ip FROM audit_events WHERE {SIGN_IN_CONDITION} AND at >= $1 AND at < $2 ORDER BY seq"
    );
    let rows = sqlx::query(&sql).bind(start).bind(end).fetch_all(store.pool()).await?;
    let mut count = 0;
    let mut listed = Vec::new();
    for row in rows {
        let at: i64 = row.try_get("at")?;
        let Some(why) = outside_office_hours(at, hours, closed) else { continue };
        count += 1;
        if listed.len() >= OFF_HOURS_MAX {
            continue;
        }
        let actor: String = row.try_get("actor")?;
        let action: String = row.try_get("action")?;
        listed.push(OffHoursLogin {
            at: crate::clock::japan_rfc3339(at).unwrap_or_default(),
            person: roster.named(actor.trim_start_matches("person:")),
            source_ip: row.try_get("source_ip")?,
            method: if action == "login.card" { "card" } else { "password" },
            why,
        });
    }
    Ok((count, listed))
}

/// Accounts locked at least twice in the range: each failure that set `locked_until` is a
/// lockout (a refusal while already locked sets nothing new).
async fn lockouts(store: &Store, roster: &Roster, start: UnixTime, end: UnixTime) -> Result<Vec<Count>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT target, detail FROM audit_events
         WHERE outcome = 'failure' AND action IN ('login.password', 'password.change')
           AND detail LIKE '%\"locked_until\":%' AND at >= $1 AND at < $2",
    )
    .bind(start)
    .bind(end)
    .fetch_all(store.pool())
    .await?;
    let mut by_login: BTreeMap<String, i64> = BTreeMap::new();
    for row in rows {
        let detail: String = row.try_get("detail")?;
        let detail: serde_json::Value = serde_json::from_str(&detail).unwrap_or_default();
        let locked_now = detail.get("locked_until").is_some_and(|v| v.is_i64())
            && detail.get("refused").and_then(|r| r.as_str()) != Some("account locked");
        if locked_now {
            let target: String = row.try_get("target")?;
            *by_login.entry(roster.login_id_of_target(&target)).or_default() += 1;
        }
    }
    let mut repeated: Vec<Count> =
        by_login.into_iter().filter(|(_, n)| *n >= 2).map(|(key, count)| Count { key, count }).collect();
    repeated.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    Ok(repeated)
}

/// The analysis as one CSV sheet: a `section` column says which table a row belongs to.
pub fn to_csv(analysis: &Analysis) -> Result<Vec<u8>, csv::Error> {
    let mut sheet = CsvSheet::new(&["section", "key", "count", "at", "employee_number", "name", "org_unit", "why"])?;
    let summary = [
        ("failed_logins", analysis.failed_logins),
        ("off_hours_logins", analysis.off_hours_count),
        ("dormant_accounts", analysis.dormant_accounts.len() as i64),
        ("repeated_lockouts", analysis.repeated_lockouts.len() as i64),
    ];
    for (key, count) in summary {
        sheet.row(["summary", key, &count.to_string(), "", "", "", "", ""])?;
    }
    for (section, counts) in [
        ("failed_by_login_id", &analysis.failed_by_login_id),
        ("failed_by_source", &analysis.failed_by_source),
        ("repeated_lockouts", &analysis.repeated_lockouts),
    ] {
        for c in counts {
            sheet.row([section, &c.key, &c.count.to_string(), "", "", "", "", ""])?;
        }
    }
    for login in &analysis.off_hours_logins {
        let p = &login.person;
        let key = p.login_id.clone().unwrap_or_default();
        let source = login.source_ip.clone().unwrap_or_default();
        let why = format!("{} ({}, {source})", login.why, login.method);
        sheet.row(["off_hours_login", &key, "", &login.at, &p.employee_number, &p.name, &p.org_unit, &why])?;
    }
    for d in &analysis.dormant_accounts {
        let p = &d.person;
        let key = p.login_id.clone().unwrap_or_default();
        let last = d.last_login.clone().unwrap_or_else(|| "never".into());
        sheet.row(["dormant_account", &key, "", &last, &p.employee_number, &p.name, &p.org_unit, ""])?;
    }
    sheet.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OfficeHours;

    #[test]
    fn office_hours_and_closed_days_decide_what_is_off_hours() {
        let hours = OfficeHours { start_minute: 8 * 60 + 30, end_minute: 17 * 60 + 15 };
        let at = |text: &str| {
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap().unix_timestamp()
        };
        assert_eq!(outside_office_hours(at("2026-09-24T09:00:00+09:00"), hours, &[]), None);
        assert_eq!(outside_office_hours(at("2026-09-24T08:30:00+09:00"), hours, &[]), None);
        assert!(outside_office_hours(at("2026-09-24T08:29:00+09:00"), hours, &[]).unwrap().starts_with("before"));
        assert!(outside_office_hours(at("2026-09-24T17:15:00+09:00"), hours, &[]).unwrap().starts_with("after"));
        assert!(outside_office_hours(at("2026-09-22T10:00:00+09:00"), hours, &[]).unwrap().contains("国民の休日"));
        assert!(outside_office_hours(at("2026-12-29T10:00:00+09:00"), hours, &[]).unwrap().starts_with("year-end"));
        assert!(outside_office_hours(at("2026-09-26T10:00:00+09:00"), hours, &[]).unwrap().starts_with("weekend"));
        let closed = [time::macros::date!(2026 - 09 - 24)];
        assert!(outside_office_hours(at("2026-09-24T10:00:00+09:00"), hours, &closed).unwrap().starts_with("closed"));
        // 2026-09-24 00:30 UTC is 09:30 in Japan: inside.
        assert_eq!(outside_office_hours(at("2026-09-24T00:30:00Z"), hours, &[]), None);
    }
}
