//! Kinesis capacity modes side by side, for `sluice cost`: the same pipeline at the same
//! load with every stream PROVISIONED (shards fixed: enough for the peak, never fewer
//! than the template's) and ON_DEMAND (Kinesis adds shards as the load grows; billed per
//! stream-hour and per GB, each record rounded up to 1 KB). The template's
//! `StreamCapacityMode` parameter selects one for a deployment.

use std::io::Write;

use serde::Serialize;

use crate::tools::pricing::{Bill, Hop, StageInput, TableUse, bill};

/// What one provisioned shard takes in: 1,000 records or 1 MB per second (the Kinesis
/// write limits per shard; a stream whose load exceeds them throttles its producers).
pub const SHARD_RECORDS_PER_SECOND: f64 = 1000.0;
pub const SHARD_BYTES_PER_SECOND: f64 = 1_048_576.0;

/// The largest peak-to-mean ratio the break-even search looks at.
pub const MAX_PEAK_RATIO: f64 = 1000.0;

/// The shards a hop needs to take `events_per_second` without throttling (at least one).
pub fn shards_needed(hop: &Hop, events_per_second: f64) -> usize {
    let records = hop.records_per_event * events_per_second / SHARD_RECORDS_PER_SECOND;
    let bytes = hop.bytes_per_event * events_per_second / SHARD_BYTES_PER_SECOND;
    records.max(bytes).ceil().max(1.0) as usize
}

/// The hops with each stream's shards raised to what `peak_events_per_second` needs
/// (a provisioned stream is sized for its peak, not its mean).
pub fn sized_for(hops: &[Hop], peak_events_per_second: f64) -> Vec<Hop> {
    hops.iter()
        .map(|h| Hop {
            shards: h.shards.max(shards_needed(h, peak_events_per_second)),
            ..h.clone()
        })
        .collect()
}

/// Both modes at one load.
#[derive(Clone, Debug, Serialize)]
pub struct ModeComparison {
    pub events_per_second: f64,
    pub peak_events_per_second: f64,
    /// Streams whose template shard count is too small for the peak: (stream, template
    /// shards, shards needed).
    pub undersized: Vec<(String, usize, usize)>,
    pub provisioned: Bill,
    pub on_demand: Bill,
    /// `PROVISIONED` or `ON_DEMAND`: the one with the lower monthly total.
    pub cheaper: &'static str,
    /// The smallest peak-to-mean ratio (up to [`MAX_PEAK_RATIO`]) from which ON_DEMAND
    /// costs less than PROVISIONED sized for that peak, at the same mean load; `None`
    /// when it never does within that range, 1 when it already does.
    pub on_demand_cheaper_from_peak_ratio: Option<f64>,
}

/// Prices the pipeline in both modes at `events_per_second` on average, with
/// provisioned streams sized for `peak_events_per_second`.
pub fn compare(
    stages: &[StageInput],
    table: TableUse,
    hops: &[Hop],
    events_per_second: f64,
    peak_events_per_second: f64,
    io_ms: f64,
) -> ModeComparison {
    let peak = peak_events_per_second.max(events_per_second);
    let provisioned_at = |peak: f64| {
        bill(
            stages,
            table,
            sized_for(hops, peak),
            events_per_second,
            io_ms,
            false,
        )
    };
    let provisioned = provisioned_at(peak);
    let on_demand = bill(stages, table, hops.to_vec(), events_per_second, io_ms, true);
    let undersized = hops
        .iter()
        .filter_map(|h| {
            let needed = shards_needed(h, peak);
            (needed > h.shards).then(|| (h.stream.clone(), h.shards, needed))
        })
        .collect();
    // Provisioned costs grow with the peak (more shards), on-demand's do not: the first
    // ratio at which provisioned costs more. Steps of 1%: a shard count changes at most
    // once per step at these loads.
    let mut ratio = 1.0;
    let mut break_even = None;
    while ratio <= MAX_PEAK_RATIO {
        if provisioned_at(events_per_second * ratio).total_usd_per_month
            > on_demand.total_usd_per_month
        {
            break_even = Some(ratio);
            break;
        }
        ratio *= 1.01;
    }
    let cheaper = match on_demand.total_usd_per_month < provisioned.total_usd_per_month {
        true => "ON_DEMAND",
        false => "PROVISIONED",
    };
    ModeComparison {
        events_per_second,
        peak_events_per_second: peak,
        undersized,
        provisioned,
        on_demand,
        cheaper,
        on_demand_cheaper_from_peak_ratio: break_even,
    }
}

