//! `sluice coldstart`: starts each Lambda's release binary the way Lambda does and times
//! it. The binary gets the environment `template.yaml` gives its function and talks to a
//! minimal Lambda Runtime API served here on loopback (`AWS_LAMBDA_RUNTIME_API`), which
//! hands it one invocation: a one-record event from `events/`.
//!
//! Every stage's first invocation makes AWS calls (ingest and enrich put records even
//! when everything is dead-lettered; aggregate and detect read and write DynamoDB; the
//! query function reads it), so "exec → first response" without an endpoint would time
//! the SDK's connection-refused retries, not the function. The same loopback server
//! therefore answers the AWS JSON protocol too (`AWS_ENDPOINT_URL` points at it): Kinesis
//! `PutRecords` gets one success entry per record sent, every other operation an empty
//! object (no item, nothing unprocessed, an update that succeeded). That times what a
//! cold start really costs — SDK client set-up, credential resolution, the first HTTP
//! connection, request signing — minus the network round trip to AWS.
//!
//! Measured per run: exec → first `GET /next` (the runtime is ready), exec → first
//! `POST .../response` or `.../error` (the first invocation is done), and the peak RSS
//! (`VmHWM` of `/proc/<pid>/status`, read once the binary polls for its second
//! invocation, then it is killed). Medians over `--runs`.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::Args;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// The runtime API's version prefix.
const API: &str = "/2018-06-01/runtime";
/// The request id of the one invocation handed out.
const REQUEST_ID: &str = "coldstart-0001";
/// How long one run may take before it is reported as hung.
const RUN_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest request head or body accepted (an event response is a few KB).
const MAX_BYTES: usize = 8 * 1024 * 1024;

