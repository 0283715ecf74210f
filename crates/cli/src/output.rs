//! The `--json` line contract (documented in docs/reference/json-contract.md; scripts depend on it) and the
//! human-readable tables.
//!
//! Keys, types, ids, details, rule ids and severities come from producers and tables,
//! so they may hold terminal escape sequences. Everything printed here goes through
//! [`terminal_safe`] (tables) or [`json_line`] (JSON lines): control characters and
//! bidi overrides never reach the terminal raw.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Value, json};
use sluice_core::detect::rules::Alert;
use sluice_core::input::dead_letter::DeadLetter;
use sluice_core::input::record::StreamRecord;
use sluice_core::stage::outcome::StageStats;
use sluice_core::state::item::{AggregateItem, AggregateView};
use sluice_local::ledger::EventLatency;
use sluice_local::store::MemoryAggregateStore;

/// Characters that must not reach a terminal raw: C0 controls (ESC starts escape
/// sequences, CR rewrites the line, BEL, NUL, ...), DEL, C1 controls (U+0080..U+009F,
/// CSI among them), the Unicode bidi controls that reorder what follows (LRM, RLM, ALM,
/// LRE..RLO, LRI..PDI) and the line and paragraph separators.
pub fn is_terminal_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}'
        | '\u{7f}'..='\u{9f}'
        | '\u{61c}'
        | '\u{200e}'
        | '\u{200f}'
        | '\u{202a}'..='\u{202e}'
        | '\u{2066}'..='\u{2069}'
        | '\u{2028}'
        | '\u{2029}')
}

/// Text from producers or tables, made safe to print: each [`is_terminal_unsafe`]
/// character becomes a visible escape (`\n`, `\r`, `\t`, `\x1b`, `\u{202e}`); other text
/// is unchanged (backslashes too: the escapes are for reading, `--json` has the exact
/// values).
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_terminal_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_terminal_unsafe(c) && (c as u32) < 0x80 => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if is_terminal_unsafe(c) => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// serde_json's compact format, with the non-ASCII [`is_terminal_unsafe`] characters
/// (DEL, C1, bidi controls, separators) written as `\uXXXX` escapes too: serde_json
/// already escapes C0 controls. The JSON means exactly the same; it is only safe to print.
struct TerminalSafeJson;

impl serde_json::ser::Formatter for TerminalSafeJson {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_terminal_unsafe(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                // Every such character is in the Basic Multilingual Plane: four digits.
                write!(writer, "\\u{:04x}", c as u32)?;
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// One JSON line (compact, no newline), safe to print to a terminal.
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> io::Result<String> {
    let mut out = Vec::new();
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, TerminalSafeJson);
    value.serialize(&mut serializer).map_err(io::Error::other)?;
    String::from_utf8(out).map_err(io::Error::other)
}

/// The last line of `--json` output.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub kind: &'static str,
    pub events_in: u64,
    pub counted: u64,
    pub dead_letter: u64,
    pub late: u64,
    pub duplicates: u64,
}

/// Adds the event-to-aggregate latency to the summary object: `latency_samples` (the
/// counted events measured), `latency_unmeasured`, and p50, p99 and max on the
/// simulated clock (`latency_*_sim_ms`, whole ms) and the wall clock
/// (`latency_*_real_ms`, ms to the µs); a percentile is `null` without samples.
pub fn insert_latency(summary: &mut serde_json::Map<String, Value>, latency: &EventLatency) {
    let (sim, real) = (&latency.simulated_ms, &latency.real_us);
    let real_ms = |us: Option<u64>| us.map(|us| us as f64 / 1000.0);
    let fields = [
        ("latency_samples", json!(sim.count())),
        ("latency_unmeasured", json!(latency.unmeasured)),
        ("latency_p50_sim_ms", json!(sim.percentile(0.5))),
        ("latency_p99_sim_ms", json!(sim.percentile(0.99))),
        ("latency_max_sim_ms", json!(sim.max())),
        ("latency_p50_real_ms", json!(real_ms(real.percentile(0.5)))),
        ("latency_p99_real_ms", json!(real_ms(real.percentile(0.99)))),
        ("latency_max_real_ms", json!(real_ms(real.max()))),
    ];
    for (k, v) in fields {
        summary.insert(k.into(), v);
    }
}

