//! An HR batch whose applying process is killed (SIGKILL) half-way, on each database: the real
//! `sekimori hr import` records a file of a few thousand due changes (moves, leaves, joins,
//! updates, suspensions over five effective dates) and starts applying them; the test kills
//! it once about half are applied. Then no person is half-changed — every change is either
//! applied with all it implies (status, unit, account, sessions, audit events) or still
//! pending with nothing of it visible — and importing the same file again finishes the batch
//! with exactly the directory an uninterrupted run of the file gives on a fresh database.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sekimori::store::Store;
use sqlx::Row;
use time::macros::date;
use time::{Date, Duration as Days};

use crate::common::{drop_database, fresh_database, Db};

/// People in the directory before the file; each has an account and one live session.
const PEOPLE: usize = 3000;
const JOINERS: usize = 600;
const UNITS: usize = 20;
const FILE: &str = "jinji.csv";
/// The first of the five effective dates the file's changes are spread over.
const FIRST_DAY: Date = date!(2025 - 04 - 01);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Move,
    Leave,
    Update,
    Suspend,
    Join,
}

/// One row of the file, and what the person looked like before it.
#[derive(Debug, Clone)]
struct Planned {
    number: String,
    kind: Kind,
    /// `csv:jinji.csv:LINE`, as the change and its audit event carry it.
    source: String,
    /// The unit a move or join goes to; the unit before, for the others.
    unit: String,
    original_unit: String,
    /// The new email of an update; the old one otherwise.
    email: String,
    original_email: String,
    /// The last day of a leave.
    last_day: Option<Date>,
}

fn number(i: usize) -> String {
    format!("E{i:05}")
}

fn unit_code(u: usize) -> String {
    format!("U{:02}", u % UNITS)
}

fn email(i: usize) -> String {
    format!("e{i:05}@city.example.lg.jp")
}

/// The file and what each of its rows means. Person i gets, by i mod 10: a move (0–3), a
/// leave (4, 5), an update of their email (6), an update and a move (7), a suspension (8),
/// nothing (9); 600 joiners come on top. The dates cycle over five days, so that a kill
/// half-way leaves every kind both applied (the early days) and pending (the late ones).
fn the_file() -> (String, Vec<Planned>) {
    let mut csv = String::from("employee_number,change,effective_date,org_unit_code,family_name,given_name,family_name_kana,given_name_kana,kind,email,login_id\n");
    let mut planned = Vec::new();
    let mut line = 1;
    let mut row = |csv: &mut String, text: String, mut plan: Planned| {
        line += 1;
        csv.push_str(&text);
        csv.push('\n');
        plan.source = format!("csv:{FILE}:{line}");
        planned.push(plan);
    };
    for i in 0..PEOPLE {
        let day = FIRST_DAY.saturating_add(Days::days(((i / 10) % 5) as i64));
        let last_day = day.previous_day().unwrap();
        let n = number(i);
        let base = Planned {
            number: n.clone(),
            kind: Kind::Move,
            source: String::new(),
            unit: unit_code(i),
            original_unit: unit_code(i),
            email: email(i),
            original_email: email(i),
            last_day: None,
        };
        let moved = Planned { kind: Kind::Move, unit: unit_code(i + 7), ..base.clone() };
        let updated = Planned { kind: Kind::Update, email: format!("new.{}", email(i)), ..base.clone() };
        match i % 10 {
            0..=3 => row(&mut csv, format!("{n},move,{day},{},,,,,,,", moved.unit), moved),
            4 | 5 => row(
                &mut csv,
                format!("{n},leave,{last_day},,,,,,,,"),
                Planned { kind: Kind::Leave, last_day: Some(last_day), ..base },
            ),
            6 => row(&mut csv, format!("{n},update,{day},,,,,,,{},", updated.email), updated),
            7 => {
                row(&mut csv, format!("{n},update,{day},,,,,,,{},", updated.email), updated);
                row(&mut csv, format!("{n},move,{day},{},,,,,,,", moved.unit), moved);
            }
            8 => row(&mut csv, format!("{n},suspend,{day},,,,,,,,"), Planned { kind: Kind::Suspend, ..base }),
            _ => {}
        }
    }
    for k in 0..JOINERS {
        let day = FIRST_DAY.saturating_add(Days::days((k % 5) as i64));
        let n = format!("J{k:05}");
        let plan = Planned {
            number: n.clone(),
            kind: Kind::Join,
            source: String::new(),
            unit: unit_code(k),
            original_unit: String::new(),
            email: String::new(),
            original_email: String::new(),
            last_day: None,
        };
        row(&mut csv, format!("{n},join,{day},{},山田,花子,ヤマダ,ハナコ,正規,,j{k:05}", plan.unit), plan);
    }
    (csv, planned)
}