#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  cargo build --release -p sluice-ingest -p sluice-enrich -p sluice-aggregate -p sluice-detect -p sluice-query\n  sluice coldstart --runs 7\n  sluice coldstart --bin-dir target/release --stage ingest --json"
)]
pub struct ColdStartArgs {
    /// Directory holding the Lambda binaries (`ingest`, `enrich`, `aggregate`, `detect`,
    /// `query`), e.g. target/release.
    #[arg(long, default_value = "target/release")]
    pub bin_dir: PathBuf,
    /// Directory holding the event fixtures (`events/<stage>/...`).
    #[arg(long, default_value = "events")]
    pub events_dir: PathBuf,
    /// Stages to start (repeatable); all five when absent.
    #[arg(long = "stage", value_parser = ["ingest", "enrich", "aggregate", "detect", "query"])]
    pub stages: Vec<String>,
    /// Starts per stage; the medians are reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// One JSON line per stage instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One function: its binary, its event fixture and the environment the template gives it.
struct Function {
    name: &'static str,
    /// Under the events directory; for Kinesis stages only the first record is kept.
    event: &'static str,
    env: &'static [(&'static str, &'static str)],
}

const FUNCTIONS: [Function; 5] = [
    Function {
        name: "ingest",
        event: "ingest/mixed.json",
        env: &[
            ("OUTPUT_STREAM", "sluice-valid"),
            ("DEAD_LETTER_STREAM", "sluice-dead-letters"),
            ("MAX_CLOCK_SKEW_SECONDS", "300"),
            ("ALLOWED_LATENESS_SECONDS", "300"),
        ],
    },
    Function {
        name: "enrich",
        event: "enrich/valid.json",
        env: &[
            ("OUTPUT_STREAM", "sluice-enriched"),
            ("DEAD_LETTER_STREAM", "sluice-dead-letters"),
            ("REFERENCE_TABLE", "sluice-reference"),
            ("REFERENCE_CACHE_TTL_SECONDS", "300"),
        ],
    },
    Function {
        name: "aggregate",
        event: "aggregate/enriched.json",
        env: &[
            ("OUTPUT_STREAM", "sluice-window-updates"),
            ("DEAD_LETTER_STREAM", "sluice-dead-letters"),
            ("AGGREGATES_TABLE", "sluice-aggregates"),
            ("WINDOWS", "60,3600"),
            ("DELIVERY", "exactly-once"),
            ("ALLOWED_LATENESS_SECONDS", "300"),
            ("AGGREGATE_RETENTION_DAYS", "30"),
        ],
    },
    Function {
        name: "detect",
        event: "detect/window-updates.json",
        env: &[
            ("OUTPUT_STREAM", "sluice-alerts"),
            ("DEAD_LETTER_STREAM", "sluice-dead-letters"),
            ("RULES_TABLE", "sluice-rules"),
            ("ALERTS_TABLE", "sluice-alerts"),
            ("AGGREGATES_TABLE", "sluice-aggregates"),
            ("RULES_CACHE_TTL_SECONDS", "60"),
        ],
    },
    Function {
        name: "query",
        event: "query/aggregates-group.json",
        env: &[
            ("AGGREGATES_TABLE", "sluice-aggregates"),
            ("ALERTS_TABLE", "sluice-alerts"),
        ],
    },
];

/// What one start measured.
#[derive(Debug, Clone, PartialEq)]
struct RunResult {
    to_first_poll: Duration,
    to_first_response: Duration,
    /// Whether the first invocation ended in `/response` (true) or `/error`.
    succeeded: bool,
    peak_rss_bytes: Option<u64>,
}

pub async fn run(args: ColdStartArgs) -> Result<bool> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let selected: Vec<&Function> = FUNCTIONS
        .iter()
        .filter(|f| args.stages.is_empty() || args.stages.iter().any(|s| s == f.name))
        .collect();
    if !args.json {
        writeln!(
            out,
            "sluice coldstart: {} run(s) per stage, binaries from {}, medians",
            args.runs,
            args.bin_dir.display()
        )?;
        writeln!(
            out,
            "{:<10} {:>14} {:>18} {:>14} {:>10} {:>9}",
            "stage", "exec→poll ms", "exec→response ms", "peak RSS MiB", "binary MiB", "outcome"
        )?;
    }
    let mut all_ok = true;
    for function in selected {
        let binary = args.bin_dir.join(function.name);
        let binary_bytes = std::fs::metadata(&binary)
            .with_context(|| format!("no binary {} (build it in release first)", binary.display()))?
            .len();
        let event = one_record_event(&args.events_dir.join(function.event))?;
        let mut runs = Vec::new();
        for _ in 0..args.runs {
            runs.push(start_once(&binary, function, &event).await?);
        }
        let succeeded = runs.iter().all(|r| r.succeeded);
        all_ok &= succeeded;
        let poll = median(runs.iter().map(|r| r.to_first_poll).collect());
        let response = median(runs.iter().map(|r| r.to_first_response).collect());
        let rss = runs.iter().filter_map(|r| r.peak_rss_bytes).max();
        if args.json {
            let line = json!({
                "stage": function.name,
                "runs": args.runs,
                "exec_to_first_poll_ms_p50": ms(poll),
                "exec_to_first_response_ms_p50": ms(response),
                "peak_rss_bytes": rss,
                "binary_bytes": binary_bytes,
                "first_invocation_succeeded": succeeded,
            });
            writeln!(out, "{line}")?;
        } else {
            writeln!(
                out,
                "{:<10} {:>14.1} {:>18.1} {:>14.1} {:>10.1} {:>9}",
                function.name,
                ms(poll),
                ms(response),
                rss.map_or(f64::NAN, |b| b as f64 / 1_048_576.0),
                binary_bytes as f64 / 1_048_576.0,
                if succeeded { "ok" } else { "error" }
            )?;
        }
    }
    if !args.json {
        writeln!(
            out,
            "peak RSS is the largest VmHWM over the runs; outcome is the first invocation's (ok = /response)"
        )?;
    }
    Ok(all_ok)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The median (the upper one of an even count); zero for no samples.
fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples.get(samples.len() / 2).copied().unwrap_or_default()
}

/// The fixture as the function's event: a Kinesis batch cut to its first record, any
/// other event (the query function's URL request) as it is.
fn one_record_event(path: &Path) -> Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut event: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    if let Some(records) = event.get_mut("Records").and_then(Value::as_array_mut) {
        if records.is_empty() {
            bail!("{} has no records", path.display());
        }
        records.truncate(1);
    }
    Ok(serde_json::to_vec(&event)?)
}

/// What the loopback server saw, in order, for the run loop to time.
#[derive(Debug, PartialEq)]
enum Seen {
    /// A `GET /next`; the first is answered with the event, later ones are held.
    Poll { nth: u32 },
    /// `POST .../response` (true) or `.../error` (false) for the invocation.
    Response { ok: bool },
    /// `POST /init/error`: the binary failed before its first poll.
    InitError { body: String },
}

