//! R19 (鳥栖 規則 第26条, 江戸川区 基準 第32条・第29条): the self-inspection report (自己点検).
//! Each section lists what an inspector must look at, and every row names the article it
//! serves: shared IDs (R1), cross-section grants (R5), holders of administrative rights (R7),
//! unused accounts, passwords past their age (R10), unused cards (R13), grants due for review,
//! leavers who still hold something (R2), and each section's figures.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Serialize;
use sqlx::Row;

use super::roster::{self, Named, Roster};
use super::CsvSheet;
use crate::clock::UnixTime;
use crate::config::Config;
use crate::directory::{today_in_japan, types::format_date, PersonKind};
use crate::store::Store;

/// The consuming system whose roles are the administrative rights (the admin console).
pub const ADMIN_CONSOLE_CLIENT_ID: &str = "sekimori-console";

/// One thing an inspector should look at.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// The article this row serves, e.g. `EK§17-4 (R10)`.
    pub article: &'static str,
    #[serde(flatten)]
    pub person: Named,
    /// What is held or found: a role, a card, a token, an account.
    pub subject: String,
    pub detail: String,
    /// The date that matters for the row (an end date, a last use), `YYYY-MM-DD`.
    pub date: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Section {
    pub key: &'static str,
    pub title: &'static str,
    pub title_en: &'static str,
    pub article: &'static str,
    /// False when this version of Sekimori keeps no record of it (see `note`).
    pub recorded: bool,
    pub note: Option<&'static str>,
    pub rows: Vec<Finding>,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnitCount {
    pub key: &'static str,
    pub count: i64,
}

/// One org unit's figures: people in service and the rows of each section that are its people's.
#[derive(Debug, Clone, Serialize)]
pub struct UnitFigures {
    pub article: &'static str,
    pub org_unit: String,
    pub people: i64,
    pub counts: Vec<UnitCount>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComplianceReport {
    /// The day the report is as of, `YYYY-MM-DD` (Japan).
    pub as_of: String,
    pub sections: Vec<Section>,
    pub units: Vec<UnitFigures>,
}

/// A live grant with its role and system.
struct LiveGrant {
    person_id: String,
    client_id: String,
    system_name: String,
    owner: Option<String>,
    role_label: String,
    classification: String,
    cross_section: bool,
    end_date: Option<String>,
    last_confirmed_at: UnixTime,
    review_interval_days: Option<i64>,
}

impl LiveGrant {
    fn subject(&self) -> String {
        format!("{} ({}) / {} [{}]", self.system_name, self.client_id, self.role_label, self.classification)
    }
}

/// Builds the report as of `now`.
pub async fn build(store: &Store, config: &Config, now: UnixTime) -> Result<ComplianceReport, crate::Error> {
    let today = format_date(today_in_japan(now));
    let roster = Roster::load(store).await?;
    let grants = live_grants(store, &today).await?;
    let org = OrgTree::load(store, &today).await?;
    let reports = &config.reports;
    let sections = vec![
        shared_ids(store, &roster).await?,
        section(
            "cross_section",
            "所管外の職員への付与",
            "Grants to staff of other sections",
            "T§15-2 (R5)",
            grants
                .iter()
                .filter_map(|g| {
                    let outside = g.owner.as_deref().is_some_and(|owner| !org.works_in(&roster, &g.person_id, owner));
                    let why = match (g.cross_section, outside) {
                        (true, _) => "所管外として承認 granted cross-section",
                        (false, true) => "現在は所管の外 now outside the owning section",
                        (false, false) => return None,
                    };
                    Some(finding("T§15-2 (R5)", roster.named(&g.person_id), g.subject(), why, g.end_date.clone()))
                })
                .collect(),
        ),
        admin_holders(store, &roster, &grants, now).await?,
        section(
            "unused_accounts",
            "長期間使われていないアカウント",
            "Accounts unused for a long time",
            "T§15-1, EK§17-3 (R2)",
            roster::dormant_accounts(store, &roster, now, reports.dormant_days)
                .await?
                .into_iter()
                .map(|d| {
                    let detail = format!(
                        "{} 日以上ログインなし / no login for {} days",
                        reports.dormant_days, reports.dormant_days
                    );
                    let subject = "アカウント account".to_owned();
                    finding("T§15-1, EK§17-3 (R2)", d.person, subject, &detail, d.last_login)
                })
                .collect(),
        ),
        section(
            "password_age",
            "有効期間を過ぎたパスワード",
            "Passwords past their maximum age",
            "EK§17-4 (R10)",
            passwords_past_age(&roster, config, now),
        ),
        unused_cards(store, &roster, now, reports.card_unused_days).await?,
        section(
            "review_due",
            "見直し時期の来た付与",
            "Grants due for review",
            "EK§17-2 (R4), T§26 (R19)",
            grants
                .iter()
                .filter(|g| {
                    let days = g.review_interval_days.unwrap_or(reports.review_days);
                    g.last_confirmed_at.saturating_add(days.saturating_mul(86_400)) <= now
                })
                .map(|g| {
                    let confirmed = super::japan_date(g.last_confirmed_at);
                    let detail = format!("最終確認 last confirmed {confirmed}");
                    finding(
                        "EK§17-2 (R4), T§26 (R19)",
                        roster.named(&g.person_id),
                        g.subject(),
                        &detail,
                        Some(confirmed),
                    )
                })
                .collect(),
        ),
        leavers_holding(store, &roster, &grants, &today, now).await?,
    ];
    let units = unit_figures(&roster, &sections, &today);
    Ok(ComplianceReport { as_of: today, sections, units })
}

fn section(
    key: &'static str,
    title: &'static str,
    title_en: &'static str,
    article: &'static str,
    rows: Vec<Finding>,
) -> Section {
    let mut rows = rows;
    rows.sort_by(|a, b| {
        (&a.person.org_unit, &a.person.employee_number, &a.subject).cmp(&(
            &b.person.org_unit,
            &b.person.employee_number,
            &b.subject,
        ))
    });
    Section { key, title, title_en, article, recorded: true, note: None, rows }
}

fn finding(article: &'static str, person: Named, subject: String, detail: &str, date: Option<String>) -> Finding {
    Finding { article, person, subject, detail: detail.to_owned(), date }
}

async fn live_grants(store: &Store, today: &str) -> Result<Vec<LiveGrant>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT g.person_id, g.client_id, g.cross_section, g.end_date, g.last_confirmed_at,
                r.label, r.classification, r.review_interval_days, c.name AS system_name, c.owner_org_unit_id
         FROM access_grants g JOIN system_roles r ON r.id = g.role_id JOIN clients c ON c.client_id = g.client_id
         WHERE g.ended_at IS NULL AND (g.end_date IS NULL OR g.end_date >= $1)",
    )
    .bind(today)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(LiveGrant {
                person_id: r.try_get("person_id")?,
                client_id: r.try_get("client_id")?,
                system_name: r.try_get("system_name")?,
                owner: r.try_get("owner_org_unit_id")?,
                role_label: r.try_get("label")?,
                classification: r.try_get("classification")?,
                cross_section: r.try_get::<i64, _>("cross_section")? != 0,
                end_date: r.try_get("end_date")?,
                last_confirmed_at: r.try_get("last_confirmed_at")?,
                review_interval_days: r.try_get("review_interval_days")?,
            })
        })
        .collect()
}

