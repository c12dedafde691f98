//! The monthly reports, written without anyone asking. Once a month — at the jobs leader's
//! first run of the month, Japan time — into `reports.monthly_dir`:
//! - the self-inspection report (R19) as of that moment, `compliance-YYYY-MM.html` (Japanese,
//!   printable on A4) and `compliance-YYYY-MM.csv`;
//! - the analysis of the logins of the month before (R16: failed logins by login ID and source,
//!   logins outside office hours, dormant accounts, repeated lockouts), `analysis-YYYY-MM.csv`
//!   named after the month it covers.
//!
//! And recorded:
//! - a row in `monthly_reports` for the month, so that it is written once across the cluster and
//!   across restarts (two leaders for a moment: one row, one event, one set of files);
//! - an audit event `report.written` naming each file with its SHA-256, so that a file edited
//!   after it was written can be told from the one Sekimori wrote.
//!
//! Each file is first written under a temporary name and synced. Then, in one transaction, the
//! run claims the month (the row) and records the event, puts the files in place (renames) and
//! commits. A run that finds the month claimed by another — two leaders for a moment — discards
//! its files, so the files in place are always the ones the event names. A crash after the
//! renames but before the commit leaves the month unclaimed, and the next run writes it again
//! (the same names, replaced whole). Nobody reads half a report.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::audit::{Actor, Event};
use crate::clock::{japan_month, UnixTime};
use crate::web::i18n::Lang;
use crate::App;

