//! `sekimori demo`: seeds a small sample municipality (関守市) so a newcomer can click through:
//! departments, sections and units with managers, about twenty people with accounts, and three
//! consuming systems, each owned by a section and declaring roles (one of them, the tax
//! inquiry system, lets nobody in without a role: its roles are asked for on マイページ and
//! approved by the managers). Passwords are random and printed once; there are no default
//! passwords.

use crate::access::catalog::{self, RoleSpec};
use crate::access::Classification;
use crate::audit::Actor;
use crate::directory::{self, LoginId, NewOrgUnit, NewPerson};
use crate::systems::{self, ClientType, NewClient};
use crate::{crypto, App, Error};

/// One demo person: employee number, names, kana, birth date, kind, unit code, login ID.
type DemoPerson = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    &'static str,
);

const UNITS: [(&str, &str, &str, &str, Option<&str>); 10] = [
    ("SOUMU", "総務部", "General Affairs Department", "department", None),
    ("SOUMU-SOUMU", "総務課", "General Affairs Section", "section", Some("SOUMU")),
    ("SOUMU-JOHO", "情報政策課", "Information Policy Section", "section", Some("SOUMU")),
    ("SOUMU-JOHO-SYS", "システム係", "Systems Unit", "unit", Some("SOUMU-JOHO")),
    ("ZAIMU", "財務部", "Finance Department", "department", None),
    ("ZAIMU-ZEIMU", "税務課", "Taxation Section", "section", Some("ZAIMU")),
    ("ZAIMU-ZEIMU-SHIMIN", "市民税係", "Municipal Tax Unit", "unit", Some("ZAIMU-ZEIMU")),
    ("FUKUSHI", "福祉部", "Welfare Department", "department", None),
    ("FUKUSHI-FUKUSHI", "福祉課", "Welfare Section", "section", Some("FUKUSHI")),
    ("KYOIKU-TOSHO", "図書館", "Library", "department", None),
];

const PEOPLE: [DemoPerson; 20] = [
    ("10001", "山田", "太郎", "ヤマダ", "タロウ", "1968-04-02", "regular", "SOUMU", "yamada.taro"),
    ("10002", "佐藤", "花子", "サトウ", "ハナコ", "1972-09-15", "regular", "SOUMU-SOUMU", "sato.hanako"),
    ("10003", "鈴木", "一郎", "スズキ", "イチロウ", "1975-01-20", "regular", "SOUMU-JOHO", "suzuki.ichiro"),
    ("10004", "高橋", "美咲", "タカハシ", "ミサキ", "1985-06-30", "regular", "SOUMU-JOHO-SYS", "takahashi.misaki"),
    ("10005", "田中", "健一", "タナカ", "ケンイチ", "1990-05-12", "regular", "SOUMU-JOHO-SYS", "tanaka.kenichi"),
    ("10006", "伊藤", "直子", "イトウ", "ナオコ", "1970-11-03", "regular", "ZAIMU", "ito.naoko"),
    ("10007", "渡辺", "誠", "ワタナベ", "マコト", "1974-02-14", "regular", "ZAIMU-ZEIMU", "watanabe.makoto"),
    ("10008", "中村", "由美", "ナカムラ", "ユミ", "1980-08-08", "regular", "ZAIMU-ZEIMU-SHIMIN", "nakamura.yumi"),
    (
        "10009",
        "小林",
        "大輔",
        "コバヤシ",
        "ダイスケ",
        "1992-12-24",
        "regular",
        "ZAIMU-ZEIMU-SHIMIN",
        "kobayashi.daisuke",
    ),
    ("10010", "加藤", "恵子", "カトウ", "ケイコ", "1958-03-10", "re_employed", "ZAIMU-ZEIMU-SHIMIN", "kato.keiko"),
    ("10011", "吉田", "修", "ヨシダ", "オサム", "1969-07-07", "regular", "FUKUSHI", "yoshida.osamu"),
    ("10012", "山本", "真理", "ヤマモト", "マリ", "1977-10-10", "regular", "FUKUSHI-FUKUSHI", "yamamoto.mari"),
    ("10013", "松本", "翔", "マツモト", "ショウ", "1995-04-01", "regular", "FUKUSHI-FUKUSHI", "matsumoto.sho"),
    ("10014", "井上", "さくら", "イノウエ", "サクラ", "1998-03-27", "part_time", "FUKUSHI-FUKUSHI", "inoue.sakura"),
    ("10015", "木村", "拓也", "キムラ", "タクヤ", "1973-05-05", "regular", "KYOIKU-TOSHO", "kimura.takuya"),
    ("10016", "林", "明美", "ハヤシ", "アケミ", "1988-09-09", "part_time", "KYOIKU-TOSHO", "hayashi.akemi"),
    ("H0017", "清水", "学", "シミズ", "マナブ", "1991-01-15", "dispatched", "SOUMU-JOHO-SYS", "shimizu.manabu"),
    ("R0018", "森", "優子", "モリ", "ユウコ", "1986-06-06", "temporary", "ZAIMU-ZEIMU-SHIMIN", "mori.yuko"),
    ("C0019", "池田", "浩", "イケダ", "ヒロシ", "1979-02-28", "contractor", "SOUMU-JOHO-SYS", "ikeda.hiroshi"),
    ("S0020", "橋本", "綾", "ハシモト", "アヤ", "1983-12-01", "designated_manager", "KYOIKU-TOSHO", "hashimoto.aya"),
];