/// The org tree and today's concurrent posts, to tell whether a person works in a section.
struct OrgTree {
    parents: HashMap<String, Option<String>>,
    posts: HashMap<String, Vec<String>>,
}

impl OrgTree {
    async fn load(store: &Store, today: &str) -> Result<OrgTree, sqlx::Error> {
        let pool = store.pool();
        let mut parents = HashMap::new();
        for row in sqlx::query("SELECT id, parent_id FROM org_units").fetch_all(pool).await? {
            parents.insert(row.try_get("id")?, row.try_get("parent_id")?);
        }
        let mut posts: HashMap<String, Vec<String>> = HashMap::new();
        let rows = sqlx::query(
            "SELECT person_id, org_unit_id FROM person_posts
             WHERE start_date <= $1 AND (end_date IS NULL OR end_date >= $1)",
        )
        .bind(today)
        .fetch_all(pool)
        .await?;
        for row in rows {
            posts.entry(row.try_get("person_id")?).or_default().push(row.try_get("org_unit_id")?);
        }
        Ok(OrgTree { parents, posts })
    }

    /// Whether the person works in `section` or a unit below it (as `access::org::works_in`).
    fn works_in(&self, roster: &Roster, person_id: &str, section: &str) -> bool {
        let own = roster.members.get(person_id).and_then(|m| m.named.org_unit_id.clone());
        let posts = self.posts.get(person_id).into_iter().flatten().cloned();
        own.into_iter().chain(posts).any(|unit| {
            let mut seen = HashSet::new();
            let mut next = Some(unit);
            while let Some(id) = next.take() {
                if id == section {
                    return true;
                }
                if !seen.insert(id.clone()) {
                    break;
                }
                next = self.parents.get(&id).cloned().flatten();
            }
            false
        })
    }
}

