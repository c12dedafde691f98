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

/// A written reason (for a decision, a stop, an exception): said, and not a novel — 1 to 1000
/// characters without control characters but line breaks, trimmed. The audit log keeps it.
pub fn check_reason(reason: &str) -> Result<String, InvalidField> {
    let trimmed = reason.trim();
    let count = trimmed.chars().count();
    if count == 0 || count > 1000 || trimmed.chars().any(|c| c.is_control() && c != '\n' && c != '\r') {
        return Err(InvalidField { field: "reason", reason: "must be 1 to 1000 characters".into() });
    }
    Ok(trimmed.to_owned())
}
