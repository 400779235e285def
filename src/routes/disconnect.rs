//! Noticing that a client of a non-streamed request went away.
//!
//! actix-web keeps polling a handler after its HTTP/1 client disconnects, so a non-streamed
//! generation would run to the end for nobody (streamed ones are cancelled when actix drops the
//! body). At connect time we remember the socket; while collecting a response we peek at it: a
//! read of zero bytes means the peer closed, and dropping the generation cancels it.

use std::any::Any;
use std::time::Duration;

use actix_web::dev::Extensions;

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

impl PeerSocket {
    /// True once the peer has closed its side (or the socket errored).
    pub fn closed(&self) -> bool {
        #[cfg(unix)]
        {
            use std::os::fd::FromRawFd;
            // SAFETY: the dispatcher owns this fd and keeps it open while the handler that asks
            // runs; ManuallyDrop makes sure we never close it. peek() does not change its state
            // (the socket is already non-blocking, so it never waits).
            let stream =
                std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(self.0) });
            let mut byte = [0u8; 1];
            match stream.peek(&mut byte) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            }
        }
        #[cfg(not(unix))]
        false
    }

    /// Resolves when the peer has gone away (checked every `period`).
    pub async fn gone(self, period: Duration) {
        loop {
            tokio::time::sleep(period).await;
            if self.closed() {
                return;
            }
        }
    }
}
