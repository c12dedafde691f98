//! Passwords (R9–R12): hashing, the strength policy with personal context, the rules about
//! history, sharing and expiry, and lockout.

pub mod hashing;
pub mod lockout;
pub mod policy;
pub mod strength;

pub use hashing::{Hasher, PasswordError};

/// The minimum every password meets until the full policy (strength with personal context,
/// history, expiry) applies: a length floor and a ceiling.
pub fn check_minimum(password: &str) -> Result<(), crate::directory::InvalidField> {
    let length = password.chars().count();
    if length < 12 {
        return Err(crate::directory::InvalidField {
            field: "password",
            reason: "must be at least 12 characters".into(),
        });
    }
    if password.len() > 1024 {
        return Err(crate::directory::InvalidField { field: "password", reason: "must be at most 1024 bytes".into() });
    }
    Ok(())
}
