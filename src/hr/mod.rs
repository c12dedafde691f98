//! R2, R22: the HR feed. Effective-dated changes to people (join, update, move, concurrent
//! posts, suspend, return, leave) recorded from any source and applied once when they take
//! effect ([`changes`]); the safety valve that holds a mass change for an administrator
//! ([`batches`]); the CSV import ([`csv_import`]); a section manager's preview ([`preview`]);
//! an administrator's review of recorded changes, and the retry of a failed one ([`review`]).
//!
//! The directory owns the people and accounts tables (`directory::updates` writes them); this
//! module decides what an HR event means for them, and ends a leaver's access through the
//! revocation module.

pub mod batches;
pub mod changes;
pub mod csv_import;
pub mod preview;
pub mod review;
