//! The live web dashboard: `sluice demo --serve PORT` and `sluice dashboard --port PORT`.
//! One page (`assets/dashboard.html`, inline CSS, JS and SVG: no CDN, nothing fetched
//! but this server's own JSON) polls `/api/overview` (charts, dead letters, stages) and
//! `/api/alerts` every two seconds. `/api/aggregates` and `/api/alerts` are the query
//! function's routes, answered by the same code (`sluice_core::query::respond`).
//! Requests pass [`access::Access`] first (Host header, token); overviews are computed
//! at most once per refresh interval and shared ([`snapshot::Snapshots`]).

pub mod access;
pub mod demo_source;
pub mod deployment;
pub mod http;
pub mod overview;
pub mod snapshot;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use sluice_core::ports::ViewCatalog;
use sluice_core::query::respond_with_views;
use sluice_core::stage::sql::SqlPipeline;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::connect::Connection;
use access::Access;
use demo_source::DemoSource;
use deployment::DeploymentSource;
use http::{Request, Response};
use snapshot::Snapshots;

/// The page, compiled into the binary.
const PAGE: &str = include_str!("../../../assets/dashboard.html");

/// Groups charted by default, and at most: an overview lists at most this many groups
/// (with the count of all of them), whatever the size of the table.
const TOP_DEFAULT: usize = 6;
const TOP_MAX: usize = 24;
/// Windows per group's series by default, and at most.
const POINTS_DEFAULT: usize = 30;
const POINTS_MAX: usize = 500;
/// How long the demo reuses an overview: its tables are in memory, but reading them
/// takes their lock from the pipeline; the page polls every 2 s.
const DEMO_REFRESH: Duration = Duration::from_secs(1);

/// Who may reach a served dashboard: shared by `sluice demo --serve` and
/// `sluice dashboard`.
#[derive(Args, Debug, Clone, Default)]
pub struct ListenArgs {
    /// Address to listen on [default: 127.0.0.1]. Any other address is reachable from
    /// other machines: sluice warns on stderr and requires a token (see --token).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<IpAddr>,
    /// Also answer requests whose Host header names NAME (a name the browser reaches
    /// this machine by; any port). Repeatable. localhost, 127.0.0.1, [::1] and the
    /// --bind address are always answered; other names are refused (403), which stops
    /// DNS-rebinding pages.
    #[arg(long = "allow-host", value_name = "NAME", value_parser = access::parse_allowed_host)]
    pub allow_host: Vec<String>,
    /// Require this token: `?token=TOKEN` on the page's URL (the page passes it on to
    /// its API calls) or `Authorization: Bearer TOKEN`. A --bind other than loopback
    /// without --token gets a random one, printed in the URL once.
    #[arg(long, value_name = "TOKEN", value_parser = access::parse_token)]
    pub token: Option<String>,
}

impl ListenArgs {
    fn bind(&self) -> IpAddr {
        self.bind.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }
}

/// `sluice demo`'s flags for serving the dashboard.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Serve the live dashboard on this port while the demo runs, and keep serving after
    /// the input is done until interrupted (Ctrl-C). 0 picks a free port (the URL is
    /// printed on stderr).
    #[arg(long, value_name = "PORT")]
    pub serve: Option<u16>,
    #[command(flatten)]
    pub listen: ListenArgs,
}

#[derive(Args, Debug)]
#[command(
    after_help = "Serves a page that refreshes itself every 2 s: the busiest aggregates as charts, the\nlatest alerts, dead letters by reason, and the stages. Per-stage throughput and lag are\nCloudWatch metrics and show as unavailable here.\n\nExamples:\n  sluice dashboard --port 8080\n  sluice dashboard --port 8080 --endpoint http://localhost:4566 --prefix sluice-dev\n  sluice dashboard --port 8080 --bind 0.0.0.0 --allow-host dash.internal   # prints a URL with a token"
)]
pub struct DashboardArgs {
    #[command(flatten)]
    pub conn: Connection,
    /// Port to serve the page on (0 picks a free one; the URL is printed on stderr).
    #[arg(long, value_name = "PORT")]
    pub port: u16,
    #[command(flatten)]
    pub listen: ListenArgs,
    /// Seconds an overview is reused before the tables are read again (every browser
    /// polling the page shares it; 0: only requests that arrive while it is read).
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub refresh_seconds: u64,
}

