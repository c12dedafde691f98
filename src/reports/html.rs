//! The compliance report as a printable page (A4, Japanese first, English with `lang=en`): one
//! self-contained document whose only style is inline, so that a file written by the CLI prints
//! the same as the page the admin listener serves (with a CSP that allows that style alone).

use askama::Template;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::compliance::{ComplianceReport, Finding};
use crate::clock::UnixTime;
use crate::web::i18n::Lang;

/// The page's style: screen and print (A4 portrait, header rows repeated on every page).
const CSS: &str = "\
@page { size: A4; margin: 14mm 12mm; }
* { box-sizing: border-box; }
body { font-family: 'IPAPGothic', 'IPAexGothic', 'Noto Sans CJK JP', 'Hiragino Sans', 'Yu Gothic', sans-serif; \
font-size: 9.5pt; line-height: 1.45; color: #111; margin: 0 auto; max-width: 190mm; padding: 8mm 0; }
h1 { font-size: 16pt; margin: 0 0 2mm; }
h2 { font-size: 11.5pt; margin: 0; display: inline; }
.org { margin: 0; color: #333; }
.head { display: flex; justify-content: space-between; align-items: flex-start; gap: 6mm; \
border-bottom: 2px solid #111; padding-bottom: 3mm; margin-bottom: 5mm; }
.head p { margin: 0; }
table { width: 100%; border-collapse: collapse; margin: 0 0 6mm; }
caption { text-align: left; padding: 0 0 1.5mm; }
th, td { border: 1px solid #777; padding: 1mm 1.5mm; vertical-align: top; text-align: left; overflow-wrap: anywhere; }
thead th { background: #e8e8e8; white-space: nowrap; }
tbody th { font-weight: normal; }
thead { display: table-header-group; }
tr { break-inside: avoid; }
.num { text-align: right; white-space: nowrap; }
.date, .nowrap { white-space: nowrap; }
.article { font-size: 8pt; color: #333; white-space: nowrap; }
.count { font-size: 9pt; font-weight: normal; }
.note, .none { margin: 1mm 0 6mm; }
.note { border-left: 3px solid #a60; padding-left: 2mm; }
section { margin-bottom: 2mm; }
section > h2 { display: block; margin-bottom: 1mm; }
table.units thead th { white-space: normal; font-size: 8pt; vertical-align: bottom; }
table.units th[scope=row] { min-width: 38mm; }
table.sign { width: auto; margin: 0; }
table.sign caption { font-size: 8pt; }
table.sign th { font-size: 8pt; width: 22mm; text-align: center; }
table.sign td { height: 16mm; }
a { color: inherit; }
footer { border-top: 1px solid #777; font-size: 8pt; color: #333; padding-top: 2mm; }
@media print { body { padding: 0; max-width: none; } a { text-decoration: none; } }
";

/// The Content-Security-Policy a served report carries: no script, nothing loaded, and only
/// this page's own inline style.
pub fn compliance_csp() -> String {
    let hash = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(CSS.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
}

struct Labels {
    product: &'static str,
    title: &'static str,
    as_of: &'static str,
    generated: &'static str,
    sign_caption: &'static str,
    inspector: &'static str,
    approver: &'static str,
    summary: &'static str,
    item: &'static str,
    article: &'static str,
    count: &'static str,
    rows: &'static str,
    none: &'static str,
    not_recorded: &'static str,
    not_recorded_short: &'static str,
    name: &'static str,
    employee_number: &'static str,
    org_unit: &'static str,
    login_id: &'static str,
    subject: &'static str,
    detail: &'static str,
    date: &'static str,
    units: &'static str,
    people: &'static str,
    footer: &'static str,
}

const JA: Labels = Labels {
    product: "関守 Sekimori",
    title: "自己点検報告書（アクセス管理）",
    as_of: "基準日",
    generated: "作成",
    sign_caption: "確認欄",
    inspector: "点検者",
    approver: "統括",
    summary: "点検項目の概要",
    item: "点検項目",
    article: "条文",
    count: "件数",
    rows: "件",
    none: "該当なし。",
    not_recorded: "この版では記録していない。",
    not_recorded_short: "記録なし",
    name: "氏名",
    employee_number: "職員番号",
    org_unit: "所属",
    login_id: "ログインID",
    subject: "対象",
    detail: "内容",
    date: "日付",
    units: "所属ごとの件数",
    people: "在職者",
    footer: "この報告書はアクセス記録を含む。閲覧と印刷は記録されている（report.read）。取扱いに注意すること。",
};

const EN: Labels = Labels {
    product: "Sekimori",
    title: "Self-inspection report (access control)",
    as_of: "As of",
    generated: "Generated",
    sign_caption: "Sign-off",
    inspector: "Inspector",
    approver: "Security manager",
    summary: "Summary",
    item: "Item",
    article: "Article",
    count: "Count",
    rows: "rows",
    none: "None.",
    not_recorded: "Not recorded by this version.",
    not_recorded_short: "not recorded",
    name: "Name",
    employee_number: "Employee no.",
    org_unit: "Section",
    login_id: "Login ID",
    subject: "Subject",
    detail: "Detail",
    date: "Date",
    units: "Figures by section",
    people: "In service",
    footer: "This report contains access records; reading it was recorded (report.read). Handle with care.",
};

struct SectionView<'a> {
    key: &'static str,
    title: &'static str,
    article: &'static str,
    recorded: bool,
    note: Option<&'static str>,
    rows: &'a [Finding],
}

#[derive(Template)]
#[template(path = "compliance_report.html")]
struct CompliancePage<'a> {
    lang: &'static str,
    css: &'static str,
    t: &'static Labels,
    report: &'a ComplianceReport,
    generated_at: String,
    sections: Vec<SectionView<'a>>,
    unit_headers: Vec<&'static str>,
}

/// The report as a page in `lang`, generated at `now`.
pub fn render_compliance_html(report: &ComplianceReport, lang: Lang, now: UnixTime) -> Result<String, askama::Error> {
    let t = match lang {
        Lang::Ja => &JA,
        Lang::En => &EN,
    };
    let title = |ja: &'static str, en: &'static str| if lang == Lang::En { en } else { ja };
    let sections: Vec<SectionView> = report
        .sections
        .iter()
        .map(|s| SectionView {
            key: s.key,
            title: title(s.title, s.title_en),
            article: s.article,
            recorded: s.recorded,
            note: s.note,
            rows: &s.rows,
        })
        .collect();
    let unit_headers = report.sections.iter().filter(|s| s.recorded).map(|s| title(s.title, s.title_en)).collect();
    CompliancePage {
        lang: lang.code(),
        css: CSS,
        t,
        report,
        generated_at: crate::clock::japan_minute(now),
        sections,
        unit_headers,
    }
    .render()
}