async fn insert_rows(store: &Store, head: &str, rows: Vec<String>) {
    for chunk in rows.chunks(500) {
        sqlx::query(&format!("{head} VALUES {}", chunk.join(", "))).execute(store.pool()).await.unwrap();
    }
}

/// A fresh database with the units and people the file speaks of (values are the test's own
/// constants, so they are written into the SQL).
async fn directory(db: Db) -> (String, Store) {
    let url = fresh_database(db).await;
    let store = Store::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let mut units = vec!["('u-D', 'D', '総務部', NULL, 'department', NULL, NULL, 0)".to_owned()];
    units.extend((0..UNITS).map(|u| format!("('u-{0}', '{0}', '課', NULL, 'section', 'u-D', NULL, 0)", unit_code(u))));
    insert_rows(
        &store,
        "INSERT INTO org_units (id, code, name, name_en, level, parent_id, manager_person_id, created_at)",
        units,
    )
    .await;
    let people = (0..PEOPLE)
        .map(|i| {
            format!(
                "('p-{0}', '{0}', '試験', '太郎', 'シケン', 'タロウ', NULL, 'regular', 'u-{1}', '{2}', 'active', '2020-04-01', NULL, 0, 0)",
                number(i),
                unit_code(i),
                email(i)
            )
        })
        .collect();
    insert_rows(
        &store,
        "INSERT INTO people (id, employee_number, family_name, given_name, family_name_kana, given_name_kana, birth_date,
             kind, org_unit_id, email, status, start_date, end_date, created_at, updated_at)",
        people,
    )
    .await;
    let accounts =
        (0..PEOPLE).map(|i| format!("('a-{0}', 'p-{0}', 'u{i:05}', NULL, 'active', 0)", number(i))).collect();
    insert_rows(&store, "INSERT INTO accounts (id, person_id, login_id, password_hash, status, created_at)", accounts)
        .await;
    let sessions = (0..PEOPLE)
        .map(|i| format!("('s-{0}', 'hash-{0}', 'p-{0}', 'a-{0}', 0, '[\"pwd\"]', '1', 0, 0, 4102444800)", number(i)))
        .collect();
    insert_rows(
        &store,
        "INSERT INTO sessions (id, token_hash, person_id, account_id, auth_time, amr, acr, created_at, last_seen_at,
             absolute_expires_at)",
        sessions,
    )
    .await;
    (url, store)
}

/// `sekimori hr import jinji.csv` against `url`, the safety valve opened wide (this file is
/// about a crash, not about the valve); its output goes to files in `dir`.
fn import(url: &str, dir: &Path, csv: &str, run: &str) -> Command {
    std::fs::write(dir.join(FILE), csv).unwrap();
    let config = dir.join("sekimori.toml");
    std::fs::write(&config, "[hr]\nmax_share_percent = 100\nmax_people = 1000000\n").unwrap();
    let mut command = crate::cli::sekimori(dir);
    command
        .args(["--config", config.to_str().unwrap(), "hr", "import", FILE])
        .env("SEKIMORI_DATABASE_URL", url)
        .env("SEKIMORI_LOG", "warn")
        .stdout(std::fs::File::create(dir.join(format!("{run}.out"))).unwrap())
        .stderr(std::fs::File::create(dir.join(format!("{run}.err"))).unwrap())
        .stdin(Stdio::null());
    command
}