/// Where the dashboard's numbers come from.
pub enum Source {
    Demo(DemoSource),
    /// Boxed: it holds SDK clients and the dead-letter tail, the demo only handles.
    Deployment(Box<DeploymentSource>),
}

/// An overview's parameters, normalized: the key its snapshot is kept under.
#[derive(Debug, Clone, Copy, PartialEq)]
struct OverviewQuery {
    window: Option<i64>,
    top: usize,
    points: usize,
}

pub struct Dashboard {
    source: Source,
    snapshots: Snapshots<OverviewQuery>,
    /// A SQL pipeline's stored views: `/api/views` lists them and pages their rows.
    views: Option<Arc<SqlPipeline>>,
}

fn param<T: std::str::FromStr>(req: &Request, name: &str) -> Result<Option<T>, Response> {
    match req.param(name) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            Response::error(
                400,
                &format!("parameter {name}: {v:?} is not a valid number"),
            )
        }),
    }
}

impl Dashboard {
    /// A dashboard over `source`, reusing an overview for `refresh`.
    pub fn new(source: Source, refresh: Duration) -> Arc<Self> {
        Self::with_views(source, refresh, None)
    }

    /// A dashboard that also serves a SQL pipeline's views.
    pub fn with_views(
        source: Source,
        refresh: Duration,
        views: Option<Arc<SqlPipeline>>,
    ) -> Arc<Self> {
        Arc::new(Dashboard {
            source,
            snapshots: Snapshots::new(refresh),
            views,
        })
    }