#[derive(Debug, thiserror::Error)]
pub enum MonthlyError {
    #[error(transparent)]
    Store(#[from] crate::Error),
    #[error("the report could not be formatted: {0}")]
    Format(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

impl From<sqlx::Error> for MonthlyError {
    fn from(e: sqlx::Error) -> Self {
        MonthlyError::Store(e.into())
    }
}

/// What only the server needs of the machine it runs on, checked when `serve` starts, before
/// it binds, opens the store or makes a key file (a refused start writes nothing): the
/// directory, when set. Other commands (`audit verify`, `report …`), which an operator may run
/// as another user or elsewhere, do not write the reports and do not check it.
pub fn check_for_serving(config: &crate::config::ReportsConfig) -> Result<(), crate::config::ConfigError> {
    match &config.monthly_dir {
        Some(dir) => check_dir(dir).map_err(crate::config::ConfigError::Invalid),
        None => Ok(()),
    }
}

/// Why `dir` cannot take the monthly reports, if it cannot: it must be an absolute path to a
/// directory this process can write, which others (outside its owner and group) can neither
/// read nor enter — the report names people, their rights and their cards.
pub fn check_dir(dir: &Path) -> Result<(), String> {
    let shown = dir.display();
    if !dir.is_absolute() {
        return Err(format!("reports.monthly_dir must be an absolute path, not {shown}"));
    }
    let metadata = std::fs::metadata(dir).map_err(|e| format!("reports.monthly_dir {shown}: {e}"))?;
    if !metadata.is_dir() {
        return Err(format!("reports.monthly_dir {shown} is not a directory"));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o007 != 0 {
            return Err(format!(
                "reports.monthly_dir {shown} is open to others (mode {mode:o}): the monthly report names \
                 people, their rights and their cards; remove the others' access (chmod o-rwx)"
            ));
        }
    }
    let probe = dir.join(format!(".sekimori-write-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("reports.monthly_dir {shown} cannot be written: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Writes this month's reports when they have not been written yet; the month when this call
/// wrote and recorded them. Nothing to do when `reports.monthly_dir` is not set.
pub async fn write_due(app: &App, now: UnixTime) -> Result<Option<String>, MonthlyError> {
    let Some(dir) = app.config.reports.monthly_dir.clone() else { return Ok(None) };
    let month = japan_month(now);
    if written(app, &month).await? {
        return Ok(None);
    }
    let report = super::compliance::build(&app.store, &app.config, now).await?;
    let html =
        super::render_compliance_html(&report, Lang::Ja, now).map_err(|e| MonthlyError::Format(e.to_string()))?;
    let csv = super::compliance::to_csv(&report).map_err(|e| MonthlyError::Format(e.to_string()))?;
    let before = month_before(now)?;
    let analysis = super::analysis::analyse(&app.store, &app.config.reports, before, now).await?;
    let analysis = super::analysis::to_csv(&analysis).map_err(|e| MonthlyError::Format(e.to_string()))?;
    let files = [
        (format!("compliance-{month}.html"), html.into_bytes()),
        (format!("compliance-{month}.csv"), csv),
        (format!("analysis-{}.csv", japan_month(before.start())), analysis),
    ];
    let listed: Vec<serde_json::Value> = files
        .iter()
        .map(|(name, body)| {
            serde_json::json!({"file": name, "bytes": body.len(), "sha256": hex::encode(Sha256::digest(body))})
        })
        .collect();
    let target = dir.clone();
    let staged: Vec<Staged> =
        blocking(move || files.iter().map(|(name, body)| Staged::write(&target, name, body)).collect()).await?;

    let mut tx = app.store.begin().await?;
    let recorded =
        sqlx::query("INSERT INTO monthly_reports (month, written_at) VALUES ($1, $2) ON CONFLICT (month) DO NOTHING")
            .bind(&month)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
    if !recorded {
        // Another run claimed the month first: its files are the ones its event names, and this
        // run's are removed (dropped).
        drop(tx);
        blocking(move || {
            drop(staged);
            Ok(())
        })
        .await?;
        return Ok(None);
    }
    let detail = serde_json::json!({"month": month, "directory": dir.display().to_string(), "files": listed});
    Event::success(&Actor::System, "report.written", format!("report:monthly:{month}"), detail)
        .record(&mut tx, now)
        .await?;
    let target = dir.clone();
    // An error here drops the transaction: nothing is recorded, and the next run writes again.
    blocking(move || Staged::put_in_place(staged, &target)).await?;
    tx.commit().await?;
    Ok(Some(month))
}

/// Runs file work off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, MonthlyError> + Send + 'static,
) -> Result<T, MonthlyError> {
    tokio::task::spawn_blocking(work).await.map_err(|e| MonthlyError::Format(format!("the file task failed: {e}")))?
}

/// The days of the month before the one `now` is in, in Japan.
fn month_before(now: UnixTime) -> Result<super::DateRange, MonthlyError> {
    let today = time::OffsetDateTime::from_unix_timestamp(now)
        .map_err(|e| MonthlyError::Format(e.to_string()))?
        .to_offset(crate::clock::JAPAN)
        .date();
    let last = today.replace_day(1).ok().and_then(time::Date::previous_day);
    let first = last.and_then(|day| day.replace_day(1).ok());
    match (first, last) {
        (Some(from), Some(to)) => Ok(super::DateRange { from, to }),
        _ => Err(MonthlyError::Format(format!("no month before {today}"))),
    }
}

async fn written(app: &App, month: &str) -> Result<bool, sqlx::Error> {
    let found = sqlx::query("SELECT 1 FROM monthly_reports WHERE month = $1")
        .bind(month)
        .fetch_optional(app.store.pool())
        .await?;
    Ok(found.is_some())
}

/// A file written whole under a temporary name (readable by its owner only) and synced, not yet
/// in place. Dropped before it is put in place, its temporary file is removed: a run that
/// stops half way, or finds the month claimed by another, leaves nothing behind.
struct Staged {
    /// None once renamed into place.
    temporary: Option<PathBuf>,
    path: PathBuf,
}

impl Staged {
    /// `body`, to go to `dir/name`. The temporary name is the file's own: two runs at once must
    /// not rename each other's file away.
    fn write(dir: &Path, name: &str, body: &[u8]) -> Result<Staged, MonthlyError> {
        let temporary = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4()));
        let staged = Staged { temporary: Some(temporary.clone()), path: dir.join(name) };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&temporary)
            .and_then(|mut file| {
                file.write_all(body)?;
                file.sync_all()
            })
            .map_err(|source| MonthlyError::Write { path: staged.path.clone(), source })?;
        Ok(staged)
    }

    /// Renames every file over any earlier one of its name, then syncs `dir` so the renames
    /// last. On a failure the files not yet in place are removed (dropped).
    fn put_in_place(staged: Vec<Staged>, dir: &Path) -> Result<(), MonthlyError> {
        for mut file in staged {
            if let Some(temporary) = file.temporary.take() {
                if let Err(source) = std::fs::rename(&temporary, &file.path) {
                    file.temporary = Some(temporary);
                    return Err(MonthlyError::Write { path: file.path.clone(), source });
                }
            }
        }
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| MonthlyError::Write { path: dir.to_owned(), source })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(temporary) = self.temporary.take() {
            let _ = std::fs::remove_file(temporary);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_month_and_the_month_before_are_japans() {
        // 2026-11-30 15:00 UTC is 2026-12-01 00:00 in Japan.
        assert_eq!(japan_month(1_796_050_800), "2026-12");
        assert_eq!(japan_month(1_796_050_799), "2026-11");
        // The analysis covers the whole month before, in Japan: on 2026-12-01 00:00 JST that is
        // November; a second earlier, October; in January, the December before.
        for (now, from, to) in [
            (1_796_050_800, "2026-11-01", "2026-11-30"),
            (1_796_050_799, "2026-10-01", "2026-10-31"),
            (1_798_729_200, "2026-12-01", "2026-12-31"),
        ] {
            let range = month_before(now).unwrap();
            assert_eq!((range.from.to_string(), range.to.to_string()), (from.to_owned(), to.to_owned()), "{now}");
        }
    }

    #[test]
    fn the_directory_is_checked_and_each_file_written_whole() {
        let dir = std::env::temp_dir().join(format!("sekimori-monthly-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
            let refused = check_dir(&dir).unwrap_err();
            assert!(refused.contains("open to others (mode 755)"), "{refused}");
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        }
        assert_eq!(check_dir(&dir), Ok(()));
        assert!(check_dir(Path::new("reports")).unwrap_err().contains("absolute"));
        assert!(check_dir(&dir.join("missing")).is_err());
        let write = |body: &[u8]| {
            let staged = Staged::write(&dir, "compliance-2026-12.csv", body).unwrap();
            Staged::put_in_place(vec![staged], &dir).unwrap();
        };
        write(b"a,b\n");
        write(b"c,d\n");
        assert_eq!(std::fs::read(dir.join("compliance-2026-12.csv")).unwrap(), b"c,d\n");
        // Staged and discarded: nothing changes, nothing is left.
        drop(Staged::write(&dir, "compliance-2026-12.csv", b"e,f\n").unwrap());
        assert_eq!(std::fs::read(dir.join("compliance-2026-12.csv")).unwrap(), b"c,d\n");
        // Runs at once (two leaders for a moment) each put their file in place whole, none fails.
        std::thread::scope(|scope| {
            for writer in 0..4u8 {
                let dir = &dir;
                scope.spawn(move || {
                    for _ in 0..50 {
                        let staged = Staged::write(dir, "compliance-2026-12.csv", &[writer; 64]).unwrap();
                        Staged::put_in_place(vec![staged], dir).unwrap();
                    }
                });
            }
        });
        let last = std::fs::read(dir.join("compliance-2026-12.csv")).unwrap();
        assert!(last.len() == 64 && last.iter().all(|b| *b == last[0]), "one writer's file, whole");
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 1, "no temporary file left: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
