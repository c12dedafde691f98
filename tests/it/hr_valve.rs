//! The HR safety valve: a file that would leave, suspend or move more active people than
//! `[hr] max_share_percent` or `max_people` allow is held whole — nothing recorded, nothing
//! applied, the would-be leaver still working — until an administrator confirms it (then the
//! job applies it) or discards it (then nothing of it ever is).

use sekimori::directory::types::format_date;
use sekimori::hr::changes;
use sqlx::Row;

use crate::common::{browser, location, log_in, query_of, token_request, Db, TestServer};
use crate::hr::{audited, authorize, can_log_in, introspect, sekimori_hr, today, zeimu, CALLBACK, PASSWORD};

const DAY: i64 = 86_400;

/// Writes `csv` as jinji.csv in a fresh directory and imports it with `hr_config`.
fn import(server: &TestServer, csv: &str, extra: &[&str], hr_config: &str) -> (Option<i32>, String, String) {
    let dir = crate::cli::temp_dir();
    let file = dir.join("jinji.csv");
    std::fs::write(&file, csv).unwrap();
    let mut args = vec!["import", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    sekimori_hr(server, &dir, &args, hr_config)
}

fn hr(server: &TestServer, args: &[&str]) -> (Option<i32>, String, String) {
    sekimori_hr(server, &crate::cli::temp_dir(), args, "")
}

/// `login_id` logs in to 税務 and gets an access token.
async fn access_token(server: &TestServer, secret: &str, login_id: &str) -> String {
    let response = log_in(&browser(), server, &authorize(server), login_id, PASSWORD).await;
    assert_eq!(response.status(), 303);
    let code = query_of(&location(&response))["code"].clone();
    let (status, tokens, _) = token_request(
        server,
        Some(("zeimu", secret)),
        &[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", CALLBACK)],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    tokens["access_token"].as_str().unwrap().to_owned()
}

async fn count_where(server: &TestServer, table: &str, condition: &str) -> i64 {
    sqlx::query(&format!("SELECT COUNT(*) AS n FROM {table} WHERE {condition}"))
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("n")
        .unwrap()
}

/// The batch ID a held import printed.
fn batch_id(stdout: &str) -> String {
    stdout.lines().find_map(|l| l.strip_prefix("batch ")).expect("a batch ID").trim().to_owned()
}

/// Three active people; the first is the would-be leaver, logged in to 税務.
async fn three_people(server: &TestServer, prefix: &str) -> (String, String) {
    for (i, login) in ["leaver", "second", "third"].iter().enumerate() {
        // Passwords may not be shared between people: only the leaver's is the one tests log in with.
        let password = if i == 0 { PASSWORD.to_owned() } else { format!("{PASSWORD}-{i}") };
        server.add_person(&format!("{prefix}{i}"), &format!("{prefix}-{login}").to_lowercase(), &password).await;
    }
    let secret = zeimu(server).await;
    let access = access_token(server, &secret, &format!("{prefix}-leaver").to_lowercase()).await;
    (secret, access)
}

async fn a_file_over_the_share_is_held_until_confirmed_then_applied(db: Db) {
    let server = TestServer::start(db).await;
    let (secret, access) = three_people(&server, "V1").await;
    let yesterday = format_date(today(&server).previous_day().unwrap());
    let file = format!("職員番号,異動区分,発令日\nV10,退職,{yesterday}\n");

    // A dry run says it would be held, and holds nothing.
    let (code, stdout, stderr) = import(&server, &file, &["--dry-run"], "max_share_percent = 10");
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    assert!(stdout.contains("保留されます") && stdout.contains("1 / 在職 3"), "{stdout}");
    assert_eq!(server.count("hr_batches").await, 0);

    // One leaver of three active people is 33 %, over 10 %: held, with the counts, the limit
    // and how to confirm.
    let (code, stdout, stderr) = import(&server, &file, &[], "max_share_percent = 10");
    assert_eq!(code, Some(3), "{stdout}{stderr}");
    assert!(stdout.contains("保留しました") && stdout.contains("1 / 在職 3 人 (33 %)"), "{stdout}");
    assert!(stdout.contains("10 % of active people (hr.max_share_percent)"), "{stdout}");
    let id = batch_id(&stdout);
    assert!(stdout.contains(&format!("sekimori hr confirm {id}")), "{stdout}");
    assert_eq!(server.count("person_changes").await, 0, "nothing of a held file is recorded");
    let held = audited(&server, "hr_batch.hold", &format!("hr_batch:{id}")).await;
    assert_eq!(
        (held.len(), held[0]["source"].as_str(), held[0]["affected"].as_u64()),
        (1, Some("csv:jinji.csv"), Some(1))
    );

    // The job finds nothing to do: the would-be leaver keeps working.
    let run = changes::apply_due(&server.app.store, server.app.clock.now() + DAY).await.unwrap();
    assert_eq!(run.applied, 0);
    assert!(introspect(&server, &secret, &access).await, "their token stays active");
    assert!(can_log_in(&server, "v1-leaver").await, "and they can still log in");

    // The administrator sees it, per section and kind.
    let (code, stdout, _) = hr(&server, &["batches"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains(&id) && stdout.contains("csv:jinji.csv"), "{stdout}");
    assert!(stdout.lines().any(|l| l.contains("leave") && l.trim_end().ends_with('1')), "{stdout}");

    // Confirmed: recorded and, being due, applied at once.
    let (code, stdout, stderr) = hr(&server, &["confirm", &id]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("confirmed") && stdout.contains("applied now: 1"), "{stdout}");
    assert!(!introspect(&server, &secret, &access).await, "the leaver's token is inactive");
    assert!(!can_log_in(&server, "v1-leaver").await);
    assert_eq!(audited(&server, "hr_batch.confirm", &format!("hr_batch:{id}")).await.len(), 1);
    let source: String = sqlx::query("SELECT source FROM person_changes")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get("source")
        .unwrap();
    assert_eq!(source, "csv:jinji.csv:2", "each change keeps its file and line");

    // A batch is decided once.
    let (code, _, stderr) = hr(&server, &["confirm", &id]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("no held batch"), "{stderr}");
    let (_, stdout, _) = hr(&server, &["batches"]);
    assert!(!stdout.contains(&id), "{stdout}");
    server.stop().await;
}

async fn a_discarded_batch_is_never_applied(db: Db) {
    let server = TestServer::start(db).await;
    let (secret, access) = three_people(&server, "V2").await;
    let yesterday = format_date(today(&server).previous_day().unwrap());
    let tomorrow = format_date(today(&server).next_day().unwrap());
    let file = format!("employee_number,change,effective_date\nV20,leave,{yesterday}\nV21,suspend,{tomorrow}\n");
    let (code, stdout, _) = import(&server, &file, &[], "max_share_percent = 10");
    assert_eq!(code, Some(3), "{stdout}");
    let id = batch_id(&stdout);

    let (code, stdout, stderr) = hr(&server, &["discard", &id]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(count_where(&server, "hr_batches", "status = 'discarded'").await, 1, "kept, as discarded");
    assert_eq!(audited(&server, "hr_batch.discard", &format!("hr_batch:{id}")).await.len(), 1);
    let (code, _, _) = hr(&server, &["confirm", &id]);
    assert_eq!(code, Some(1), "a discarded batch cannot be confirmed afterwards");

    changes::apply_due(&server.app.store, server.app.clock.now() + 3 * DAY).await.unwrap();
    assert_eq!(server.count("person_changes").await, 0);
    assert_eq!(count_where(&server, "people", "status = 'active'").await, 3);
    assert!(introspect(&server, &secret, &access).await);
    assert!(can_log_in(&server, "v2-leaver").await);
    server.stop().await;
}

async fn the_valve_holds_by_share_and_by_count_and_lets_a_small_file_through(db: Db) {
    let server = TestServer::start(db).await;
    let (secret, access) = three_people(&server, "V3").await;
    crate::hr::section(&server, "SEC-V").await;
    let tomorrow = format_date(today(&server).next_day().unwrap());
    let yesterday = format_date(today(&server).previous_day().unwrap());
    let moves = format!("職員番号,異動区分,発令日,所属コード\nV31,異動,{tomorrow},SEC-V\nV32,異動,{tomorrow},SEC-V\n");

    // By share: 2 of 3 (66 %) is over 50 %.
    let (code, stdout, _) = import(&server, &moves, &[], "max_share_percent = 50");
    assert_eq!(code, Some(3), "{stdout}");
    assert!(stdout.contains("hr.max_share_percent") && stdout.contains("SEC-V"), "{stdout}");
    // By count: 2 people is over 1, whatever the share.
    let (code, stdout, _) = import(&server, &moves, &[], "max_share_percent = 100\nmax_people = 1");
    assert_eq!(code, Some(3), "{stdout}");
    assert!(stdout.contains("1 people (hr.max_people)"), "{stdout}");
    assert_eq!(server.count("person_changes").await, 0);
    assert_eq!(server.count("hr_batches").await, 2);

    // Under both limits, the file is recorded as before; joins and updates do not count.
    let (code, stdout, stderr) = import(&server, &moves, &[], "max_share_percent = 100\nmax_people = 2");
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("new 2"), "{stdout}");
    let leaver = format!("employee_number,change,effective_date\nV30,leave,{yesterday}\n");
    let (code, stdout, stderr) = import(&server, &leaver, &[], "max_share_percent = 34");
    assert_eq!(code, Some(0), "1 of 3 is under 34 %: {stdout}{stderr}");
    assert!(stdout.contains("applied now: 1"), "{stdout}");
    assert!(!introspect(&server, &secret, &access).await);
    assert_eq!(server.count("hr_batches").await, 2);
    server.stop().await;
}

on_both_databases!(
    a_file_over_the_share_is_held_until_confirmed_then_applied,
    a_discarded_batch_is_never_applied,
    the_valve_holds_by_share_and_by_count_and_lets_a_small_file_through,
);
