//! The `sekimori` command: serve (default), migrate, demo, bootstrap, client (add, list, show,
//! update, disable, enable, rotate-secret), keys rotate, audit verify | checkpoint | archive,
//! report (analysis, compliance), token create, emergency-stop (person, system, lift, list).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use sekimori::admin::auth;
use sekimori::audit::{self, Actor, Verification};
use sekimori::clock::Clock;
use sekimori::config::Config;
use sekimori::store::Store;
use sekimori::systems::SigningAlg;
use sekimori::{App, Listeners};

/// mimalloc rather than the system allocator: a request allocates and frees many small buffers
/// (headers, JSON, SQL rows) across threads, and glibc's malloc took a tenth of the CPU under
/// load (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod client_cmd;
mod emergency_cmd;
mod report_cmd;

use client_cmd::ClientCommand;
use emergency_cmd::EmergencyCommand;
use report_cmd::ReportCommand;

#[derive(Parser)]
#[command(name = "sekimori", version, about = "Sekimori (関守): an OpenID Provider for municipal governments")]
struct Cli {
    /// TOML configuration file; SEKIMORI_* environment variables override it.
    #[arg(long, short, global = true, env = "SEKIMORI_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

// Parsed once per run; boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Serve the public and admin listeners (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Seed a sample municipality with people, accounts and two consuming systems.
    Demo,
    /// Print a new one-time code that the first administrator exchanges for an API token.
    Bootstrap,
    /// API tokens for machines (an HR feed, a script), each owned by a person.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage consuming systems (OIDC clients).
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// Signing keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The HR feed.
    Hr {
        #[command(subcommand)]
        command: HrCommand,
    },
    /// Reports for auditors: the analysis of logins and the compliance report.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Emergency stop (R17) of one person or one consuming system: stop, list, lift.
    EmergencyStop {
        #[command(subcommand)]
        command: EmergencyCommand,
    },
}