/// The human summary's latency line.
pub fn latency_line(latency: &EventLatency) -> String {
    let (sim, real) = (&latency.simulated_ms, &latency.real_us);
    let (Some(s50), Some(s99), Some(r50), Some(r99)) = (
        sim.percentile(0.5),
        sim.percentile(0.99),
        real.percentile(0.5),
        real.percentile(0.99),
    ) else {
        return "Event to aggregate commit: no counted event to measure.".into();
    };
    let unmeasured = match latency.unmeasured {
        0 => String::new(),
        n => format!(" ({n} counted events not measured)"),
    };
    format!(
        "Event to aggregate commit ({} counted events): simulated p50 {s50} ms, p99 {s99} ms; real p50 {:.1} ms, p99 {:.1} ms{unmeasured}.",
        sim.count(),
        r50 as f64 / 1000.0,
        r99 as f64 / 1000.0,
    )
}

/// Aggregate views in a stable order: key, type, window size, slide, start.
pub fn aggregate_views(items: &[AggregateItem]) -> Vec<AggregateView> {
    sorted_views(
        items
            .iter()
            .filter(|i| i.state.count > 0)
            .map(AggregateItem::view)
            .collect(),
    )
}

/// `views` in [`aggregate_views`]' order (as `MemoryAggregateStore::views` gives them
/// unordered).
pub fn sorted_views(mut views: Vec<AggregateView>) -> Vec<AggregateView> {
    fn order(v: &AggregateView) -> (&str, &str, i64, Option<i64>, &str) {
        (
            &v.key,
            &v.metric,
            v.window_seconds,
            v.slide_seconds,
            &v.window_start,
        )
    }
    views.sort_by(|a, b| order(a).cmp(&order(b)));
    views
}

/// Dead letters from the dead-letter stream, one per rejected event: a rejection that
/// was written twice (a retried batch) has the same origin and reason and is listed once.
pub fn dead_letters(records: &[StreamRecord]) -> Vec<DeadLetter> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for r in records {
        let Ok(letter) = serde_json::from_slice::<DeadLetter>(&r.data) else {
            continue;
        };
        let identity = match &letter.origin {
            Some(origin) => format!("{origin}|{}", letter.reason),
            None => format!(
                "{}:{}|{}",
                letter.shard_id, letter.sequence_number, letter.reason
            ),
        };
        if seen.insert(identity) {
            out.push(letter);
        }
    }
    out
}

pub fn dead_letter_json(letter: &DeadLetter) -> Value {
    json!({
        "kind": "dead_letter",
        "reason": letter.reason,
        "id": letter.id,
        "stage": letter.stage,
        "field": letter.field,
        "detail": letter.detail,
    })
}

/// The `--json` lines in their contract's order; `dead_letters` writes the dead-letter
/// lines (the demo copies them from where it kept them as they streamed by).
pub fn print_json_lines<W: Write>(
    out: &mut W,
    views: &[AggregateView],
    dead_letters: impl FnOnce(&mut W) -> std::io::Result<()>,
    alerts: &[Alert],
    summary: &Value,
) -> std::io::Result<()> {
    for v in views {
        writeln!(out, "{}", json_line(v)?)?;
    }
    dead_letters(out)?;
    for a in alerts {
        writeln!(out, "{}", json_line(a)?)?;
    }
    writeln!(out, "{}", json_line(summary)?)?;
    out.flush()
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.2}")
    }
}

/// The busiest aggregates, per window size, of `views` (tests: the demo prints
/// [`print_store_table`]).
#[cfg(test)]
pub fn print_table(
    out: &mut impl Write,
    views: &[AggregateView],
    top: usize,
) -> std::io::Result<()> {
    let mut busiest = Busiest::new(top);
    views.iter().for_each(|v| busiest.add(v.clone()));
    busiest.print(out)
}

/// The busiest aggregates of `store`, per window size, read one view at a time: the
/// text the views of every item would print, in memory that does not grow with the
/// table.
pub fn print_store_table(
    out: &mut impl Write,
    store: &MemoryAggregateStore,
    top: usize,
) -> std::io::Result<()> {
    let mut busiest = Busiest::new(top);
    store.for_each_view(|v| busiest.add(v));
    busiest.print(out)
}

/// Per window size (and slide): how many windows, and the `top` busiest, most events
/// first, then by key, type and window start (the order the table has always shown
/// them in).
struct Busiest {
    top: usize,
    sizes: BTreeMap<(i64, Option<i64>), (usize, Vec<AggregateView>)>,
}

