//! Parsed domain values: once one of these exists, it is valid (parse, don't validate).

use serde::{Deserialize, Serialize};
use time::Date;

pub use crate::invalid::InvalidField;

fn invalid(field: &'static str, reason: impl Into<String>) -> InvalidField {
    InvalidField { field, reason: reason.into() }
}

/// An employee number as HR assigns it (職員番号): 1–20 ASCII letters, digits or hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmployeeNumber(String);

impl EmployeeNumber {
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        let value = value.trim();
        // 64: room for the identifiers HR systems use as keys (a UUID is 36).
        if value.is_empty() || value.len() > 64 {
            return Err(invalid("employee_number", "must be 1 to 64 characters"));
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(invalid("employee_number", "may contain only ASCII letters, digits and '-'"));
        }
        Ok(Self(value.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A login ID: 3–64 characters of lower-case ASCII letters, digits, '.', '_' or '-'. Stored
/// lower-cased so that `Tanaka` and `tanaka` are one ID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LoginId(String);

impl LoginId {
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        let value = value.trim().to_ascii_lowercase();
        if value.len() < 3 || value.len() > 64 {
            return Err(invalid("login_id", "must be 3 to 64 characters"));
        }
        if !value.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')) {
            return Err(invalid("login_id", "may contain only letters, digits, '.', '_' and '-'"));
        }
        Ok(Self(value))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A name part (kanji or Latin): 1–64 characters, no control characters.
pub fn parse_name(field: &'static str, value: &str) -> Result<String, InvalidField> {
    let value = value.trim();
    let count = value.chars().count();
    if count == 0 || count > 64 {
        return Err(invalid(field, "must be 1 to 64 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

/// A reading in kana (フリガナ): katakana or hiragana, with the long-vowel mark, middle dot and spaces.
pub fn parse_kana(field: &'static str, value: &str) -> Result<String, InvalidField> {
    let value = parse_name(field, value)?;
    let is_kana = |c: char| matches!(c, '\u{3041}'..='\u{3096}' | '\u{30A1}'..='\u{30FA}' | 'ー' | '・' | ' ' | '\u{3000}' | '゛' | '゜');
    if !value.chars().all(is_kana) {
        return Err(invalid(field, "must be written in kana"));
    }
    Ok(value)
}

/// An e-mail address as far as a directory can tell: one '@', no spaces or control
/// characters, at most 254 characters.
pub fn parse_email(value: &str) -> Result<String, InvalidField> {
    let value = value.trim();
    if value.len() > 254 || !value.contains('@') || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid("email", "not an e-mail address"));
    }
    Ok(value.to_owned())
}

/// An ISO 8601 calendar date (YYYY-MM-DD).
pub fn parse_date(field: &'static str, value: &str) -> Result<Date, InvalidField> {
    Date::parse(value.trim(), time::macros::format_description!("[year]-[month]-[day]"))
        .map_err(|_| invalid(field, "must be a date written YYYY-MM-DD"))
}

pub fn format_date(date: Date) -> String {
    date.format(time::macros::format_description!("[year]-[month]-[day]")).unwrap_or_default()
}

/// R3: the kinds of staff, each with its own rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonKind {
    /// 正規職員
    Regular,
    /// 再任用職員
    ReEmployed,
    /// 会計年度任用職員 (part-time)
    PartTime,
    /// 臨時職員
    Temporary,
    /// 派遣職員
    Dispatched,
    /// 委託事業者
    Contractor,
    /// 指定管理者
    DesignatedManager,
}

impl PersonKind {
    pub const ALL: [PersonKind; 7] = [
        PersonKind::Regular,
        PersonKind::ReEmployed,
        PersonKind::PartTime,
        PersonKind::Temporary,
        PersonKind::Dispatched,
        PersonKind::Contractor,
        PersonKind::DesignatedManager,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PersonKind::Regular => "regular",
            PersonKind::ReEmployed => "re_employed",
            PersonKind::PartTime => "part_time",
            PersonKind::Temporary => "temporary",
            PersonKind::Dispatched => "dispatched",
            PersonKind::Contractor => "contractor",
            PersonKind::DesignatedManager => "designated_manager",
        }
    }

    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        Self::ALL.into_iter().find(|k| k.as_str() == value).ok_or_else(|| invalid("kind", "unknown person kind"))
    }

    /// R3: fixed-term staff always carry an end date and expire by themselves. 会計年度任用職員
    /// (`part_time`) are appointed for one fiscal year at most, so they are fixed-term too.
    pub fn requires_end_date(self) -> bool {
        !matches!(self, PersonKind::Regular | PersonKind::ReEmployed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonStatus {
    Active,
    Suspended,
    Retired,
}

impl PersonStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PersonStatus::Active => "active",
            PersonStatus::Suspended => "suspended",
            PersonStatus::Retired => "retired",
        }
    }
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        match value {
            "active" => Ok(Self::Active),
            "suspended" => Ok(Self::Suspended),
            "retired" => Ok(Self::Retired),
            _ => Err(invalid("status", "unknown status")),
        }
    }
}

/// 部 > 課 > 係
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgLevel {
    /// 部
    Department,
    /// 課
    Section,
    /// 係
    Unit,
}

impl OrgLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgLevel::Department => "department",
            OrgLevel::Section => "section",
            OrgLevel::Unit => "unit",
        }
    }
    pub fn parse(value: &str) -> Result<Self, InvalidField> {
        match value {
            "department" => Ok(Self::Department),
            "section" => Ok(Self::Section),
            "unit" => Ok(Self::Unit),
            _ => Err(invalid("level", "must be department, section or unit")),
        }
    }
    /// The level a parent of this level must have; departments have none.
    pub fn parent_level(self) -> Option<OrgLevel> {
        match self {
            OrgLevel::Department => None,
            OrgLevel::Section => Some(OrgLevel::Department),
            OrgLevel::Unit => Some(OrgLevel::Section),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_parsed_at_the_edge() {
        assert!(EmployeeNumber::parse("E-1024").is_ok());
        assert!(EmployeeNumber::parse("1024; DROP TABLE people").is_err());
        assert_eq!(LoginId::parse(" Tanaka.Ichiro ").unwrap().as_str(), "tanaka.ichiro");
        assert!(LoginId::parse("ta").is_err());
        assert!(LoginId::parse("田中").is_err());
        assert!(parse_kana("family_name_kana", "タナカ").is_ok());
        assert!(parse_kana("family_name_kana", "たなか").is_ok());
        assert!(parse_kana("family_name_kana", "田中").is_err());
        assert!(parse_date("birth_date", "1990-05-12").is_ok());
        assert!(parse_date("birth_date", "1990-02-30").is_err());
        assert!(PersonKind::Dispatched.requires_end_date());
        assert!(!PersonKind::Regular.requires_end_date());
        assert!(PersonKind::PartTime.requires_end_date());
    }
}