/// The comparison as a table: the two modes' Kinesis and total costs, which is cheaper,
/// and from which peak on-demand would be.
pub fn print(out: &mut impl Write, m: &ModeComparison) -> std::io::Result<()> {
    writeln!(
        out,
        "\nKinesis capacity mode (template parameter StreamCapacityMode), {} events/s, \
         provisioned streams sized for a {} events/s peak",
        m.events_per_second, m.peak_events_per_second
    )?;
    for (stream, template, needed) in &m.undersized {
        writeln!(
            out,
            "  {stream}: the template's {template} shards throttle at this peak; sized at {needed}"
        )?;
    }
    let shards: usize = m.provisioned.hops.iter().map(|h| h.shards).sum();
    writeln!(
        out,
        "                                  PROVISIONED    ON_DEMAND"
    )?;
    writeln!(
        out,
        "  {:<30} {:>12} {:>12}",
        "shards / streams",
        format!("{shards} shards"),
        format!("{} streams", m.on_demand.hops.len())
    )?;
    let row = |out: &mut dyn Write, label: &str, a: f64, b: f64, digits: usize| {
        writeln!(out, "  {label:<30} {a:>12.digits$} {b:>12.digits$}")
    };
    let (p, d) = (&m.provisioned, &m.on_demand);
    row(
        out,
        "Kinesis $/month",
        p.kinesis_usage_usd_per_month + p.kinesis_hourly_usd_per_month,
        d.kinesis_usage_usd_per_month + d.kinesis_hourly_usd_per_month,
        2,
    )?;
    row(
        out,
        "total $/month",
        p.total_usd_per_month,
        d.total_usd_per_month,
        2,
    )?;
    row(
        out,
        "$ per million events",
        p.usd_per_million_events,
        d.usd_per_million_events,
        4,
    )?;
    let saving = (p.total_usd_per_month - d.total_usd_per_month).abs();
    writeln!(out, "  cheaper here: {} (by ${saving:.2}/month)", m.cheaper)?;
    match m.on_demand_cheaper_from_peak_ratio {
        Some(r) if r <= 1.0 => writeln!(out, "  ON_DEMAND is cheaper even under a steady load"),
        Some(r) => writeln!(
            out,
            "  ON_DEMAND is cheaper once the peak is {r:.1}× the mean ({:.0} events/s) or more: \
             provisioned streams must be sized for it",
            r * m.events_per_second
        ),
        None => writeln!(
            out,
            "  PROVISIONED stays cheaper for any peak up to {MAX_PEAK_RATIO:.0}× the mean"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(shards: usize, records_per_event: f64, bytes_per_event: f64) -> Hop {
        Hop {
            stream: format!("s{shards}"),
            shards,
            put_units_per_event: records_per_event,
            kib_per_event: records_per_event
                * (bytes_per_event / records_per_event / 1024.0).ceil(),
            records_per_event,
            bytes_per_event,
        }
    }

    fn table() -> TableUse {
        TableUse {
            write_units_per_event: 0.05,
            read_units_per_event: 0.0,
            item_writes_per_event: 0.03,
        }
    }

    #[test]
    fn a_shard_takes_a_thousand_records_or_a_megabyte_per_second() {
        // 150 B records, one per event: the record limit binds.
        let raw = hop(1, 1.0, 150.0);
        assert_eq!(shards_needed(&raw, 1000.0), 1);
        assert_eq!(shards_needed(&raw, 1001.0), 2);
        assert_eq!(shards_needed(&raw, 0.0), 1);
        // 100 events per 20 KB record: the byte limit binds.
        let packed = hop(1, 0.01, 200.0);
        assert_eq!(shards_needed(&packed, 5243.0), 2);
        assert_eq!(shards_needed(&packed, 5242.0), 1);
        let sized = sized_for(&[hop(2, 1.0, 150.0)], 3500.0);
        assert_eq!(sized[0].shards, 4, "raised to the peak's 4");
        assert_eq!(
            sized_for(&[hop(8, 1.0, 150.0)], 10.0)[0].shards,
            8,
            "never fewer"
        );
    }

    #[test]
    fn provisioned_wins_a_steady_load_and_on_demand_a_spiky_one() {
        let hops = [hop(2, 1.0, 150.0), hop(1, 0.01, 200.0)];
        let steady = compare(&[], table(), &hops, 100.0, 100.0, 20.0);
        // 3 shards at $0.015/h against 2 streams at $0.04/h and 1 KB per raw event.
        assert_eq!(steady.cheaper, "PROVISIONED");
        assert!(steady.undersized.is_empty());
        let ratio = steady
            .on_demand_cheaper_from_peak_ratio
            .expect("some peak makes on-demand cheaper");
        assert!(ratio > 1.0, "{ratio}");
        // At that peak provisioned costs more; just below it, no more than on-demand.
        let at = compare(&[], table(), &hops, 100.0, 100.0 * ratio, 20.0);
        assert_eq!(at.cheaper, "ON_DEMAND");
        let below = compare(&[], table(), &hops, 100.0, 100.0 * ratio / 1.01, 20.0);
        assert_eq!(below.cheaper, "PROVISIONED");
        assert_eq!(
            at.on_demand.total_usd_per_month,
            steady.on_demand.total_usd_per_month
        );
        // The template's 2 raw shards take 2,000 records/s: a 5,000/s peak needs 5.
        let spiky = compare(&[], table(), &hops, 100.0, 5000.0, 20.0);
        assert_eq!(spiky.undersized, [("s2".to_owned(), 2, 5)]);
        assert_eq!(spiky.provisioned.hops[0].shards, 5);
        let mut text = Vec::new();
        print(&mut text, &spiky).expect("prints");
        let text = String::from_utf8(text).expect("UTF-8");
        assert!(
            text.contains("s2: the template's 2 shards throttle"),
            "{text}"
        );
        assert!(text.contains("6 shards"), "{text}");
        assert!(
            text.contains(&format!("cheaper here: {}", spiky.cheaper)),
            "{text}"
        );
    }
}
