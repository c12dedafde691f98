//! R17: `sekimori emergency-stop …`: stop one person or one consuming system from the shell,
//! list the stops, lift one. Part of the `sekimori` binary (src/main.rs); every command calls
//! the same `sekimori::emergency` functions as the admin API, so the rules and the audit events
//! are the same. The stop is in the database: running servers see it at their next request.
//!
//! A refused request (no reason, unknown target, already stopped or lifted) is printed as
//! `error: …` with exit status 2; a failure of Sekimori itself has status 1.

use std::process::ExitCode;

use clap::Subcommand;
use sekimori::audit::Actor;
use sekimori::clock::Clock;
use sekimori::config::Config;
use sekimori::emergency::{self, EmergencyError, Kind, Stop};

use crate::japan_time;

#[derive(Subcommand)]
pub enum EmergencyCommand {
    /// Stop one person now: every session and token ends (the systems they used are told) and
    /// every login is refused until the stop is lifted.
    Person {
        /// The person's id or login ID.
        target: String,
        /// Why (required; kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Stop one consuming system now: every token issued to it ends, and its logins, token
    /// requests and introspection are refused until the stop is lifted.
    System {
        client_id: String,
        /// Why (required; kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// Lift a stop: the person or system is as before the stop (ended tokens stay ended).
    Lift {
        stop_id: String,
        /// Why (required; kept in the audit log).
        #[arg(long)]
        reason: String,
    },
    /// List the stops in force (with --all, the lifted ones too), newest first.
    List {
        #[arg(long)]
        all: bool,
    },
}

pub async fn run(config: Config, command: EmergencyCommand) -> Result<ExitCode, Box<dyn std::error::Error>> {
    // A stop is recorded in the keyed audit chain: the store is opened with the master key.
    let (store, _) = sekimori::open_store(&config).await?;
    let now = Clock::default().now();
    if let EmergencyCommand::List { all } = command {
        let stops = emergency::list(store.pool(), !all).await?;
        if stops.is_empty() {
            println!("緊急停止はありません (no emergency stops{})", if all { "" } else { " in force" });
        }
        for stop in &stops {
            print_stop(stop);
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut tx = store.begin().await?;
    let done = match command {
        EmergencyCommand::List { .. } => return Ok(ExitCode::SUCCESS),
        EmergencyCommand::Person { target, reason } => stop(&mut tx, now, Kind::Person, &target, &reason).await,
        EmergencyCommand::System { client_id, reason } => stop(&mut tx, now, Kind::System, &client_id, &reason).await,
        EmergencyCommand::Lift { stop_id, reason } => {
            emergency::lift(&mut tx, &Actor::Cli, now, &stop_id, &reason).await.map(|stop| {
                println!("lifted: {}", describe(&stop));
                println!("  logins work again; what the stop ended stays ended");
            })
        }
    };
    match done {
        Ok(()) => {
            tx.commit().await?;
            Ok(ExitCode::SUCCESS)
        }
        Err(EmergencyError::Database(e)) => Err(e.into()),
        Err(EmergencyError::Invalid(invalid)) => {
            eprintln!("error: --{} {}", invalid.field, invalid.reason);
            Ok(ExitCode::from(2))
        }
        Err(EmergencyError::NotFound(what)) => {
            eprintln!("error: no such {what}; nothing was stopped or lifted");
            Ok(ExitCode::from(2))
        }
        Err(refused) => {
            eprintln!("error: {refused}");
            Ok(ExitCode::from(2))
        }
    }
}

async fn stop(
    tx: &mut sekimori::store::Tx,
    now: sekimori::clock::UnixTime,
    kind: Kind,
    target: &str,
    reason: &str,
) -> Result<(), EmergencyError> {
    let (stop, revoked) = emergency::stop(tx, &Actor::Cli, now, kind, target, reason).await?;
    println!("stopped: {}", describe(&stop));
    println!("  stop id: {}", stop.id);
    println!(
        "  ended {} sessions, {} access tokens, {} refresh tokens, {} unused codes; {} logout notices queued",
        revoked.sessions,
        revoked.access_tokens,
        revoked.refresh_tokens,
        revoked.authorization_codes,
        revoked.logout_notices
    );
    println!("  to lift it: sekimori emergency-stop lift {} --reason \"…\"", stop.id);
    Ok(())
}

fn describe(stop: &Stop) -> String {
    let label = stop.target_label.as_deref().map(|l| format!(" ({l})")).unwrap_or_default();
    format!("{} {}{label}", stop.kind.as_str(), stop.target)
}

fn print_stop(stop: &Stop) {
    println!("{}  {}", stop.id, describe(stop));
    println!("  stopped {} by {}: {}", japan_time(stop.stopped_at), stop.stopped_by, stop.reason);
    if let (Some(at), Some(by)) = (stop.lifted_at, stop.lifted_by.as_deref()) {
        println!("  lifted  {} by {}: {}", japan_time(at), by, stop.lift_reason.as_deref().unwrap_or_default());
    }
}