impl Busiest {
    fn new(top: usize) -> Self {
        Busiest {
            top,
            sizes: BTreeMap::new(),
        }
    }

    fn order(a: &AggregateView, b: &AggregateView) -> std::cmp::Ordering {
        b.count
            .cmp(&a.count)
            .then_with(|| a.key.cmp(&b.key))
            .then_with(|| a.metric.cmp(&b.metric))
            .then_with(|| a.window_start.cmp(&b.window_start))
    }

    fn add(&mut self, v: AggregateView) {
        let (windows, rows) = self
            .sizes
            .entry((v.window_seconds, v.slide_seconds))
            .or_default();
        *windows += 1;
        let at = rows.partition_point(|r| Self::order(r, &v).is_le());
        if at < self.top {
            rows.insert(at, v);
            rows.truncate(self.top);
        }
    }

    fn print(&self, out: &mut impl Write) -> std::io::Result<()> {
        for ((size, slide), (windows, rows)) in &self.sizes {
            let label = match slide {
                Some(s) => format!("{size} s windows sliding every {s} s"),
                None => format!("{size} s windows"),
            };
            writeln!(
                out,
                "\nBusiest aggregates, {label} ({windows} windows in all):"
            )?;
            writeln!(
                out,
                "  {:<16} {:<12} {:<21} {:>7} {:>12} {:>10} {:>10} {:>10}",
                "key", "type", "window start", "count", "sum", "min", "max", "mean"
            )?;
            for v in rows {
                writeln!(
                    out,
                    "  {:<16} {:<12} {:<21} {:>7} {:>12} {:>10} {:>10} {:>10}",
                    cell(&v.key, 16),
                    cell(&v.metric, 12),
                    terminal_safe(&v.window_start),
                    v.count,
                    fmt_num(v.sum),
                    fmt_num(v.min),
                    fmt_num(v.max),
                    fmt_num(v.mean)
                )?;
            }
        }
        Ok(())
    }
}

pub fn print_alerts(out: &mut impl Write, alerts: &[Alert]) -> std::io::Result<()> {
    print_alerts_upto(out, alerts, 20)
}

/// [`print_alerts`] showing at most `max` of them.
pub fn print_alerts_upto(
    out: &mut impl Write,
    alerts: &[Alert],
    max: usize,
) -> std::io::Result<()> {
    if alerts.is_empty() {
        return writeln!(out, "\nNo alerts.");
    }
    writeln!(out, "\nAlerts ({}):", alerts.len())?;
    for a in alerts.iter().take(max) {
        writeln!(
            out,
            "  [{}] {} ({}) on {} {}, {} s window from {}: {}",
            a.severity.as_str(),
            terminal_safe(&a.rule_id),
            a.kind_of_rule.as_str(),
            terminal_safe(&a.key),
            terminal_safe(&a.metric),
            a.window_seconds,
            terminal_safe(&a.window_start),
            alert_explanation(a)
        )?;
        if !a.description.is_empty() {
            writeln!(out, "      {}", terminal_safe(&a.description))?;
        }
    }
    if alerts.len() > max {
        writeln!(out, "  … and {} more", alerts.len() - max)?;
    }
    Ok(())
}

/// Why an alert fired, in the terms of its rule kind: the observed statistic and the
/// bound (threshold); the ratio to the preceding window's value (rate); z with the
/// baseline's mean and population standard deviation (zscore).
fn alert_explanation(a: &Alert) -> String {
    use sluice_core::detect::rules::{Op, RuleKind};
    let stat = format!("{:?}", a.stat).to_lowercase();
    let observed = short_num(a.observed);
    let t = short_num(a.threshold);
    match a.kind_of_rule {
        RuleKind::Threshold => format!(
            "{stat} {observed} {} {t} ({} events)",
            op_symbol(a.op),
            a.count
        ),
        RuleKind::Rate => format!(
            "{stat} {observed} is {}× the preceding window's {} ({} {t}; {} events)",
            short_num(a.value),
            a.previous.map_or("?".to_owned(), short_num),
            op_symbol(a.op),
            a.count
        ),
        RuleKind::Zscore => {
            let bound = match a.op {
                Some(Op::Lt) => format!("<= -{t}"),
                Some(_) => format!(">= {t}"),
                None => format!("|z| >= {t}"),
            };
            format!(
                "{stat} {observed}, z {} ({bound}) against mean {} and σ {} of {} earlier windows ({} events)",
                a.z.map_or("?".to_owned(), short_num),
                a.mean.map_or("?".to_owned(), short_num),
                a.stddev.map_or("?".to_owned(), short_num),
                a.history.map_or("?".to_owned(), |n| n.to_string()),
                a.count
            )
        }
    }
}

