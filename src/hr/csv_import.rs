//! The HR system's CSV file as a source of changes (`sekimori hr import FILE`). The file is
//! hostile input: it is decoded (UTF-8 with or without BOM, or Shift_JIS / CP932 as Japanese
//! HR systems export), every row is checked, and the changes are recorded in ONE transaction —
//! a single bad row and nothing is recorded, every bad row reported with its line number. The
//! job applies what is recorded when it falls due (see `changes`). A file that would leave,
//! suspend or move too many active people is held whole instead (see `batches`). Headers:
//! README, "HR CSV".

use std::collections::BTreeMap;

use time::Date;

use super::batches::{self, Verdict};
use super::changes::{self, Action, Change, Joiner, Recorded};
use crate::audit::{Actor, Event};
use crate::clock::UnixTime;
use crate::config::HrConfig;
use crate::directory::types::parse_date;
use crate::directory::updates::Attributes;
use crate::directory::{DirectoryError, EmployeeNumber, InvalidField, PersonKind};
use crate::store::Store;

/// Why a file was not imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the file is neither UTF-8 nor Shift_JIS")]
    Encoding,
    #[error("{0}")]
    Header(String),
    #[error("{} bad row(s); nothing was recorded", .0.len())]
    Rows(Vec<RowError>),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The batch could not be held (its changes would not serialise); nothing was stored.
    #[error(transparent)]
    Directory(DirectoryError),
}

/// One bad row: its line in the file and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

impl std::fmt::Display for RowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

/// What an import recorded (or, in a dry run, would record), per section and kind of change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// (section code or "-", kind) → count of new or replacing changes.
    pub by_section: BTreeMap<(String, &'static str), u64>,
    pub new: u64,
    pub replaced: u64,
    /// Rows equal to what was already recorded (a file imported twice).
    pub unchanged: u64,
    /// Set when the safety valve held the file: then nothing of it was recorded.
    pub held: Option<Held>,
}

/// A file the safety valve held instead of recording it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The batch an administrator confirms or discards (none in a dry run: nothing is stored).
    pub batch_id: Option<String>,
    pub verdict: Verdict,
}

/// The columns, by their Japanese and English header names.
const COLUMNS: [(&str, &str); 14] = [
    ("職員番号", "employee_number"),
    ("異動区分", "change"),
    ("発令日", "effective_date"),
    ("所属コード", "org_unit_code"),
    ("姓", "family_name"),
    ("名", "given_name"),
    ("姓カナ", "family_name_kana"),
    ("名カナ", "given_name_kana"),
    ("区分", "kind"),
    ("生年月日", "birth_date"),
    ("メール", "email"),
    ("任期満了日", "end_date"),
    ("ログインID", "login_id"),
    ("備考", "note"),
];

/// Decodes the file: UTF-8 (a BOM is dropped) or else Shift_JIS (CP932).
pub fn decode(bytes: &[u8]) -> Result<String, ImportError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if let Ok(text) = std::str::from_utf8(bytes) {
        return Ok(text.to_owned());
    }
    let (text, had_errors) = encoding_rs::SHIFT_JIS.decode_without_bom_handling(bytes);
    if had_errors {
        return Err(ImportError::Encoding);
    }
    Ok(text.into_owned())
}

/// Parses the decoded file into changes, each with its source `csv:FILE:LINE`; `default_date`
/// is the effective date of rows that give none.
pub fn parse(text: &str, file_name: &str, default_date: Option<Date>) -> Result<Vec<Change>, ImportError> {
    // The csv crate counts a CRLF file's lines one short after the header; Windows HR exports
    // end lines with CRLF, and the line numbers of bad rows must be right.
    let text = text.replace("\r\n", "\n");
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| ImportError::Header(format!("unreadable header row: {e}")))?.clone();
    let mut index = BTreeMap::new();
    for (position, header) in headers.iter().enumerate() {
        let header = header.trim();
        let Some((_, english)) = COLUMNS.iter().find(|(ja, en)| *ja == header || *en == header) else {
            return Err(ImportError::Header(format!("unknown column {header:?}")));
        };
        if index.insert(*english, position).is_some() {
            return Err(ImportError::Header(format!("column {header:?} appears twice")));
        }
    }
    for required in ["employee_number", "change"] {
        if !index.contains_key(required) {
            return Err(ImportError::Header(format!("the column {required} is required")));
        }
    }
    let mut changes = Vec::new();
    let mut errors = Vec::new();
    for record in reader.records() {
        let (line, result) = match record {
            Ok(record) => {
                let line = record.position().map_or(0, |p| p.line());
                let field =
                    |name: &str| index.get(name).and_then(|&i| record.get(i)).map(str::trim).filter(|v| !v.is_empty());
                (line, row(&field, file_name, line, default_date))
            }
            Err(e) => (e.position().map_or(0, |p| p.line()), Err(format!("unreadable row: {e}"))),
        };
        match result {
            Ok(change) => changes.push(change),
            Err(message) => errors.push(RowError { line, message }),
        }
    }
    if errors.is_empty() {
        Ok(changes)
    } else {
        Err(ImportError::Rows(errors))
    }
}

