//! R2, R14: finding people the way operators type them: an employee number or a login ID
//! exactly, or part of a name in kanji, katakana, hiragana or romaji, full- or half-width. The
//! admin API's people list and the lost-card hotline share this, so a caller who is found by
//! one is found by the other.
//!
//! Names as written (kanji, Latin) are matched as typed, case aside. Readings (フリガナ) are
//! matched on a folded key, the same on both sides: katakana or hiragana as stored, without
//! spaces, ・ or ー, and without the long vowels that romaji spells in so many ways
//! (サトウ, サトー, satou, satoh, satō and sato are all サト; オオノ, ōno and ono are all
//! オノ). The stored side is folded in SQL by the same table, so any writer's rows are found.
//! Folding widens a search a little (小野 and 大野 are both オノ); the operator confirms the
//! person from what the answer shows, as they would on the phone.
//!
//! `%`, `_` and `\` in a query are matched literally: every pattern goes through
//! [`escape_like`] and `LIKE … ESCAPE '\'`, and every value is bound.

use std::sync::LazyLock;

use sqlx::Row;
use unicode_normalization::UnicodeNormalization;
use wana_kana::ConvertJapanese;

use super::types::{EmployeeNumber, InvalidField, LoginId, PersonKind, PersonStatus};
use super::{person_from_row, DirectoryError, Person, PERSON_COLUMNS};
use crate::store::{escape_like, Select, Store};

/// The longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 64;
/// The most words in a query (each must match).
pub const MAX_WORDS: usize = 4;

/// A search as typed, parsed once: never empty, never longer than [`MAX_QUERY_CHARS`].
#[derive(Debug, Clone)]
pub struct NameQuery {
    typed: String,
    words: Vec<Word>,
}

/// One word of a query and every form it is compared in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Word {
    /// Compared with employee numbers: NFKC, so that full-width digits are digits.
    employee_number: Option<String>,
    /// Compared with login IDs, which are stored lower-cased.
    login_id: Option<String>,
    /// LIKE pattern for the name as written, in lower case.
    name: String,
    /// LIKE patterns for the folded reading, in katakana and in hiragana; none when the word
    /// is neither kana nor romaji.
    reading: Option<(String, String)>,
}

impl NameQuery {
    /// Parses what the operator typed in `field`. Words are separated by spaces (full-width
    /// ones too) and each must match, so that 山田 太郎, やまだ たろう and taro yamada all find
    /// 山田太郎; without spaces the name is matched family name first.
    pub fn parse(field: &'static str, typed: &str) -> Result<Self, InvalidField> {
        let invalid = |reason: &str| InvalidField { field, reason: reason.to_owned() };
        // Counted as sent, before trimming: the limit is the one openapi.yaml states.
        let count = typed.chars().count();
        let typed = typed.trim();
        if typed.is_empty() || count > MAX_QUERY_CHARS {
            return Err(invalid("must be 1 to 64 characters"));
        }
        if typed.chars().any(char::is_control) {
            return Err(invalid("must not contain control characters"));
        }
        // NFKC: ＴＡＮＡＫＡ, ｔａｎａｋａ and ﾀﾅｶ are TANAKA, tanaka and タナカ; the
        // ideographic space is a space.
        let normalized: String = typed.nfkc().collect();
        let words: Vec<Word> = normalized.split_whitespace().map(Word::new).collect();
        if words.is_empty() {
            return Err(invalid("must not be blank"));
        }
        if words.len() > MAX_WORDS {
            return Err(invalid("may have at most 4 words"));
        }
        Ok(NameQuery { typed: typed.to_owned(), words })
    }

    /// The query as typed (trimmed), for the audit log.
    pub fn as_typed(&self) -> &str {
        &self.typed
    }

    /// `AND (…)` for each word: the word is the employee number, the login ID, part of the
    /// name, or part of the reading. Needs `p` (people with `reading_key`) and `a` (accounts).
    fn push_conditions(&self, select: &mut Select) {
        for word in &self.words {
            select.push(" AND (").push("LOWER(p.family_name || p.given_name) LIKE ").bind_text(&word.name);
            select.push(" ESCAPE '\\'");
            if let Some(number) = &word.employee_number {
                select.push(" OR p.employee_number = ").bind_text(number);
            }
            if let Some(login_id) = &word.login_id {
                select.push(" OR a.login_id = ").bind_text(login_id);
            }
            if let Some((katakana, hiragana)) = &word.reading {
                select.push(" OR p.reading_key LIKE ").bind_text(katakana).push(" ESCAPE '\\'");
                select.push(" OR p.reading_key LIKE ").bind_text(hiragana).push(" ESCAPE '\\'");
            }
            select.push(")");
        }
    }
}

