//! A small HTTP/1.1 server for the dashboard: GET (and HEAD) only, one request per
//! connection (`Connection: close`), bounded request size. It serves one page and a few
//! JSON endpoints to a browser on the same machine, so it keeps the dependency tree to
//! tokio alone instead of pulling a web framework.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The most a request head may take (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed request: method, path (percent-decoded) and query parameters in the order
/// given (a repeated name is kept twice: the query API refuses it by name).
#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub params: Vec<(String, String)>,
}

impl Request {
    /// The first value of a parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a handler answers.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            content_type: "application/json",
            body: body.into(),
        }
    }

    pub fn html(body: impl Into<Vec<u8>>) -> Self {
        Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: body.into(),
        }
    }

    /// A JSON error body `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        Self::json(status, serde_json::json!({ "error": message }).to_string())
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Why a request head could not be read.
#[derive(Debug, PartialEq)]
pub enum BadRequest {
    /// Not `METHOD TARGET HTTP/1.x`.
    Malformed(String),
    TooLarge,
}

/// Parses the request line of a head (headers are not needed: no bodies, no
/// keep-alive). The target's path and query are percent-decoded; `+` in the query is a
/// space, as browsers encode forms.
pub fn parse_head(head: &[u8]) -> Result<Request, BadRequest> {
    let text = String::from_utf8_lossy(head);
    let line = text.lines().next().unwrap_or_default();
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BadRequest::Malformed(format!(
            "request line {line:?} is not METHOD TARGET VERSION"
        )));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(BadRequest::Malformed(format!(
            "version {version:?} is not HTTP/1.x"
        )));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k, true), decode(v, true))
        })
        .collect();
    Ok(Request {
        method: method.to_owned(),
        path: decode(path, false),
        params,
    })
}

/// Percent-decoding; an invalid escape is kept as written.
fn decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads a request head: up to the blank line, at most [`MAX_HEAD_BYTES`].
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Result<Vec<u8>, BadRequest>> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 2048];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(Ok(head));
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            return Ok(Ok(head));
        }
        if head.len() > MAX_HEAD_BYTES {
            return Ok(Err(BadRequest::TooLarge));
        }
    }
}

/// The bytes of a response: status line, headers, body (omitted for HEAD).
pub fn encode(response: &Response, head_only: bool) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        response.status,
        reason_phrase(response.status),
        response.content_type,
        response.body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(&response.body);
    }
    out
}

async fn serve_connection<H, F>(mut stream: TcpStream, handler: Arc<H>) -> std::io::Result<()>
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send,
{
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let (response, head_only) = match head.and_then(|h| parse_head(&h)) {
        Err(BadRequest::TooLarge) => (Response::error(413, "request head too large"), false),
        Err(BadRequest::Malformed(m)) => (Response::error(400, &m), false),
        Ok(req) if req.method == "GET" || req.method == "HEAD" => {
            let head_only = req.method == "HEAD";
            (handler(req).await, head_only)
        }
        Ok(req) => (
            Response::error(405, &format!("method {:?}: only GET", req.method)),
            false,
        ),
    };
    stream.write_all(&encode(&response, head_only)).await?;
    stream.shutdown().await
}

/// Accepts connections until the task is dropped, each served on its own task.
pub async fn serve<H, F>(listener: TcpListener, handler: H)
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let handler = Arc::new(handler);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let handler = handler.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, handler).await {
                        tracing::debug!(error = %e, "dashboard connection ended early");
                    }
                });
            }
            Err(e) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "dashboard cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_line_gives_method_path_and_decoded_params() {
        let req = parse_head(
            b"GET /api/aggregates?key=sensor%2D001&type=temp+c&limit=5&flag HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .expect("parse");
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/api/aggregates");
        assert_eq!(req.param("key"), Some("sensor-001"));
        assert_eq!(req.param("type"), Some("temp c"));
        assert_eq!(req.param("limit"), Some("5"));
        assert_eq!(req.param("flag"), Some(""));
        assert_eq!(req.param("nope"), None);
        assert_eq!(req.params.len(), 4);
    }

    #[test]
    fn bad_escapes_are_kept_and_bad_lines_are_refused() {
        assert_eq!(decode("a%zzb%", true), "a%zzb%");
        assert_eq!(decode("%41%", false), "A%");
        assert_eq!(decode("a+b", false), "a+b");
        assert!(matches!(
            parse_head(b"GET /\r\n\r\n"),
            Err(BadRequest::Malformed(_))
        ));
        assert!(matches!(
            parse_head(b"GET / SPDY/3\r\n\r\n"),
            Err(BadRequest::Malformed(_))
        ));
    }

    #[test]
    fn a_response_has_its_length_and_no_body_for_head() {
        let r = Response::json(200, "{}");
        let full = String::from_utf8(encode(&r, false)).expect("utf8");
        assert!(full.starts_with("HTTP/1.1 200 OK\r\n"), "{full}");
        assert!(full.contains("Content-Length: 2\r\n"), "{full}");
        assert!(full.ends_with("\r\n\r\n{}"), "{full}");
        let head = String::from_utf8(encode(&r, true)).expect("utf8");
        assert!(head.ends_with("\r\n\r\n"), "{head}");
    }

    #[tokio::test]
    async fn a_server_answers_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(serve(listener, |req: Request| async move {
            Response::json(200, format!("{{\"path\":{:?}}}", req.path))
        }));
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"GET /api/x%20y HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.expect("read");
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.ends_with("{\"path\":\"/api/x y\"}"), "{reply}");
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream
            .write_all(b"POST / HTTP/1.1\r\n\r\n")
            .await
            .expect("write");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.expect("read");
        assert!(reply.starts_with("HTTP/1.1 405"), "{reply}");
        server.abort();
    }
}