/// Starts the binary once against a fresh server and measures it.
async fn start_once(binary: &Path, function: &Function, event: &[u8]) -> Result<RunResult> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let state = Arc::new(ServerState {
        event: event.to_vec(),
        function_name: format!("sluice-{}", function.name),
        polls: std::sync::atomic::AtomicU32::new(0),
        seen: tx,
    });
    let server = tokio::spawn(serve(listener, state));

    // std's process API (the CLI's tokio has no `process` feature); the child is killed
    // below on every path.
    let mut command = std::process::Command::new(binary);
    command
        .env_clear()
        .envs(lambda_environment(function, &addr.to_string()))
        .envs(function.env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))?;
    let pid = child.id();

    let measured = tokio::time::timeout(RUN_TIMEOUT, async {
        let mut first_poll = None;
        let mut first_response = None;
        while let Some(seen) = rx.recv().await {
            let at = started.elapsed();
            match seen {
                Seen::Poll { nth: 1 } => first_poll = Some(at),
                Seen::Poll { .. } => {
                    // Polling again: the first invocation is finished; memory peaked.
                    let (Some(poll), Some((response, ok))) = (first_poll, first_response) else {
                        bail!("polled again before answering the first invocation");
                    };
                    return Ok(RunResult {
                        to_first_poll: poll,
                        to_first_response: response,
                        succeeded: ok,
                        peak_rss_bytes: peak_rss(pid),
                    });
                }
                Seen::Response { ok } => first_response = Some((at, ok)),
                Seen::InitError { body } => bail!("init error: {body}"),
            }
        }
        bail!("the runtime API server stopped")
    })
    .await;
    let _ = child.kill();
    server.abort();
    let _ = child.wait();
    // The child is dead: reading its stderr to the end cannot block.
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    match measured {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(e)) => Err(e.context(format!("{}: {}", function.name, tail(&stderr)))),
        Err(_) => bail!(
            "{} did not finish its first invocation within {RUN_TIMEOUT:?}: {}",
            function.name,
            tail(&stderr)
        ),
    }
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(2000);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

