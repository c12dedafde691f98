//! Notices by e-mail, sent to a real SMTP server (aiosmtpd, tests/mail/smtp_sink.py, which
//! parses each message with Python's email package): Japanese subject and body as the person
//! reads them, only to those with an address, a bad address abandoned without holding up the
//! rest, retries while the relay is down and exactly one mail once it is up, abandonment after
//! `max_attempts`, one mail per notice with two nodes sending at once, notices marked not mailed
//! when mail is off, and a `[mail]` that cannot work refusing the start.

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use sekimori::backchannel::backoff;
use sekimori::clock::Clock;
use sekimori::config::{Config, MailConfig};
use sekimori::notify::{self, mail, Notice};
use sekimori::App;
use serde_json::{json, Value};
use sqlx::Row;
use tokio::io::AsyncBufReadExt;

use crate::common::{Db, TestServer};
use crate::hr::PASSWORD;

const FROM: &str = "関守 <sekimori@city.example.lg.jp>";

/// aiosmtpd on 127.0.0.1:`port`, writing what it receives to its own directory.
struct SmtpSink {
    child: tokio::process::Child,
    dir: PathBuf,
}

impl SmtpSink {
    async fn start(port: u16) -> SmtpSink {
        let dir = std::env::temp_dir().join(format!("sekimori-mail-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        // Its complaints go to a file: a pipe nobody reads could fill and stall it.
        let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mail/smtp_sink.py");
        let mut child = tokio::process::Command::new("python3")
            .arg(script)
            .arg(port.to_string())
            .arg(&dir)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the test SMTP server (tests/mail/smtp_sink.py)");
        let stdout = child.stdout.take().unwrap();
        let mut stdout = tokio::io::BufReader::new(stdout);
        let mut first = String::new();
        let ready = tokio::time::timeout(Duration::from_secs(30), stdout.read_line(&mut first)).await;
        if !matches!(ready, Ok(Ok(_)) if first.trim() == "ready") {
            let _ = child.start_kill();
            let status = child.wait().await.unwrap();
            let stderr = std::fs::read_to_string(dir.join("stderr.log")).unwrap_or_default();
            if status.code() == Some(3) {
                panic!(
                    "the mail tests need a real SMTP server and aiosmtpd is not installed: \
                     pip install aiosmtpd (or python3 -m pip install aiosmtpd)\n{stderr}"
                );
            }
            panic!("the test SMTP server did not start on port {port}: {stderr}");
        }
        SmtpSink { child, dir }
    }

    /// The messages received so far, oldest first.
    fn received(&self) -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut names: Vec<PathBuf> =
            entries.map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect();
        names.sort();
        names.iter().map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()).collect()
    }

