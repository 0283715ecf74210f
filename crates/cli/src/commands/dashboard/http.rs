//! A small HTTP/1.1 server for the dashboard: GET (and HEAD) only, one request per
//! connection (`Connection: close`), bounded request size, and every request checked
//! by a [`Gate`] (the dashboard's is `access::Access`: Host header, token) before it is
//! routed. It serves one page and a
//! few JSON endpoints to a browser, so it keeps the dependency tree to tokio alone
//! instead of pulling a web framework.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What every request passes before it is routed: `Err` is the answer that refuses it.
pub trait Gate: Send + Sync + 'static {
    fn check(&self, req: &mut Request) -> Result<(), Response>;
}

/// The most a request head may take (request line and headers).
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// How long a client may take to send its request head.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed request: method, path (percent-decoded), query parameters in the order
/// given (a repeated name is kept twice: the query API refuses it by name), the HTTP
/// version and the headers (names in lowercase, values trimmed, in the order given).
#[derive(Debug, PartialEq)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub params: Vec<(String, String)>,
    pub version: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The first value of a parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of a header (`name` in lowercase).
    pub fn header<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What a handler answers. The body is shared: a cached overview is sent to every
/// request without a copy.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    /// Headers besides the ones every response has (`Allow`, `WWW-Authenticate`).
    pub headers: Vec<(&'static str, String)>,
    pub body: Arc<[u8]>,
}

impl Response {
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::shared_json(status, body.into().into())
    }

    pub fn shared_json(status: u16, body: Arc<[u8]>) -> Self {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }

    pub fn html(body: impl Into<Vec<u8>>) -> Self {
        Response {
            status: 200,
            content_type: "text/html; charset=utf-8",
            headers: Vec::new(),
            body: body.into().into(),
        }
    }

    /// A short plain-text reason, for refusals a person reads in the browser.
    pub fn text(status: u16, reason: &str) -> Self {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            headers: Vec::new(),
            body: format!("{reason}\n").into_bytes().into(),
        }
    }

    /// A JSON error body `{"error": message}`.
    pub fn error(status: u16, message: &str) -> Self {
        Self::json(status, serde_json::json!({ "error": message }).to_string())
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

/// The reason phrase of every status this server sends (RFC 9110's names; 431 is RFC
/// 6585's).
fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Unknown",
    }
}

/// Why a request head could not be read.
#[derive(Debug, PartialEq)]
pub enum BadRequest {
    /// Not `METHOD TARGET HTTP/1.x`, or a header line without a colon.
    Malformed(String),
    TooLarge,
}

