//! The auditors' reports over the admin API: the export of the access records and the caller's
//! own reading record (R8, `audit:read`), the analysis of logins (R16) and the compliance
//! report (R19, `reports:read`). The reports are computed in `crate::reports`; here they are
//! only formatted. Every read is recorded before anything is read.

use axum::extract::State;
use axum::http::{header, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::audit::StoredEvent;
use crate::invalid::InvalidField;
use crate::reports::audit_export::{self, ExportParams};
use crate::reports::{self, analysis, compliance, DateRange, Format};
use crate::web::i18n::Lang;
use crate::App;

use super::problem::{ApiQuery, Problem};
use super::rights::{self, Authorized};

/// A file to save: its type, and a name for it.
fn attachment(body: Vec<u8>, content_type: &'static str, filename: &str, extra: Vec<(HeaderName, String)>) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    for (name, value) in extra {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

const CSV: &str = "text/csv; charset=utf-8";
const JSON: &str = "application/json";

/// `20260401-083000` in Japan, for file names.
fn stamp(now: i64) -> String {
    crate::clock::japan_rfc3339(now)
        .unwrap_or_default()
        .get(..19)
        .unwrap_or_default()
        .replace(['-', ':'], "")
        .replace('T', "-")
}

fn csv_failed(e: csv::Error) -> Problem {
    Problem::internal(e)
}

/// `GET /api/v1/audit/export`: the events the filters select, as CSV or JSON, recorded first.
pub async fn export_audit_events(
    State(app): State<App>,
    caller: Authorized<rights::AuditRead>,
    ApiQuery(params): ApiQuery<ExportParams>,
) -> Result<Response, Problem> {
    let (mut filter, format) = params.parse().map_err(Problem::bad_parameter)?;
    audit_export::resolve_person(&app.store, &mut filter).await?;
    let now = app.clock.now();
    let export = audit_export::export(&app.store, &caller.actor(), now, filter, format).await?;
    let extra = vec![
        (HeaderName::from_static("sekimori-export-rows"), export.events.len().to_string()),
        (HeaderName::from_static("sekimori-export-matched"), export.matched.to_string()),
        (HeaderName::from_static("sekimori-export-truncated"), export.truncated().to_string()),
    ];
    let name = format!("audit-events-{}", stamp(now));
    Ok(match format {
        Format::Csv => {
            let body = audit_export::events_csv(&export.events).map_err(csv_failed)?;
            attachment(body, CSV, &format!("{name}.csv"), extra)
        }
        _ => {
            let body = serde_json::to_vec(&export.events).map_err(Problem::internal)?;
            attachment(body, JSON, &format!("{name}.json"), extra)
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
    format: Option<String>,
}

/// The days asked for; by default the 30 days up to today.
fn range_or_last_month(query: &RangeQuery, now: i64) -> Result<DateRange, InvalidField> {
    let today = crate::directory::today_in_japan(now);
    let format = |d: time::Date| crate::directory::types::format_date(d);
    let to = query.to.clone().unwrap_or_else(|| format(today));
    let from = match &query.from {
        Some(from) => from.clone(),
        None => {
            let to_date = crate::directory::types::parse_date("to", &to)?;
            format(to_date.checked_sub(time::Duration::days(29)).unwrap_or(to_date))
        }
    };
    DateRange::parse(&from, &to)
}

#[derive(Serialize)]
struct ReadingRecord {
    actor: String,
    from: String,
    to: String,
    items: Vec<StoredEvent>,
}

/// `GET /api/v1/audit/my-reads`: the caller's own reading of the access records (第30条: the
/// designated readers report on their reading).
pub async fn my_reads(
    State(app): State<App>,
    caller: Authorized<rights::AuditRead>,
    ApiQuery(query): ApiQuery<RangeQuery>,
) -> Result<Response, Problem> {
    let now = app.clock.now();
    let format = Format::parse("format", query.format.as_deref(), &[Format::Json, Format::Csv])
        .map_err(Problem::bad_parameter)?;
    let range = range_or_last_month(&query, now).map_err(Problem::bad_parameter)?;
    let actor = caller.actor();
    let items = audit_export::reading_record(&app.store, &actor, now, range).await?;
    let (from, to) = (crate::directory::types::format_date(range.from), crate::directory::types::format_date(range.to));
    Ok(match format {
        Format::Csv => {
            let body = audit_export::reading_csv(&items).map_err(csv_failed)?;
            attachment(body, CSV, &format!("my-reads-{from}-{to}.csv"), Vec::new())
        }
        _ => Json(ReadingRecord { actor: actor.as_text(), from, to, items }).into_response(),
    })
}

/// `GET /api/v1/reports/analysis`: failed logins, off-hours logins, dormant accounts and
/// repeated lockouts over a range of days.
pub async fn analysis_report(
    State(app): State<App>,
    caller: Authorized<rights::ReportsRead>,
    ApiQuery(query): ApiQuery<RangeQuery>,
) -> Result<Response, Problem> {
    let now = app.clock.now();
    let format = Format::parse("format", query.format.as_deref(), &[Format::Json, Format::Csv])
        .map_err(Problem::bad_parameter)?;
    let (Some(from), Some(to)) = (&query.from, &query.to) else {
        let field = if query.from.is_none() { "from" } else { "to" };
        return Err(Problem::bad_parameter(InvalidField { field, reason: "is required (YYYY-MM-DD)".into() }));
    };
    let range = DateRange::parse(from, to).map_err(Problem::bad_parameter)?;
    let detail = serde_json::json!({"from": from, "to": to, "format": format.as_str()});
    reports::record_read(&app.store, &caller.actor(), now, "analysis", detail).await?;
    let result = analysis::analyse(&app.store, &app.config.reports, range, now).await?;
    Ok(match format {
        Format::Csv => {
            let body = analysis::to_csv(&result).map_err(csv_failed)?;
            attachment(body, CSV, &format!("analysis-{from}-{to}.csv"), Vec::new())
        }
        _ => Json(result).into_response(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComplianceQuery {
    format: Option<String>,
    lang: Option<String>,
}

/// `GET /api/v1/reports/compliance`: the self-inspection report as JSON, CSV or a printable page.
pub async fn compliance_report(
    State(app): State<App>,
    caller: Authorized<rights::ReportsRead>,
    ApiQuery(query): ApiQuery<ComplianceQuery>,
) -> Result<Response, Problem> {
    let now = app.clock.now();
    let format = Format::parse("format", query.format.as_deref(), &[Format::Json, Format::Csv, Format::Html])
        .map_err(Problem::bad_parameter)?;
    let lang = match query.lang.as_deref() {
        None | Some("ja") => Lang::Ja,
        Some("en") => Lang::En,
        Some(_) => {
            return Err(Problem::bad_parameter(InvalidField { field: "lang", reason: "must be ja or en".into() }))
        }
    };
    let detail = serde_json::json!({"format": format.as_str()});
    reports::record_read(&app.store, &caller.actor(), now, "compliance", detail).await?;
    let report = compliance::build(&app.store, &app.config, now).await?;
    let name = format!("compliance-{}", report.as_of);
    Ok(match format {
        Format::Csv => {
            let body = compliance::to_csv(&report).map_err(csv_failed)?;
            attachment(body, CSV, &format!("{name}.csv"), Vec::new())
        }
        Format::Html => {
            let page = reports::render_compliance_html(&report, lang, now).map_err(Problem::internal)?;
            let mut response = page.into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            if let Ok(csp) = HeaderValue::from_str(&reports::compliance_csp()) {
                headers.insert(header::CONTENT_SECURITY_POLICY, csp);
            }
            if let Ok(value) = HeaderValue::from_str(&format!("inline; filename=\"{name}.html\"")) {
                headers.insert(header::CONTENT_DISPOSITION, value);
            }
            response
        }
        Format::Json => Json(report).into_response(),
    })
}
