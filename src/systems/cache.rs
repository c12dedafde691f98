//! What this node keeps of the consuming systems, so that client authentication — on every
//! token, introspection and revocation request — does not read the `clients` row each time.
//!
//! The database stays the truth ([`Kept`]): an entry is used only in the second it was read
//! in, and only while no change was announced since — every change to a system's
//! registration, every revocation and every emergency stop or lift is announced in its
//! transaction, counted on this node when it commits (before its caller goes on) and on the
//! others when their listener hears it (milliseconds).
//!
//! A stale entry cannot keep a revoked token alive: the system's own tokens carry its token
//! generation, which introspection checks against the live state, and a disable raises it.

use super::{Client, ClientError};
use crate::store::changes::{Kept, Stamp};
use crate::store::Store;

#[derive(Debug)]
pub struct ClientCache(Kept<Client>);

impl Default for ClientCache {
    fn default() -> Self {
        // Only registered systems are kept: a deployment has far fewer.
        ClientCache(Kept::new(10_000))
    }
}

impl ClientCache {
    /// The registered system `client_id` as of `now`, kept or read from the database.
    pub async fn get(&self, store: &Store, now: Stamp, client_id: &str) -> Result<Option<Client>, ClientError> {
        if let Some(client) = self.0.get(client_id, now) {
            return Ok(Some(client));
        }
        let client = super::get(store, client_id).await?;
        if let Some(client) = &client {
            self.0.keep(client_id, client.clone(), now);
        }
        Ok(client)
    }
}
