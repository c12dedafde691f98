//! `sekimori report analysis | compliance`: the auditors' reports from the server's console,
//! to standard output or a file. Each run is recorded (`report.read` by `cli`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use sekimori::audit::Actor;
use sekimori::clock::Clock;
use sekimori::config::Config;
use sekimori::reports::{self, analysis, compliance, DateRange, Format};
use sekimori::store::Store;
use sekimori::web::i18n::Lang;

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Failed logins by login ID and source address, logins outside office hours, dormant
    /// accounts and repeated lockouts, over a range of days (R16).
    Analysis {
        /// First day, YYYY-MM-DD (Japan).
        #[arg(long)]
        from: String,
        /// Last day, YYYY-MM-DD (Japan), included.
        #[arg(long)]
        to: String,
        /// json (default) or csv.
        #[arg(long, default_value = "json")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The self-inspection report (自己点検, R19), each row naming its article.
    Compliance {
        /// html (default, printable on A4), csv or json.
        #[arg(long, default_value = "html")]
        format: String,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The day the report is as of, YYYY-MM-DD: ages and end dates are measured at its
        /// end (the data are today's). Default: now.
        #[arg(long)]
        as_of: Option<String>,
        /// The page's language: ja (default) or en.
        #[arg(long, default_value = "ja")]
        lang: String,
    },
}

/// A refused argument: a readable message and exit status 2.
fn refuse(message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

pub async fn run(config: Config, command: ReportCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    match command {
        ReportCommand::Analysis { from, to, format, out } => {
            let format = match Format::parse("--format", Some(&format), &[Format::Json, Format::Csv]) {
                Ok(format) => format,
                Err(e) => return Ok(refuse(format!("--format {}", e.reason))),
            };
            let range = match DateRange::parse(&from, &to) {
                Ok(range) => range,
                Err(e) => return Ok(refuse(format!("--{} {}", e.field, e.reason))),
            };
            let store = open(&config).await?;
            let now = Clock::default().now();
            let detail = serde_json::json!({"from": from, "to": to, "format": format.as_str()});
            reports::record_read(&store, &Actor::Cli, now, "analysis", detail).await?;
            let result = analysis::analyse(&store, &config.reports, range, now).await?;
            let body = match format {
                Format::Csv => analysis::to_csv(&result)?,
                _ => serde_json::to_vec_pretty(&result)?,
            };
            write(out.as_deref(), &body)?;
        }
        ReportCommand::Compliance { format, out, as_of, lang } => {
            let format = match Format::parse("--format", Some(&format), &[Format::Html, Format::Csv, Format::Json]) {
                Ok(format) => format,
                Err(e) => return Ok(refuse(format!("--format {}", e.reason))),
            };
            let Some(lang) = Lang::parse(&lang) else {
                return Ok(refuse("--lang must be ja or en".into()));
            };
            let real_now = Clock::default().now();
            let now = match as_of.as_deref().map(|d| sekimori::directory::types::parse_date("--as-of", d)).transpose() {
                // The last second of that day in Japan.
                Ok(Some(day)) => day.midnight().assume_offset(sekimori::clock::JAPAN).unix_timestamp() + 86_399,
                Ok(None) => real_now,
                Err(e) => return Ok(refuse(format!("--as-of {}", e.reason))),
            };
            let store = open(&config).await?;
            let detail = serde_json::json!({"format": format.as_str(), "as_of": as_of});
            reports::record_read(&store, &Actor::Cli, real_now, "compliance", detail).await?;
            let report = compliance::build(&store, &config, now).await?;
            let body = match format {
                Format::Csv => compliance::to_csv(&report)?,
                Format::Json => serde_json::to_vec_pretty(&report)?,
                Format::Html => reports::render_compliance_html(&report, lang, real_now)?.into_bytes(),
            };
            write(out.as_deref(), &body)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The store with the audit chain's key: reading a report is recorded.
async fn open(config: &Config) -> Result<Store, Box<dyn std::error::Error>> {
    Ok(sekimori::open_store(config).await?.0)
}

fn write(out: Option<&Path>, body: &[u8]) -> Result<(), Box<dyn std::error::Error>> {
    match out {
        Some(path) => {
            // The reports name people and hold access records: readable by their owner only.
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let cannot = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
            options.open(path).and_then(|mut file| file.write_all(body)).map_err(cannot)?;
            eprintln!("written to {}", path.display());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(body)?;
            stdout.flush()?;
        }
    }
    Ok(())
}