/// R1: shared IDs exist only as exception records (`directory::shared`), listed in every report:
/// the login ID, the person responsible, the justification and approver, the last day of use.
async fn shared_ids(store: &Store, roster: &Roster) -> Result<Section, sqlx::Error> {
    const ARTICLE: &str = "EK§17-2 (R1)";
    let mut section = section("shared_ids", "共用ID（例外）", "Shared IDs (exceptions)", ARTICLE, Vec::new());
    let records = sqlx::query(
        "SELECT login_id, owner_person_id, approver_person_id, justification, expires_on FROM shared_ids
         WHERE ended_at IS NULL ORDER BY expires_on, login_id",
    )
    .fetch_all(store.pool())
    .await?;
    for record in records {
        let approver = roster.named(&record.try_get::<String, _>("approver_person_id")?);
        let justification: String = record.try_get("justification")?;
        section.rows.push(finding(
            ARTICLE,
            roster.named(&record.try_get::<String, _>("owner_person_id")?),
            record.try_get("login_id")?,
            &format!("理由 justification: {justification} / 承認 approved by: {}", approver.name),
            Some(record.try_get("expires_on")?),
        ));
    }
    Ok(section)
}

/// R7: who holds administrative rights: grants on the admin console's system, and the API
/// tokens (machines and the first administrator) that are live.
async fn admin_holders(
    store: &Store,
    roster: &Roster,
    grants: &[LiveGrant],
    now: UnixTime,
) -> Result<Section, sqlx::Error> {
    const ARTICLE: &str = "EK§18 (R7)";
    let mut rows: Vec<Finding> = grants
        .iter()
        .filter(|g| g.client_id == ADMIN_CONSOLE_CLIENT_ID)
        .map(|g| {
            finding(
                ARTICLE,
                roster.named(&g.person_id),
                g.role_label.clone(),
                "管理者ロール administrative role",
                g.end_date.clone(),
            )
        })
        .collect();
    let tokens =
        sqlx::query("SELECT name, scopes, expires_at FROM api_tokens WHERE revoked_at IS NULL AND expires_at > $1")
            .bind(now)
            .fetch_all(store.pool())
            .await?;
    for token in tokens {
        let name: String = token.try_get("name")?;
        let scopes: String = token.try_get("scopes")?;
        let expires: i64 = token.try_get("expires_at")?;
        rows.push(finding(
            ARTICLE,
            Named::default(),
            format!("API トークン token: {name}"),
            &scopes,
            Some(super::japan_date(expires)),
        ));
    }
    Ok(section("admin_roles", "管理者権限の保持者", "Holders of administrative rights", ARTICLE, rows))
}

