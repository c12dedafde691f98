//! Need-based access (R4–R6): the roles people hold on consuming systems. Requests,
//! approvals, grants and reviews arrive with the access issue; the systems themselves (OIDC
//! clients) are `crate::systems`.

pub mod roles;