fn row<'a>(
    field: &impl Fn(&str) -> Option<&'a str>,
    file_name: &str,
    line: u64,
    default_date: Option<Date>,
) -> Result<Change, String> {
    let shown = |e: InvalidField| format!("{}: {}", e.field, e.reason);
    let required = |name: &'static str| field(name).ok_or_else(|| format!("{name}: required"));
    let date = |name: &'static str| -> Result<Option<Date>, String> {
        // HR systems write 2027/04/01 as often as 2027-04-01.
        field(name).map(|v| parse_date(name, &v.replace('/', "-")).map_err(shown)).transpose()
    };
    let employee_number = EmployeeNumber::parse(required("employee_number")?).map_err(shown)?;
    let effective_date =
        date("effective_date")?.or(default_date).ok_or("effective_date: required (or give --effective)")?;
    let unit = || required("org_unit_code").map(str::to_owned);
    let action = match required("change")? {
        "採用" | "join" => Action::Join(Joiner {
            family_name: required("family_name")?.to_owned(),
            given_name: required("given_name")?.to_owned(),
            family_name_kana: required("family_name_kana")?.to_owned(),
            given_name_kana: required("given_name_kana")?.to_owned(),
            birth_date: date("birth_date")?,
            kind: person_kind(required("kind")?)?,
            org_unit_code: field("org_unit_code").map(str::to_owned),
            email: field("email").map(str::to_owned),
            end_date: date("end_date")?,
            login_id: field("login_id").map(str::to_owned),
        }),
        "更新" | "update" => Action::Update(Attributes {
            family_name: field("family_name").map(str::to_owned),
            given_name: field("given_name").map(str::to_owned),
            family_name_kana: field("family_name_kana").map(str::to_owned),
            given_name_kana: field("given_name_kana").map(str::to_owned),
            email: field("email").map(str::to_owned),
            ..Attributes::default()
        }),
        "異動" | "move" => Action::Move { org_unit_code: unit()? },
        "兼務発令" | "add_post" => Action::AddPost { org_unit_code: unit()? },
        "兼務解除" | "end_post" => Action::EndPost { org_unit_code: unit()? },
        "休職" | "suspend" => Action::Suspend,
        "復職" | "return" => Action::Return,
        "退職" | "leave" => Action::Leave,
        other => return Err(format!("change: unknown kind of change {other:?}")),
    };
    Ok(Change { employee_number, effective_date, source: format!("csv:{file_name}:{line}"), action })
}

fn person_kind(value: &str) -> Result<PersonKind, String> {
    let kind = match value {
        "正規" | "正規職員" => PersonKind::Regular,
        "再任用" | "再任用職員" => PersonKind::ReEmployed,
        "会計年度任用" | "会計年度任用職員" => PersonKind::PartTime,
        "臨時" | "臨時職員" => PersonKind::Temporary,
        "派遣" | "派遣職員" => PersonKind::Dispatched,
        "委託" | "委託事業者" => PersonKind::Contractor,
        "指定管理者" => PersonKind::DesignatedManager,
        other => PersonKind::parse(other).map_err(|e| format!("kind: {}", e.reason))?,
    };
    Ok(kind)
}