fn passwords_past_age(roster: &Roster, config: &Config, now: UnixTime) -> Vec<Finding> {
    let today = super::japan_date(now);
    roster
        .members
        .values()
        .filter(|m| m.account_active && m.in_service(&today) && m.password_set)
        .filter_map(|m| {
            let kind = PersonKind::parse(&m.kind).ok()?;
            let changed = m.password_changed_at?;
            let expires = crate::password::policy::expires_at(&config.password, kind, changed)?;
            (expires <= now).then(|| {
                let detail = format!(
                    "最終変更 changed {}、有効 {} 日 / max {} days",
                    super::japan_date(changed),
                    crate::password::policy::max_age_days(&config.password, kind),
                    crate::password::policy::max_age_days(&config.password, kind)
                );
                let subject = "パスワード password".to_owned();
                finding("EK§17-4 (R10)", m.named.clone(), subject, &detail, Some(super::japan_date(expires)))
            })
        })
        .collect()
}

async fn unused_cards(store: &Store, roster: &Roster, now: UnixTime, days: i64) -> Result<Section, sqlx::Error> {
    const ARTICLE: &str = "EK§11-2(1) (R13)";
    let rows = sqlx::query(
        "SELECT person_id, label, management_number, created_at, last_used_at FROM authenticators
         WHERE status = 'active' AND COALESCE(last_used_at, created_at) <= $1",
    )
    .bind(now - days.saturating_mul(86_400))
    .fetch_all(store.pool())
    .await?;
    let mut found = Vec::new();
    for row in rows {
        let person_id: String = row.try_get("person_id")?;
        let label: String = row.try_get("label")?;
        let number: Option<String> = row.try_get("management_number")?;
        let last_used: Option<i64> = row.try_get("last_used_at")?;
        let created: i64 = row.try_get("created_at")?;
        let subject = match number {
            Some(number) => format!("{label} ({number})"),
            None => label,
        };
        let detail = match last_used {
            Some(_) => format!("{days} 日以上使われていない / not used for {days} days"),
            None => format!("登録 {} 以来未使用 / never used since enrolled", super::japan_date(created)),
        };
        found.push(finding(ARTICLE, roster.named(&person_id), subject, &detail, last_used.map(super::japan_date)));
    }
    Ok(section("unused_cards", "使われていないカード", "Cards not used", ARTICLE, found))
}

/// R2: people past their end date, or retired, who still hold an account, a session, a grant
/// or a card.
async fn leavers_holding(
    store: &Store,
    roster: &Roster,
    grants: &[LiveGrant],
    today: &str,
    now: UnixTime,
) -> Result<Section, sqlx::Error> {
    const ARTICLE: &str = "T§15-1, EK§17-3 (R2)";
    let per_person = |sql: &'static str, bind: Option<i64>| async move {
        let mut query = sqlx::query(sql);
        if let Some(value) = bind {
            query = query.bind(value);
        }
        let mut counts: HashMap<String, i64> = HashMap::new();
        for row in query.fetch_all(store.pool()).await? {
            counts.insert(row.try_get("person_id")?, row.try_get("n")?);
        }
        Ok::<_, sqlx::Error>(counts)
    };
    let sessions = per_person(
        "SELECT person_id, COUNT(*) AS n FROM sessions WHERE revoked_at IS NULL AND absolute_expires_at > $1 GROUP BY person_id",
        Some(now),
    )
    .await?;
    let cards = per_person(
        "SELECT person_id, COUNT(*) AS n FROM authenticators WHERE status = 'active' GROUP BY person_id",
        None,
    )
    .await?;
    let mut held_grants: BTreeMap<&str, i64> = BTreeMap::new();
    for grant in grants {
        *held_grants.entry(grant.person_id.as_str()).or_default() += 1;
    }
    let mut rows = Vec::new();
    for member in roster.members.values() {
        let ended = member.status == "retired" || member.end_date.as_deref().is_some_and(|end| end < today);
        if !ended {
            continue;
        }
        let id = member.named.person_id.as_str();
        let mut holds = Vec::new();
        if member.account_active {
            holds.push("有効なアカウント active account".to_owned());
        }
        for (what, count) in [
            ("セッション sessions", sessions.get(id)),
            ("付与 grants", held_grants.get(id)),
            ("カード cards", cards.get(id)),
        ] {
            if let Some(n) = count.filter(|n| **n > 0) {
                holds.push(format!("{what} {n}"));
            }
        }
        if holds.is_empty() {
            continue;
        }
        let end = member.end_date.clone();
        let subject = format!("状態 status {}、終了日 end {}", member.status, end.as_deref().unwrap_or("-"));
        rows.push(finding(ARTICLE, member.named.clone(), subject, &holds.join("、"), end));
    }
    Ok(section(
        "leavers_holding",
        "終了日を過ぎてなお保持している職員",
        "People past their end date who still hold something",
        ARTICLE,
        rows,
    ))
}

