//! Per-client limits: how many requests one peer IP may have in flight at once
//! (`server.max_inflight_per_ip`). A request counts from the moment its headers are in until
//! its response body ends (a stream counts while it streams), so a few clients trickling
//! bodies or holding streams cannot take every connection the server will serve.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use actix_web::body::{BodySize, MessageBody};
use bytes::Bytes;

use crate::error::ApiError;

/// Requests in flight per peer IP, shared by every worker.
type InFlight = Arc<Mutex<HashMap<IpAddr, usize>>>;
/// Counts in-flight requests per peer IP; shared by every worker.
#[derive(Debug, Clone)]
pub struct PeerLimiter {
    limit: usize,
    retry_after_s: u64,
    inflight: InFlight,
}

/// One admitted request; dropping it (when the response body is done) frees its slot.
#[derive(Debug)]
pub struct PeerGuard {
    peer: Option<(IpAddr, InFlight)>,
}

impl PeerLimiter {
    /// `limit` 0 admits everything.
    pub fn new(limit: usize, retry_after_s: u64) -> Self {
        Self {
            limit,
            retry_after_s,
            inflight: Arc::default(),
        }
    }

    /// Admits a request from `peer`, or refuses it with a 429 when that IP is at the limit.
    pub fn enter(&self, peer: Option<IpAddr>) -> Result<PeerGuard, ApiError> {
        let (Some(ip), true) = (peer, self.limit > 0) else {
            return Ok(PeerGuard { peer: None });
        };
        let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.limit {
            return Err(ApiError::peer_limit(self.limit, self.retry_after_s));
        }
        *n += 1;
        Ok(PeerGuard {
            peer: Some((ip, self.inflight.clone())),
        })
    }

    /// Requests in flight from `ip`.
    pub fn inflight(&self, ip: IpAddr) -> usize {
        let map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for PeerGuard {
    fn drop(&mut self) {
        let Some((ip, map)) = self.peer.take() else {
            return;
        };
        let mut map = map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }
}

/// A response body that holds its request's [`PeerGuard`] until the body ends or is dropped.
pub struct Guarded<B> {
    body: B,
    _guard: PeerGuard,
}

impl<B> Guarded<B> {
    /// Wraps `body`.
    pub fn new(body: B, guard: PeerGuard) -> Self {
        Self {
            body,
            _guard: guard,
        }
    }
}

impl<B: MessageBody + Unpin> MessageBody for Guarded<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        Pin::new(&mut self.body).poll_next(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_at_its_limit_is_refused_until_a_request_ends() {
        let l = PeerLimiter::new(2, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let g1 = l.enter(Some(a)).unwrap();
        let _g2 = l.enter(Some(a)).unwrap();
        let refused = l.enter(Some(a)).map(|_| ()).unwrap_err();
        assert_eq!(
            refused,
            ApiError::peer_limit(2, refused.retry_after_s.unwrap_or(0))
        );
        // Other peers and unknown peers are not affected.
        let _g3 = l.enter(Some(b)).unwrap();
        let _g4 = l.enter(None).unwrap();
        drop(g1);
        assert_eq!(l.inflight(a), 1);
        let _g5 = l.enter(Some(a)).unwrap();
    }

    #[test]
    fn zero_disables_the_limit() {
        let l = PeerLimiter::new(0, 1);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let guards: Vec<_> = (0..100).map(|_| l.enter(Some(a)).unwrap()).collect();
        assert_eq!(l.inflight(a), 0);
        drop(guards);
    }
}