    /// Routes a request.
    pub async fn handle(&self, req: Request) -> Response {
        match req.path.as_str() {
            "/" | "/index.html" => Response::html(PAGE),
            "/api/overview" => self.overview(&req).await.unwrap_or_else(|r| r),
            "/api/aggregates" | "/api/alerts" => self.query_api(&req).await,
            p if p == "/api/views" || p.starts_with("/api/views/") => self.query_api(&req).await,
            "/api/health" => Response::json(200, r#"{"ok":true}"#),
            _ => Response::error(404, &format!("no such page: {:?}", req.path)),
        }
    }

    /// `/api/overview`: the snapshot of its query, computed at most once per refresh.
    async fn overview(&self, req: &Request) -> Result<Response, Response> {
        let query = OverviewQuery {
            window: param::<i64>(req, "window_seconds")?,
            top: param::<usize>(req, "top")?
                .unwrap_or(TOP_DEFAULT)
                .clamp(1, TOP_MAX),
            points: param::<usize>(req, "points")?
                .unwrap_or(POINTS_DEFAULT)
                .clamp(2, POINTS_MAX),
        };
        let body = self
            .snapshots
            .get(query, || self.compute_overview(query))
            .await?;
        Ok(Response::shared_json(200, body))
    }

    async fn compute_overview(&self, q: OverviewQuery) -> Result<Vec<u8>, Response> {
        let overview = match &self.source {
            Source::Demo(d) => d.overview(q.window, q.top, q.points).await,
            Source::Deployment(d) => d.overview(q.window, q.top, q.points).await,
        };
        serde_json::to_vec(&overview)
            .map_err(|e| Response::error(500, &format!("encoding the overview: {e}")))
    }

    /// `/api/aggregates` and `/api/alerts`: the query function's own handler
    /// ([`sluice_core::query::respond`]) over this source's readers.
    async fn query_api(&self, req: &Request) -> Response {
        let path = req.path.strip_prefix("/api").unwrap_or(&req.path);
        let views = self.views.as_deref().map(|v| v as &dyn ViewCatalog);
        if views.is_none() && path == sluice_core::query::VIEWS_PATH {
            // No pipeline: no views (the page asks, and hides its section).
            return Response::json(200, r#"{"items":[],"next":null}"#);
        }
        let params = &req.params;
        let answer = match &self.source {
            Source::Demo(d) => {
                let (aggregates, alerts) = (d.aggregate_reader(), d.alert_reader());
                respond_with_views(&aggregates, &alerts, views, path, params).await
            }
            Source::Deployment(d) => {
                respond_with_views(d.aggregate_reader(), d.alert_reader(), views, path, params)
                    .await
            }
        };
        Response::json(answer.status, answer.body)
    }
}

/// A line on stderr that cannot stop the server: `eprintln!` panics when stderr is a
/// closed pipe (a parent that read the URL and went away), and the page would go with it.
fn say(line: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A dashboard being served.
pub struct Server {
    /// The page's URL, with `?token=` when one is required.
    pub url: String,
    task: JoinHandle<()>,
}

impl Server {
    /// Binds `port` as `listen` says, prints the URL on stderr (and a warning when the
    /// address is not loopback) and serves in the background.
    pub async fn start(
        dashboard: Arc<Dashboard>,
        listen: &ListenArgs,
        port: u16,
    ) -> Result<Server> {
        let addr = listen.bind();
        let token = match (&listen.token, addr.is_loopback()) {
            (Some(t), _) => Some(t.clone()),
            (None, true) => None,
            (None, false) => Some(access::random_token().context(
                "cannot make a token for a non-loopback --bind (reading /dev/urandom); pass --token TOKEN",
            )?),
        };
        let listener = TcpListener::bind(SocketAddr::new(addr, port))
            .await
            .with_context(|| format!("cannot listen on {addr}:{port}"))?;
        let local = listener.local_addr()?;
        let host = match local.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            IpAddr::V4(ip) => ip.to_string(),
        };
        let query = token
            .as_ref()
            .map(|t| format!("?{}={t}", access::TOKEN_PARAM))
            .unwrap_or_default();
        let url = format!("http://{host}:{}/{query}", local.port());
        if !addr.is_loopback() {
            say(&format!(
                "sluice dashboard: WARNING: listening on {local}, which other machines can reach: \
                 whoever has the URL below (its token) can read what this dashboard shows{}. \
                 Use --bind 127.0.0.1 and an SSH tunnel unless you mean it.",
                match listen.token {
                    Some(_) => "",
                    None => " (the token is random, made for this run)",
                }
            ));
        }
        say(&format!("sluice dashboard: {url}"));
        let access = Access::new(addr, &listen.allow_host, token);
        let task = tokio::spawn(http::serve(listener, access, move |req| {
            let dashboard = dashboard.clone();
            async move { dashboard.handle(req).await }
        }));
        Ok(Server { url, task })
    }

    /// Serves until Ctrl-C, then stops.
    pub async fn until_interrupted(self) -> Result<()> {
        // Without the token: it is printed once.
        let page = self.url.split('?').next().unwrap_or(&self.url);
        say(&format!(
            "sluice dashboard: serving {page} until interrupted (Ctrl-C)"
        ));
        let result = tokio::signal::ctrl_c().await;
        self.task.abort();
        result.context("waiting for Ctrl-C")
    }
}

/// `sluice dashboard`: serves a deployment until interrupted.
pub async fn run(args: DashboardArgs) -> Result<bool> {
    let source = DeploymentSource::connect(&args.conn).await?;
    let dashboard = Dashboard::new(
        Source::Deployment(Box::new(source)),
        Duration::from_secs(args.refresh_seconds),
    );
    Server::start(dashboard, &args.listen, args.port)
        .await?
        .until_interrupted()
        .await?;
    Ok(true)
}

/// `sluice demo --serve`: starts serving the demo's live state.
pub async fn serve_demo(
    args: &ServeArgs,
    pipeline: &crate::pipeline::InProcess,
    title: String,
) -> Result<Option<Server>> {
    let Some(port) = args.serve else {
        let l = &args.listen;
        if l.bind.is_some() || !l.allow_host.is_empty() || l.token.is_some() {
            bail!("--bind, --allow-host and --token are for the dashboard: add --serve PORT");
        }
        return Ok(None);
    };
    let dashboard = Dashboard::with_views(
        Source::Demo(DemoSource::of(pipeline, title)),
        DEMO_REFRESH,
        pipeline.sql.clone(),
    );
    Server::start(dashboard, &args.listen, port).await.map(Some)
}

#[cfg(test)]
mod tests {
    use sluice_local::scenario::{DEFAULT_START_MS, Noise, Scenario};
    use sluice_local::template::{BUNDLED_TEMPLATE, Template};

    use std::time::Instant;

    use super::*;
    use crate::pipeline::InProcess;

    fn pipeline() -> InProcess {
        let template = Template::parse(BUNDLED_TEMPLATE).expect("template");
        InProcess::build(
            &template,
            Scenario::Payments.reference(),
            Scenario::Payments.rules(),
            None,
        )
        .expect("pipeline")
    }

    async fn demo() -> (InProcess, Arc<Dashboard>) {
        let mut p = pipeline();
        let lines: Vec<Vec<u8>> = Scenario::Payments
            .generate(1500, 3, DEFAULT_START_MS, &Noise::default())
            .into_iter()
            .map(String::into_bytes)
            .collect();
        p.produce(&lines).expect("produce");
        p.drain(|_| {}).await.expect("drain");
        let d = Dashboard::new(
            Source::Demo(DemoSource::of(&p, "test".into())),
            Duration::ZERO,
        );
        (p, d)
    }

    /// Writes groups (key, type) numbered `groups` with `windows` 60 s windows each into a demo's
    /// table, as the aggregate stage would have.
    async fn fill(p: &InProcess, groups: std::ops::Range<usize>, windows: usize) {
        use sluice_core::ports::AggregateStore;
        use sluice_core::state::item::{AggregateItem, GroupKey, ItemKey, ItemWrite};
        use sluice_core::state::statistics::AggState;
        use sluice_core::state::window::WindowSpec;
        let mut batch = Vec::new();
        for g in groups {
            for w in 0..windows {
                let mut state = AggState::EMPTY;
                for v in 0..=(g % 7 + w % 3) {
                    state.push(v as f64);
                }
                let mut item = AggregateItem::new(ItemKey {
                    group: GroupKey {
                        key: format!("account-{g:06}"),
                        metric: "amount".into(),
                    },
                    window: WindowSpec::tumbling(60),
                    start_ms: DEFAULT_START_MS + w as i64 * 60_000,
                });
                item.state = state;
                item.version = 1;
                batch.push(ItemWrite {
                    item,
                    expected_version: 0,
                    sealed_page: Vec::new(),
                });
                if batch.len() == 25 {
                    p.store.commit(&batch, None).await.expect("commit");
                    batch.clear();
                }
            }
        }
        if !batch.is_empty() {
            p.store.commit(&batch, None).await.expect("commit");
        }
    }

    /// Resident memory now and at its peak since the last reset, bytes (Linux).
    fn rss() -> (u64, u64) {
        let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
        let kb = |name: &str| -> u64 {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/self/status"))
                * 1024
        };
        (kb("VmRSS:"), kb("VmHWM:"))
    }

    /// Resets the peak resident memory to the current one (Linux).
    fn reset_peak() {
        std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    }

    /// Issue 15's measurement, by hand: `/api/overview` over 200,000 groups of 10
    /// windows, one request and ten at once. Prints time and resident memory added:
    /// cargo test -p sluice --bin sluice overview_cost -- --ignored --nocapture
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "a measurement: builds 2,000,000 items"]
    async fn overview_cost_over_200000_groups() {
        let p = pipeline();
        fill(&p, 0..200_000, 10).await;
        let d = Dashboard::new(
            Source::Demo(DemoSource::of(&p, "cost".into())),
            Duration::ZERO,
        );
        for parallel in [1usize, 10] {
            let (before, _) = rss();
            reset_peak();
            let started = Instant::now();
            let tasks: Vec<_> = (0..parallel)
                .map(|_| {
                    let d = d.clone();
                    tokio::spawn(async move { d.handle(get("/api/overview")).await })
                })
                .collect();
            let mut bytes = 0;
            for t in tasks {
                let r = t.await.expect("task");
                assert_eq!(r.status, 200);
                bytes = r.body.len();
            }
            let took = started.elapsed();
            let (after, peak) = rss();
            println!(
                "overview x{parallel}: {took:?} in all, body {bytes} B, peak RSS +{} MB, after +{} MB",
                peak.saturating_sub(before) / 1_000_000,
                after.saturating_sub(before) / 1_000_000
            );
        }
    }

    fn get(path: &str) -> Request {
        http::parse_head(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
            .expect("request")
    }

    fn body(r: &Response) -> serde_json::Value {
        serde_json::from_slice(&r.body).expect("JSON body")
    }

    #[tokio::test]
    async fn the_routes_answer_with_the_demo_state_and_name_bad_parameters() {
        let (p, d) = demo().await;
        let page = d.handle(get("/")).await;
        assert_eq!(
            (page.status, page.content_type),
            (200, "text/html; charset=utf-8")
        );
        assert_eq!(d.handle(get("/nope")).await.status, 404);

        let o = d.handle(get("/api/overview?top=3")).await;
        assert_eq!(o.status, 200);
        let o = body(&o);
        let ledger = p.stages.ledger.summary();
        assert_eq!(o["totals"]["events_in"], ledger.events_in);
        assert_eq!(o["charts"]["busiest"].as_array().expect("busiest").len(), 3);
        assert_eq!(o["dead_letters"]["total"], ledger.dead_letter);
        let rows = o["stages"]["rows"].as_array().expect("rows");
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0]["stage"], "ingest");
        assert!(rows[0]["records_in"].as_u64() > Some(0), "{o}");
        assert!(
            rows.iter().all(|r| r["backlog_records"] == 0),
            "drained: {o}"
        );

        let bad = d.handle(get("/api/overview?top=many")).await;
        assert_eq!(bad.status, 400);
        assert!(body(&bad)["error"].as_str().expect("error").contains("top"));

        // The query function's routes, under /api.
        let alerts = d.handle(get("/api/alerts?limit=1000")).await;
        assert_eq!(alerts.status, 200);
        let raised = p.alerts.alerts().len();
        assert!(raised > 0, "the scenario's rules fire");
        assert_eq!(
            body(&alerts)["items"].as_array().expect("items").len(),
            raised
        );
        let bad = d.handle(get("/api/alerts?limit=0")).await;
        assert_eq!(
            (bad.status, body(&bad)["parameter"].clone()),
            (400, "limit".into())
        );
        let aggs = d.handle(get("/api/aggregates?limit=5")).await;
        assert_eq!(body(&aggs)["items"].as_array().expect("items").len(), 5);
    }