#[derive(Subcommand)]
enum HrCommand {
    /// Record the changes of an HR CSV file (format: README, "HR CSV"); all rows or none.
    /// Changes already due are applied at once, the rest when they fall due.
    Import {
        file: PathBuf,
        /// Print what would change, per section and kind of change, and record nothing.
        #[arg(long)]
        dry_run: bool,
        /// The effective date (YYYY-MM-DD) of rows that give none.
        #[arg(long)]
        effective: Option<String>,
    },
    /// List the batches the safety valve holds, with what each would change.
    Batches,
    /// Confirm a held batch: its changes are recorded and applied when due.
    Confirm { batch_id: String },
    /// Discard a held batch: it is kept as discarded and none of it is ever applied.
    Discard { batch_id: String },
    /// What will change in one section on or before a date: arrivals, departures, leavers,
    /// concurrent posts — from pending changes and held batches.
    Preview {
        /// The section's org unit code.
        #[arg(long)]
        section: String,
        /// The last effective date (YYYY-MM-DD) looked at; today in Japan if not given.
        #[arg(long)]
        date: Option<String>,
    },
    /// List recorded changes, newest first, with their status, and why a failed one failed.
    Changes {
        /// Only changes with this status: pending, applied, superseded or failed.
        #[arg(long)]
        status: Option<String>,
        /// Only the changes of this employee number (職員番号).
        #[arg(long)]
        employee_number: Option<String>,
        /// At most this many (1 to 500).
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Put a failed change back to pending once its cause is fixed, and apply what is due.
    Retry { change_id: String },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue an API token owned by a person, carrying rights they hold through their
    /// administrative roles (and only while they hold them). Printed once.
    Create {
        /// The owner's login ID.
        #[arg(long)]
        owner: String,
        /// A right the token carries (repeat for more), e.g. hr:feed.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// What the token is for, e.g. 人事連携.
        #[arg(long)]
        name: String,
        /// Days it lives (1 to 366).
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key per algorithm. It is published at once and signs after
    /// --publish-ahead seconds; the keys it replaces stay published until what they signed
    /// has expired. Running servers pick the change up at once on PostgreSQL, within a minute on SQLite.
    Rotate {
        /// Only this algorithm: RS256 or ES256 (default: both).
        #[arg(long)]
        alg: Option<String>,
        /// Seconds between publishing the new key and signing with it.
        #[arg(long, default_value_t = sekimori::admin::keys::DEFAULT_PUBLISH_AHEAD)]
        publish_ahead: i64,
    },
    /// List the published keys.
    List,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the keyed hash chain; report the first broken link. With --checkpoints, also check
    /// every checkpoint's signature and that the chain still holds each checkpointed event
    /// (truncation, rewriting); with --archive, also check an archive and that it ends at the
    /// chain's anchor. Exit status 1 on any failure.
    Verify {
        /// A checkpoint file (JSON lines) written by `audit checkpoint` or the server.
        #[arg(long)]
        checkpoints: Option<PathBuf>,
        /// An archive written by `audit archive`.
        #[arg(long)]
        archive: Option<PathBuf>,
    },
    /// Append a signed checkpoint of the chain's head to a file to be kept outside the database.
    Checkpoint {
        /// The file to append to (default: audit.checkpoint_file of the configuration).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Export the events before a date (older than the retention period) to a new file, ending
    /// with a signed anchor, then remove them from the database.
    Archive {
        /// YYYY-MM-DD (Japan): events before this day are archived.
        #[arg(long)]
        before: String,
        /// The archive file to create (never overwritten).
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn tracing_init() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEKIMORI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::env::var("SEKIMORI_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let config = Config::load(cli.config.as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let store = Store::connect(&config.database_url).await?;
            store.migrate().await?;
            println!("migrations applied to {}", sekimori::store::redacted_url(&config.database_url));
        }
        Command::Serve => serve(config).await?,
        Command::Demo => {
            let app = App::build(config, Clock::default()).await?;
            match sekimori::demo::seed(&app).await? {
                None => println!("demo data is already present; nothing changed"),
                Some(summary) => {
                    println!("関守市 demo seeded. Logins (passwords are shown only now):");
                    for (login, name, password) in summary.logins {
                        println!("  {login:<20} {password}  {name}");
                    }
                    println!("Consuming systems:");
                    for (id, name, secret, uris) in summary.clients {
                        println!("  client_id={id} ({name}) redirect_uri={}", uris.join(","));
                        if let Some(secret) = secret {
                            println!("    client_secret={secret}");
                        }
                    }
                }
            }
        }
        Command::Bootstrap => {
            let app = App::build(config, Clock::default()).await?;
            print_bootstrap(&app).await?;
        }
        Command::Token { command: TokenCommand::Create { owner, scopes, name, days } } => {
            let app = App::build(config, Clock::default()).await?;
            if !(1..=366).contains(&days) {
                eprintln!("error: --days must be between 1 and 366");
                return Ok(ExitCode::from(2));
            }
            let now = app.clock.now();
            match sekimori::admin::auth::create_for_owner(&app.store, now, &owner, &name, &scopes, days * 86_400).await {
                Ok(issued) => {
                    println!("API token {} for {owner} ({}), until {}:", issued.id, issued.scopes.join(" "), japan_time(issued.expires_at));
                    println!("  {}", issued.token);
                }
                Err(refused) => {
                    eprintln!("error: {refused}");
                    return Ok(ExitCode::from(2));
                }
            }
        }
        Command::Client { command } => return client_cmd::run(config, command).await,
        Command::Report { command } => return report_cmd::run(config, command).await,
        Command::EmergencyStop { command } => return emergency_cmd::run(config, command).await,
        Command::Keys { command } => {
            let app = App::build(config, Clock::default()).await?;
            if let KeysCommand::Rotate { alg, publish_ahead } = command {
                let algs = match alg.as_deref() {
                    None => vec![SigningAlg::RS256, SigningAlg::ES256],
                    Some(a) => match SigningAlg::parse(a) {
                        Ok(alg) => vec![alg],
                        Err(e) => {
                            eprintln!("error: --alg: {}", e.reason);
                            return Ok(ExitCode::from(2));
                        }
                    },
                };
                if !(0..=86_400).contains(&publish_ahead) {
                    eprintln!("error: --publish-ahead must be between 0 and 86400 seconds");
                    return Ok(ExitCode::from(2));
                }
                let created = app.keys.rotate(&app.store, &Actor::Cli, &algs, publish_ahead).await?;
                let (keys, now) = (app.keys.list(), app.clock.now());
                for key in keys.iter().filter(|key| created.contains(&key.kid)) {
                    println!("created {} (signing in {} s)", key.kid, (key.signs_from - now).max(0));
                }
            }
            for key in app.keys.list() {
                println!("{}  {}  signs from {}  {}", key.kid, key.alg.as_str(), japan_time(key.signs_from), key.state);
            }
        }
        Command::Hr { command: HrCommand::Import { file, dry_run, effective } } => {
            return hr_import(config, &file, dry_run, effective.as_deref()).await;
        }
        Command::Hr { command } => return hr_batch(config, command).await,
        Command::Audit { command } => return audit_command(config, command).await,
    }
    Ok(ExitCode::SUCCESS)
}

/// `sekimori audit verify | checkpoint | archive`.
async fn audit_command(config: Config, command: AuditCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (store, master) = sekimori::open_store(&config).await?;
    let signing_key = audit::checkpoint::signing_key(&master);
    let now = Clock::default().now();
    match command {
        AuditCommand::Verify { checkpoints, archive } => {
            let mut failed = false;
            match audit::verify(&store).await? {
                Verification::Intact { events, first, last, keyed_from, unsealed } => {
                    println!("audit log intact: {events} events verified (events {first} to {last})");
                    if unsealed > 0 {
                        println!(
                            "  {unsealed} committed events are not sealed into the chain yet (each checked against \
                             its own MAC); a running server seals them within a second"
                        );
                    }
                    if keyed_from > first {
                        println!(
                            "  note: events before {keyed_from} were written before the chain was keyed: \
                             they are only protected by checkpoints and archives taken since"
                        );
                    }
                }
                Verification::Broken { seq, reason } => {
                    println!("audit log BROKEN at event {seq}: {reason}");
                    failed = true;
                }
            }
            if let Some(path) = checkpoints {
                let text = read_text(&path)?;
                let check = audit::checkpoint::check_file(&store, &signing_key, &text).await?;
                for failure in &check.failures {
                    println!("checkpoint FAILED: {}: {failure}", path.display());
                }
                println!(
                    "checkpoints: {} confirmed, {} of archived events, {} failed ({})",
                    check.confirmed,
                    check.archived,
                    check.failures.len(),
                    path.display()
                );
                failed |= !check.failures.is_empty();
            }
            if let Some(path) = archive {
                let text = read_text(&path)?;
                let chain_key = audit::chain_key(&master);
                let check = audit::archive::check_file(&store, &chain_key, &signing_key, &text).await?;
                for failure in &check.failures {
                    println!("archive FAILED: {}: {failure}", path.display());
                }
                if check.failures.is_empty() {
                    if let Some(anchor) = &check.anchor {
                        println!(
                            "archive intact: {} events ({} to {}), anchored at event {} ({})",
                            check.events,
                            anchor.first_seq,
                            anchor.last_seq,
                            anchor.last_seq,
                            path.display()
                        );
                    }
                }
                failed |= !check.failures.is_empty();
            }
            if failed {
                return Ok(ExitCode::from(1));
            }
        }
        AuditCommand::Checkpoint { out } => {
            let Some(path) = out.or_else(|| config.audit.checkpoint_file.as_ref().map(PathBuf::from)) else {
                eprintln!("error: give --out FILE or set audit.checkpoint_file in the configuration");
                return Ok(ExitCode::from(2));
            };
            // What was committed is sealed first, so the checkpoint covers it.
            audit::seal::seal(&store, now).await?;
            let checkpoint = audit::checkpoint::take(&store, &signing_key, now).await?;
            audit::checkpoint::append(&path, &checkpoint)
                .map_err(|e| format!("cannot append to {}: {e}", path.display()))?;
            println!("checkpoint of event {} appended to {}", checkpoint.seq, path.display());
        }
        AuditCommand::Archive { before, out } => {
            let retention = config.audit.retention_days;
            match audit::archive::archive(&store, &signing_key, now, &before, retention, &out).await {
                Ok(done) => match done.anchor {
                    None => println!("no events before {before}: nothing archived, no file written"),
                    Some(anchor) => println!(
                        "archived {} events ({} to {}) to {}; the chain now starts after event {}",
                        done.events,
                        anchor.first_seq,
                        anchor.last_seq,
                        out.display(),
                        anchor.last_seq
                    ),
                },
                Err(e) => {
                    eprintln!("error: {e}");
                    return Ok(ExitCode::from(1));
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn read_text(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

async fn hr_import(
    config: Config,
    file: &std::path::Path,
    dry_run: bool,
    effective: Option<&str>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use sekimori::hr::csv_import::{self, ImportError};
    let effective = match effective.map(|d| sekimori::directory::types::parse_date("--effective", d)).transpose() {
        Ok(date) => date,
        Err(e) => {
            eprintln!("error: --effective {}", e.reason);
            return Ok(ExitCode::from(2));
        }
    };
    let bytes = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let (store, _) = sekimori::open_store(&config).await?;
    let now = Clock::default().now();
    let outcome = match csv_import::decode(&bytes).and_then(|text| csv_import::parse(&text, &name, effective)) {
        Ok(changes) => csv_import::import(&store, &config.hr, now, &name, &changes, dry_run).await,
        Err(e) => Err(e),
    };
    let summary = match outcome {
        Ok(summary) => summary,
        Err(ImportError::Rows(rows)) => {
            for row in &rows {
                eprintln!("{}: {row}", file.display());
            }
            eprintln!("error: {} bad row(s); nothing was recorded", rows.len());
            return Ok(ExitCode::from(1));
        }
        Err(e) => {
            eprintln!("error: {}: {e}; nothing was recorded", file.display());
            return Ok(ExitCode::from(1));
        }
    };
    if let Some(held) = &summary.held {
        let v = held.verdict;
        let share = v.affected.saturating_mul(100).checked_div(v.active).unwrap_or(0);
        match &held.batch_id {
            Some(_) => println!("保留しました: このファイルは記録も適用もされていません (held: nothing of this file was recorded or applied)"),
            None => println!("dry run: このファイルは保留されます (this file would be held; nothing recorded or applied)"),
        }
        println!("  退職・休職・異動の対象 {} / 在職 {} 人 ({share} %), more than {}", v.affected, v.active, v.limit);
        for ((section, kind), count) in &summary.by_section {
            println!("  {section:<20} {kind:<10} {count}");
        }
        if let Some(id) = &held.batch_id {
            println!("batch {id}");
            println!("  to apply it:  sekimori hr confirm {id}");
            println!("  to drop it:   sekimori hr discard {id}");
        }
        // Distinct from success and from a refused file, so that a scheduled import can alert.
        return Ok(ExitCode::from(3));
    }
    println!("{}", if dry_run { "dry run: nothing recorded. Would record:" } else { "recorded:" });
    for ((section, kind), count) in &summary.by_section {
        println!("  {section:<20} {kind:<10} {count}");
    }
    println!(
        "new {}, replacing a pending change {}, already recorded {}",
        summary.new, summary.replaced, summary.unchanged
    );
    if !dry_run {
        let run = sekimori::hr::changes::apply_due_from_command(&store, now).await?;
        println!("applied now: {} (superseded {}, failed {})", run.applied, run.superseded, run.failed);
    }
    Ok(ExitCode::SUCCESS)
}

/// `sekimori hr batches | confirm | discard | preview | changes | retry`: the administrator's side
/// of the HR feed.
async fn hr_batch(config: Config, command: HrCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use sekimori::hr::batches::{self, DecisionError};
    let (store, _) = sekimori::open_store(&config).await?;
    let now = Clock::default().now();
    let decided = match command {
        HrCommand::Import { .. } => unreachable!("handled by hr_import"),
        HrCommand::Preview { section, date } => return hr_preview(&store, now, &section, date.as_deref()).await,
        HrCommand::Changes { status, employee_number, limit } => {
            return hr_changes(&store, status.as_deref(), employee_number.as_deref(), limit).await
        }
        HrCommand::Retry { change_id } => return hr_retry(&store, now, &change_id).await,
        HrCommand::Batches => {
            let held = batches::held(&store).await?;
            if held.is_empty() {
                println!("保留中のバッチはありません (no held batches)");
            }
            for batch in held {
                println!(
                    "{}  {}  held {}  {} changes; would leave, suspend or move {} of {} active people",
                    batch.id,
                    batch.source,
                    japan_time(batch.created_at),
                    batch.changes,
                    batch.affected,
                    batch.active
                );
                for line in &batch.summary {
                    println!("  {:<20} {:<10} {}", line.section, line.kind, line.count);
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        HrCommand::Confirm { batch_id } => {
            batches::confirm(&store, &Actor::Cli, now, &config.hr, &batch_id).await.map(|b| ("confirmed", b))
        }
        HrCommand::Discard { batch_id } => {
            batches::discard(&store, &Actor::Cli, now, &batch_id).await.map(|b| ("discarded", b))
        }
    };
    match decided {
        Ok((what, batch)) => {
            println!("batch {} ({}) {what}: {} changes", batch.id, batch.source, batch.changes);
            if what == "confirmed" {
                let run = sekimori::hr::changes::apply_due_from_command(&store, now).await?;
                println!("applied now: {} (superseded {}, failed {})", run.applied, run.superseded, run.failed);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(DecisionError::Directory(e)) => Err(e.into()),
        Err(e) => {
            eprintln!("error: {e}; the batch is unchanged");
            Ok(ExitCode::from(1))
        }
    }
}

/// How a change's status reads to an operator.
fn change_status_label(status: &str) -> String {
    match status {
        "pending" => "未適用 (pending)".to_owned(),
        "applied" => "適用済 (applied)".to_owned(),
        "superseded" => "置換済 (superseded)".to_owned(),
        "failed" => "失敗 (failed)".to_owned(),
        other => other.to_owned(),
    }
}

/// `sekimori hr changes`: the recorded changes, newest first.
async fn hr_changes(
    store: &Store,
    status: Option<&str>,
    employee_number: Option<&str>,
    limit: i64,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use sekimori::hr::review;
    if let Some(status) = status {
        if !review::STATUSES.contains(&status) {
            eprintln!("error: --status must be one of {}", review::STATUSES.join(", "));
            return Ok(ExitCode::from(2));
        }
    }
    if !(1..=500).contains(&limit) {
        eprintln!("error: --limit must be 1 to 500");
        return Ok(ExitCode::from(2));
    }
    let employee_number = match employee_number.map(sekimori::directory::EmployeeNumber::parse).transpose() {
        Ok(number) => number,
        Err(e) => {
            eprintln!("error: --employee-number {}", e.reason);
            return Ok(ExitCode::from(2));
        }
    };
    let filter = review::Filter { status: status.map(str::to_owned), employee_number };
    let found = review::list(store, &filter, None, limit).await?.unwrap_or_default();
    if found.is_empty() {
        println!("該当する変更はありません (no recorded changes)");
        return Ok(ExitCode::SUCCESS);
    }
    println!("記録された変更 (recorded changes), 新しい順 (newest first): {} 件", found.len());
    for change in &found {
        let unit = change.org_unit_code.as_deref().map(|c| format!(" → {c}")).unwrap_or_default();
        println!(
            "{}  {:<20} {:<12} {:<9}{unit}  発令日 {}  {}",
            change.id,
            change_status_label(&change.status),
            change.employee_number,
            change.kind,
            change.effective_date,
            change.source,
        );
        if let Some(error) = &change.error {
            println!("    エラー (error): {error}");
        }
    }
    if found.iter().any(|c| c.status == "failed") {
        println!("原因を直したら再実行 (once the cause is fixed, retry):  sekimori hr retry CHANGE_ID");
    }
    Ok(ExitCode::SUCCESS)
}

/// `sekimori hr retry`: a failed change back to pending, and what is due applied.
async fn hr_retry(
    store: &Store,
    now: sekimori::clock::UnixTime,
    id: &str,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use sekimori::hr::review::{self, RetryError};
    match review::retry(store, &Actor::Cli, now, id).await {
        Ok(retried) => {
            println!("変更 {id} を未適用に戻しました (put back to pending)");
            if let Some(error) = &retried.previous_error {
                println!("  前回のエラー (previous error): {error}");
            }
            let run = retried.run;
            println!("applied now: {} (superseded {}, failed {})", run.applied, run.superseded, run.failed);
            println!("  この変更は現在 (this change is now): {}", change_status_label(&retried.change.status));
            if let Some(error) = &retried.change.error {
                println!("    エラー (error): {error}");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(RetryError::Directory(e)) => Err(e.into()),
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// `sekimori hr preview`: the section manager's view of what is coming.
async fn hr_preview(
    store: &Store,
    now: sekimori::clock::UnixTime,
    section: &str,
    date: Option<&str>,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    use sekimori::directory::{types, DirectoryError};
    use sekimori::hr::preview;
    let until = match date.map(|d| types::parse_date("--date", d)).transpose() {
        Ok(date) => date.unwrap_or_else(|| sekimori::directory::today_in_japan(now)),
        Err(e) => {
            eprintln!("error: --date {}", e.reason);
            return Ok(ExitCode::from(2));
        }
    };
    let entries = match preview::section(store, section, until).await {
        Ok(entries) => entries,
        Err(DirectoryError::NotFound(_)) => {
            eprintln!("error: 所属コード {section:?} はありません (no org unit has this code)");
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(e.into()),
    };
    println!(
        "{section} の {} までの異動予定 (changes on or before this date): {} 件",
        types::format_date(until),
        entries.len()
    );
    for entry in &entries {
        let other = match (entry.effect, &entry.other_section) {
            (preview::Effect::Arrival, Some(from)) => format!("  ← {from}"),
            (preview::Effect::Departure, Some(to)) => format!("  → {to}"),
            _ => String::new(),
        };
        let held = entry.held_in.as_ref().map(|id| format!("  [保留中 held: {id}]")).unwrap_or_default();
        println!(
            "  {}  {:<24} {:<12} {}{other}{held}",
            types::format_date(entry.effective_date),
            entry.effect.label(),
            entry.employee_number,
            entry.name.as_deref().unwrap_or("-"),
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    sekimori::reports::monthly::check_for_serving(&config.reports)?;
    let listeners = Listeners::bind(config.public_addr, config.admin_addr).await?;
    let app = App::build(config, Clock::default()).await?;
    let now = app.clock.now();
    if auth::needs_bootstrap(&app.store, now).await? {
        // A code someone already printed with `sekimori bootstrap` stays valid: a new one
        // would silently replace it.
        match auth::pending_bootstrap_code_expiry(&app.store, now).await? {
            Some(expires_at) => println!(
                "No administrator yet. A bootstrap code issued earlier is valid until {}; \
                 `sekimori bootstrap` prints a new one.",
                japan_time(expires_at)
            ),
            None => print_bootstrap(&app).await?,
        }
    }
    tracing::info!(
        public = %app.config.public_addr,
        admin = %app.config.admin_addr,
        issuer = %app.config.issuer,
        database = %sekimori::store::redacted_url(&app.config.database_url),
        "Sekimori is serving"
    );
    sekimori::serve(app, listeners, shutdown_signal()).await?;
    Ok(())
}

/// Unix seconds as an ISO 8601 time in Japan (what an operator reads).
fn japan_time(unix: i64) -> String {
    sekimori::clock::japan_rfc3339(unix).unwrap_or_else(|_| unix.to_string())
}

async fn print_bootstrap(app: &App) -> Result<(), Box<dyn std::error::Error>> {
    let now = app.clock.now();
    let lead = if auth::needs_bootstrap(&app.store, now).await? {
        "No administrator yet."
    } else {
        "Administrators exist already; here is a new bootstrap code all the same."
    };
    let code = auth::issue_bootstrap_code(&app.store, &Actor::Cli, now).await?;
    let admin = app.config.admin_addr;
    println!("{lead} One-time bootstrap code (valid {} minutes):", auth::BOOTSTRAP_CODE_TTL / 60);
    println!("  {code}");
    println!("Exchange it for an API token on the admin listener:");
    println!(
        "  curl -s -X POST http://{admin}/api/v1/bootstrap -H 'Content-Type: application/json' -d '{{\"code\":\"{code}\",\"name\":\"first administrator\"}}'"
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
    tracing::info!("shutting down");
}
