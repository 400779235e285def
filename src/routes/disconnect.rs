//! Noticing that a client of a non-streamed request went away.
//!
//! actix-web keeps polling a handler after its HTTP/1 client disconnects, so a non-streamed
//! generation would run to the end for nobody (streamed ones are cancelled when actix drops the
//! body). At connect time we remember the socket; while collecting a response we poll it.
//!
//! A FIN alone does not mean the client is gone: a client may send its whole request and then
//! shut down its write side (`shutdown(SHUT_WR)`) while it waits for the answer, and from this
//! end that half-close looks exactly like a full `close()`. So:
//! - a reset or a hang-up (`POLLERR`/`POLLHUP`: the peer's socket no longer exists) cancels;
//! - a FIN (`POLLRDHUP`) on an HTTP/1.1 connection is answered with one interim
//!   `100 Continue` (clients must accept unsolicited 1xx responses before the final one, RFC 9110
//!   §15.2). A half-closed client reads and ignores it; a client that really closed its socket
//!   makes its kernel answer the bytes with a reset, which the next poll sees as a hang-up;
//! - other versions (HTTP/1.0, HTTP/2) are served to the end (bounded by `max_tokens` and
//!   `server.request_timeout_s`).

use std::any::Any;
use std::future::{ready, Future, Ready};
use std::time::Duration;

use actix_web::dev::{Extensions, Payload};
use actix_web::http::Version;
use actix_web::{FromRequest, HttpRequest};

use crate::error::ApiError;

/// The client socket of a connection (Unix fd), valid while the connection's handler runs.
#[derive(Debug, Clone, Copy)]
pub struct PeerSocket(#[cfg(unix)] std::os::fd::RawFd);

/// `HttpServer::on_connect` hook.
pub fn on_connect(conn: &dyn Any, ext: &mut Extensions) {
    #[cfg(unix)]
    if let Some(s) = conn.downcast_ref::<actix_web::rt::net::TcpStream>() {
        use std::os::fd::AsRawFd;
        ext.insert(PeerSocket(s.as_raw_fd()));
    }
    #[cfg(not(unix))]
    let _ = (conn, ext);
}

/// What a poll of the client socket says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerState {
    /// Nothing unusual (maybe pipelined bytes waiting).
    Open,
    /// The peer sent FIN: it shut down its write side or closed its socket; we cannot tell which.
    HalfClosed,
    /// Reset or hung up: nobody will read an answer.
    Gone,
}

/// The interim response that tells a half-closed client from a closed one.
const PROBE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

impl PeerSocket {
    /// Polls the socket without blocking or consuming anything.
    pub fn state(&self) -> PeerState {
        #[cfg(target_os = "linux")]
        {
            let mut fds = libc::pollfd {
                fd: self.0,
                events: libc::POLLIN | libc::POLLRDHUP,
                revents: 0,
            };
            // SAFETY: one valid pollfd, zero timeout; the dispatcher keeps the fd open while the
            // handler that asks runs.
            let n = unsafe { libc::poll(&mut fds, 1, 0) };
            if n <= 0 {
                return PeerState::Open;
            }
            if fds.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
                PeerState::Gone
            } else if fds.revents & libc::POLLRDHUP != 0 {
                PeerState::HalfClosed
            } else {
                PeerState::Open
            }
        }
        #[cfg(not(target_os = "linux"))]
        {
            PeerState::Open
        }
    }

    /// Sends the `100 Continue` probe, only when the kernel holds no unsent bytes of ours (so
    /// it cannot land inside an earlier response still being written). True if it went out.
    fn probe(&self) -> bool {
        #[cfg(target_os = "linux")]
        {
            let mut queued: libc::c_int = 0;
            // SAFETY: TIOCOUTQ writes one int; send gets a valid buffer and never blocks.
            unsafe {
                if libc::ioctl(self.0, libc::TIOCOUTQ, &mut queued as *mut libc::c_int) != 0
                    || queued != 0
                {
                    return false;
                }
                let sent = libc::send(
                    self.0,
                    PROBE.as_ptr().cast(),
                    PROBE.len(),
                    libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT,
                );
                sent == PROBE.len() as isize
            }
        }
        #[cfg(not(target_os = "linux"))]
        false
    }
}

impl PeerSocket {
    /// Shuts down the read side: actix's next read sees end-of-file, so it writes the answer
    /// it has and closes the connection instead of waiting for the rest of a trickled body.
    pub fn stop_reading(&self) {
        #[cfg(unix)]
        // SAFETY: shutdown on the connection's own fd; it stays open (and writable).
        unsafe {
            libc::shutdown(self.0, libc::SHUT_RD);
        }
    }
}

/// Watches the client of one request.
#[derive(Debug, Clone, Copy)]
pub struct PeerWatch {
    socket: PeerSocket,
    /// HTTP/1.1: a half-close may be probed with an interim response.
    may_probe: bool,
}

impl PeerWatch {
    /// The watch for this request's connection (none without a TCP socket, e.g. in unit tests).
    pub fn of(req: &HttpRequest) -> Option<Self> {
        req.conn_data::<PeerSocket>().map(|&socket| Self {
            socket,
            may_probe: req.version() == Version::HTTP_11,
        })
    }

    /// Resolves when the peer has gone away (checked every `period`); never for a peer that
    /// only half-closed.
    pub async fn gone(self, period: Duration) {
        let mut probed = false;
        loop {
            tokio::time::sleep(period).await;
            match self.socket.state() {
                PeerState::Open => {}
                PeerState::Gone => return,
                PeerState::HalfClosed if self.may_probe && !probed => {
                    probed = self.socket.probe();
                }
                PeerState::HalfClosed => {}
            }
        }
    }
}

/// The client of a non-streamed request, watched while its answer is computed (an extractor;
/// nothing is watched without a TCP socket, e.g. in unit tests).
#[derive(Debug, Clone, Copy)]
pub struct ClientWatch(Option<PeerWatch>);

impl FromRequest for ClientWatch {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(Self(PeerWatch::of(req))))
    }
}

impl ClientWatch {
    /// Runs `work` unless the client goes first; then `work` is dropped (which cancels what it
    /// owns) and the answer is `None`.
    pub async fn unless_gone<T>(self, work: impl Future<Output = T>) -> Option<T> {
        let Some(peer) = self.0 else {
            return Some(work.await);
        };
        tokio::select! {
            result = work => Some(result),
            () = peer.gone(Duration::from_millis(50)) => {
                tracing::info!("client disconnected; generation cancelled");
                None
            }
        }
    }

    /// [`Self::unless_gone`] for a fallible answer; a departed client gets an error nobody
    /// will read.
    pub async fn collect<T>(
        self,
        work: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        self.unless_gone(work)
            .await
            .unwrap_or_else(|| Err(ApiError::invalid_request("client disconnected")))
    }
}