    /// Waits until `n` messages have arrived, then a little longer to see that no more do.
    async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..300 {
            if self.received().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let received = self.received();
        assert_eq!(received.len(), n, "{received:#?}");
        received
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A port nobody listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `[mail]` for the relay on `port`.
fn mail_config(port: u16, enabled: bool, max_attempts: i64) -> impl FnOnce(&mut Config) {
    move |config: &mut Config| {
        config.mail =
            MailConfig { enabled, smtp_url: format!("smtp://127.0.0.1:{port}"), from: FROM.into(), max_attempts };
    }
}

/// How far ahead the clock of [`quiet_node`] runs.
const AHEAD: i64 = 365 * 86_400;

/// Another node of the deployment (same database and `[mail]`) that runs no background work,
/// with a clock a year ahead. The notices it writes fall due for it alone (to the served
/// node's mail worker they are a year away), so the test decides when mail goes and sees
/// every attempt.
async fn quiet_node(server: &TestServer) -> App {
    let clock = Clock::default();
    clock.advance(AHEAD);
    App::build(server.app.config.clone(), clock).await.expect("a quiet node builds")
}

/// Writes `notice` for `person_id` as the access module does, at `node`'s now; returns its id.
async fn tell(node: &App, person_id: &str, notice: &Notice<'_>) -> String {
    let ids = |node: &App| {
        let query = sqlx::query("SELECT id FROM notifications WHERE person_id = $1").bind(person_id.to_owned());
        let pool = node.store.pool().clone();
        async move {
            let rows = query.fetch_all(&pool).await.unwrap();
            rows.iter().map(|row| row.try_get::<String, _>("id").unwrap()).collect::<HashSet<String>>()
        }
    };
    let before = ids(node).await;
    let mut tx = node.store.begin().await.unwrap();
    notify::notify(&mut tx, node.clock.now(), person_id, notice).await.unwrap();
    tx.commit().await.unwrap();
    let new: Vec<String> = ids(node).await.difference(&before).cloned().collect();
    assert_eq!(new.len(), 1);
    new.into_iter().next().unwrap()
}

/// The mail state of a person's only notice.
#[derive(Debug)]
struct Outbox {
    id: String,
    status: String,
    to: Option<String>,
    attempts: i64,
    next_attempt_at: Option<i64>,
    last_error: Option<String>,
    sent_at: Option<i64>,
}

async fn outbox(server: &TestServer, person_id: &str) -> Outbox {
    let row = sqlx::query(
        "SELECT id, mail_status, mail_to, attempts, next_attempt_at, last_error, sent_at FROM notifications
         WHERE person_id = $1",
    )
    .bind(person_id)
    .fetch_one(server.app.store.pool())
    .await
    .unwrap();
    Outbox {
        id: row.try_get("id").unwrap(),
        status: row.try_get("mail_status").unwrap(),
        to: row.try_get("mail_to").unwrap(),
        attempts: row.try_get("attempts").unwrap(),
        next_attempt_at: row.try_get("next_attempt_at").unwrap(),
        last_error: row.try_get("last_error").unwrap(),
        sent_at: row.try_get("sent_at").unwrap(),
    }
}

/// A person with no e-mail address; returns the id.
async fn person_without_address(server: &TestServer, employee_number: &str) -> String {
    let (status, person) = server
        .admin(
            Method::POST,
            "/api/v1/people",
            Some(json!({
                "employee_number": employee_number, "family_name": "佐藤", "given_name": "花子",
                "family_name_kana": "サトウ", "given_name_kana": "ハナコ", "birth_date": "1991-02-03",
                "kind": "regular", "start_date": "2020-04-01"
            })),
        )
        .await;
    assert_eq!(status, 201, "{person}");
    person["id"].as_str().unwrap().to_owned()
}

async fn set_email(server: &TestServer, person_id: &str, email: &str) {
    sqlx::query("UPDATE people SET email = $1 WHERE id = $2")
        .bind(email)
        .bind(person_id)
        .execute(server.app.store.pool())
        .await
        .unwrap();
}

const DECIDED: Notice<'static> = Notice::RequestDecided {
    system: "税務システム",
    role: "課税担当",
    approved: true,
    reason: "承認者: 山田 一郎（2026-04-01 09:00）",
};

async fn notices_are_mailed_in_japanese_to_those_with_an_address(db: Db) {
    let port = free_port();
    let sink = SmtpSink::start(port).await;
    let server = TestServer::start_configured(db, mail_config(port, true, 8)).await;
    let node = quiet_node(&server).await;
    let suzuki = server.add_person("E3001", "suzuki", PASSWORD).await;
    let sato = person_without_address(&server, "E3002").await;
    // An address HR got wrong, and one the relay refuses.
    let broken = person_without_address(&server, "E3003").await;
    set_email(&server, &broken, "田中 at city.example.lg.jp").await;
    let refused = person_without_address(&server, "E3004").await;
    set_email(&server, &refused, "reject-me@city.example.lg.jp").await;
    let before = node.clock.now();
    for person in [&broken, &refused, &suzuki, &sato] {
        tell(&node, person, &DECIDED).await;
    }
    let no_address = outbox(&server, &sato).await;
    assert_eq!((no_address.status.as_str(), no_address.to), ("off", None));

    assert_eq!(mail::deliver_due(&node).await.unwrap(), 1);
    let received = sink.wait_for(1).await;
    let got = &received[0];
    let (subject, body) = DECIDED.render();
    assert_eq!(got["rcpt_tos"], json!(["suzuki@city.example.lg.jp"]));
    assert_eq!(got["to"], json!(["suzuki@city.example.lg.jp"]));
    assert_eq!(got["mail_from"], "sekimori@city.example.lg.jp");
    assert_eq!(got["from_address"], "sekimori@city.example.lg.jp");
    assert_eq!(got["from_name"], "関守");
    assert_eq!(got["subject"], subject.as_str());
    assert_eq!(got["subject"], "【関守】利用申請が承認されました: 税務システム / 課税担当");
    let wire = got["subject_on_the_wire"].as_str().unwrap();
    assert!(wire.is_ascii() && wire.to_ascii_lowercase().contains("=?utf-8?"), "encoded words: {wire}");
    assert_eq!((got["content_type"].as_str(), got["charset"].as_str()), (Some("text/plain"), Some("utf-8")));
    assert_eq!(got["body"].as_str().unwrap().trim_end(), body.trim_end());
    assert!(got["body"].as_str().unwrap().starts_with("税務システム の「課税担当」の利用申請が承認されました。"));
    let sent = outbox(&server, &suzuki).await;
    assert_eq!(got["message_id"], format!("<{}@city.example.lg.jp>", sent.id));
    assert_eq!(got["auto_submitted"], "auto-generated");
    assert!(got["date"].is_string());
    assert_eq!((sent.status.as_str(), sent.attempts, sent.last_error, sent.next_attempt_at), ("sent", 1, None, None));
    assert!(sent.sent_at.unwrap() >= before);

    // The bad address is abandoned with the reason, at once; the refused one waits for another
    // try with what the relay said; neither held up Suzuki's mail. No address, no mail.
    let abandoned = outbox(&server, &broken).await;
    assert_eq!((abandoned.status.as_str(), abandoned.attempts), ("abandoned", 1));
    assert!(abandoned.last_error.unwrap().contains("is not usable"));
    let waiting = outbox(&server, &refused).await;
    assert_eq!((waiting.status.as_str(), waiting.attempts), ("pending", 1));
    assert!(waiting.last_error.as_deref().unwrap().contains("550"), "{:?}", waiting.last_error);
    assert!(waiting.next_attempt_at.unwrap() >= before + backoff(1));
    let no_address = outbox(&server, &sato).await;
    assert_eq!((no_address.status.as_str(), no_address.attempts, no_address.last_error), ("off", 0, None));

    // Nothing is sent twice, and every notice is on its person's pages whatever the mail did.
    assert_eq!(mail::deliver_due(&node).await.unwrap(), 0);
    sink.wait_for(1).await;
    for person in [&suzuki, &sato, &broken, &refused] {
        let shown = notify::list_for_person(server.app.store.pool(), person, 10).await.unwrap();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].subject, subject);
    }
    node.store.close().await;
    server.stop().await;
    sink.stop().await;
}