/// Each org unit's figures: people in service, and each section's rows that are its people's.
fn unit_figures(roster: &Roster, sections: &[Section], today: &str) -> Vec<UnitFigures> {
    let none = "(所属なし none)".to_owned();
    let unit_of = |named: &Named| if named.org_unit.is_empty() { none.clone() } else { named.org_unit.clone() };
    let mut units: BTreeMap<String, UnitFigures> = BTreeMap::new();
    let empty = |org_unit: String| UnitFigures {
        article: "T§26, EK§32 (R19)",
        org_unit,
        people: 0,
        counts: sections.iter().filter(|s| s.recorded).map(|s| UnitCount { key: s.key, count: 0 }).collect(),
    };
    for member in roster.members.values().filter(|m| m.in_service(today)) {
        let unit = unit_of(&member.named);
        units.entry(unit.clone()).or_insert_with(|| empty(unit)).people += 1;
    }
    for section in sections.iter().filter(|s| s.recorded) {
        for row in &section.rows {
            // API tokens belong to no person and no unit.
            if row.person.person_id.is_empty() {
                continue;
            }
            let unit = unit_of(&row.person);
            let figures = units.entry(unit.clone()).or_insert_with(|| empty(unit));
            if let Some(count) = figures.counts.iter_mut().find(|c| c.key == section.key) {
                count.count += 1;
            }
        }
    }
    units.into_values().collect()
}

/// The report as one CSV sheet, a row per finding, then the units' figures.
pub fn to_csv(report: &ComplianceReport) -> Result<Vec<u8>, csv::Error> {
    let mut sheet = CsvSheet::new(&[
        "section",
        "article",
        "employee_number",
        "name",
        "org_unit",
        "login_id",
        "subject",
        "detail",
        "date",
    ])?;
    for section in &report.sections {
        if !section.recorded {
            let note = section.note.unwrap_or_default();
            sheet.row([section.key, section.article, "", "", "", "", "", note, ""])?;
        }
        for row in &section.rows {
            let p = &row.person;
            sheet.row([
                section.key,
                row.article,
                &p.employee_number,
                &p.name,
                &p.org_unit,
                p.login_id.as_deref().unwrap_or_default(),
                &row.subject,
                &row.detail,
                row.date.as_deref().unwrap_or_default(),
            ])?;
        }
    }
    for unit in &report.units {
        let figures: Vec<String> = std::iter::once(format!("people={}", unit.people))
            .chain(unit.counts.iter().map(|c| format!("{}={}", c.key, c.count)))
            .collect();
        sheet.row(["unit_figures", unit.article, "", "", &unit.org_unit, "", "", &figures.join(" "), ""])?;
    }
    sheet.finish()
}