/// What Lambda puts in every function's environment (the reserved variables), with
/// the runtime API and every AWS service pointed at `addr`.
fn lambda_environment(function: &Function, addr: &str) -> Vec<(String, String)> {
    let name = format!("sluice-{}", function.name);
    [
        ("AWS_LAMBDA_RUNTIME_API", addr.to_owned()),
        ("AWS_ENDPOINT_URL", format!("http://{addr}")),
        ("AWS_LAMBDA_FUNCTION_NAME", name.clone()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME",
            "2026/01/01/[$LATEST]coldstart".to_owned(),
        ),
        ("AWS_REGION", "us-east-1".to_owned()),
        ("AWS_DEFAULT_REGION", "us-east-1".to_owned()),
        ("AWS_ACCESS_KEY_ID", "test".to_owned()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_owned()),
        ("AWS_SESSION_TOKEN", "test".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("RUST_LOG", "info".to_owned()),
        ("DEADLINE_MARGIN_MS", "2000".to_owned()),
        ("TZ", ":UTC".to_owned()),
        ("LANG", "en_US.UTF-8".to_owned()),
        ("PATH", "/usr/local/bin:/usr/bin:/bin".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// `VmHWM` (peak resident set) of a live process, in bytes.
fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    vm_hwm_bytes(&status)
}

/// Parses `VmHWM:     1234 kB` out of a `/proc/<pid>/status` text.
fn vm_hwm_bytes(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

// ------------------------------------------------------------------ loopback server

struct ServerState {
    event: Vec<u8>,
    function_name: String,
    polls: std::sync::atomic::AtomicU32,
    seen: mpsc::UnboundedSender<Seen>,
}

async fn serve(listener: TcpListener, state: Arc<ServerState>) {
    // Connections live in this set: aborting `serve` drops it and ends them all.
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        connections.spawn(connection(stream, state.clone()));
    }
}

/// Serves HTTP/1.1 requests on one kept-alive connection until it closes.
async fn connection(stream: TcpStream, state: Arc<ServerState>) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    loop {
        let request = match read_request(&mut reader).await {
            Ok(Some(r)) => r,
            Ok(None) | Err(_) => return,
        };
        let reply = match route(&request.method, &request.path) {
            Route::Next => {
                let nth = state
                    .polls
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                    + 1;
                let _ = state.seen.send(Seen::Poll { nth });
                if nth > 1 {
                    // Lambda holds the poll until the next event; so does this.
                    std::future::pending::<()>().await;
                }
                next_invocation(&state.event, &state.function_name, now_ms() + 60_000)
            }
            Route::InvocationResponse { ok, .. } => {
                let _ = state.seen.send(Seen::Response { ok });
                HttpReply::json(202, "application/json", b"{\"status\":\"OK\"}".to_vec())
            }
            Route::InitError => {
                let body = String::from_utf8_lossy(&request.body).into_owned();
                let _ = state.seen.send(Seen::InitError { body });
                HttpReply::json(202, "application/json", b"{\"status\":\"OK\"}".to_vec())
            }
            Route::Aws => fake_aws(request.header("x-amz-target"), &request.body),
            Route::NotFound => HttpReply::json(404, "application/json", b"{}".to_vec()),
        };
        if write.write_all(&reply.to_bytes()).await.is_err() {
            return;
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[derive(Debug, Default)]
struct Request {
    method: String,
    path: String,
    /// Names lower-cased.
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Reads one request; `None` when the peer closed the connection between requests.
async fn read_request<R>(reader: &mut R) -> Result<Option<Request>>
where
    R: AsyncBufReadExt + Unpin,
{
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await? == 0 {
            if head.is_empty() {
                return Ok(None);
            }
            bail!("connection closed inside a request head");
        }
        if line == "\r\n" || line == "\n" {
            if head.is_empty() {
                continue; // stray blank line between requests
            }
            break;
        }
        head.push_str(&line);
        if head.len() > MAX_BYTES {
            bail!("request head over {MAX_BYTES} bytes");
        }
    }
    let mut request = parse_head(&head)?;
    if request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        request.body = read_chunked(reader).await?;
    } else if let Some(length) = request.header("content-length") {
        let length: usize = length
            .trim()
            .parse()
            .map_err(|_| anyhow!("bad content-length {length:?}"))?;
        if length > MAX_BYTES {
            bail!("body of {length} bytes is over {MAX_BYTES}");
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await?;
        request.body = body;
    }
    Ok(Some(request))
}

/// The request line and headers (without the blank line).
fn parse_head(head: &str) -> Result<Request> {
    let mut lines = head.lines();
    let request_line = lines.next().ok_or_else(|| anyhow!("empty request"))?;
    let mut parts = request_line.split_whitespace();
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        bail!("bad request line {request_line:?}");
    };
    if !version.starts_with("HTTP/1.") {
        bail!("unsupported HTTP version {version:?}");
    }
    let mut headers = HashMap::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| anyhow!("bad header line {line:?}"))?;
        headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    // The query string plays no part in routing.
    let path = target.split('?').next().unwrap_or(target).to_owned();
    Ok(Request {
        method: method.to_owned(),
        path,
        headers,
        body: Vec::new(),
    })
}

/// A `Transfer-Encoding: chunked` body (trailers ignored).
async fn read_chunked<R>(reader: &mut R) -> Result<Vec<u8>>
where
    R: AsyncBufReadExt + Unpin,
{
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).await?;
        let size_text = size_line.trim().split(';').next().unwrap_or("");
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| anyhow!("bad chunk size {size_line:?}"))?;
        if body.len() + size > MAX_BYTES {
            bail!("chunked body over {MAX_BYTES} bytes");
        }
        if size == 0 {
            // Trailers, up to the blank line.
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).await?;
        let mut crlf = String::new();
        reader.read_line(&mut crlf).await?;
    }
}

#[derive(Debug, PartialEq)]
enum Route {
    Next,
    InvocationResponse {
        request_id: String,
        ok: bool,
    },
    InitError,
    /// An AWS JSON-protocol call (`POST /` with `X-Amz-Target`).
    Aws,
    NotFound,
}

fn route(method: &str, path: &str) -> Route {
    let Some(rest) = path.strip_prefix(API) else {
        return if method == "POST" && path == "/" {
            Route::Aws
        } else {
            Route::NotFound
        };
    };
    match (method, rest) {
        ("GET", "/invocation/next") => Route::Next,
        ("POST", "/init/error") => Route::InitError,
        ("POST", rest) => {
            let Some(tail) = rest.strip_prefix("/invocation/") else {
                return Route::NotFound;
            };
            match tail.rsplit_once('/') {
                Some((id, "response")) if !id.is_empty() => Route::InvocationResponse {
                    request_id: id.to_owned(),
                    ok: true,
                },
                Some((id, "error")) if !id.is_empty() => Route::InvocationResponse {
                    request_id: id.to_owned(),
                    ok: false,
                },
                _ => Route::NotFound,
            }
        }
        _ => Route::NotFound,
    }
}

