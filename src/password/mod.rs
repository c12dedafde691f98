//! Passwords (R9–R12): hashing, the strength policy with personal context, the rules about
//! history, sharing and expiry, and lockout.

pub mod hashing;
pub mod lockout;
pub mod policy;
pub mod strength;
pub mod tickets;

pub use hashing::{Hasher, PasswordError};