/// Managers: unit code → employee number.
const MANAGERS: [(&str, &str); 10] = [
    ("SOUMU", "10001"),
    ("SOUMU-SOUMU", "10002"),
    ("SOUMU-JOHO", "10003"),
    ("SOUMU-JOHO-SYS", "10004"),
    ("ZAIMU", "10006"),
    ("ZAIMU-ZEIMU", "10007"),
    ("ZAIMU-ZEIMU-SHIMIN", "10008"),
    ("FUKUSHI", "10011"),
    ("FUKUSHI-FUKUSHI", "10012"),
    ("KYOIKU-TOSHO", "10015"),
];

/// Roles the demo systems declare: system, name, label, English label, classification, longest
/// grant and review interval in days, the roles it may not be held with.
type DemoRole = (
    &'static str,
    &'static str,
    &'static str,
    &'static str,
    Classification,
    Option<i64>,
    Option<i64>,
    &'static [&'static str],
);

const ROLES: [DemoRole; 6] = [
    ("zeimu", "auditor", "事務監査", "Audit", Classification::General, Some(365), Some(180), &[]),
    (
        "zeimu",
        "assessor",
        "賦課・更正",
        "Assessment and correction",
        Classification::Secret,
        Some(365),
        Some(90),
        &["auditor"],
    ),
    ("toshokan", "staff", "貸出・返却", "Loans and returns", Classification::General, None, Some(365), &[]),
    ("kazei", "inquiry", "課税状況の照会", "Look up tax status", Classification::General, None, Some(180), &[]),
    ("kazei", "bulk_export", "一括抽出", "Bulk extraction", Classification::Secret, Some(90), Some(90), &[]),
    (
        "kazei",
        "maintenance",
        "照会画面の保守",
        "Maintain the inquiry screens",
        Classification::General,
        None,
        Some(365),
        &[],
    ),
];

/// Systems that let nobody in without a role.
const REQUIRE_ROLE: [&str; 1] = ["kazei"];

/// What the demo created, for printing.
pub struct DemoSummary {
    pub logins: Vec<(String, String, String)>,
    pub clients: Vec<(String, String, Option<String>, Vec<String>)>,
}

