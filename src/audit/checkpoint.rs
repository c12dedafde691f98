//! Signed checkpoints of the audit chain, kept outside the database (R16). A checkpoint names
//! the chain's newest event and its hash at a moment; appended to a file the operator ships
//! elsewhere, it lets `audit verify` prove that the database still holds that event with that
//! hash: truncating the chain after a checkpoint, or rewriting it before one, is reported even
//! by someone who could rewrite every row and the head.
//!
//! The signature is an HMAC under a key derived from the master key: whoever verifies holds the
//! master key (the operator, the `sekimori` command), and nobody without it can make or alter a
//! checkpoint.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::hmac_hex;
use crate::clock::UnixTime;
use crate::crypto::MasterKey;
use crate::store::{AuditKey, Store};

const CHECKPOINT_LABEL: &str = "sekimori audit checkpoint v1";

/// The checkpoint signing key for this master key.
pub fn signing_key(master: &MasterKey) -> AuditKey {
    master.derive_key(CHECKPOINT_LABEL.as_bytes())
}

/// One line of a checkpoint file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: String,
    /// When it was taken, Unix seconds.
    pub at: i64,
    pub signature: String,
}

impl Checkpoint {
    fn signed(key: &AuditKey, seq: i64, hash: String, at: i64) -> Self {
        let signature = signature(key, seq, &hash, at);
        Checkpoint { seq, hash, at, signature }
    }

    fn signature_holds(&self, key: &AuditKey) -> bool {
        crate::crypto::ct_eq(signature(key, self.seq, &self.hash, self.at).as_bytes(), self.signature.as_bytes())
    }
}

fn signature(key: &AuditKey, seq: i64, hash: &str, at: i64) -> String {
    hmac_hex(key, serde_json::json!([CHECKPOINT_LABEL, seq, hash, at]).to_string().as_bytes())
}

/// A checkpoint of the chain's head as it stands.
pub async fn take(store: &Store, key: &AuditKey, now: UnixTime) -> Result<Checkpoint, sqlx::Error> {
    let head = super::head(store.pool()).await?;
    Ok(Checkpoint::signed(key, head.seq, head.hash, now))
}

/// Appends `checkpoint` as one JSON line to `path` (created if missing) and flushes it to disk.
pub fn append(path: &Path, checkpoint: &Checkpoint) -> std::io::Result<()> {
    let mut line = serde_json::to_string(checkpoint).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(line.as_bytes())?;
    file.sync_all()
}

/// What checking a checkpoint file found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FileCheck {
    /// Checkpoints whose signature held and whose event the database holds with that hash.
    pub confirmed: usize,
    /// Checkpoints of events that were archived (removed) since: confirmed only by the archive.
    pub archived: usize,
    /// One readable line per failure, naming the file's line.
    pub failures: Vec<String>,
}

/// Checks every line of a checkpoint file: its signature, and that the database's chain still
/// holds the event it names with the hash it names. (Run it with [`super::verify`]: this checks
/// the checkpoints against the rows, `verify` the rows against each other.)
pub async fn check_file(store: &Store, key: &AuditKey, text: &str) -> Result<FileCheck, sqlx::Error> {
    let head = super::head(store.pool()).await?;
    let mut check = FileCheck::default();
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let checkpoint: Checkpoint = match serde_json::from_str(line) {
            Ok(checkpoint) => checkpoint,
            Err(e) => {
                check.failures.push(format!("line {number}: not a checkpoint ({e})"));
                continue;
            }
        };
        if !checkpoint.signature_holds(key) {
            check.failures.push(format!(
                "line {number}: bad signature: the checkpoint of event {} was altered or not made with this master key",
                checkpoint.seq
            ));
            continue;
        }
        let seq = checkpoint.seq;
        if seq > head.seq {
            check.failures.push(format!(
                "line {number}: the checkpoint names event {seq}, but the chain ends at event {}: events were removed from the end (truncated)",
                head.seq
            ));
            continue;
        }
        if seq < head.anchor_seq {
            check.archived += 1;
            continue;
        }
        // The anchor (or, with none, the empty chain's genesis) stands for the event it names.
        let stored = if seq == head.anchor_seq {
            Some(head.anchor_hash.clone())
        } else {
            sqlx::query("SELECT hash FROM audit_links WHERE chain_pos = $1")
                .bind(seq)
                .fetch_optional(store.pool())
                .await?
                .map(|row| row.try_get::<String, _>("hash"))
                .transpose()?
        };
        match stored {
            None => check.failures.push(format!("line {number}: event {seq} of the checkpoint is missing (deleted)")),
            Some(hash) if !crate::crypto::ct_eq(hash.as_bytes(), checkpoint.hash.as_bytes()) => {
                check.failures.push(format!(
                "line {number}: event {seq} has another hash than at the checkpoint: the chain was rewritten up to it"
            ))
            }
            Some(_) => check.confirmed += 1,
        }
    }
    Ok(check)
}

/// Appends a checkpoint to the configured file every `checkpoint_interval` seconds, when the
/// chain has grown since the last one. Every node may do it: lines from several nodes are all
/// valid checkpoints.
pub fn spawn_writer(app: crate::App, key: AuditKey) {
    let Some(path) = app.config.audit.checkpoint_file.clone() else { return };
    let interval = app.config.audit.checkpoint_interval.max(1);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(std::time::Duration::from_secs(interval));
        let mut last_seq = None;
        loop {
            ticks.tick().await;
            let checkpoint = match take(&app.store, &key, app.clock.now()).await {
                Ok(checkpoint) => checkpoint,
                Err(e) => {
                    tracing::warn!(error = %e, "taking an audit checkpoint failed; trying again later");
                    continue;
                }
            };
            if last_seq == Some(checkpoint.seq) {
                continue;
            }
            match append(Path::new(&path), &checkpoint) {
                Ok(()) => last_seq = Some(checkpoint.seq),
                Err(e) => tracing::error!(error = %e, path, "cannot append to the audit checkpoint file"),
            }
        }
    });
}