#[derive(Debug)]
struct HttpReply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl HttpReply {
    fn json(status: u16, content_type: &str, body: Vec<u8>) -> Self {
        HttpReply {
            status,
            headers: vec![("Content-Type".to_owned(), content_type.to_owned())],
            body,
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            202 => "Accepted",
            400 => "Bad Request",
            404 => "Not Found",
            _ => "Status",
        };
        let mut out = format!("HTTP/1.1 {} {reason}\r\n", self.status);
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// The answer to the first `GET /next`: the event with the headers the runtime reads.
fn next_invocation(event: &[u8], function_name: &str, deadline_ms: u64) -> HttpReply {
    let mut reply = HttpReply::json(200, "application/json", event.to_vec());
    reply.headers.extend(
        [
            ("Lambda-Runtime-Aws-Request-Id", REQUEST_ID.to_owned()),
            ("Lambda-Runtime-Deadline-Ms", deadline_ms.to_string()),
            (
                "Lambda-Runtime-Invoked-Function-Arn",
                format!("arn:aws:lambda:us-east-1:123456789012:function:{function_name}"),
            ),
            (
                "Lambda-Runtime-Trace-Id",
                "Root=1-6955bc5f-2f1c3e8a6b7d4c0e9a1b2c3d;Parent=53995c3f42cd8ad8;Sampled=0"
                    .to_owned(),
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v)),
    );
    reply
}

/// A fake Kinesis / DynamoDB answer: `PutRecords` succeeds for every record sent,
/// anything else gets `{}` (no item found, nothing unprocessed, the write went through).
fn fake_aws(target: Option<&str>, body: &[u8]) -> HttpReply {
    let target = target.unwrap_or("");
    let (service, operation) = target.split_once('.').unwrap_or((target, ""));
    let content_type = if service.starts_with("DynamoDB") {
        "application/x-amz-json-1.0"
    } else {
        "application/x-amz-json-1.1"
    };
    let answer = match operation {
        "PutRecords" => {
            let count = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v.get("Records").and_then(Value::as_array).map(Vec::len))
                .unwrap_or(0);
            let records: Vec<Value> = (0..count)
                .map(|i| {
                    json!({
                        "SequenceNumber": (i + 1).to_string(),
                        "ShardId": "shardId-000000000000"
                    })
                })
                .collect();
            json!({"FailedRecordCount": 0, "Records": records})
        }
        "PutRecord" => json!({"SequenceNumber": "1", "ShardId": "shardId-000000000000"}),
        "Query" | "Scan" => json!({"Items": [], "Count": 0, "ScannedCount": 0}),
        "BatchGetItem" => json!({"Responses": {}, "UnprocessedKeys": {}}),
        "BatchWriteItem" => json!({"UnprocessedItems": {}}),
        _ => json!({}),
    };
    let mut reply = HttpReply::json(200, content_type, answer.to_string().into_bytes());
    reply
        .headers
        .push(("x-amzn-RequestId".to_owned(), "coldstart".to_owned()));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_the_runtime_api_and_aws_calls() {
        assert_eq!(
            route("GET", "/2018-06-01/runtime/invocation/next"),
            Route::Next
        );
        assert_eq!(
            route("POST", "/2018-06-01/runtime/invocation/abc-1/response"),
            Route::InvocationResponse {
                request_id: "abc-1".to_owned(),
                ok: true
            }
        );
        assert_eq!(
            route("POST", "/2018-06-01/runtime/invocation/abc-1/error"),
            Route::InvocationResponse {
                request_id: "abc-1".to_owned(),
                ok: false
            }
        );
        assert_eq!(
            route("POST", "/2018-06-01/runtime/init/error"),
            Route::InitError
        );
        assert_eq!(route("POST", "/"), Route::Aws);
        assert_eq!(route("GET", "/"), Route::NotFound);
        assert_eq!(
            route("POST", "/2018-06-01/runtime/invocation//response"),
            Route::NotFound
        );
        assert_eq!(
            route("GET", "/2018-06-01/runtime/invocation/abc/response"),
            Route::NotFound
        );
    }

    #[test]
    fn next_invocation_carries_the_headers_the_runtime_needs() {
        let reply = next_invocation(b"{\"Records\":[]}", "sluice-ingest", 1_767_225_600_000);
        let text = String::from_utf8(reply.to_bytes()).expect("utf-8");
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
        for needle in [
            "Lambda-Runtime-Aws-Request-Id: coldstart-0001\r\n",
            "Lambda-Runtime-Deadline-Ms: 1767225600000\r\n",
            "Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:sluice-ingest\r\n",
            "Lambda-Runtime-Trace-Id: Root=1-",
            "Content-Length: 14\r\n\r\n{\"Records\":[]}",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in {text}");
        }
    }

    #[test]
    fn parses_a_head_with_case_insensitive_headers_and_query_string() {
        let request = parse_head(
            "POST /2018-06-01/runtime/invocation/x/response?a=1 HTTP/1.1\r\nContent-Length: 2\r\nX-Amz-Target: Kinesis_20131202.PutRecords\r\n",
        )
        .expect("valid head");
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/2018-06-01/runtime/invocation/x/response");
        assert_eq!(request.header("content-length"), Some("2"));
        assert_eq!(
            request.header("x-amz-target"),
            Some("Kinesis_20131202.PutRecords")
        );
        assert!(parse_head("GARBAGE\r\n").is_err());
        assert!(parse_head("GET / HTTP/2\r\n").is_err());
        assert!(parse_head("GET / HTTP/1.1\r\nno-colon\r\n").is_err());
    }

    #[tokio::test]
    async fn reads_requests_with_length_and_chunked_bodies_in_sequence() {
        let wire: &[u8] = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello\
POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n\
GET /2018-06-01/runtime/invocation/next HTTP/1.1\r\nHost: x\r\n\r\n";
        let mut reader = BufReader::new(wire);
        let first = read_request(&mut reader).await.expect("ok").expect("one");
        assert_eq!(first.body, b"hello");
        let second = read_request(&mut reader).await.expect("ok").expect("two");
        assert_eq!(second.path, "/x");
        assert_eq!(second.body, b"abcde");
        let third = read_request(&mut reader).await.expect("ok").expect("three");
        assert_eq!(third.method, "GET");
        assert!(third.body.is_empty());
        assert!(read_request(&mut reader).await.expect("ok").is_none());
        let mut oversized =
            BufReader::new(&b"POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n"[..]);
        assert!(read_request(&mut oversized).await.is_err());
    }

    #[test]
    fn fake_kinesis_accepts_every_record_and_dynamodb_gets_empty_answers() {
        let reply = fake_aws(
            Some("Kinesis_20131202.PutRecords"),
            br#"{"StreamName":"s","Records":[{"Data":"YQ==","PartitionKey":"a"},{"Data":"Yg==","PartitionKey":"b"}]}"#,
        );
        let body: Value = serde_json::from_slice(&reply.body).expect("json");
        assert_eq!(body["FailedRecordCount"], 0);
        assert_eq!(body["Records"].as_array().map(Vec::len), Some(2));
        assert!(
            reply
                .headers
                .iter()
                .any(|(k, v)| k == "Content-Type" && v == "application/x-amz-json-1.1")
        );
        let reply = fake_aws(Some("DynamoDB_20120810.BatchGetItem"), b"{}");
        let body: Value = serde_json::from_slice(&reply.body).expect("json");
        assert_eq!(body, json!({"Responses": {}, "UnprocessedKeys": {}}));
        assert!(
            reply
                .headers
                .iter()
                .any(|(k, v)| k == "Content-Type" && v == "application/x-amz-json-1.0")
        );
    }

    #[test]
    fn vm_hwm_is_parsed_in_bytes() {
        let status = "Name:\tingest\nVmPeak:\t  20000 kB\nVmHWM:\t    5120 kB\nVmRSS:\t 4000 kB\n";
        assert_eq!(vm_hwm_bytes(status), Some(5120 * 1024));
        assert_eq!(vm_hwm_bytes("VmRSS:\t 4000 kB\n"), None);
        assert_eq!(vm_hwm_bytes("VmHWM:\t 4000 MB\n"), None);
    }

    #[test]
    fn median_takes_the_middle_sample() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(5), ms(1), ms(3)]), ms(3));
        assert_eq!(median(vec![ms(4), ms(1)]), ms(4));
        assert_eq!(median(Vec::new()), Duration::ZERO);
    }

    #[test]
    fn kinesis_fixtures_are_cut_to_one_record_and_every_function_has_one() {
        let events = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
        for function in &FUNCTIONS {
            let event = one_record_event(&events.join(function.event)).expect(function.event);
            let value: Value = serde_json::from_slice(&event).expect("json");
            match value.get("Records") {
                Some(records) => assert_eq!(records.as_array().map(Vec::len), Some(1)),
                None => assert!(value.get("rawPath").is_some(), "{}", function.event),
            }
        }
    }
}
