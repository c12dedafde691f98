//! The connection loop of both listeners, with the limits a server facing the network needs
//! (axum's own `serve` has none of them):
//!
//! - a header-read timeout: a client that does not send a whole request head in time — or, on
//!   a kept-alive connection, does not start its next request — is disconnected (slow-header
//!   attacks hold a connection open with a byte now and then);
//! - a cap on connections per source address and per listener: a connection beyond either is
//!   closed as soon as it is accepted, so one client cannot use up the process's descriptors
//!   and the others keep being answered. The configured trusted proxies are exempt from the
//!   per-source cap (everyone behind the external-access server shares its address);
//! - graceful shutdown (R20): no new connection is taken, requests in flight are answered —
//!   those of connections the system accepted but the loop had not taken yet included — and
//!   idle connections are closed.
//!
//! The request timeout (408) is a layer of each router.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::config::Config;

/// The limits of one listener.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_source: usize,
    /// Sources exempt from the per-source cap.
    pub exempt: Vec<IpAddr>,
}

impl Limits {
    pub fn from_config(config: &Config) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(config.limits.header_read_timeout_seconds),
            max_connections: config.limits.max_connections,
            max_connections_per_source: config.limits.max_connections_per_source,
            exempt: config.trusted_proxies.clone(),
        }
    }
}

/// Open connections, in all and per source.
#[derive(Default)]
struct Slots {
    open: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

/// One open connection's place; given back when dropped.
struct Slot {
    slots: Arc<Slots>,
    source: IpAddr,
}

impl Slots {
    fn take(self: &Arc<Self>, source: IpAddr, limits: &Limits) -> Option<Slot> {
        let mut open = self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (total, per_source) = &mut *open;
        let from_source = per_source.get(&source).copied().unwrap_or(0);
        let capped = !limits.exempt.contains(&source) && from_source >= limits.max_connections_per_source;
        if *total >= limits.max_connections || capped {
            return None;
        }
        *total += 1;
        per_source.insert(source, from_source + 1);
        Some(Slot { slots: self.clone(), source })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (total, per_source) = &mut *open;
        *total = total.saturating_sub(1);
        if let Some(count) = per_source.get_mut(&self.source) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                per_source.remove(&self.source);
            }
        }
    }
}

async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serves `router` on `listener` within `limits` until `shutdown` turns true, then finishes the
/// requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let slots = Arc::new(Slots::default());
    let mut connections = tokio::task::JoinSet::new();
    let stop = stopped(shutdown.clone());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors or a connection reset before it was taken: wait a
                        // moment rather than spin, and keep serving.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Some(slot) = slots.take(peer.ip(), &limits) else {
                    tracing::debug!(source = %peer.ip(), "connection refused: connection cap reached");
                    drop(stream);
                    continue;
                };
                connections.spawn(serve_connection(stream, peer, router.clone(), limits.header_read_timeout, slot, shutdown.clone()));
            }
        }
    }
    // Connections the system has accepted wait in the listen queue; closing the socket would
    // reset them, requests written and all. Take them, and answer their one request.
    let waiting = take_waiting(listener);
    tracing::debug!(waiting = waiting.len(), open = connections.len(), "stopped listening");
    for (stream, peer) in waiting {
        let Some(slot) = slots.take(peer.ip(), &limits) else { continue };
        connections.spawn(serve_connection(
            stream,
            peer,
            router.clone(),
            limits.header_read_timeout,
            slot,
            shutdown.clone(),
        ));
    }
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// Closes `listener` and returns the connections waiting in its queue. Asks the system
/// directly, not the runtime's readiness (which may not have seen the last arrivals yet).
fn take_waiting(listener: TcpListener) -> Vec<(tokio::net::TcpStream, SocketAddr)> {
    let mut waiting = Vec::new();
    let Ok(listener) = listener.into_std() else { return waiting };
    // The socket is already non-blocking: accept answers WouldBlock once the queue is empty.
    while let Ok((stream, peer)) = listener.accept() {
        if let Ok(stream) = stream.set_nonblocking(true).and_then(|()| tokio::net::TcpStream::from_std(stream)) {
            waiting.push((stream, peer));
        }
    }
    waiting
}

/// How long, once the listener stops, a connection taken before may take to send its request.
const STOP_GRACE: Duration = Duration::from_secs(1);

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    header_read_timeout: Duration,
    slot: Slot,
    shutdown: watch::Receiver<bool>,
) {
    let _slot = slot;
    // hyper closes a connection told to stop before it has read a byte. One taken just before a
    // stop has its request on the way: wait for its first bytes (within the header-read
    // timeout, which this wait counts against, and at most STOP_GRACE after a stop) before
    // serving, and poll the connection before looking at the stop, so that the request is read
    // and answered.
    let accepted = std::time::Instant::now();
    let stop_grace = async {
        stopped(shutdown.clone()).await;
        tokio::time::sleep(STOP_GRACE).await;
    };
    let sent = tokio::select! {
        biased;
        readable = tokio::time::timeout(header_read_timeout, stream.readable()) => readable.is_ok(),
        _ = stop_grace => false,
    };
    if !sent {
        tracing::debug!(source = %peer.ip(), "connection closed: nothing sent in time");
        return;
    }
    let header_read_timeout = header_read_timeout.saturating_sub(accepted.elapsed());
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        router.clone().oneshot(request)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        biased;
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, source = %peer.ip(), "connection ended with an error");
            }
        }
        _ = stopped(shutdown) => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(total: usize, per_source: usize, exempt: Vec<IpAddr>) -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(1),
            max_connections: total,
            max_connections_per_source: per_source,
            exempt,
        }
    }

    #[test]
    fn a_source_gets_its_share_and_slots_come_back() {
        let slots = Arc::new(Slots::default());
        let limits = limits(10, 2, Vec::new());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.take(a, &limits).unwrap();
        let _second = slots.take(a, &limits).unwrap();
        assert!(slots.take(a, &limits).is_none(), "a third from one source is refused");
        assert!(slots.take(b, &limits).is_some(), "another source is not");
        drop(first);
        assert!(slots.take(a, &limits).is_some(), "a closed connection gives its slot back");
    }

    #[test]
    fn the_listener_cap_holds_and_trusted_proxies_are_exempt_from_the_source_cap() {
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let slots = Arc::new(Slots::default());
        let limits = limits(3, 1, vec![proxy]);
        let held: Vec<_> = (0..3).map(|_| slots.take(proxy, &limits).unwrap()).collect();
        assert!(slots.take(proxy, &limits).is_none(), "the listener's cap holds for everyone");
        drop(held);
        assert!(slots.take("192.0.2.9".parse().unwrap(), &limits).is_some());
    }
}
