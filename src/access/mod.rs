//! Need-based access: the consuming systems (OIDC clients). Roles, requests, approvals and
//! grants arrive with the access issue.

pub mod clients;
