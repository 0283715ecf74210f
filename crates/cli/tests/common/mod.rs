//! Shared by the CLI's test targets: an input generator with its own independent fold
//! (so the expected aggregates share no code with the pipeline), the comparison of
//! `--json` aggregate lines with it, temp dirs, and (for the end-to-end tests against
//! local endpoints) running the `sluice` binary with a unique deployment prefix.

// Each test target uses a different part of this module.
#![allow(dead_code)]

pub mod sql;

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::Value;

pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

pub const BASE_MS: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z

/// Expected (count, sum, min, max) per (key, type, window seconds, window start ms).
pub type Expected = BTreeMap<(String, String, i64, i64), (u64, f64, f64, f64)>;

/// Writes `events` lines (one per event: about 2% invalid, 2.5% producer repeats of an
/// earlier line) to a file in `dir`, and folds the valid ones, de-duplicated by id, into
/// 60 s and 3600 s windows. Returns the file, the expected aggregates and how many lines
/// are invalid.
pub fn write_input(
    dir: &std::path::Path,
    events: usize,
    seed: u64,
) -> (std::path::PathBuf, Expected, usize) {
    write_input_spanning(dir, events, seed, 10_800_000)
}

/// [`write_input`] with the events spread over `span_ms` of event time (fewer windows
/// keep emulated DynamoDB tables small: moto's transactions slow down as tables grow).
pub fn write_input_spanning(
    dir: &std::path::Path,
    events: usize,
    seed: u64,
    span_ms: i64,
) -> (std::path::PathBuf, Expected, usize) {
    let mut rng = Lcg(seed);
    let mut lines = Vec::new();
    let mut expected: Expected = BTreeMap::new();
    let mut seen = HashSet::new();
    let mut invalid = 0;
    let mut emitted: Vec<String> = Vec::new();
    for i in 0..events {
        if rng.next() % 50 == 0 {
            lines.push(match rng.next() % 3 {
                0 => "{not json".to_owned(),
                1 => format!(r#"{{"id":"x{i}","type":"t","ts":1,"value":1}}"#),
                _ => format!(r#"{{"id":"x{i}","key":"k","type":"t","ts":1,"value":"NaN"}}"#),
            });
            invalid += 1;
            continue;
        }
        if rng.next() % 40 == 0 && !emitted.is_empty() {
            // A producer retry: the very same event again.
            let again = emitted[(rng.next() as usize) % emitted.len()].clone();
            lines.push(again);
            continue;
        }
        let key = format!("dev-{}", rng.next() % 12);
        let metric = if rng.next() % 3 == 0 {
            "pressure"
        } else {
            "temp"
        };
        // `span_ms` of event time, 90 s of out-of-order jitter (within the lateness).
        let ts = BASE_MS + (i as i64 * span_ms / events as i64) - (rng.next() % 90_000) as i64;
        let value = (rng.next() % 200_000) as f64 / 1000.0 - 50.0;
        let id = format!("ev-{i}");
        let ts_field = if i % 2 == 0 {
            format!("{ts}")
        } else {
            format!("\"{}\"", chrono_like(ts))
        };
        let line = format!(
            r#"{{"id":"{id}","key":"{key}","type":"{metric}","ts":{ts_field},"value":{value}}}"#
        );
        emitted.push(line.clone());
        lines.push(line);
        if seen.insert(id) {
            for size in [60_000i64, 3_600_000] {
                let start = ts - ts.rem_euclid(size);
                let e = expected
                    .entry((key.clone(), metric.to_owned(), size / 1000, start))
                    .or_insert((0, 0.0, f64::INFINITY, f64::NEG_INFINITY));
                e.0 += 1;
                e.1 += value;
                e.2 = e.2.min(value);
                e.3 = e.3.max(value);
            }
        }
    }
    let path = dir.join(format!("input-{seed}.ndjson"));
    std::fs::write(&path, lines.join("\n")).expect("write input");
    (path, expected, invalid)
}

/// RFC 3339 with milliseconds, computed by hand so the test does not share code with
/// the pipeline.
pub fn chrono_like(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Window start (a whole minute within two days of `BASE_MS`) back to epoch ms.
pub fn parse_start(s: &str) -> i64 {
    // Inverse of chrono_like for whole seconds: compare through formatting.
    let secs = BASE_MS - 86_400_000 * 2;
    let mut t = secs;
    // Window starts are whole minutes within a few days of BASE_MS: search by formatting.
    while t < BASE_MS + 86_400_000 * 2 {
        if chrono_like(t).replace(".000", "") == s {
            return t;
        }
        t += 60_000;
    }
    panic!("unexpected window start {s}");
}

/// The `"kind":"aggregate"` lines among `lines`, in the shape of [`Expected`].
pub fn aggregates_of(lines: &[Value]) -> Expected {
    let mut got: Expected = BTreeMap::new();
    for l in lines.iter().filter(|l| l["kind"] == "aggregate") {
        let start = parse_start(l["window_start"].as_str().expect("start"));
        got.insert(
            (
                l["key"].as_str().expect("key").to_owned(),
                l["type"].as_str().expect("type").to_owned(),
                l["window_seconds"].as_i64().expect("size"),
                start,
            ),
            (
                l["count"].as_u64().expect("count"),
                l["sum"].as_f64().expect("sum"),
                l["min"].as_f64().expect("min"),
                l["max"].as_f64().expect("max"),
            ),
        );
    }
    got
}

/// The aggregate lines among `lines` (other kinds are ignored) are exactly the windows of
/// `expected`: same set, same count, min and max, sums within 1e-9 relative.
pub fn assert_aggregates_match(lines: &[Value], expected: &Expected) {
    let got = aggregates_of(lines);
    assert_eq!(got.len(), expected.len(), "same set of windows");
    for (k, want) in expected {
        let have = got
            .get(k)
            .unwrap_or_else(|| panic!("missing aggregate {k:?}"));
        assert_eq!(have.0, want.0, "count of {k:?}");
        assert_eq!(have.2, want.2, "min of {k:?}");
        assert_eq!(have.3, want.3, "max of {k:?}");
        let tol = 1e-9 * want.1.abs().max(1.0);
        assert!(
            (have.1 - want.1).abs() <= tol,
            "sum of {k:?}: {} vs {}",
            have.1,
            want.1
        );
    }
}

pub fn tempdir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sluice-demo-test-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

pub fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
}

/// Panics with instructions unless the local endpoints of `eval "$(infra/local/up)"`
/// are configured.
pub fn require_endpoints() {
    for var in [
        "AWS_ENDPOINT_URL_KINESIS",
        "AWS_ENDPOINT_URL_DYNAMODB",
        "AWS_ACCESS_KEY_ID",
        "AWS_REGION",
    ] {
        assert!(
            std::env::var(var).is_ok_and(|v| !v.is_empty()),
            "{var} is not set: the end-to-end tests need local Kinesis and DynamoDB endpoints; \
             start them with eval \"$(infra/local/up)\" (stop with infra/local/down)"
        );
    }
}

/// A deployment prefix no other test (or run) uses: `e2e-<pid>-<n>-<time>`.
pub fn unique_prefix() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "e2e-{}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        rand_suffix() % 1_000_000
    )
}

