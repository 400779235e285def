//! The client connection as actix-http reads and writes it: a TCP stream that gives
//! actix-http's own error responses the JSON error body of the route's API.
//!
//! actix-http answers some requests itself, before any handler or middleware runs, and has no
//! hook for them: a head it cannot parse (a non-numeric or repeated `Content-Length`, a
//! malformed request line or header) gets `400` with an empty body, a head that does not arrive
//! within the client request timeout gets `408`, one too large `431`. A client then sees an
//! empty body where every other error of ours is the API's JSON. So those responses are
//! recognised on their way out, by their exact shape (one of those statuses directly followed by
//! `content-length: 0`; every response of ours has a body), and given the body of the API the
//! last request line read on this connection belongs to.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use actix_web::rt::net::TcpStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Renders the JSON body for a bare error of `status` answered to a request for `path`
/// (empty when no request line was read).
pub type BareErrorBody = fn(path: &str, status: u16) -> Option<Vec<u8>>;

/// A client TCP connection.
pub struct Connection {
    inner: TcpStream,
    lines: RequestLines,
    render: BareErrorBody,
    rewrite: Option<Rewrite>,
}

/// A replacement for a bare error head being written.
struct Rewrite {
    bytes: Vec<u8>,
    written: usize,
    /// How many bytes of the caller's buffer the replacement stands for.
    replaces: usize,
}

impl Connection {
    /// Wrap an accepted stream.
    pub fn new(inner: TcpStream, render: BareErrorBody) -> Self {
        Self {
            inner,
            lines: RequestLines::default(),
            render,
            rewrite: None,
        }
    }

    /// The stream underneath.
    pub fn stream(&self) -> &TcpStream {
        &self.inner
    }
}

