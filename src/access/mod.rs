//! Need-based access (R4–R6, R15): the roles consuming systems declare ([`catalog`]), requests
//! and the approvals the org tree asks of them ([`requests`], [`org`], [`deputies`]), the
//! grants that result ([`grants`]), reviews (棚卸し, [`reviews`]) and what tokens say
//! ([`roles`]). The systems themselves (OIDC clients) are `crate::systems`; ending a grant
//! goes through `crate::revocation` like every other ending.

pub mod catalog;
pub mod deputies;
pub mod grants;
pub mod org;
pub mod requests;
pub mod reviews;
pub mod roles;

use crate::directory::DirectoryError;
use crate::invalid::InvalidField;

/// Why an access operation did not happen: the one error of this capability, which each
/// boundary (admin API, pages) turns into its own shape.
#[derive(Debug, thiserror::Error)]
pub enum AccessError {
    #[error(transparent)]
    Invalid(#[from] InvalidField),
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The person may not do this (not their decision, their own request, not their system).
    #[error("{0}")]
    Forbidden(&'static str),
    /// The present state does not allow it (already decided, already held, incompatible role).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<DirectoryError> for AccessError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::Invalid(i) => AccessError::Invalid(i),
            DirectoryError::NotFound(what) => AccessError::NotFound(what),
            DirectoryError::Conflict(why) => AccessError::Conflict(why.to_owned()),
            DirectoryError::Database(d) => AccessError::Database(d),
        }
    }
}

/// One text column of every row: the ids a job goes through one by one.
pub(crate) fn texts(rows: &[sqlx::any::AnyRow], column: &str) -> Result<Vec<String>, sqlx::Error> {
    use sqlx::Row;
    rows.iter().map(|r| r.try_get(column)).collect()
}

/// A role's classification (江戸川区 基準 第3条).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    /// 秘密情報: a card login is demanded and sessions using it idle out sooner.
    Secret,
    /// 一般情報.
    General,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Secret => "secret",
            Classification::General => "general",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "secret" => Some(Classification::Secret),
            "general" => Some(Classification::General),
            _ => None,
        }
    }
}