/// A number for a sentence: at most three decimals, no trailing zeros (`360`, `7.5`).
fn short_num(v: f64) -> String {
    if v.abs() >= 1e9 || (v != 0.0 && v.abs() < 1e-3) {
        fmt_num(v)
    } else {
        format!("{}", (v * 1000.0).round() / 1000.0)
    }
}

/// Every aggregate, one row each, in the order given (`aggregate_views` order).
pub fn print_views(out: &mut impl Write, views: &[AggregateView]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<20} {:<14} {:>9} {:<21} {:>8} {:>12} {:>10} {:>10} {:>10} {:>10}",
        "key", "type", "window", "window start", "count", "sum", "min", "max", "mean", "stddev"
    )?;
    for v in views {
        let window = match v.slide_seconds {
            Some(s) => format!("{}/{s}s", v.window_seconds),
            None => format!("{}s", v.window_seconds),
        };
        writeln!(
            out,
            "{:<20} {:<14} {:>9} {:<21} {:>8} {:>12} {:>10} {:>10} {:>10} {:>10}",
            cell(&v.key, 20),
            cell(&v.metric, 14),
            window,
            terminal_safe(&v.window_start),
            v.count,
            fmt_num(v.sum),
            fmt_num(v.min),
            fmt_num(v.max),
            fmt_num(v.mean),
            fmt_num(v.variance.max(0.0).sqrt())
        )?;
    }
    let events: u64 = views.iter().map(|v| v.count).sum();
    writeln!(
        out,
        "{} aggregates ({events} events counted over all their windows)",
        views.len()
    )
}

/// Dead letters as a table: reason, stage, id, detail.
pub fn print_dead_letters(out: &mut impl Write, letters: &[DeadLetter]) -> std::io::Result<()> {
    writeln!(out, "{:<18} {:<10} {:<24} detail", "reason", "stage", "id")?;
    for l in letters {
        let detail = match &l.field {
            Some(f) => format!("{f}: {}", l.detail),
            None => l.detail.clone(),
        };
        writeln!(
            out,
            "{:<18} {:<10} {:<24} {}",
            l.reason.as_str(),
            cell(&l.stage, 10),
            cell(l.id.as_deref().unwrap_or("-"), 24),
            cell(&detail, 80)
        )?;
    }
    Ok(())
}

/// `N dead letters; by reason: not_json 3, late 1`.
pub fn print_reason_counts(out: &mut impl Write, letters: &[DeadLetter]) -> std::io::Result<()> {
    // A summary dead letter stands for many rejected lines of one record: count those
    // lines by their reasons, so the counts are of rejected input, not of letters.
    let mut by_reason: std::collections::BTreeMap<&str, u64> = Default::default();
    let mut lines = 0u64;
    for l in letters {
        match &l.summary {
            Some(summary) => {
                for (reason, n) in &summary.by_reason {
                    *by_reason.entry(reason.as_str()).or_default() += n;
                    lines += n;
                }
            }
            None => {
                *by_reason.entry(l.reason.as_str()).or_default() += 1;
                lines += 1;
            }
        }
    }
    let counts: Vec<String> = by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
    let of_lines = if lines == letters.len() as u64 {
        String::new()
    } else {
        format!(" ({lines} rejected lines)")
    };
    writeln!(
        out,
        "{} dead letters{of_lines}; by reason: {}",
        letters.len(),
        if counts.is_empty() {
            "none".to_owned()
        } else {
            counts.join(", ")
        }
    )
}

/// A two-sided z-score rule has no `op`: it fires on `|z|` beyond its bound.
fn op_symbol(op: Option<sluice_core::detect::rules::Op>) -> &'static str {
    match op {
        Some(sluice_core::detect::rules::Op::Gt) => ">",
        Some(sluice_core::detect::rules::Op::Gte) => ">=",
        Some(sluice_core::detect::rules::Op::Lt) => "<",
        Some(sluice_core::detect::rules::Op::Lte) => "<=",
        None => "beyond ±",
    }
}

