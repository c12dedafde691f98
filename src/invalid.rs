//! A value outside its rule, naming the body member or query parameter it came in: the one
//! validation error of the domain modules, which each boundary turns into its own shape (422
//! or 400 problem details in the admin API). A module of its own so that every domain module
//! can use it without importing another.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidField {
    pub field: &'static str,
    pub reason: String,
}