/// Records the file's changes in one transaction (`changes::record_file`) — or, in a dry run,
/// records them and rolls back, so the summary says exactly what an import would do. Any row
/// the lifecycle refuses is reported with its line and nothing is recorded. A file over the
/// safety valve's limit is not recorded either: it is held whole as a batch (`summary.held`)
/// for an administrator.
pub async fn import(
    store: &Store,
    config: &HrConfig,
    now: UnixTime,
    file_name: &str,
    changes: &[Change],
    dry_run: bool,
) -> Result<Summary, ImportError> {
    let mut tx = store.begin().await?;
    let mut summary = Summary::default();
    let mut errors = Vec::new();
    // Whether each person named is active, and their section, read for the whole file at once.
    let people = people_named(&mut tx, changes).await?;
    // Active people the file would take out of work or out of their section, once each
    // (a person both moved and suspended is one person disrupted).
    let mut disrupted = std::collections::BTreeSet::new();
    // One audit event for the file, below, not one per line.
    let outcomes = changes::record_file(&mut tx, config, now, changes).await?;
    for (change, outcome) in changes.iter().zip(outcomes) {
        let person = people.get(change.employee_number.as_str());
        // Asked of the directory as it is, before the file: the valve is about what it does.
        let disruptive = batches::is_disruptive(change.action.kind()) && person.is_some_and(|p| p.active);
        match outcome {
            Ok(Recorded::Unchanged { .. }) => summary.unchanged += 1,
            Ok(recorded) => {
                if matches!(recorded, Recorded::Replaced { .. }) {
                    summary.replaced += 1;
                } else {
                    summary.new += 1;
                }
                if disruptive {
                    disrupted.insert(change.employee_number.as_str().to_owned());
                }
                let section = section_of(change, person);
                *summary.by_section.entry((section, change.action.kind().as_str())).or_default() += 1;
            }
            Err(DirectoryError::Database(e)) => return Err(e.into()),
            Err(e) => errors.push(RowError { line: line_of(change), message: e.to_string() }),
        }
    }
    if !errors.is_empty() {
        tx.rollback().await?;
        return Err(ImportError::Rows(errors));
    }
    let affected = disrupted.len() as u64;
    let active = batches::active_people(&mut tx).await?;
    if let Some(limit) = batches::over_limit(affected, active, config) {
        // Nothing of a held file is recorded: its changes wait in the batch, whole.
        tx.rollback().await?;
        let verdict = Verdict { affected, active, limit };
        let batch_id = if dry_run {
            None
        } else {
            let mut tx = store.begin().await?;
            let source = format!("csv:{file_name}");
            let held: Vec<batches::HeldChange> = changes.iter().map(|c| batches::HeldChange::of(c, false)).collect();
            let id = batches::hold(&mut tx, &Actor::Cli, now, &source, &held, &summary.by_section, verdict)
                .await
                .map_err(|e| match e {
                    DirectoryError::Database(e) => ImportError::Database(e),
                    other => ImportError::Directory(other),
                })?;
            tx.commit().await?;
            Some(id)
        };
        summary.held = Some(Held { batch_id, verdict });
        return Ok(summary);
    }
    if dry_run {
        tx.rollback().await?;
    } else if summary.new + summary.replaced == 0 {
        // A file already recorded (an import run again after a crash) records nothing: as for
        // a replayed line, there is nothing to audit.
        tx.rollback().await?;
    } else {
        let mut by_kind = std::collections::BTreeMap::<&str, u64>::new();
        for ((_, kind), count) in &summary.by_section {
            *by_kind.entry(kind).or_default() += count;
        }
        Event::success(
            &Actor::Cli,
            "hr_import.record",
            format!("csv:{file_name}"),
            serde_json::json!({"file": file_name, "lines": changes.len(), "new": summary.new,
                               "replaced": summary.replaced, "unchanged": summary.unchanged, "by_kind": by_kind}),
        )
        .record(&mut tx, now)
        .await?;
        tx.commit().await?;
    }
    Ok(summary)
}

/// What the import needs to know of a person already in the directory.
struct Known {
    active: bool,
    section: Option<String>,
}