/// A table cell: [`terminal_safe`], then cut to `n` characters.
fn cell(s: &str, n: usize) -> String {
    truncate(&terminal_safe(s), n)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

/// One stage's numbers for the live summary: the counters the stage's EMF line carries
/// (see `sluice_aws::telemetry`), as the local runner sums them.
#[derive(Clone, Debug, Default)]
pub struct StageSummary<'a> {
    pub stage: &'a str,
    pub stats: StageStats,
    /// (read, write) request units consumed through the stage's table, if metered.
    pub units: Option<(f64, f64)>,
    /// Records waiting in the stage's input stream, where the runner can see them.
    pub backlog: Option<u64>,
    /// Median invocation duration, in microseconds.
    pub p50_micros: Option<u64>,
}

/// The live summary line of `sluice demo` and `sluice run`, stage by stage:
/// `ingest 100→97 dl 3 age 1.0s 2ms | …`: events in → records out, then only what is
/// not zero or unknown: dead letters (`dl`), of which `late`, duplicates (`dup`),
/// events counted, alerts, request units (`RU` read/write), the largest iterator age
/// (`age`), the input backlog (`lag`) and the median batch duration.
pub fn live_summary(produced: Option<u64>, stages: &[StageSummary<'_>]) -> String {
    let mut parts = Vec::with_capacity(stages.len() + 1);
    if let Some(n) = produced {
        parts.push(format!("produced {n}"));
    }
    for s in stages {
        let st = &s.stats;
        let mut text = format!("{} {}→{}", s.stage, st.events_in, st.passed_on);
        let mut add = |label: &str, n: u64| {
            if n > 0 {
                text.push_str(&format!(" {label} {n}"));
            }
        };
        add("dl", st.dead_lettered_total());
        add("late", st.late());
        add("dup", st.duplicates);
        add("counted", st.counted);
        add("alerts", st.alerts_raised);
        if let Some((read, write)) = s.units {
            text.push_str(&format!(" RU {read:.1}r/{write:.1}w"));
        }
        if let Some(age) = st.iterator_age_ms {
            text.push_str(&format!(" age {}", millis(age)));
        }
        if let Some(lag) = s.backlog.filter(|n| *n > 0) {
            text.push_str(&format!(" lag {lag}"));
        }
        if let Some(p50) = s.p50_micros {
            text.push_str(&format!(" p50 {}", millis(p50 / 1000)));
        }
        parts.push(text);
    }
    parts.join(" | ")
}

/// `850ms`, `1.2s`, `3m05s`.
fn millis(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms}ms"),
        1_000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, ms % 60_000 / 1000),
    }
}

