//! Reports for auditors: the export of the access records and an auditor's own reading record
//! (R8), the analysis of logins (R16) and the compliance report, 自己点検 (R19).
//!
//! Every report is a value computed by a domain function from the store and `now`; the admin
//! API, the CLI and (later) the console only format it. Reading a report that contains access
//! records is itself recorded (`report.read`), as reading the log is (`audit.read`).

pub mod analysis;
pub mod audit_export;
pub mod compliance;
pub mod holidays;
mod html;
pub mod monthly;
pub mod roster;

use time::Date;

use crate::clock::{UnixTime, JAPAN};
use crate::invalid::InvalidField;

pub use html::{compliance_csp, render_compliance_html};

/// Records that `actor` read `report` (it contains access records), before it is computed.
pub async fn record_read(
    store: &crate::store::Store,
    actor: &crate::audit::Actor,
    now: UnixTime,
    report: &str,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let mut tx = store.begin().await?;
    crate::audit::Event::success(actor, "report.read", format!("report:{report}"), detail).record(&mut tx, now).await?;
    tx.commit().await
}

/// The formats a report comes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
    Html,
}

impl Format {
    /// `value` among `allowed`; `json` when absent.
    pub fn parse(field: &'static str, value: Option<&str>, allowed: &[Format]) -> Result<Format, InvalidField> {
        let format = match value {
            None | Some("json") => Some(Format::Json),
            Some("csv") => Some(Format::Csv),
            Some("html") => Some(Format::Html),
            Some(_) => None,
        };
        format.filter(|f| allowed.contains(f)).ok_or_else(|| {
            let names: Vec<&str> = allowed.iter().map(|f| f.as_str()).collect();
            InvalidField { field, reason: format!("must be one of {}", names.join(", ")) }
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Csv => "csv",
            Format::Html => "html",
        }
    }
}

/// A cell as a spreadsheet may safely open it. A cell starting with `=`, `+`, `-`, `@`, a tab
/// or a carriage return is read as a formula by Excel and LibreOffice (CSV injection, OWASP):
/// a login ID such as `=cmd|' /C calc'!A0` typed at the login form would run on the auditor's
/// machine. Such a cell is prefixed with `'`, which the spreadsheet shows as text.
pub fn neutralise_cell(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => std::borrow::Cow::Owned(format!("'{cell}")),
        _ => std::borrow::Cow::Borrowed(cell),
    }
}

/// A CSV document for a spreadsheet in Japan: UTF-8 with a byte-order mark (without it, Excel
/// reads UTF-8 as Shift_JIS), CRLF line ends, a header row, and every cell neutralised.
pub struct CsvSheet {
    writer: csv::Writer<Vec<u8>>,
}

impl CsvSheet {
    pub fn new(header: &[&str]) -> Result<CsvSheet, csv::Error> {
        let mut writer = csv::WriterBuilder::new()
            .terminator(csv::Terminator::CRLF)
            .flexible(true)
            .from_writer("\u{feff}".as_bytes().to_vec());
        writer.write_record(header.iter().map(|cell| neutralise_cell(cell).into_owned()))?;
        Ok(CsvSheet { writer })
    }

    pub fn row<I, S>(&mut self, cells: I) -> Result<(), csv::Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.writer.write_record(cells.into_iter().map(|cell| neutralise_cell(cell.as_ref()).into_owned()))
    }

    pub fn finish(self) -> Result<Vec<u8>, csv::Error> {
        self.writer.into_inner().map_err(|e| csv::Error::from(e.into_error()))
    }
}

/// A range of Japan dates, both included, as the reports take it (`from`, `to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateRange {
    pub from: Date,
    pub to: Date,
}

/// The longest range one report covers: bounded, so that one request cannot read years.
pub const MAX_RANGE_DAYS: i64 = 366;

impl DateRange {
    /// `from` and `to` as `YYYY-MM-DD`; `to` not before `from`, at most a year apart.
    pub fn parse(from: &str, to: &str) -> Result<DateRange, InvalidField> {
        let from = crate::directory::types::parse_date("from", from)?;
        let to = crate::directory::types::parse_date("to", to)?;
        if to < from {
            return Err(InvalidField { field: "to", reason: "must not be before from".into() });
        }
        if (to - from).whole_days() >= MAX_RANGE_DAYS {
            return Err(InvalidField {
                field: "to",
                reason: format!("the range may span at most {MAX_RANGE_DAYS} days"),
            });
        }
        Ok(DateRange { from, to })
    }

    /// The first second of `from` in Japan.
    pub fn start(&self) -> UnixTime {
        self.from.midnight().assume_offset(JAPAN).unix_timestamp()
    }

    /// The first second after `to` in Japan (exclusive end).
    pub fn end(&self) -> UnixTime {
        self.to.midnight().assume_offset(JAPAN).unix_timestamp() + 86_400
    }
}

/// `YYYY-MM-DD` of a time in Japan, for reports.
pub fn japan_date(at: UnixTime) -> String {
    crate::clock::japan_date(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formula_cells_are_neutralised_and_others_kept() {
        for (cell, shown) in [
            ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"),
            ("+81-3-1234", "'+81-3-1234"),
            ("-1+1", "'-1+1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "'\r=1"),
            ("login_id:=1", "login_id:=1"),
            ("田中", "田中"),
            ("", ""),
        ] {
            assert_eq!(neutralise_cell(cell), shown, "{cell:?}");
        }
    }

    #[test]
    fn a_sheet_starts_with_a_bom_and_quotes_what_needs_it() {
        let mut sheet = CsvSheet::new(&["a", "b"]).unwrap();
        sheet.row(["=1+1", "x,\"y\""]).unwrap();
        let bytes = sheet.finish().unwrap();
        assert_eq!(String::from_utf8(bytes).unwrap(), "\u{feff}a,b\r\n'=1+1,\"x,\"\"y\"\"\"\r\n");
    }

    #[test]
    fn date_ranges_are_bounded_and_ordered() {
        let range = DateRange::parse("2026-04-01", "2026-04-30").unwrap();
        assert_eq!(range.start(), 1_774_969_200);
        assert_eq!(range.end() - range.start(), 30 * 86_400);
        assert_eq!(DateRange::parse("2026-04-02", "2026-04-01").unwrap_err().field, "to");
        assert_eq!(DateRange::parse("2026/04/01", "2026-04-01").unwrap_err().field, "from");
        assert_eq!(DateRange::parse("2025-01-01", "2026-04-01").unwrap_err().field, "to");
        assert_eq!(
            Format::parse("format", Some("xml"), &[Format::Json, Format::Csv]).unwrap_err().reason,
            "must be one of json, csv"
        );
        assert_eq!(Format::parse("format", Some("html"), &[Format::Json, Format::Csv]).unwrap_err().field, "format");
        assert_eq!(Format::parse("format", None, &[Format::Json]), Ok(Format::Json));
    }
}