impl Word {
    fn new(word: &str) -> Word {
        Word {
            employee_number: EmployeeNumber::parse(word).ok().map(|n| n.as_str().to_owned()),
            login_id: LoginId::parse(word).ok().map(|l| l.as_str().to_owned()),
            name: contains(&word.to_lowercase()),
            reading: reading_of(word)
                .map(|katakana| fold(&katakana))
                .filter(|key| !key.is_empty())
                .map(|key| (contains(&key), contains(&key.to_hiragana()))),
        }
    }
}

/// A LIKE pattern for "contains `text`", literally.
fn contains(text: &str) -> String {
    format!("%{}%", escape_like(text))
}

fn is_kana(c: char) -> bool {
    matches!(c, '\u{3041}'..='\u{3096}' | '\u{30A1}'..='\u{30FC}')
}

/// The word as katakana, when it is kana or romaji; None otherwise (kanji, digits, a login ID).
fn reading_of(word: &str) -> Option<String> {
    if word.chars().all(is_kana) {
        return Some(word.to_katakana());
    }
    let spelled = typed_romaji(&word.to_lowercase())?;
    let katakana = spelled.to_katakana();
    // Anything left unconverted (a stray consonant, `xyz`) means this was not romaji.
    katakana.chars().all(|c| matches!(c, '\u{30A1}'..='\u{30FC}')).then_some(katakana)
}

