//! Integration tests: one binary, a module per capability, real HTTP, both databases.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[macro_use]
mod common;

mod access;
mod access_admin;
mod access_pages;
mod admin_api;
mod audit_log;
mod audit_seal;
mod audit_tamper;
mod authorize_errors;
mod cards;
mod cli;
mod cluster;
mod console;
mod directory;
mod domain;
mod emergency;
mod front_door;
mod hardening;
mod hr;
mod hr_admin;
mod hr_crash;
mod hr_valve;
mod lifecycle;
mod mail;
mod migrations;
mod oidc_flow;
mod openapi;
mod operations;
mod passwords;
mod reports;
mod scim;
mod search;
mod shared_ids;
mod systems_admin;
mod token_errors;