pub async fn seed(app: &App) -> Result<Option<DemoSummary>, Error> {
    if directory::list_org_units(&app.store).await?.iter().any(|u| u.code == "SOUMU") {
        return Ok(None);
    }
    let actor = Actor::Cli;
    let now = app.clock.now();
    // Hash first: argon2 is slow and must not run inside the write transaction.
    let mut passwords = Vec::new();
    for _ in PEOPLE.iter() {
        let password = crypto::random_token(12);
        let hash = app.hasher.hash(password.clone()).await?;
        let fingerprint = crate::password::policy::fingerprint(&app.fingerprint_key, &password);
        passwords.push((password, hash, fingerprint));
    }
    let mut tx = app.store.begin().await?;
    let mut unit_ids = std::collections::HashMap::new();
    for (code, name, name_en, level, parent) in UNITS {
        let unit = directory::create_org_unit(
            &mut tx,
            &actor,
            now,
            NewOrgUnit {
                code: code.into(),
                name: name.into(),
                name_en: Some(name_en.into()),
                level: level.into(),
                parent_id: parent.and_then(|p| unit_ids.get(p).cloned()),
            },
        )
        .await?;
        unit_ids.insert(code, unit.id);
    }
    let mut person_ids = std::collections::HashMap::new();
    let mut logins = Vec::new();
    for (person, (password, hash, fingerprint)) in PEOPLE.iter().zip(passwords) {
        let (number, family, given, family_kana, given_kana, birth, kind, unit, login) = *person;
        let fixed_term = directory::PersonKind::parse(kind).map(|k| k.requires_end_date()).unwrap_or(false);
        let created = directory::create_person(
            &mut tx,
            &actor,
            now,
            NewPerson {
                employee_number: number.into(),
                family_name: family.into(),
                given_name: given.into(),
                family_name_kana: family_kana.into(),
                given_name_kana: given_kana.into(),
                birth_date: Some(birth.into()),
                kind: kind.into(),
                org_unit_id: unit_ids.get(unit).cloned(),
                email: Some(format!("{login}@city.sekimori.example")),
                start_date: "2020-04-01".into(),
                // A 31 March more than a year ahead, however late the demo is run.
                end_date: fixed_term.then(|| format!("{}-03-31", directory::today_in_japan(now).year() + 2)),
            },
        )
        .await?;
        let login_id = LoginId::parse(login).map_err(directory::DirectoryError::from)?;
        let initial = directory::InitialPassword { hash: &hash, fingerprint: &fingerprint, must_change: false };
        directory::create_account(&mut tx, &actor, now, &created.id, &login_id, Some(initial)).await?;
        person_ids.insert(number, created.id);
        logins.push((login.to_owned(), format!("{family} {given}"), password));
    }
    for (unit, number) in MANAGERS {
        if let (Some(unit_id), Some(person_id)) = (unit_ids.get(unit), person_ids.get(number)) {
            directory::set_org_unit_manager(&mut tx, &actor, now, unit_id, person_id).await?;
        }
    }
    let mut registered = Vec::new();
    let systems = [
        ("zeimu", "税務システム", ClientType::Confidential, "http://127.0.0.1:9001/callback", "ZAIMU-ZEIMU"),
        ("toshokan", "図書館システム", ClientType::Public, "http://127.0.0.1:9002/callback", "KYOIKU-TOSHO"),
        ("kazei", "課税照会システム", ClientType::Confidential, "http://127.0.0.1:9003/callback", "ZAIMU-ZEIMU"),
    ];
    for (id, name, client_type, redirect, owner) in systems {
        let (client, secret) = systems::register(
            &mut tx,
            &actor,
            now,
            &app.config.tokens,
            NewClient {
                client_id: Some(id.into()),
                name: name.into(),
                client_type,
                token_endpoint_auth_method: None,
                redirect_uris: vec![redirect.into()],
                post_logout_redirect_uris: vec![redirect.replace("/callback", "/")],
                scopes: None,
                id_token_signed_response_alg: None,
                require_pkce: None,
                access_token_ttl: None,
                owner_org_unit_id: unit_ids.get(owner).cloned(),
                grant_types: None,
                service_scopes: vec![],
                refresh_token_ttl: None,
                backchannel_logout_uri: None,
            },
        )
        .await?;
        registered.push((client.client_id, client.name, secret, client.redirect_uris));
    }
    for (client_id, name, label, label_en, classification, max_days, review_days, incompatible) in ROLES {
        let spec = RoleSpec {
            label: label.into(),
            label_en: Some(label_en.into()),
            classification,
            max_duration_days: max_days,
            review_interval_days: review_days,
            incompatible_with: incompatible.iter().map(|other| (*other).to_owned()).collect(),
        };
        catalog::declare_role(&mut tx, &actor, now, client_id, name, spec).await?;
    }
    for client_id in REQUIRE_ROLE {
        catalog::set_requires_role(&mut tx, &actor, now, client_id, true).await?;
    }
    tx.commit().await?;
    Ok(Some(DemoSummary { logins, clients: registered }))
}
