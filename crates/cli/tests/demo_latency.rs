//! `sluice demo` reports event-to-aggregate latency: the `--json` summary's latency
//! fields, simulated latencies predicted from the template's batching windows, and one
//! sample per counted event (also under faults). No assertion on wall-clock time.

mod common;

use std::process::Command;

use common::tempdir;
use serde_json::Value;
use sluice_local::template::{BUNDLED_TEMPLATE, Template};

fn demo(args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .arg("demo")
        .args(args)
        .output()
        .expect("run sluice");
    let (stdout, stderr) = (
        String::from_utf8(out.stdout).expect("utf-8"),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "sluice demo failed: {stderr}");
    (stdout, stderr)
}

fn summary(args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let (stdout, _) = demo(&args);
    let last = stdout.lines().last().expect("a summary line");
    let summary: Value = serde_json::from_str(last).expect("JSON");
    assert_eq!(summary["kind"], "summary");
    summary
}

fn n(summary: &Value, key: &str) -> u64 {
    summary[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {summary}"))
}

/// The batching windows (ms) of ingest, enrich and aggregate: what an event waits on
/// its way to the aggregates table when no batch fills.
fn windows_to_the_aggregates(template: &Template) -> u64 {
    ["ingest", "enrich", "aggregate"]
        .iter()
        .map(|s| {
            let ms = template
                .function(s)
                .expect("function")
                .esm
                .max_batching_window_ms;
            u64::try_from(ms).expect("a window")
        })
        .sum()
}

/// The summary's latency fields are there, every counted event is a sample, and with
/// the bundled template every simulated latency lies within the batching windows.
#[test]
fn the_json_summary_reports_latency_for_every_counted_event() {
    let s = summary(&["--events", "30000", "--seed", "4"]);
    let most = windows_to_the_aggregates(&Template::parse(BUNDLED_TEMPLATE).expect("template"));
    assert_eq!(n(&s, "latency_samples"), n(&s, "counted"), "{s}");
    assert_eq!(n(&s, "latency_unmeasured"), 0);
    let (p50, p99, max) = (
        n(&s, "latency_p50_sim_ms"),
        n(&s, "latency_p99_sim_ms"),
        n(&s, "latency_max_sim_ms"),
    );
    assert!(p50 <= p99 && p99 <= max && max <= most, "{s}");
    let real = |k: &str| s[k].as_f64().unwrap_or_else(|| panic!("{k} in {s}"));
    assert!(real("latency_p50_real_ms") <= real("latency_p99_real_ms"));
    assert!(real("latency_p99_real_ms") <= real("latency_max_real_ms"));
    assert!(real("events_per_sec") > 0.0 && real("elapsed_s") > 0.0);
    // The fields that were there before keep their meaning.
    assert_eq!(
        n(&s, "events_in"),
        n(&s, "counted") + n(&s, "dead_letter") + n(&s, "late") + n(&s, "duplicates")
    );
}

/// Windows of 3, 5 and 7 s (and 11 s for detect, which does not count), and fewer
/// events than any batch holds: every batch waits its whole window, so every counted
/// event reaches the aggregates table exactly 15 s (simulated) after it arrived.
#[test]
fn simulated_latency_is_the_sum_of_the_batching_windows_when_no_batch_fills() {
    let mut seconds = [3, 5, 7, 11].into_iter();
    let text: String = BUNDLED_TEMPLATE
        .lines()
        .map(
            |line| match line.split_once("MaximumBatchingWindowInSeconds:") {
                Some((indent, _)) => format!(
                    "{indent}MaximumBatchingWindowInSeconds: {}\n",
                    seconds.next().expect("four stages")
                ),
                None => format!("{line}\n"),
            },
        )
        .collect();
    assert!(seconds.next().is_none(), "every stage's window was set");
    let template = Template::parse(&text).expect("the edited template parses");
    let want = windows_to_the_aggregates(&template);
    assert_eq!(want, 15_000, "ingest, enrich and aggregate: 3 + 5 + 7 s");
    let path = tempdir().join("template.yaml");
    std::fs::write(&path, &text).expect("write template");
    let path = path.to_str().expect("utf-8 path");

    let s = summary(&["--events", "300", "--template", path]);
    assert!(
        n(&s, "dead_letter") + n(&s, "late") + n(&s, "duplicates") > 0,
        "{s}"
    );
    assert_eq!(n(&s, "latency_samples"), n(&s, "counted"), "{s}");
    for k in [
        "latency_p50_sim_ms",
        "latency_p99_sim_ms",
        "latency_max_sim_ms",
    ] {
        assert_eq!(n(&s, k), want, "{k}: {s}");
    }
}

/// Under faults (crashes after commits, lost replies, redeliveries, bisection), each
/// counted event is still exactly one sample, in both delivery modes.
#[test]
fn events_counted_on_retries_are_one_sample_each() {
    for delivery in ["exactly-once", "at-least-once"] {
        let s = summary(&[
            "--events",
            "6000",
            "--chaos",
            "9",
            "--verify",
            "--delivery",
            delivery,
        ]);
        assert_eq!(s["verified"], "exact", "{delivery}: {s}");
        assert_eq!(
            n(&s, "latency_samples"),
            n(&s, "counted"),
            "{delivery}: {s}"
        );
        assert_eq!(n(&s, "latency_unmeasured"), 0, "{delivery}");
        assert!(n(&s, "latency_p50_sim_ms") <= n(&s, "latency_p99_sim_ms"));
    }
}

#[test]
fn the_human_summary_and_the_help_describe_latency() {
    let (stdout, _) = demo(&["--events", "2000"]);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("Event to aggregate commit ("))
        .unwrap_or_else(|| panic!("a latency line in {stdout}"));
    assert!(
        line.contains("simulated p50 ") && line.contains("real p50 "),
        "{line}"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_sluice"))
        .args(["demo", "--help"])
        .output()
        .expect("help");
    let help = String::from_utf8(help.stdout).expect("utf-8");
    assert!(
        help.contains("dead letters, late events and duplicates are not"),
        "{help}"
    );
}