    /// 3,000 groups, ten concurrent polls asking for more than the most: one snapshot
    /// (the same bytes to all), listing TOP_MAX groups of at most 5 windows and the
    /// count of all 3,000; reused until the refresh is over.
    #[tokio::test]
    async fn concurrent_overviews_share_one_bounded_snapshot() {
        let p = pipeline();
        fill(&p, 0..3000, 8).await;
        let d = Dashboard::new(
            Source::Demo(DemoSource::of(&p, "bounded".into())),
            Duration::from_secs(3600),
        );
        let polls: Vec<_> = (0..10)
            .map(|_| {
                let d = d.clone();
                tokio::spawn(async move { d.handle(get("/api/overview?top=1000&points=5")).await })
            })
            .collect();
        let mut answers = Vec::new();
        for poll in polls {
            answers.push(poll.await.expect("poll"));
        }
        assert!(answers.iter().all(|a| a.status == 200));
        assert!(
            answers
                .iter()
                .all(|a| Arc::ptr_eq(&a.body, &answers[0].body)),
            "one snapshot for ten concurrent polls"
        );
        let o = body(&answers[0]);
        assert_eq!(o["charts"]["groups"], 3000);
        let busiest = o["charts"]["busiest"].as_array().expect("busiest");
        assert_eq!(busiest.len(), TOP_MAX);
        assert!(
            busiest
                .iter()
                .all(|g| g["points"].as_array().map(Vec::len) == Some(5))
        );
        // About 150 bytes a window: the size is bounded by TOP_MAX x points, not by
        // the 24,000 windows in the table.
        let bytes = answers[0].body.len();
        assert!(bytes < TOP_MAX * 5 * 200 + 4096, "{bytes} bytes");

        // More groups: the snapshot stands until the refresh is over.
        fill(&p, 3000..3500, 1).await;
        let again = d.handle(get("/api/overview?points=5&top=1000")).await;
        assert!(Arc::ptr_eq(&again.body, &answers[0].body));
        let fresh = Dashboard::new(
            Source::Demo(DemoSource::of(&p, "bounded".into())),
            Duration::ZERO,
        );
        let o = body(&fresh.handle(get("/api/overview")).await);
        assert_eq!(o["charts"]["groups"], 3500);
    }