async fn mail_waits_for_the_relay_and_goes_once(db: Db) {
    // Nothing listens on the relay's port yet.
    let port = free_port();
    let server = TestServer::start_configured(db, mail_config(port, true, 8)).await;
    let node = quiet_node(&server).await;
    let suzuki = server.add_person("E3011", "suzuki", PASSWORD).await;
    tell(&node, &suzuki, &Notice::RequestLapsed { system: "住民記録システム", role: "照会" }).await;

    let now = node.clock.now();
    assert_eq!(mail::deliver_due(&node).await.unwrap(), 0);
    let first = outbox(&server, &suzuki).await;
    assert_eq!((first.status.as_str(), first.attempts), ("pending", 1));
    assert!(!first.last_error.as_deref().unwrap_or_default().is_empty());
    assert!((now + backoff(1)..=node.clock.now() + backoff(1)).contains(&first.next_attempt_at.unwrap()));
    // Not again before the backoff has passed.
    assert_eq!(mail::deliver_due(&node).await.unwrap(), 0);
    assert_eq!(outbox(&server, &suzuki).await.attempts, 1);
    node.clock.advance(backoff(1) + 1);
    assert_eq!(mail::deliver_due(&node).await.unwrap(), 0);
    let second = outbox(&server, &suzuki).await;
    assert_eq!((second.status.as_str(), second.attempts), ("pending", 2));

    // The relay comes up: the mail still waits for its time, then goes once.
    let sink = SmtpSink::start(port).await;
    assert_eq!(mail::deliver_due(&node).await.unwrap(), 0);
    assert!(sink.received().is_empty());
    node.clock.advance(backoff(2) + 1);
    assert_eq!(mail::deliver_due(&node).await.unwrap(), 1);
    let received = sink.wait_for(1).await;
    assert_eq!(received[0]["subject"], "【関守】利用申請が期限切れになりました: 住民記録システム / 照会");
    let sent = outbox(&server, &suzuki).await;
    assert_eq!((sent.status.as_str(), sent.attempts, sent.last_error), ("sent", 3, None));
    node.clock.advance(7200);
    assert_eq!(mail::deliver_due(&node).await.unwrap(), 0);
    sink.wait_for(1).await;
    node.store.close().await;
    server.stop().await;
    sink.stop().await;
}

