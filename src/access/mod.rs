//! Need-based access: the consuming systems (OIDC clients) and the roles people hold on them.
//! Requests, approvals and grants arrive with the access issue.

pub mod clients;
pub mod roles;