/// A progress line on stderr: rewritten in place on a terminal, one line each otherwise.
pub fn progress(line: &str, interactive: bool) {
    if interactive {
        eprint!("\r{line}");
    } else {
        eprintln!("{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_carries_latency_percentiles_on_both_clocks() {
        let mut latency = EventLatency::default();
        let mut empty = serde_json::Map::new();
        insert_latency(&mut empty, &latency);
        assert_eq!(empty["latency_samples"], 0);
        assert_eq!(empty["latency_p50_sim_ms"], Value::Null);
        assert_eq!(empty["latency_p99_real_ms"], Value::Null);
        assert!(latency_line(&latency).contains("no counted event"));
        for (sim_ms, real_us) in [(0, 1_500), (0, 2_500), (4_000, 90_000)] {
            latency.simulated_ms.record(sim_ms);
            latency.real_us.record(real_us);
        }
        let mut obj = serde_json::Map::new();
        insert_latency(&mut obj, &latency);
        assert_eq!(obj["latency_samples"], 3);
        assert_eq!(obj["latency_unmeasured"], 0);
        assert_eq!(obj["latency_p50_sim_ms"], 0);
        assert_eq!(obj["latency_p99_sim_ms"], 4_000);
        assert_eq!(obj["latency_max_sim_ms"], 4_000);
        // 2,500 µs sits in a bucket 16 wide: reported as its top, 2.511 ms.
        let p50 = obj["latency_p50_real_ms"].as_f64().expect("p50");
        assert!((2.5..2.52).contains(&p50), "{p50}");
        assert_eq!(obj["latency_p99_real_ms"], 90.0);
        let line = latency_line(&latency);
        assert!(
            line.starts_with("Event to aggregate commit (3 counted events): simulated p50 0 ms, p99 4000 ms; real p50 2.5 ms, p99 90.0 ms"),
            "{line}"
        );
    }

    /// What producers could send: a screen clear, a window-title set ended by BEL, a
    /// carriage return that overwrites the line, NUL, DEL, a C1 CSI, a right-to-left
    /// override, an isolate and a line separator.
    const HOSTILE: &str = "k\u{1b}[2J\u{1b}]0;owned\u{7}\r\0\u{7f}\u{9b}31m\u{202e}txt.exe\u{2066}x\u{2069}\u{2028}end";

    /// No character a terminal would act on, line breaks between lines aside.
    fn assert_printable(text: &str) {
        for line in text.lines() {
            assert!(
                !line.chars().any(is_terminal_unsafe),
                "unsafe character in {line:?}"
            );
        }
        assert!(!text.contains('\r'), "{text:?}");
    }

    fn letter(id: &str, stage: &str, detail: &str, field: &str) -> DeadLetter {
        serde_json::from_value(json!({
            "reason": "not_json", "field": field, "detail": detail, "id": id, "stage": stage,
            "source_stream": "raw", "shard_id": "shardId-0", "sequence_number": "1",
        }))
        .expect("a dead letter")
    }

    #[test]
    fn the_live_summary_shows_each_stage_and_only_what_is_known_or_not_zero() {
        use sluice_core::input::envelope::Reason;
        let mut ingest = StageStats {
            events_in: 100,
            passed_on: 97,
            iterator_age_ms: Some(1_250),
            ..StageStats::default()
        };
        ingest.dead_letter(Reason::NotJson);
        ingest.dead_letter(Reason::NotJson);
        let mut aggregate = StageStats {
            events_in: 97,
            passed_on: 12,
            duplicates: 4,
            counted: 92,
            iterator_age_ms: Some(185_000),
            ..StageStats::default()
        };
        aggregate.dead_letter(Reason::Late);
        let stages = [
            StageSummary {
                stage: "ingest",
                stats: ingest,
                backlog: Some(30),
                p50_micros: Some(2_400),
                ..StageSummary::default()
            },
            StageSummary {
                stage: "enrich",
                backlog: Some(0),
                ..StageSummary::default()
            },
            StageSummary {
                stage: "aggregate",
                stats: aggregate,
                units: Some((12.5, 300.0)),
                ..StageSummary::default()
            },
        ];
        assert_eq!(
            live_summary(Some(103), &stages),
            "produced 103 | ingest 100→97 dl 2 age 1.2s lag 30 p50 2ms | enrich 0→0 | \
             aggregate 97→12 dl 1 late 1 dup 4 counted 92 RU 12.5r/300.0w age 3m05s"
        );
        assert_eq!(live_summary(None, &stages[1..2]), "enrich 0→0");
        assert_printable(&live_summary(None, &stages));
    }

    #[test]
    fn reason_counts_add_up_the_lines_a_summary_stands_for() {
        let mut summary = letter("s", "ingest", "summary", "key");
        summary.summary = Some(
            serde_json::from_value(json!({
                "lines": 1000, "rejected": 1000, "listed": 100,
                "by_reason": {"not_json": 850, "missing_field": 50}
            }))
            .expect("a summary"),
        );
        let letters = [letter("a", "ingest", "x", "ts"), summary];
        let mut out = Vec::new();
        print_reason_counts(&mut out, &letters).expect("printed");
        let text = String::from_utf8(out).expect("utf-8");
        assert_eq!(
            text.trim_end(),
            "2 dead letters (901 rejected lines); by reason: missing_field 50, not_json 851"
        );
    }

    /// The demo reads the store's views (no copy of the table) and sorts them: the
    /// same lines, in the same order, as views of a copy of every item.
    #[tokio::test]
    async fn store_views_sorted_are_the_items_views() {
        use sluice_core::ports::AggregateStore;
        use sluice_core::state::item::{GroupKey, ItemKey, ItemWrite};
        use sluice_core::state::statistics::AggState;
        use sluice_core::state::window::WindowSpec;
        use sluice_local::store::MemoryAggregateStore;
        let store = MemoryAggregateStore::new();
        let windows = [
            WindowSpec::hopping(3600, 600),
            WindowSpec::tumbling(3600),
            WindowSpec::tumbling(60),
        ];
        let mut writes = Vec::new();
        for (i, key) in ["b", "a", "c"].into_iter().enumerate() {
            for metric in ["t", "h"] {
                for (w, window) in windows.into_iter().enumerate() {
                    for start in [7_200_000i64, 0, 3_600_000] {
                        let mut item = AggregateItem::new(ItemKey {
                            group: GroupKey {
                                key: key.into(),
                                metric: metric.into(),
                            },
                            window,
                            start_ms: start,
                        });
                        item.version = 1;
                        // Two items (a/h and a/t, minute 0) never counted anything: not shown.
                        if (i, w, start) != (1, 2, 0) {
                            item.state = AggState::of(start as f64 + w as f64);
                        }
                        writes.push(ItemWrite {
                            item,
                            expected_version: 0,
                            sealed_page: Vec::new(),
                        });
                    }
                }
            }
        }
        for w in writes.chunks(50) {
            store.commit(w, None).await.expect("commit");
        }
        let want = aggregate_views(&store.items());
        assert_eq!(want.len(), 3 * 2 * 3 * 3 - 2);
        assert_eq!(sorted_views(store.views()), want);
        let (mut from_views, mut from_store) = (Vec::new(), Vec::new());
        print_table(&mut from_views, &want, 4).expect("printed");
        print_store_table(&mut from_store, &store, 4).expect("printed");
        let text = String::from_utf8(from_store).expect("utf-8");
        assert_eq!(String::from_utf8(from_views).expect("utf-8"), text);
        assert!(text.contains("60 s windows (16 windows in all)"), "{text}");
        assert_eq!((want[0].key.as_str(), want[0].metric.as_str()), ("a", "h"));
        assert_eq!(
            (want[0].window_seconds, want[0].slide_seconds),
            (60, None),
            "60 s first"
        );
        assert_eq!(
            want.iter()
                .take_while(|v| v.key == "a" && v.metric == "h")
                .map(|v| v.slide_seconds)
                .collect::<Vec<_>>(),
            // two minutes, three hours, three hops
            vec![
                None,
                None,
                None,
                None,
                None,
                Some(600),
                Some(600),
                Some(600)
            ],
            "a tumbling hour sorts before the hour sliding every 10 minutes"
        );
    }

    fn view(key: &str, metric: &str) -> AggregateView {
        serde_json::from_value(json!({
            "kind": "aggregate", "key": key, "type": metric, "window_seconds": 60,
            "window_start": "2026-01-01T00:00:00Z", "count": 3, "sum": 6.0, "min": 1.0,
            "max": 3.0, "mean": 2.0, "variance": 0.5,
        }))
        .expect("a view")
    }

    fn alert(text: &str) -> Alert {
        serde_json::from_value(json!({
            "kind": "alert", "alert_id": text, "rule_id": text, "severity": "critical",
            "key": text, "type": text, "window_seconds": 60, "window_start": text,
            "stat": "max", "op": ">", "threshold": 1.0, "value": 2.0, "observed": 2.0,
            "count": 1,
        }))
        .expect("an alert")
    }

    #[test]
    fn alerts_explain_their_rule_kind_observed_value_and_baseline() {
        let mut threshold = alert("x");
        threshold.description = "a reading above 1".into();
        let rate: Alert = serde_json::from_value(json!({
            "kind": "alert", "alert_id": "r", "rule_id": "burst", "kind_of_rule": "rate",
            "severity": "warning", "key": "acct-1", "type": "amount", "window_seconds": 60,
            "window_start": "2026-01-01T00:07:00Z", "stat": "count", "op": ">=",
            "threshold": 3.0, "value": 6.0, "observed": 360.0, "previous": 60.0, "count": 360,
        }))
        .expect("a rate alert");
        let z: Alert = serde_json::from_value(json!({
            "kind": "alert", "alert_id": "z", "rule_id": "odd", "kind_of_rule": "zscore",
            "severity": "critical", "key": "s-1", "type": "temp", "window_seconds": 60,
            "window_start": "2026-01-01T00:09:00Z", "stat": "mean",
            "threshold": 4.0, "value": 7.5, "observed": 24.0, "mean": 19.0, "stddev": 0.5,
            "z": 7.5, "history": 9, "count": 80,
        }))
        .expect("a zscore alert");
        let mut out = Vec::new();
        print_alerts(&mut out, &[threshold, rate, z]).expect("printed");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[1].contains("(threshold)") && lines[1].contains("max 2 > 1"),
            "{text}"
        );
        assert_eq!(lines[2].trim(), "a reading above 1");
        assert!(
            lines[3].contains("burst (rate)")
                && lines[3].contains("count 360 is 6× the preceding window's 60 (>= 3"),
            "{text}"
        );
        assert!(
            lines[4].contains("odd (zscore)")
                && lines[4].contains(
                    "mean 24, z 7.5 (|z| >= 4) against mean 19 and σ 0.5 of 9 earlier windows"
                ),
            "{text}"
        );
    }

    #[test]
    fn terminal_safe_escapes_every_control_and_bidi_character() {
        let safe = terminal_safe(HOSTILE);
        assert_printable(&safe);
        assert_eq!(
            safe,
            "k\\x1b[2J\\x1b]0;owned\\x07\\r\\x00\\x7f\\u{9b}31m\\u{202e}txt.exe\\u{2066}x\\u{2069}\\u{2028}end"
        );
        for c in [
            '\u{1b}', '\r', '\u{7}', '\u{85}', '\u{200f}', '\u{202a}', '\u{61c}',
        ] {
            assert!(is_terminal_unsafe(c), "{c:?}");
        }
        // Ordinary text, accents, CJK and emoji pass through untouched, without copying.
        let plain = "sensor-01 Zürich 温度 🌡 back\\slash";
        assert!(matches!(terminal_safe(plain), Cow::Borrowed(p) if p == plain));
        assert_eq!(terminal_safe("a\tb\nc"), "a\\tb\\nc");
    }

    #[test]
    fn dead_letter_tables_print_hostile_fields_escaped() {
        let letters = [
            letter(HOSTILE, HOSTILE, HOSTILE, HOSTILE),
            letter("ok", "ingest", "line 1 is not JSON", "ts"),
        ];
        let mut out = Vec::new();
        print_dead_letters(&mut out, &letters).expect("printed");
        print_reason_counts(&mut out, &letters).expect("printed");
        let text = String::from_utf8(out).expect("utf-8");
        assert_printable(&text);
        assert_eq!(
            text.lines().count(),
            4,
            "header, two letters, counts: {text}"
        );
        assert!(text.contains("k\\x1b[2J"), "{text}");
        assert!(text.contains("ts: line 1 is not JSON"), "{text}");
    }

    #[test]
    fn aggregate_and_alert_tables_print_hostile_fields_escaped() {
        let views = [view(HOSTILE, HOSTILE), view("sensor-1", "temp")];
        let mut out = Vec::new();
        print_views(&mut out, &views).expect("printed");
        print_table(&mut out, &views, 10).expect("printed");
        print_alerts(&mut out, &[alert(HOSTILE)]).expect("printed");
        let text = String::from_utf8(out).expect("utf-8");
        assert_printable(&text);
        assert!(text.contains("sensor-1"), "{text}");
        assert!(
            text.contains("[critical] k\\x1b[2J"),
            "rule id escaped: {text}"
        );
    }

    #[test]
    fn json_lines_stay_exact_and_safe_to_print() {
        let letters = [letter(HOSTILE, "ingest", HOSTILE, "key")];
        let views = [view(HOSTILE, "t")];
        let alerts = [alert(HOSTILE)];
        let summary = json!({"kind": "summary", "events_in": 1});
        let mut out = Vec::new();
        let dead_letters = |out: &mut Vec<u8>| {
            letters
                .iter()
                .try_for_each(|l| writeln!(out, "{}", json_line(&dead_letter_json(l))?))
        };
        print_json_lines(&mut out, &views, dead_letters, &alerts, &summary).expect("printed");
        let text = String::from_utf8(out).expect("utf-8");
        assert_printable(&text);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is JSON"))
            .collect();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0]["key"], HOSTILE, "the exact value survives");
        assert_eq!(lines[1]["detail"], HOSTILE);
        assert_eq!(lines[2]["rule_id"], HOSTILE);
        assert_eq!(lines[3], summary);
        // Plain values print as serde_json prints them.
        let plain = json!({"key": "Zürich", "n": 1.5});
        assert_eq!(
            json_line(&plain).expect("json"),
            serde_json::to_string(&plain).expect("json")
        );
        assert_eq!(
            json_line("\u{202e}\u{7f}").expect("json"),
            r#""\u202e\u007f""#
        );
    }
}