async fn mail_is_abandoned_after_max_attempts(db: Db) {
    let port = free_port();
    let server = TestServer::start_configured(db, mail_config(port, true, 3)).await;
    let node = quiet_node(&server).await;
    let suzuki = server.add_person("E3021", "suzuki", PASSWORD).await;
    tell(&node, &suzuki, &DECIDED).await;
    for attempt in 1..=3 {
        assert_eq!(mail::deliver_due(&node).await.unwrap(), 0);
        let state = outbox(&server, &suzuki).await;
        assert_eq!(state.attempts, attempt);
        assert!(state.last_error.is_some());
        let expected = if attempt < 3 { "pending" } else { "abandoned" };
        assert_eq!(state.status, expected, "after attempt {attempt}");
        node.clock.advance(backoff(attempt) + 1);
    }
    assert_eq!(outbox(&server, &suzuki).await.next_attempt_at, None);
    // Given up means given up: the relay's return changes nothing.
    let sink = SmtpSink::start(port).await;
    node.clock.advance(86_400);
    assert_eq!(mail::deliver_due(&node).await.unwrap(), 0);
    sink.wait_for(0).await;
    assert_eq!(outbox(&server, &suzuki).await.status, "abandoned");
    node.store.close().await;
    server.stop().await;
    sink.stop().await;
}

/// Mail on, two nodes on one database: both workers and the test itself send at once, and each
/// notice is mailed exactly once; then the workers alone send what comes next.
async fn two_nodes_mail_each_notice_once(db: Db) {
    let port = free_port();
    let sink = SmtpSink::start(port).await;
    let server = TestServer::start_configured(db, mail_config(port, true, 8)).await;
    let other = server.another_node().await;
    let suzuki = server.add_person("E3031", "suzuki", PASSWORD).await;
    // Twelve notices at once (one event telling of twelve grants), all due together.
    let roles: Vec<String> = (1..=12).map(|n| format!("照会{n}")).collect();
    let mut tx = server.app.store.begin().await.unwrap();
    for role in &roles {
        let notice = Notice::GrantEnded { system: "税務システム", role, reason: "期間満了" };
        notify::notify(&mut tx, server.app.clock.now(), &suzuki, &notice).await.unwrap();
    }
    tx.commit().await.unwrap();
    let ids: HashSet<String> = sqlx::query("SELECT id FROM notifications WHERE person_id = $1")
        .bind(&suzuki)
        .fetch_all(server.app.store.pool())
        .await
        .unwrap()
        .iter()
        .map(|row| row.try_get("id").unwrap())
        .collect();
    assert_eq!(ids.len(), 12);
    let senders = [server.app.clone(), other.app.clone()].map(|app| {
        tokio::spawn(async move {
            for _ in 0..5 {
                mail::deliver_due(&app).await.unwrap();
            }
        })
    });
    for sender in senders {
        sender.await.unwrap();
    }
    let received = sink.wait_for(12).await;
    let message_ids: HashSet<String> = received.iter().map(|m| m["message_id"].as_str().unwrap().to_owned()).collect();
    let expected: HashSet<String> = ids.iter().map(|id| format!("<{id}@city.example.lg.jp>")).collect();
    assert_eq!(message_ids, expected, "one mail per notice");
    let subjects: HashSet<&str> = received.iter().map(|m| m["subject"].as_str().unwrap()).collect();
    assert_eq!(subjects.len(), 12);
    let sent = sqlx::query("SELECT COUNT(*) AS n FROM notifications WHERE mail_status = 'sent' AND attempts = 1")
        .fetch_one(server.app.store.pool())
        .await
        .unwrap()
        .try_get::<i64, _>("n")
        .unwrap();
    assert_eq!(sent, 12);
    // The workers send by themselves: a notice written now arrives with nobody else asking.
    tell(&server.app, &suzuki, &Notice::ReviewOpened { scope: "税務システム", deadline: "2026-04-30" }).await;
    let received = sink.wait_for(13).await;
    assert!(received.iter().any(|m| m["subject"] == "【関守】利用権限の棚卸しが始まりました: 税務システム"));
    other.stop().await;
    server.stop().await;
    sink.stop().await;
}