impl AsyncRead for Connection {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.lines.feed(&buf.filled()[before..]);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Connection {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.rewrite.is_none() {
            if let Some(at) = find_bare_error(buf) {
                if at.start > 0 {
                    // What comes before goes out unchanged; the head starts the next write.
                    return Pin::new(&mut this.inner).poll_write(cx, &buf[..at.start]);
                }
                if let Some(body) = (this.render)(this.lines.path(), at.status) {
                    this.rewrite = Some(Rewrite {
                        bytes: with_body(&buf[..at.end], &body),
                        written: 0,
                        replaces: at.end,
                    });
                }
            }
        }
        let Some(r) = this.rewrite.as_mut() else {
            return Pin::new(&mut this.inner).poll_write(cx, buf);
        };
        // The caller retries with the same buffer until this reports it written.
        while r.written < r.bytes.len() {
            let n = ready!(Pin::new(&mut this.inner).poll_write(cx, &r.bytes[r.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            r.written += n;
        }
        let replaced = r.replaces;
        this.rewrite = None;
        Poll::Ready(Ok(replaced))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Where a bare error response's head lies in a write buffer.
#[derive(Debug, PartialEq, Eq)]
struct BareError {
    start: usize,
    /// Just past the blank line that ends the head.
    end: usize,
    status: u16,
}

/// The statuses actix-http answers by itself, as their status lines.
const BARE_STATUS: [(u16, &[u8]); 3] = [
    (400, b" 400 Bad Request\r\n"),
    (408, b" 408 Request Timeout\r\n"),
    (431, b" 431 Request Header Fields Too Large\r\n"),
];

const EMPTY: &[u8] = b"content-length: 0\r\n";

fn find_bare_error(buf: &[u8]) -> Option<BareError> {
    let finder = memchr::memmem::Finder::new(b"HTTP/1.");
    for start in finder.find_iter(buf) {
        let line = &buf[start + 8..];
        let Some((status, status_line)) = BARE_STATUS.iter().find(|(_, l)| line.starts_with(l))
        else {
            continue;
        };
        if !line[status_line.len()..].starts_with(EMPTY) {
            continue;
        }
        let head = &buf[start..];
        let end = memchr::memmem::find(head, b"\r\n\r\n")? + 4;
        return Some(BareError {
            start,
            end: start + end,
            status: *status,
        });
    }
    None
}

/// The head with its empty length replaced by the body's, then the body.
fn with_body(head: &[u8], body: &[u8]) -> Vec<u8> {
    let at = memchr::memmem::find(head, EMPTY).unwrap_or(head.len());
    let mut out = Vec::with_capacity(head.len() + body.len() + 48);
    out.extend_from_slice(&head[..at]);
    out.extend_from_slice(
        format!(
            "content-length: {}\r\ncontent-type: application/json\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(&head[(at + EMPTY.len()).min(head.len())..]);
    out.extend_from_slice(body);
    out
}

/// Follows the bytes read for request lines (`METHOD /path HTTP/1.x`), keeping the newest path.
/// Body bytes pass through it too; only the first bytes of each line are kept, so a line that
/// merely looks like a request line inside a body can at worst pick the other API's error shape.
#[derive(Default)]
struct RequestLines {
    line: Vec<u8>,
    path: String,
}

/// Enough of a line for a method, a path and a version.
const LINE_KEEP: usize = 512;

impl RequestLines {
    fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (part, done) = match memchr::memchr(b'\n', bytes) {
                Some(i) => (&bytes[..i], Some(i + 1)),
                None => (bytes, None),
            };
            let room = LINE_KEEP.saturating_sub(self.line.len());
            self.line.extend_from_slice(&part[..part.len().min(room)]);
            let Some(next) = done else { break };
            if let Some(path) = request_path(&self.line) {
                self.path = path;
            }
            self.line.clear();
            bytes = &bytes[next..];
        }
    }

    fn path(&self) -> &str {
        &self.path
    }
}

/// The path of a request line, without its query.
fn request_path(line: &[u8]) -> Option<String> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let method_ok = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase());
    if !method_ok || !version.starts_with("HTTP/") || parts.next().is_some() {
        return None;
    }
    // Absolute form (`http://host/path`) names the path after the authority.
    let target = match target.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let path = target.split(['?', '#']).next().unwrap_or_default();
    Some(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BARE_400: &[u8] =
        b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\ndate: Wed, 02 Dec 2026 00:27:31 GMT\r\n\r\n";

    #[test]
    fn actix_bare_error_heads_are_found_where_they_start() {
        let found = find_bare_error(BARE_400).expect("found");
        assert_eq!(
            (found.start, found.end, found.status),
            (0, BARE_400.len(), 400)
        );
        let mut after_a_reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        let start = after_a_reply.len();
        after_a_reply.extend_from_slice(BARE_400);
        assert_eq!(find_bare_error(&after_a_reply).expect("found").start, start);
        let timeout =
            b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n";
        assert_eq!(find_bare_error(timeout).expect("found").status, 408);
    }

    #[test]
    fn responses_with_a_body_or_other_statuses_are_left_alone() {
        let ours = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 17\r\ncontent-type: application/json\r\n\r\n{\"error\":{}}";
        assert_eq!(find_bare_error(ours), None);
        let empty_ok = b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(find_bare_error(empty_ok), None);
        // A head cut off by the buffer's end is not rewritten (it goes out as it is).
        assert_eq!(find_bare_error(&BARE_400[..40]), None);
    }

    #[test]
    fn the_rewritten_head_carries_the_body_and_keeps_the_other_headers() {
        let out = with_body(BARE_400, br#"{"error":{}}"#);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n"));
        assert!(text.contains("content-type: application/json\r\n"));
        assert!(text.contains("connection: close\r\ndate: Wed"));
        assert!(text.ends_with("\r\n\r\n{\"error\":{}}"));
    }

    #[test]
    fn the_newest_request_line_is_followed_across_reads() {
        let mut lines = RequestLines::default();
        lines.feed(b"POST /v1/mess");
        assert_eq!(lines.path(), "");
        lines.feed(b"ages?beta=true HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n");
        assert_eq!(lines.path(), "/v1/messages");
        lines.feed(b"GET http://localhost:8080/v1/models HTTP/1.1\r\n\r\n");
        assert_eq!(lines.path(), "/v1/models");
        // Header and body lines do not count.
        lines.feed(b"Host: GET /v1/messages HTTP/1.1\r\n{\"a\": 1}\n");
        assert_eq!(lines.path(), "/v1/models");
        assert_eq!(request_path(b"GARBAGE"), None);
        assert_eq!(request_path(b"get / HTTP/1.1"), None);
    }
}