/// Runs the `sluice` binary with `args`, reaching the endpoints through the standard
/// AWS variables only (`SLUICE_ENDPOINT` and `SLUICE_PREFIX` are cleared so that a
/// developer's shell cannot redirect a test).
pub fn sluice(args: &[&str]) -> Output {
    require_endpoints();
    Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(args)
        .env_remove("SLUICE_ENDPOINT")
        .env_remove("SLUICE_PREFIX")
        .output()
        .expect("run sluice")
}

/// [`sluice`], asserting success; returns (stdout, stderr).
pub fn sluice_ok(args: &[&str]) -> (String, String) {
    let out = sluice(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "sluice {} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        args.join(" "),
        out.status
    );
    (stdout, stderr)
}

/// stdout lines parsed as JSON.
pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// A GET over a plain TCP connection: (status, JSON body).
pub fn get(base: &str, path: &str) -> (u16, Value) {
    let host = base
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = TcpStream::connect(&host).expect("connect");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").expect("send");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read");
    let (head, body) = reply.split_once("\r\n\r\n").expect("head and body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, serde_json::from_str(body).expect("JSON body"))
}

/// Stops the dashboard by its PID when the test ends, passed or not.
pub struct Server(Child);

impl Server {
    /// Stops `child` when the test ends.
    pub fn of(child: Child) -> Self {
        Server(child)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `sluice dashboard` on a free port; returns it with its URL.
pub fn dashboard(prefix: &str) -> (Server, String) {
    require_endpoints();
    let mut child = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["dashboard", "--prefix", prefix, "--port", "0"])
        .args(["--refresh-seconds", "0"])
        .env_remove("SLUICE_ENDPOINT")
        .env_remove("SLUICE_PREFIX")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sluice dashboard");
    let stderr = child.stderr.take().expect("stderr");
    let server = Server(child);
    let mut lines = BufReader::new(stderr).lines();
    let url = lines
        .find_map(|l| {
            l.ok()?
                .strip_prefix("sluice dashboard: ")
                .filter(|u| u.starts_with("http://"))
                .map(str::to_owned)
        })
        .expect("the dashboard prints its URL");
    // Keep reading stderr, so the dashboard's later lines have somewhere to go.
    std::thread::spawn(move || lines.for_each(drop));
    (server, url)
}
