//! The `--json` line contract (documented in the README; scripts depend on it) and the
//! human-readable tables.

use std::collections::BTreeSet;
use std::io::Write;

use serde::Serialize;
use serde_json::{Value, json};
use sluice_core::dead_letter::DeadLetter;
use sluice_core::item::{AggregateItem, AggregateView};
use sluice_core::record::StreamRecord;
use sluice_core::rules::Alert;

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

/// Aggregate views in a stable order: key, type, window size, slide, start.
pub fn aggregate_views(items: &[AggregateItem]) -> Vec<AggregateView> {
    let mut views: Vec<AggregateView> = items
        .iter()
        .filter(|i| i.state.count > 0)
        .map(AggregateItem::view)
        .collect();
    views.sort_by(|a, b| {
        let key = |v: &AggregateView| {
            (
                v.key.clone(),
                v.metric.clone(),
                v.window_seconds,
                v.slide_seconds,
                v.window_start.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
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

pub fn print_json_lines(
    out: &mut impl Write,
    views: &[AggregateView],
    letters: &[DeadLetter],
    alerts: &[Alert],
    summary: &Value,
) -> std::io::Result<()> {
    for v in views {
        writeln!(out, "{}", serde_json::to_string(v).unwrap_or_default())?;
    }
    for l in letters {
        writeln!(out, "{}", dead_letter_json(l))?;
    }
    for a in alerts {
        writeln!(out, "{}", serde_json::to_string(a).unwrap_or_default())?;
    }
    writeln!(out, "{summary}")?;
    out.flush()
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 1e6 || (v != 0.0 && v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else {
        format!("{v:.2}")
    }
}

/// The busiest aggregates, per window size.
pub fn print_table(
    out: &mut impl Write,
    views: &[AggregateView],
    top: usize,
) -> std::io::Result<()> {
    let mut sizes: Vec<(i64, Option<i64>)> = views
        .iter()
        .map(|v| (v.window_seconds, v.slide_seconds))
        .collect();
    sizes.sort();
    sizes.dedup();
    for (size, slide) in sizes {
        let mut rows: Vec<&AggregateView> = views
            .iter()
            .filter(|v| v.window_seconds == size && v.slide_seconds == slide)
            .collect();
        rows.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
        let label = match slide {
            Some(s) => format!("{size} s windows sliding every {s} s"),
            None => format!("{size} s windows"),
        };
        writeln!(
            out,
            "\nBusiest aggregates, {label} ({} windows in all):",
            rows.len()
        )?;
        writeln!(
            out,
            "  {:<16} {:<12} {:<21} {:>7} {:>12} {:>10} {:>10} {:>10}",
            "key", "type", "window start", "count", "sum", "min", "max", "mean"
        )?;
        for v in rows.iter().take(top) {
            writeln!(
                out,
                "  {:<16} {:<12} {:<21} {:>7} {:>12} {:>10} {:>10} {:>10}",
                truncate(&v.key, 16),
                truncate(&v.metric, 12),
                v.window_start,
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
            "  [{}] {} on {} {}: {:?} {} {} over {} s from {} (value {})",
            a.severity,
            a.rule_id,
            a.key,
            a.metric,
            a.stat,
            op_symbol(a.op),
            fmt_num(a.threshold),
            a.window_seconds,
            a.window_start,
            fmt_num(a.value)
        )?;
    }
    if alerts.len() > max {
        writeln!(out, "  … and {} more", alerts.len() - max)?;
    }
    Ok(())
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
            truncate(&v.key, 20),
            truncate(&v.metric, 14),
            window,
            v.window_start,
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
            truncate(&l.stage, 10),
            truncate(l.id.as_deref().unwrap_or("-"), 24),
            truncate(&detail.replace(['\n', '\r'], " "), 80)
        )?;
    }
    Ok(())
}

/// `N dead letters; by reason: not_json 3, late 1`.
pub fn print_reason_counts(out: &mut impl Write, letters: &[DeadLetter]) -> std::io::Result<()> {
    let mut by_reason: std::collections::BTreeMap<&str, usize> = Default::default();
    for l in letters {
        *by_reason.entry(l.reason.as_str()).or_default() += 1;
    }
    let counts: Vec<String> = by_reason.iter().map(|(r, n)| format!("{r} {n}")).collect();
    writeln!(
        out,
        "{} dead letters; by reason: {}",
        letters.len(),
        if counts.is_empty() {
            "none".to_owned()
        } else {
            counts.join(", ")
        }
    )
}

fn op_symbol(op: sluice_core::rules::Op) -> &'static str {
    match op {
        sluice_core::rules::Op::Gt => ">",
        sluice_core::rules::Op::Gte => ">=",
        sluice_core::rules::Op::Lt => "<",
        sluice_core::rules::Op::Lte => "<=",
    }
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

/// A progress line on stderr: rewritten in place on a terminal, one line each otherwise.
pub fn progress(line: &str, interactive: bool) {
    if interactive {
        eprint!("\r{line}");
    } else {
        eprintln!("{line}");
    }
}
