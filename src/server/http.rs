//! The `/metrics` endpoint: one HTTP/1.x request per connection, parsed with `httparse`,
//! answered with the Prometheus text format and closed. Only `GET` and `HEAD` of
//! `/metrics` succeed; every other request gets its 4xx. Reads are bounded in size and
//! time, so a client that sends nothing cannot hold the scraper thread for long.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::conn::Conn;

/// The largest request head read.
pub const MAX_REQUEST: usize = 8 * 1024;
/// How long a client has to send its request head.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The content type of the Prometheus text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a request asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (`head`: `HEAD /metrics`, headers only).
    Metrics {
        /// Send the headers only.
        head: bool,
    },
    /// A complete request for anything else: this status and reason.
    Error(u16, &'static str),
    /// The head is not complete yet.
    Partial,
}

/// Routes a request head (sans-IO, so every case is a unit test).
pub fn route(buf: &[u8]) -> Route {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Partial) => {
            if buf.len() >= MAX_REQUEST {
                Route::Error(431, "Request Header Fields Too Large")
            } else {
                Route::Partial
            }
        }
        Err(httparse::Error::TooManyHeaders) => {
            Route::Error(431, "Request Header Fields Too Large")
        }
        Err(_) => Route::Error(400, "Bad Request"),
        Ok(httparse::Status::Complete(_)) => {
            let path = req.path.unwrap_or("");
            let path = path.split_once('?').map_or(path, |(p, _)| p);
            let head = match req.method {
                Some("GET") => false,
                Some("HEAD") => true,
                _ => return Route::Error(405, "Method Not Allowed"),
            };
            if path == "/metrics" {
                Route::Metrics { head }
            } else {
                Route::Error(404, "Not Found")
            }
        }
    }
}

/// Answers one scrape on `conn` and closes it.
pub fn serve_metrics(conn: &mut Conn) {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let _ = conn.stream.set_write_timeout(Some(REQUEST_TIMEOUT));
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let route = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.stream.set_read_timeout(Some(left)).is_err() {
            break Route::Error(408, "Request Timeout");
        }
        match conn.stream.read(&mut chunk) {
            Ok(0) => break Route::Partial,
            Ok(n) => {
                let room = MAX_REQUEST.saturating_sub(buf.len());
                buf.extend_from_slice(&chunk[..n.min(room)]);
                match route(&buf) {
                    Route::Partial => continue,
                    r => break r,
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break Route::Error(408, "Request Timeout"),
        }
    };
    let response = match route {
        Route::Partial => None,
        Route::Metrics { head } => {
            let body = crate::metrics::get().render();
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\n\
                 Cache-Control: no-store\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .into_bytes();
            if !head {
                r.extend_from_slice(body.as_bytes());
            }
            Some(r)
        }
        Route::Error(code, reason) => {
            let body = format!("{code} {reason}\n");
            let allow = if code == 405 {
                "Allow: GET, HEAD\r\n"
            } else {
                ""
            };
            Some(
                format!(
                    "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
                     Content-Length: {}\r\n{allow}Connection: close\r\n\r\n{body}",
                    body.len()
                )
                .into_bytes(),
            )
        }
    };
    if let Some(r) = response {
        let _ = conn.stream.write_all(&r);
        let _ = conn.stream.flush();
    }
    conn.close();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_and_head_of_metrics_are_served() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: text/plain\r\n\r\n"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            route(b"HEAD /metrics HTTP/1.0\r\n\r\n"),
            Route::Metrics { head: true }
        );
        assert_eq!(
            route(b"GET /metrics?name[]=x HTTP/1.1\r\n\r\n"),
            Route::Metrics { head: false }
        );
    }

    #[test]
    fn nothing_but_that_path_is_answered() {
        assert_eq!(
            route(b"GET / HTTP/1.1\r\n\r\n"),
            Route::Error(404, "Not Found")
        );
        assert_eq!(
            route(b"GET /metrics/../etc HTTP/1.1\r\n\r\n"),
            Route::Error(404, "Not Found")
        );
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n"),
            Route::Error(405, "Method Not Allowed")
        );
        assert_eq!(
            route(b"\x16\x03\x01garbage\r\n\r\n"),
            Route::Error(400, "Bad Request")
        );
    }

    #[test]
    fn an_incomplete_head_waits_and_an_endless_one_is_431() {
        assert_eq!(route(b"GET /metrics HTTP/1.1\r\nHost"), Route::Partial);
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.resize(MAX_REQUEST, b'a');
        assert_eq!(
            route(&big),
            Route::Error(431, "Request Header Fields Too Large")
        );
        let many = format!("GET /metrics HTTP/1.1\r\n{}\r\n", "A: b\r\n".repeat(40));
        assert_eq!(
            route(many.as_bytes()),
            Route::Error(431, "Request Header Fields Too Large")
        );
    }
}