fn output(dir: &Path, run: &str) -> String {
    let read = |ext: &str| std::fs::read_to_string(dir.join(format!("{run}.{ext}"))).unwrap_or_default();
    format!("{}{}", read("out"), read("err"))
}

/// Runs the import to its end; returns its output.
fn import_whole(url: &str, dir: &Path, csv: &str, run: &str) -> String {
    let status = import(url, dir, csv, run).status().unwrap();
    let text = output(dir, run);
    assert!(status.success(), "{run}: {status}\n{text}");
    text
}

async fn count(store: &Store, condition: &str) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) AS n FROM person_changes WHERE {condition}"))
        .fetch_one(store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

fn text(row: &sqlx::any::AnyRow, column: &str) -> String {
    row.try_get::<Option<String>, _>(column).unwrap().unwrap_or_else(|| "∅".into())
}

/// The directory as the assertions read it, by employee number.
struct State {
    /// number → (status, unit code, email, end date)
    people: BTreeMap<String, (String, String, String, String)>,
    /// number → (login id, status)
    accounts: BTreeMap<String, (String, String)>,
    /// number → whether their session was ended
    session_ended: BTreeMap<String, bool>,
    /// source → (status, whether person_id is set)
    changes: BTreeMap<String, (String, bool)>,
    /// (action, source) of the person.* audit events
    audited: BTreeSet<(String, String)>,
    /// number → "revoke" audit events on the person
    revokes: BTreeMap<String, usize>,
}

async fn state(store: &Store) -> State {
    let pool = store.pool();
    let mut state = State {
        people: BTreeMap::new(),
        accounts: BTreeMap::new(),
        session_ended: BTreeMap::new(),
        changes: BTreeMap::new(),
        audited: BTreeSet::new(),
        revokes: BTreeMap::new(),
    };
    let mut number_of = BTreeMap::new();
    let rows = sqlx::query(
        "SELECT p.id, p.employee_number, p.status, o.code, p.email, p.end_date FROM people p
         LEFT JOIN org_units o ON o.id = p.org_unit_id",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for r in &rows {
        let n = text(r, "employee_number");
        number_of.insert(text(r, "id"), n.clone());
        state.people.insert(n, (text(r, "status"), text(r, "code"), text(r, "email"), text(r, "end_date")));
    }
    for r in &sqlx::query("SELECT person_id, login_id, status FROM accounts").fetch_all(pool).await.unwrap() {
        state.accounts.insert(number_of[&text(r, "person_id")].clone(), (text(r, "login_id"), text(r, "status")));
    }
    for r in &sqlx::query("SELECT person_id, revoked_at FROM sessions").fetch_all(pool).await.unwrap() {
        let ended = r.try_get::<Option<i64>, _>("revoked_at").unwrap().is_some();
        state.session_ended.insert(number_of[&text(r, "person_id")].clone(), ended);
    }
    for r in &sqlx::query("SELECT source, status, person_id FROM person_changes").fetch_all(pool).await.unwrap() {
        let linked = r.try_get::<Option<String>, _>("person_id").unwrap().is_some();
        state.changes.insert(text(r, "source"), (text(r, "status"), linked));
    }
    for r in &sqlx::query("SELECT action, target, detail FROM audit_events").fetch_all(pool).await.unwrap() {
        let action = text(r, "action");
        let detail: serde_json::Value = serde_json::from_str(&text(r, "detail")).unwrap();
        if action == "revoke" {
            if let Some(n) = text(r, "target").strip_prefix("person:").and_then(|id| number_of.get(id)) {
                *state.revokes.entry(n.clone()).or_default() += 1;
            }
        } else if action.starts_with("person.") {
            if let Some(source) = detail["source"].as_str() {
                state.audited.insert((action, source.to_owned()));
            }
        }
    }
    state
}

/// Every change is applied whole or not at all; returns the applied count per kind and the
/// pending count per kind.
fn check_no_one_is_half_changed(state: &State, planned: &[Planned]) -> BTreeMap<Kind, (usize, usize)> {
    let mut tally: BTreeMap<Kind, (usize, usize)> = BTreeMap::new();
    // People whose session a change of the file ends.
    let mut ending = BTreeSet::new();
    for plan in planned {
        let (status, linked) = state.changes.get(&plan.source).unwrap_or_else(|| panic!("{plan:?} not recorded"));
        let applied = match status.as_str() {
            "applied" => true,
            "pending" => false,
            other => panic!("{plan:?} is {other}"),
        };
        let entry = tally.entry(plan.kind).or_default();
        if applied {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
        let at = format!("{} ({:?}, {}, {})", plan.number, plan.kind, plan.source, status);
        assert_eq!(*linked, applied, "{at}: person_id is set exactly when applied");
        let action = match plan.kind {
            Kind::Move => "person.move",
            Kind::Leave => "person.leave",
            Kind::Update => "person.update",
            Kind::Suspend => "person.suspend",
            Kind::Join => "person.join",
        };
        assert_eq!(
            state.audited.contains(&(action.to_owned(), plan.source.clone())),
            applied,
            "{at}: audited exactly when applied"
        );
        if plan.kind == Kind::Join {
            if applied {
                let (_, unit, _, _) = state.people.get(&plan.number).unwrap_or_else(|| panic!("{at}: no person"));
                assert_eq!(unit, &plan.unit, "{at}");
                let (login, account) = state.accounts.get(&plan.number).unwrap_or_else(|| panic!("{at}: no account"));
                assert_eq!((login.as_str(), account.as_str()), (plan.number.to_lowercase().as_str(), "active"), "{at}");
            } else {
                assert!(!state.people.contains_key(&plan.number), "{at}: the joiner exists");
                assert!(!state.accounts.contains_key(&plan.number), "{at}: the joiner's account exists");
            }
            continue;
        }
        let (person_status, unit, email, end_date) = &state.people[&plan.number];
        let account = &state.accounts[&plan.number].1;
        let session_ended = state.session_ended[&plan.number];
        let revokes = state.revokes.get(&plan.number).copied().unwrap_or(0);
        match plan.kind {
            Kind::Move => {
                let expected = if applied { &plan.unit } else { &plan.original_unit };
                assert_eq!(unit, expected, "{at}: unit");
            }
            Kind::Update => {
                let expected = if applied { &plan.email } else { &plan.original_email };
                assert_eq!(email, expected, "{at}: email");
            }
            Kind::Leave | Kind::Suspend => {
                ending.insert(plan.number.clone());
                let (expected_status, expected_end, expected_account) = match (plan.kind, applied) {
                    (Kind::Leave, true) => ("retired", plan.last_day.unwrap().to_string(), "disabled"),
                    (Kind::Suspend, true) => ("suspended", "∅".to_owned(), "active"),
                    _ => ("active", "∅".to_owned(), "active"),
                };
                assert_eq!(person_status, expected_status, "{at}: status");
                assert_eq!(end_date, &expected_end, "{at}: end date");
                assert_eq!(account, expected_account, "{at}: account");
                assert_eq!(session_ended, applied, "{at}: session ended exactly when applied");
                assert_eq!(revokes, usize::from(applied), "{at}: revocation audited exactly when applied");
                assert_eq!(unit, &plan.original_unit, "{at}: unit");
            }
            Kind::Join => unreachable!(),
        }
    }
    // Nobody else lost their session or changed status.
    for (n, (status, ..)) in &state.people {
        if !ending.contains(n) {
            assert_eq!(status, "active", "{n}");
            assert!(!state.session_ended.get(n).copied().unwrap_or(false), "{n}: session ended");
        }
    }
    tally
}

/// The directory in a canonical form: no generated ids, no timestamps.
async fn dump(store: &Store) -> Vec<String> {
    let pool = store.pool();
    let mut lines = Vec::new();
    let mut number_of = BTreeMap::new();
    let mut source_of = BTreeMap::new();
    let all = |sql: &'static str| sqlx::query(sql).fetch_all(pool);
    for r in &all("SELECT id, employee_number FROM people").await.unwrap() {
        number_of.insert(text(r, "id"), text(r, "employee_number"));
    }
    for r in &all("SELECT id, source FROM person_changes").await.unwrap() {
        source_of.insert(text(r, "id"), text(r, "source"));
    }
    let line = |table: &str, r: &sqlx::any::AnyRow, columns: &[&str]| {
        let fields: Vec<String> = columns.iter().map(|c| text(r, c)).collect();
        format!("{table}|{}", fields.join("|"))
    };
    for r in &all(
        "SELECT p.employee_number, p.family_name, p.given_name, p.family_name_kana, p.given_name_kana, p.birth_date,
             p.kind, o.code, p.email, p.status, p.start_date, p.end_date
         FROM people p LEFT JOIN org_units o ON o.id = p.org_unit_id",
    )
    .await
    .unwrap()
    {
        let columns = [
            "employee_number",
            "family_name",
            "given_name",
            "family_name_kana",
            "given_name_kana",
            "birth_date",
            "kind",
            "code",
            "email",
            "status",
            "start_date",
            "end_date",
        ];
        lines.push(line("people", r, &columns));
    }
    for r in &all(
        "SELECT p.employee_number, a.login_id, a.status, CASE WHEN a.password_hash IS NULL THEN 'none' ELSE 'set' END AS pw,
             CAST(a.must_change_password AS TEXT) AS must_change
         FROM accounts a JOIN people p ON p.id = a.person_id",
    )
    .await
    .unwrap()
    {
        lines.push(line("accounts", r, &["employee_number", "login_id", "status", "pw", "must_change"]));
    }
    for r in &all("SELECT p.employee_number, o.code, pp.start_date, pp.end_date FROM person_posts pp
         JOIN people p ON p.id = pp.person_id JOIN org_units o ON o.id = pp.org_unit_id")
    .await
    .unwrap()
    {
        lines.push(line("person_posts", r, &["employee_number", "code", "start_date", "end_date"]));
    }
    for r in &all(
        "SELECT c.employee_number, c.kind, c.aspect, c.effective_date, c.source, c.status, c.error, p.employee_number AS person
         FROM person_changes c LEFT JOIN people p ON p.id = c.person_id",
    )
    .await
    .unwrap()
    {
        let columns = ["employee_number", "kind", "aspect", "effective_date", "source", "status", "error", "person"];
        lines.push(line("person_changes", r, &columns));
    }
    for r in &all("SELECT p.employee_number, s.revoked_reason FROM sessions s JOIN people p ON p.id = s.person_id")
        .await
        .unwrap()
    {
        lines.push(line("sessions", r, &["employee_number", "revoked_reason"]));
    }
    for r in &all("SELECT action, outcome, target, detail FROM audit_events").await.unwrap() {
        let target = text(r, "target");
        let target = match target.split_once(':') {
            Some(("person", id)) => format!("person:{}", number_of.get(id).map_or("?", String::as_str)),
            Some(("person_change", id)) => format!("person_change:{}", source_of.get(id).map_or("?", String::as_str)),
            Some(("account", _)) => "account:…".to_owned(),
            _ => target,
        };
        let detail: serde_json::Value = serde_json::from_str(&text(r, "detail")).unwrap();
        let keys = ["employee_number", "source", "kind", "effective_date", "sessions_ended", "account_disabled"];
        let kept: Vec<String> = keys.iter().map(|k| detail[*k].to_string()).collect();
        lines.push(format!("audit|{}|{}|{target}|{}", text(r, "action"), text(r, "outcome"), kept.join("|")));
    }
    lines.sort();
    lines
}

fn assert_same(crashed: &[String], whole: &[String]) {
    let only_crashed: Vec<&String> = crashed.iter().filter(|l| whole.binary_search(l).is_err()).take(10).collect();
    let only_whole: Vec<&String> = whole.iter().filter(|l| crashed.binary_search(l).is_err()).take(10).collect();
    assert!(
        crashed == whole,
        "the finished batch differs from an uninterrupted run ({} and {} lines); only after the crash: {only_crashed:#?}; only in the uninterrupted run: {only_whole:#?}",
        crashed.len(),
        whole.len()
    );
}

async fn a_batch_killed_half_way_leaves_no_one_half_changed_and_finishes_the_same(db: Db) {
    let (csv, planned) = the_file();
    let total = planned.len() as i64;
    let dir = crate::cli::temp_dir();

    // The batch, killed once about half of it is applied.
    let (url, store) = directory(db).await;
    let mut child = import(&url, &dir, &csv, "killed").spawn().unwrap();
    let started = Instant::now();
    let applied_at_kill = loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "the import ended ({status}) before it could be killed half-way; make the batch larger\n{}",
                output(&dir, "killed")
            );
        }
        let applied = count(&store, "status = 'applied'").await;
        // Past half, off the job's 200-change pages, so that the kill lands among transactions.
        if applied >= total / 2 + 37 {
            child.kill().unwrap();
            let status = child.wait().unwrap();
            assert_eq!(status.signal(), Some(9), "killed by SIGKILL, not ended: {status}\n{}", output(&dir, "killed"));
            break applied;
        }
        assert!(started.elapsed() < Duration::from_secs(900), "the import is stuck at {applied} of {total}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    // On PostgreSQL the killed process's last transaction may still be ending on the server: a
    // COMMIT sent just before the kill is then applied after it. Count once its sessions are gone.
    if matches!(db, Db::Postgres) {
        for _ in 0..400 {
            let busy: i64 = sqlx::query(
                "SELECT COUNT(*) AS n FROM pg_stat_activity
                 WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'",
            )
            .fetch_one(store.pool())
            .await
            .unwrap()
            .try_get("n")
            .unwrap();
            if busy == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    let applied = count(&store, "status = 'applied'").await;
    let pending = count(&store, "status = 'pending'").await;
    eprintln!(
        "{db:?}: killed after {:.1} s with {applied_at_kill} of {total} applied; {applied} applied and {pending} pending after",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(applied + pending, total, "every change recorded, none failed or superseded");
    assert!(applied > 0 && pending > 0, "killed half-way: {applied} applied, {pending} pending");

    // No one is half-changed, and each kind was caught both done and not yet done.
    let tally = check_no_one_is_half_changed(&state(&store).await, &planned);
    for (kind, (done, waiting)) in &tally {
        assert!(*done > 0 && *waiting > 0, "{kind:?}: {done} applied, {waiting} pending at the kill");
    }

    // The same file again: nothing recorded twice, the rest applied.
    let finished = import_whole(&url, &dir, &csv, "finish");
    assert!(finished.contains(&format!("new 0, replacing a pending change 0, already recorded {total}")), "{finished}");
    assert!(finished.contains(&format!("applied now: {pending} (superseded 0, failed 0)")), "{finished}");
    assert_eq!(count(&store, "status = 'applied'").await, total);
    let tally = check_no_one_is_half_changed(&state(&store).await, &planned);
    assert!(tally.values().all(|(_, waiting)| *waiting == 0));
    // The command created the master key beside the file; the chain is keyed with it.
    let master_key = dir.join("sekimori-master.key");
    let master = sekimori::crypto::MasterKey::load_or_create(master_key.to_str().unwrap(), false).unwrap();
    store.set_audit_key(sekimori::audit::chain_key(&master)).unwrap();
    assert!(matches!(sekimori::audit::verify(&store).await.unwrap(), sekimori::audit::Verification::Intact { .. }));
    let crashed = dump(&store).await;

    // The same file, uninterrupted, on a fresh database.
    let (whole_url, whole_store) = directory(db).await;
    let whole_dir = crate::cli::temp_dir();
    let out = import_whole(&whole_url, &whole_dir, &csv, "whole");
    assert!(out.contains(&format!("applied now: {total} (superseded 0, failed 0)")), "{out}");
    let whole = dump(&whole_store).await;
    assert_same(&crashed, &whole);

    store.close().await;
    whole_store.close().await;
    drop_database(&url).await;
    drop_database(&whole_url).await;
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&whole_dir);
}

on_both_databases!(a_batch_killed_half_way_leaves_no_one_half_changed_and_finishes_the_same);