    /// A raw request to a served dashboard: (status line, body).
    async fn exchange(url: &str, request: String) -> (String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let host = url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .expect("host");
        let mut stream = tokio::net::TcpStream::connect(host).await.expect("connect");
        stream.write_all(request.as_bytes()).await.expect("send");
        let mut reply = String::new();
        stream.read_to_string(&mut reply).await.expect("read");
        let (head, body) = reply.split_once("\r\n\r\n").expect("head and body");
        (
            head.lines().next().expect("status").to_owned(),
            body.to_owned(),
        )
    }

    #[tokio::test]
    async fn a_served_dashboard_refuses_foreign_hosts_and_wants_its_token() {
        let (_p, d) = demo().await;
        let listen = ListenArgs {
            bind: None,
            allow_host: vec!["dash.internal".into()],
            token: Some("t0ken".into()),
        };
        let server = Server::start(d, &listen, 0).await.expect("start");
        assert!(server.url.ends_with("/?token=t0ken"), "{}", server.url);
        let host = server
            .url
            .trim_start_matches("http://")
            .split('/')
            .next()
            .expect("host")
            .to_owned();
        let get = |target: &str, host: &str, extra: &str| {
            format!("GET {target} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n")
        };
        let (status, page) = exchange(&server.url, get("/?token=t0ken", &host, "")).await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert!(page.contains("<title>Sluice dashboard</title>"));
        let (status, _) = exchange(
            &server.url,
            get(
                "/api/overview",
                "dash.internal:8443",
                "Authorization: Bearer t0ken\r\n",
            ),
        )
        .await;
        assert_eq!(status, "HTTP/1.1 200 OK");
        let (status, why) = exchange(&server.url, get("/api/overview", &host, "")).await;
        assert_eq!(status, "HTTP/1.1 401 Unauthorized");
        assert!(why.contains("token"), "{why}");
        let (status, why) = exchange(
            &server.url,
            get("/api/overview?token=t0ken", "attacker.example", ""),
        )
        .await;
        assert_eq!(status, "HTTP/1.1 403 Forbidden");
        assert!(why.contains("\"attacker.example\""), "{why}");
        // The token's parameter is not the query API's: it is taken off first.
        let (status, alerts) = exchange(
            &server.url,
            get("/api/alerts?token=t0ken&limit=1", &host, ""),
        )
        .await;
        assert_eq!(status, "HTTP/1.1 200 OK", "{alerts}");
    }