/// Romaji as people write names (Hepburn as on passports and signs, or kunrei) turned into
/// the spelling the kana converter reads: long vowels with macrons or circumflexes spelled
/// out, `oh` for a long o (Satoh, Ohno), `m` before b, m and p (Kambara), `n'` before a
/// vowel (Shin'ichi). Shi/si, chi/ti, tsu/tu, fu/hu, ji/zi and sha/sya the converter reads as
/// they are. None when the word has anything else (digits, punctuation).
fn typed_romaji(lower: &str) -> Option<String> {
    let mut spelled = String::with_capacity(lower.len() + 4);
    for c in lower.chars() {
        match c {
            'a'..='z' | '-' => spelled.push(c),
            '\'' | '’' => spelled.push('\''),
            'ā' | 'â' => spelled.push_str("aa"),
            'ī' | 'î' => spelled.push_str("ii"),
            'ū' | 'û' => spelled.push_str("uu"),
            'ē' | 'ê' => spelled.push_str("ee"),
            'ō' | 'ô' => spelled.push_str("ou"),
            _ => return None,
        }
    }
    let chars: Vec<char> = spelled.chars().collect();
    let is_vowel = |c: Option<&char>| matches!(c, Some('a' | 'i' | 'u' | 'e' | 'o' | 'y'));
    let mut out = String::with_capacity(spelled.len());
    for (i, &c) in chars.iter().enumerate() {
        let previous = i.checked_sub(1).and_then(|p| chars.get(p));
        let next = chars.get(i + 1);
        match c {
            // "n'" is ん before a vowel (the converter would read n'i as に): written as the
            // kana itself, which the converter passes through.
            'n' if next == Some(&'\'') => out.push('ん'),
            '\'' => {}
            'h' if previous == Some(&'o') && !is_vowel(next) => out.push('u'),
            'm' if matches!(next, Some('b' | 'm' | 'p')) => out.push('n'),
            _ => out.push(c),
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Kana that end in o, whose long vowel is written う, お or ー (and in romaji ou, oo, oh, ō
/// or not at all).
const O_ROW: &str = "オォコゴソゾトドノホボポモヨョロ";
/// Kana that end in u, whose long vowel is written う or ー.
const U_ROW: &str = "ウゥクグスズツヌフブプムユュルヴ";

/// The folding rules, in the order they are applied, in katakana and then in hiragana. Rust
/// ([`fold`]) and SQL ([`READING_KEY`]) apply these same rules in the same order with the
/// same replace-all semantics, so the query and the stored reading fold alike.
static FOLDS: LazyLock<Vec<(String, String)>> = LazyLock::new(|| {
    let mut katakana: Vec<(String, String)> = Vec::new();
    // Spacing and the long-vowel mark carry nothing a search needs.
    for ignored in [" ", "\u{3000}", "・", "ー"] {
        katakana.push((ignored.to_owned(), String::new()));
    }
    // Hepburn spells these pairs alike (o, zu, ji).
    for (from, to) in [("ヲ", "オ"), ("ヅ", "ズ"), ("ヂ", "ジ")] {
        katakana.push((from.to_owned(), to.to_owned()));
    }
    for kana in O_ROW.chars() {
        katakana.push((format!("{kana}ウ"), kana.to_string()));
        katakana.push((format!("{kana}オ"), kana.to_string()));
    }
    for kana in U_ROW.chars() {
        katakana.push((format!("{kana}ウ"), kana.to_string()));
    }
    let hiragana: Vec<(String, String)> = katakana
        .iter()
        .filter(|(from, _)| from.chars().any(|c| matches!(c, '\u{30A1}'..='\u{30F6}')))
        .map(|(from, to)| (from.as_str().to_hiragana(), to.as_str().to_hiragana()))
        .collect();
    katakana.into_iter().chain(hiragana).collect()
});

/// The search key of a reading: [`FOLDS`] applied in order.
fn fold(reading: &str) -> String {
    FOLDS.iter().fold(reading.to_owned(), |key, (from, to)| key.replace(from.as_str(), to))
}

/// The same key computed by the database from the stored reading, as nested REPLACEs (which
/// SQLite and PostgreSQL both have). Built from [`FOLDS`] alone: no input reaches it.
static READING_KEY: LazyLock<String> = LazyLock::new(|| {
    FOLDS.iter().fold("(family_name_kana || given_name_kana)".to_owned(), |expr, (from, to)| {
        format!("REPLACE({expr}, '{from}', '{to}')")
    })
});

/// `people` as `p` with its reading key, for a search by name.
static PEOPLE_WITH_READING_KEY: LazyLock<String> =
    LazyLock::new(|| format!("(SELECT people.*, {} AS reading_key FROM people) p", READING_KEY.as_str()));

static SELECT_COLUMNS: LazyLock<String> = LazyLock::new(|| {
    let person: Vec<String> = PERSON_COLUMNS.split(", ").map(|c| format!("p.{c}")).collect();
    format!("SELECT {}, a.login_id, o.name AS org_unit_name FROM ", person.join(", "))
});

/// What to look for; every part given must hold.
#[derive(Debug, Clone, Default)]
pub struct PeopleFilter {
    pub q: Option<NameQuery>,
    /// An org unit: people in it and in the units under it (部 > 課 > 係).
    pub org_unit_id: Option<String>,
    pub status: Option<PersonStatus>,
    pub kind: Option<PersonKind>,
}

impl PeopleFilter {
    /// A filter from query parameters as sent; an error names the parameter.
    pub fn parse(
        q: Option<&str>,
        org_unit: Option<&str>,
        status: Option<&str>,
        kind: Option<&str>,
    ) -> Result<PeopleFilter, InvalidField> {
        let org_unit_id = match org_unit {
            Some(id) if id.is_empty() || id.len() > 64 || id.chars().any(char::is_control) => {
                return Err(InvalidField { field: "org_unit", reason: "must be an org unit id".into() })
            }
            other => other.map(str::to_owned),
        };
        Ok(PeopleFilter {
            q: q.map(|q| NameQuery::parse("q", q)).transpose()?,
            org_unit_id,
            status: status.map(PersonStatus::parse).transpose()?,
            kind: kind.map(PersonKind::parse).transpose()?,
        })
    }
}

/// A person found, with their login ID and the name of their org unit.
#[derive(Debug, Clone)]
pub struct Found {
    pub person: Person,
    pub login_id: Option<String>,
    pub org_unit_name: Option<String>,
}

/// People matching `filter`, by employee number, one page.
pub async fn find_people(
    store: &Store,
    filter: &PeopleFilter,
    limit: i64,
    offset: i64,
) -> Result<Vec<Found>, DirectoryError> {
    let mut select = Select::new("");
    select.push(SELECT_COLUMNS.as_str());
    // The reading key is computed only when a name is searched for.
    select.push(if filter.q.is_some() { PEOPLE_WITH_READING_KEY.as_str() } else { "people p" });
    select
        .push(" LEFT JOIN accounts a ON a.person_id = p.id LEFT JOIN org_units o ON o.id = p.org_unit_id WHERE 1 = 1");
    if let Some(unit) = &filter.org_unit_id {
        // Three levels at most (部 > 課 > 係): the unit, its children and theirs.
        select
            .push(" AND p.org_unit_id IN (SELECT id FROM org_units WHERE id = ")
            .bind_text(unit)
            .push(" OR parent_id = ")
            .bind_text(unit)
            .push(" OR parent_id IN (SELECT id FROM org_units WHERE parent_id = ")
            .bind_text(unit)
            .push("))");
    }
    if let Some(status) = filter.status {
        select.push(" AND p.status = ").bind_text(status.as_str());
    }
    if let Some(kind) = filter.kind {
        select.push(" AND p.kind = ").bind_text(kind.as_str());
    }
    if let Some(q) = &filter.q {
        q.push_conditions(&mut select);
    }
    select.push(" ORDER BY p.employee_number LIMIT ").bind_int(limit).push(" OFFSET ").bind_int(offset);
    let rows = select.query().fetch_all(store.pool()).await?;
    rows.iter()
        .map(|row| {
            Ok(Found {
                person: person_from_row(row)?,
                login_id: row.try_get("login_id")?,
                org_unit_name: row.try_get("org_unit_name")?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings(typed: &str) -> Vec<Option<String>> {
        NameQuery::parse("q", typed).unwrap().words.into_iter().map(|w| w.reading.map(|r| r.0)).collect()
    }

    fn key(typed: &str) -> String {
        fold(&reading_of(typed).unwrap_or_else(|| panic!("{typed} has no reading")))
    }

    #[test]
    fn every_way_of_typing_a_reading_folds_alike() {
        for typed in ["やまだ", "ヤマダ", "yamada", "YAMADA", "Yamada"] {
            assert_eq!(key(typed), "ヤマダ", "{typed}");
        }
        // Half-width katakana and full-width Latin, through NFKC.
        assert_eq!(readings("ﾔﾏﾀﾞ"), vec![Some("%ヤマダ%".to_owned())]);
        assert_eq!(readings("ｙａｍａｄａ"), vec![Some("%ヤマダ%".to_owned())]);
        // Hepburn and kunrei.
        for (hepburn, kunrei) in
            [("shimizu", "simizu"), ("tsuchiya", "tutiya"), ("fujita", "huzita"), ("chiba", "tiba")]
        {
            assert_eq!(key(hepburn), key(kunrei), "{hepburn} / {kunrei}");
        }
        assert_eq!(key("shimizu"), "シミズ");
        // Long vowels, however written.
        for typed in ["さとう", "サトウ", "サトー", "satou", "satoh", "satō", "satô", "sato", "satoo"] {
            assert_eq!(key(typed), "サト", "{typed}");
        }
        for typed in ["オオノ", "おおの", "oono", "ohno", "ōno", "ono", "ouno"] {
            assert_eq!(key(typed), "オノ", "{typed}");
        }
        for typed in ["ユウコ", "yuuko", "yūko", "yuko"] {
            assert_eq!(key(typed), "ユコ", "{typed}");
        }
        assert_eq!(key("kambara"), key("kanbara"));
        assert_eq!(key("shin'ichi"), "シンイチ");
        assert_eq!(key("ohashi"), "オハシ", "oh before a vowel is not a long o");
        assert_eq!(key("ヅ"), key("zu"));
    }

    #[test]
    fn words_that_are_not_names_have_no_reading() {
        for typed in ["E1024", "tanaka.ichiro", "山田", "xyz", "%", "_", "a_b"] {
            assert_eq!(readings(typed), vec![None], "{typed}");
        }
        // A reading that folds to nothing would match everyone.
        assert_eq!(readings("ー"), vec![None]);
    }

    #[test]
    fn patterns_are_literal() {
        let word = &NameQuery::parse("q", "50%_\\").unwrap().words[0];
        assert_eq!(word.name, "%50\\%\\_\\\\%");
        assert_eq!(word.login_id, None);
        let word = &NameQuery::parse("q", " Tanaka.Ichiro ").unwrap().words[0];
        assert_eq!(word.login_id.as_deref(), Some("tanaka.ichiro"));
        assert_eq!(NameQuery::parse("q", "Ｅ１０２４").unwrap().words[0].employee_number.as_deref(), Some("E1024"));
    }

    #[test]
    fn hostile_queries_are_refused() {
        for bad in ["", "   ", "\u{3000}", "a\u{0}b", &"あ".repeat(65), "a b c d e"] {
            assert!(NameQuery::parse("q", bad).is_err(), "{bad:?}");
        }
        assert!(NameQuery::parse("q", &"あ".repeat(64)).is_ok());
    }

    #[test]
    fn the_sql_key_is_built_from_constants_only() {
        assert!(FOLDS.iter().all(|(from, to)| !from.contains('\'') && !to.contains('\'')));
        // The hiragana rules mirror the katakana ones.
        assert!(FOLDS.iter().any(|(from, to)| from == "とう" && to == "と"));
        assert_eq!(fold("さとう"), "さと");
        assert_eq!(READING_KEY.matches("REPLACE(").count(), FOLDS.len());
    }
}