/// The people the file names, by employee number, read in a few queries rather than two per
/// line (an April file names tens of thousands).
async fn people_named(
    tx: &mut crate::store::Tx,
    changes: &[Change],
) -> Result<std::collections::HashMap<String, Known>, sqlx::Error> {
    use sqlx::Row;
    let numbers: std::collections::BTreeSet<&str> = changes.iter().map(|c| c.employee_number.as_str()).collect();
    let numbers: Vec<&str> = numbers.into_iter().collect();
    let mut known = std::collections::HashMap::new();
    for chunk in numbers.chunks(500) {
        let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!(
            "SELECT p.employee_number, p.status, o.code FROM people p LEFT JOIN org_units o ON o.id = p.org_unit_id
             WHERE p.employee_number IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for number in chunk {
            query = query.bind(*number);
        }
        for row in query.fetch_all(&mut **tx).await? {
            let status: String = row.try_get("status")?;
            known.insert(
                row.try_get::<String, _>("employee_number")?,
                Known { active: status == "active", section: row.try_get("code")? },
            );
        }
    }
    Ok(known)
}

/// The section a change concerns: the one it names, else the person's primary unit.
fn section_of(change: &Change, person: Option<&Known>) -> String {
    match &change.action {
        Action::Join(joiner) if joiner.org_unit_code.is_some() => joiner.org_unit_code.clone().unwrap_or_default(),
        Action::Move { org_unit_code } | Action::AddPost { org_unit_code } | Action::EndPost { org_unit_code } => {
            org_unit_code.clone()
        }
        _ => person.and_then(|p| p.section.clone()).unwrap_or_else(|| "-".to_owned()),
    }
}

fn line_of(change: &Change) -> u64 {
    change.source.rsplit(':').next().and_then(|l| l.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "職員番号,異動区分,発令日,所属コード\nE1,異動,2027/04/01,ZEIMU\nE2,退職,2027-03-31,\n";

    #[test]
    fn japanese_headers_in_utf8_with_bom_and_in_shift_jis() {
        let mut with_bom = b"\xEF\xBB\xBF".to_vec();
        with_bom.extend_from_slice(FILE.as_bytes());
        let (sjis, _, unmappable) = encoding_rs::SHIFT_JIS.encode(FILE);
        assert!(!unmappable);
        for bytes in [FILE.as_bytes(), &with_bom, &sjis] {
            let changes = parse(&decode(bytes).unwrap(), "a.csv", None).unwrap();
            assert_eq!(changes.len(), 2);
            assert_eq!(changes[0].action, Action::Move { org_unit_code: "ZEIMU".into() });
            assert_eq!(changes[0].source, "csv:a.csv:2");
            assert_eq!(changes[1].action, Action::Leave);
        }
        assert!(matches!(decode(b"\xFF\xFE\x00"), Err(ImportError::Encoding)));
    }

    #[test]
    fn every_bad_row_is_reported_with_its_line() {
        let text = "employee_number,change,effective_date\nE1,leave,2027-03-31\nE 2,leave,2027-03-31\nE3,fly,2027-03-31\nE4,leave,2027-02-30\n";
        let Err(ImportError::Rows(errors)) = parse(text, "b.csv", None) else { panic!("bad rows accepted") };
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 4, 5], "{errors:?}");
        let crlf = text.replace('\n', "\r\n");
        let Err(ImportError::Rows(errors)) = parse(&crlf, "b.csv", None) else { panic!("bad rows accepted") };
        assert_eq!(errors.iter().map(|e| e.line).collect::<Vec<_>>(), [3, 4, 5], "CRLF: {errors:?}");
        assert!(matches!(parse("who,change\n", "c.csv", None), Err(ImportError::Header(_))));
        assert!(matches!(parse("employee_number,change\nE1,leave,extra\n", "d.csv", None), Err(ImportError::Rows(_))));
        assert!(matches!(parse("employee_number,change\nE1,leave\n", "e.csv", None), Err(ImportError::Rows(_))));
    }

    mod fuzz {
        use super::*;
        use proptest::prelude::*;

        /// Cells an HR export might hold, and what a broken or hostile one might.
        fn cell() -> impl Strategy<Value = String> {
            prop_oneof![
                Just(String::new()),
                Just("退職".to_owned()),
                Just("異動".to_owned()),
                Just("leave".to_owned()),
                Just("2027/04/01".to_owned()),
                Just("E1024".to_owned()),
                Just("ZEIMU".to_owned()),
                "[A-Za-z0-9 ,\"'/\\-]{0,12}",
                "\\PC{0,8}",
                "[\"\r\n,]{1,4}",
            ]
        }

        proptest! {
            // Inputs are bounded (2 KiB, 30 rows of 6 cells): a hang would show as a run that
            // does not finish.
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            #[test]
            fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
                if let Ok(text) = decode(&bytes) {
                    let _ = parse(&text, "fuzz.csv", None);
                }
            }

            #[test]
            fn csv_like_rows_are_parsed_or_refused_with_their_lines(
                rows in proptest::collection::vec(proptest::collection::vec(cell(), 0..6), 0..30),
                crlf in any::<bool>(),
            ) {
                let newline = if crlf { "\r\n" } else { "\n" };
                let mut text = format!("職員番号,異動区分,発令日,所属コード{newline}");
                for row in &rows {
                    text.push_str(&row.join(","));
                    text.push_str(newline);
                }
                let lines = text.replace("\r\n", "\n").split('\n').count() as u64;
                match parse(&text, "fuzz.csv", None) {
                    Ok(changes) => {
                        for change in changes {
                            let line = line_of(&change);
                            prop_assert!((2..=lines).contains(&line), "{} of {lines} lines", change.source);
                        }
                    }
                    Err(ImportError::Rows(errors)) => {
                        prop_assert!(!errors.is_empty());
                        for error in errors {
                            prop_assert!((2..=lines).contains(&error.line), "{error} of {lines} lines");
                        }
                    }
                    Err(other) => prop_assert!(false, "the header is good: {other}"),
                }
            }
        }
    }
}