    #[tokio::test]
    async fn a_non_loopback_bind_gets_a_random_token_and_the_demo_flags_need_serve() {
        let (_p, d) = demo().await;
        let listen = ListenArgs {
            bind: Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            ..ListenArgs::default()
        };
        let server = Server::start(d, &listen, 0).await.expect("start");
        let token = server
            .url
            .split("?token=")
            .nth(1)
            .expect("a token in the URL");
        assert_eq!(token.len(), 32, "{}", server.url);
        let port = server
            .url
            .rsplit(':')
            .next()
            .expect("port")
            .split('/')
            .next()
            .expect("port");
        let url = format!("http://127.0.0.1:{port}/");
        let ask = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n");
        assert_eq!(
            exchange(&url, ask("/")).await.0,
            "HTTP/1.1 401 Unauthorized"
        );
        let with = format!("/api/health?token={token}");
        assert_eq!(exchange(&url, ask(&with)).await.0, "HTTP/1.1 200 OK");

        let p = pipeline();
        let args = ServeArgs {
            serve: None,
            listen: ListenArgs {
                allow_host: vec!["x".into()],
                ..ListenArgs::default()
            },
        };
        let e = serve_demo(&args, &p, "t".into())
            .await
            .err()
            .expect("refused");
        assert!(e.to_string().contains("--serve"), "{e}");
    }
}
