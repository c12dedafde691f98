//! Integration tests: one binary, a module per capability, real HTTP, both databases.

#[macro_use]
mod common;

mod admin_api;
mod audit_log;
mod authorize_errors;
mod directory;
mod oidc_flow;
mod token_errors;