/// Parses a request head: the request line and the headers (no bodies, no
/// keep-alive). The target's path and query are percent-decoded; `+` in the query is a
/// space, as browsers encode forms.
pub fn parse_head(head: &[u8]) -> Result<Request, BadRequest> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.lines();
    let line = lines.next().unwrap_or_default();
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
    let mut headers = Vec::new();
    for line in lines.take_while(|l| !l.is_empty()) {
        let Some((name, value)) = line.split_once(':') else {
            return Err(BadRequest::Malformed(format!(
                "header line {line:?} is not NAME: VALUE"
            )));
        };
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    Ok(Request {
        method: method.to_owned(),
        path: decode(path, false),
        params,
        version: version.to_owned(),
        headers,
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

/// The status line and headers of a response (the body follows, but not for HEAD).
pub fn encode_head(response: &Response) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n",
        response.status,
        reason_phrase(response.status),
        response.content_type,
        response.body.len()
    );
    for (name, value) in &response.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// The answer to a head: refused when it is malformed, too large or not allowed by
/// `gate`, else the handler's (for GET and HEAD). Also returns whether to omit the
/// body (HEAD).
async fn answer<G, H, F>(
    head: Result<Vec<u8>, BadRequest>,
    gate: &G,
    handler: &H,
) -> (Response, bool)
where
    G: Gate,
    H: Fn(Request) -> F,
    F: Future<Output = Response>,
{
    let mut req = match head.and_then(|h| parse_head(&h)) {
        Err(BadRequest::TooLarge) => {
            let limit = format!("request head larger than {MAX_HEAD_BYTES} bytes");
            return (Response::error(431, &limit), false);
        }
        Err(BadRequest::Malformed(m)) => return (Response::error(400, &m), false),
        Ok(req) => req,
    };
    if let Err(refused) = gate.check(&mut req) {
        return (refused, req.method == "HEAD");
    }
    match req.method.as_str() {
        "GET" | "HEAD" => {
            let head_only = req.method == "HEAD";
            (handler(req).await, head_only)
        }
        _ => (
            Response::error(405, &format!("method {:?}: only GET and HEAD", req.method))
                .with_header("Allow", "GET, HEAD"),
            false,
        ),
    }
}

async fn serve_connection<G, H, F>(
    mut stream: TcpStream,
    gate: Arc<G>,
    handler: Arc<H>,
) -> std::io::Result<()>
where
    G: Gate,
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send,
{
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let (response, head_only) = answer(head, gate.as_ref(), handler.as_ref()).await;
    stream.write_all(&encode_head(&response)).await?;
    if !head_only {
        stream.write_all(&response.body).await?;
    }
    stream.shutdown().await
}

/// Accepts connections until the task is dropped, each served on its own task.
pub async fn serve<G, H, F>(listener: TcpListener, gate: G, handler: H)
where
    G: Gate,
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Response> + Send + 'static,
{
    let handler = Arc::new(handler);
    let gate = Arc::new(gate);
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let (gate, handler) = (gate.clone(), handler.clone());
                tokio::spawn(async move {
                    if let Err(e) = serve_connection(stream, gate, handler).await {
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
    use crate::commands::dashboard::access::Access;

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
    fn headers_are_parsed_with_lowercase_names() {
        let req =
            parse_head(b"GET / HTTP/1.0\r\nHost: Example:80\r\nX-A:  b c \r\nx-a: d\r\n\r\nbody")
                .expect("parse");
        assert_eq!(req.version, "HTTP/1.0");
        assert_eq!(req.header("host").collect::<Vec<_>>(), ["Example:80"]);
        assert_eq!(req.header("x-a").collect::<Vec<_>>(), ["b c", "d"]);
        assert!(matches!(
            parse_head(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n"),
            Err(BadRequest::Malformed(m)) if m.contains("\"no colon here\"")
        ));
    }

    #[test]
    fn a_response_has_its_length_and_extra_headers() {
        let r = Response::json(200, "{}").with_header("Allow", "GET, HEAD");
        let head = String::from_utf8(encode_head(&r)).expect("utf8");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Length: 2\r\n"), "{head}");
        assert!(head.ends_with("\r\nAllow: GET, HEAD\r\n\r\n"), "{head}");
    }

    /// Each status has its own phrase (the 413 once read "Request Header Fields Too
    /// Large", which is 431's).
    #[test]
    fn every_status_has_its_own_reason_phrase() {
        let names = [
            (200, "OK"),
            (400, "Bad Request"),
            (401, "Unauthorized"),
            (403, "Forbidden"),
            (404, "Not Found"),
            (405, "Method Not Allowed"),
            (413, "Content Too Large"),
            (431, "Request Header Fields Too Large"),
            (500, "Internal Server Error"),
            (502, "Bad Gateway"),
            (503, "Service Unavailable"),
        ];
        for (status, name) in names {
            assert_eq!(reason_phrase(status), name, "{status}");
        }
    }

    /// Sends `request` to `addr` and reads the whole answer.
    async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(request).await.expect("write");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.expect("read");
        reply
    }

    #[tokio::test]
    async fn a_server_answers_over_tcp_and_refuses_what_it_does_not_serve() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let access = Access::new(addr.ip(), &[], None);
        let server = tokio::spawn(serve(listener, access, |req: Request| async move {
            Response::json(200, format!("{{\"path\":{:?}}}", req.path))
        }));
        let reply = exchange(addr, b"GET /api/x%20y HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.ends_with("{\"path\":\"/api/x y\"}"), "{reply}");
        let reply = exchange(addr, b"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(
            reply.starts_with("HTTP/1.1 200 OK") && reply.ends_with("\r\n\r\n"),
            "{reply}"
        );

        let reply = exchange(addr, b"POST / HTTP/1.1\r\nHost: localhost\r\n\r\n").await;
        assert!(
            reply.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
            "{reply}"
        );
        assert!(reply.contains("\r\nAllow: GET, HEAD\r\n"), "{reply}");

        let reply = exchange(addr, b"GET / HTTP/1.1\r\nHost: attacker.example\r\n\r\n").await;
        assert!(reply.starts_with("HTTP/1.1 403 Forbidden\r\n"), "{reply}");
        assert!(reply.contains("Content-Type: text/plain"), "{reply}");
        assert!(!reply.contains("path"), "{reply}");

        // Too large a head (read_head stops reading past MAX_HEAD_BYTES).
        let handler = |_: Request| async { Response::json(200, "{}") };
        let access = Access::new(addr.ip(), &[], None);
        let (r, _) = answer(Err(BadRequest::TooLarge), &access, &handler).await;
        let head = String::from_utf8(encode_head(&r)).expect("utf8");
        assert!(
            head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{head}"
        );
        server.abort();
    }
}