/// Mail off (the default): what was queued for mail is marked not mailed by the worker, and
/// nothing is sent, even with a relay to hand; the notice is on the person's pages.
async fn with_mail_off_queued_notices_are_marked_not_mailed(db: Db) {
    let port = free_port();
    let sink = SmtpSink::start(port).await;
    let server = TestServer::start_configured(db, mail_config(port, false, 8)).await;
    let suzuki = server.add_person("E3041", "suzuki", PASSWORD).await;
    tell(&server.app, &suzuki, &DECIDED).await;
    // The worker marks it by itself (every ten seconds).
    for _ in 0..150 {
        if outbox(&server, &suzuki).await.status == "off" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let marked = outbox(&server, &suzuki).await;
    assert_eq!((marked.status.as_str(), marked.attempts, marked.next_attempt_at), ("off", 0, None));
    assert_eq!(mail::mark_not_mailed(&server.app).await.unwrap(), 0);
    let sato = person_without_address(&server, "E3042").await;
    set_email(&server, &sato, "sato@city.example.lg.jp").await;
    tell(&server.app, &sato, &Notice::RequestLapsed { system: "税務システム", role: "照会" }).await;
    assert!(mail::mark_not_mailed(&server.app).await.unwrap() <= 1, "the worker may have marked it first");
    assert_eq!(outbox(&server, &sato).await.status, "off");
    sink.wait_for(0).await;
    let shown = notify::list_for_person(server.app.store.pool(), &suzuki, 10).await.unwrap();
    assert_eq!(shown.len(), 1);
    server.stop().await;
    sink.stop().await;
}

/// The mail path end to end: an employee's request reaches the approving manager's mailbox
/// through the served node's own mail worker, and the decision reaches the employee's.
async fn a_request_mails_its_approver_and_the_decision_its_requester(db: Db) {
    use sekimori::access::{catalog, requests, Classification};
    let port = free_port();
    let sink = SmtpSink::start(port).await;
    let server = TestServer::start_configured(db, mail_config(port, true, 16)).await;
    let unit = |code: &'static str, level: &'static str, parent: Option<String>| {
        let server = &server;
        async move {
            let (status, body) = server
                .admin(
                    reqwest::Method::POST,
                    "/api/v1/org-units",
                    Some(json!({"code": code, "name": code, "level": level, "parent_id": parent})),
                )
                .await;
            assert_eq!(status, 201, "{body}");
            body["id"].as_str().unwrap().to_owned()
        }
    };
    let department = unit("SOMU", "department", None).await;
    let section = unit("ZEIMU", "section", Some(department)).await;
    let manager = server.add_person("E3101", "kacho", "yamabiko-no-koe-2026").await;
    let (status, body) = server
        .admin(
            reqwest::Method::PUT,
            &format!("/api/v1/org-units/{section}/manager"),
            Some(json!({"person_id": manager})),
        )
        .await;
    assert!(status < 300, "{body}");
    let (status, body) = server
        .admin(
            reqwest::Method::POST,
            "/api/v1/people",
            Some(json!({"employee_number": "E3102", "family_name": "鈴木", "given_name": "花子",
                        "family_name_kana": "スズキ", "given_name_kana": "ハナコ", "kind": "regular",
                        "org_unit_id": section, "email": "suzuki@city.example.lg.jp", "start_date": "2020-04-01"})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let employee = body["id"].as_str().unwrap().to_owned();
    server
        .add_client(json!({"client_id": "zeimu", "name": "税務システム", "client_type": "confidential",
                           "redirect_uris": ["http://127.0.0.1:9001/callback"], "owner_org_unit_id": section}))
        .await;
    let now = server.app.clock.now();
    let mut tx = server.app.store.begin().await.unwrap();
    let spec = catalog::RoleSpec {
        label: "課税担当".into(),
        label_en: None,
        classification: Classification::General,
        max_duration_days: None,
        review_interval_days: None,
        incompatible_with: vec![],
    };
    catalog::declare_role(&mut tx, &sekimori::audit::Actor::Cli, now, "zeimu", "assessor", spec).await.unwrap();
    let request = requests::submit(
        &mut tx,
        &server.app.config.access,
        now,
        &employee,
        requests::NewRequest {
            client_id: "zeimu".into(),
            role: "assessor".into(),
            reason: "住民税の賦課事務のため".into(),
            end_date: None,
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // The served node's own worker mails the approver (mail on: it sends every second).
    let received = sink.wait_for(1).await;
    assert_eq!(received[0]["rcpt_tos"], json!(["kacho@city.example.lg.jp"]));
    assert_eq!(received[0]["subject"], "【関守】承認待ちの申請があります: 税務システム / 課税担当");
    assert!(received[0]["body"].as_str().unwrap().contains("住民税の賦課事務のため"));

    let mut tx = server.app.store.begin().await.unwrap();
    requests::decide(&mut tx, server.app.clock.now(), &manager, &request.id, true, "").await.unwrap();
    tx.commit().await.unwrap();
    let received = sink.wait_for(2).await;
    assert_eq!(received[1]["rcpt_tos"], json!(["suzuki@city.example.lg.jp"]));
    assert_eq!(received[1]["subject"], "【関守】利用申請が承認されました: 税務システム / 課税担当");
    server.stop().await;
    sink.stop().await;
}

on_both_databases!(
    a_request_mails_its_approver_and_the_decision_its_requester,
    notices_are_mailed_in_japanese_to_those_with_an_address,
    mail_waits_for_the_relay_and_goes_once,
    mail_is_abandoned_after_max_attempts,
    two_nodes_mail_each_notice_once,
    with_mail_off_queued_notices_are_marked_not_mailed,
);

/// A `[mail]` that is on but cannot work refuses the start and says why, without repeating a
/// password from the relay's URL.
#[test]
fn a_mail_setting_that_cannot_work_refuses_the_start() {
    let dir = crate::cli::temp_dir();
    for (mail, named) in [
        ("smtp_url = 'smtp://relay:s3cret@relay.example?tls=maybe'", "mail.smtp_url is not usable"),
        ("smtp_url = 'mail.example'", "mail.smtp_url is not usable"),
        ("from = 'Sekimori'", "mail.from is not an e-mail address"),
    ] {
        std::fs::write(dir.join("mail.toml"), format!("[mail]\nenabled = true\n{mail}\n")).unwrap();
        let output = crate::cli::sekimori(&dir).args(["--config", "mail.toml", "migrate"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(named), "{mail}: {stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
    }
    assert!(!dir.join("sekimori.db").exists(), "nothing was started");
    let _ = std::fs::remove_dir_all(&dir);
}
