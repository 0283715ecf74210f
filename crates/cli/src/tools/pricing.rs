//! The pricing model `sluice cost` runs: AWS list prices (us-east-1), what one stage's
//! Lambda invocations cost at a rate, what Kinesis hops and DynamoDB request units cost,
//! and the bill that adds them up per month and per million events. Pure arithmetic on
//! figures the command measured or read; `capacity_mode` prices the two Kinesis modes
//! with it.

use serde::Serialize;

/// List prices, us-east-1. The pricing pages could not be opened from this machine;
/// each figure was checked against the page's text as indexed by the `search` tool
/// (2026-11-25) or, where the page's figures were not in the index, against secondary
/// sources quoting that page; see each constant.
pub mod price {
    /// Lambda duration on arm64 (first 7.5 billion GB-s a month), per GB-second.
    /// <https://aws.amazon.com/lambda/pricing/>, read 2026-11-25 (figure via
    /// cloudchipr.com's and kodekloud's copies of that page; the archived page itself,
    /// web.archive.org 2026-06-18, was indexed without its price table).
    pub const LAMBDA_ARM64_PER_GB_SECOND: f64 = 0.000_013_333_4;
    /// Lambda requests, per million (both architectures). Same page and date.
    pub const LAMBDA_PER_MILLION_REQUESTS: f64 = 0.20;
    /// DynamoDB on-demand write request units, per million (Standard table class; the
    /// price since the November 2024 cut). <https://aws.amazon.com/dynamodb/pricing/on-demand/>,
    /// read 2026-11-25 via airbyte.com's pricing guide quoting it.
    pub const DYNAMODB_PER_MILLION_WRU: f64 = 0.625;
    /// DynamoDB on-demand read request units, per million. Same page and date.
    pub const DYNAMODB_PER_MILLION_RRU: f64 = 0.125;
    /// Kinesis Data Streams provisioned mode, per shard-hour.
    /// <https://aws.amazon.com/kinesis/data-streams/pricing/>, read 2026-11-25: the
    /// indexed page confirms the units (shard-hour; PUT payload unit = 25 KB chunk);
    /// the figures are the well-known us-east-1 list prices, as of 2026-11.
    pub const KINESIS_PER_SHARD_HOUR: f64 = 0.015;
    /// Kinesis provisioned mode, per million PUT payload units. Same page and date.
    pub const KINESIS_PER_MILLION_PUT_UNITS: f64 = 0.014;
    /// Kinesis on-demand mode, per stream-hour. Same page (it confirms the per-stream
    /// hourly charge and per-GB data in/out, records rounded up to 1 KB); figures are the
    /// well-known us-east-1 list prices, as of 2026-11.
    pub const KINESIS_ON_DEMAND_PER_STREAM_HOUR: f64 = 0.04;
    /// Kinesis on-demand data in, per GB.
    pub const KINESIS_ON_DEMAND_PER_GB_IN: f64 = 0.08;
    /// Kinesis on-demand data retrieved, per GB (each stream has one reader here: the
    /// next stage's event source mapping).
    pub const KINESIS_ON_DEMAND_PER_GB_OUT: f64 = 0.04;
}

/// AWS bills a month as 730 hours.
pub const HOURS_PER_MONTH: f64 = 730.0;
/// Lambda gives a function one full vCPU at 1,769 MB, proportionally less below.
pub const FULL_VCPU_MB: f64 = 1769.0;
/// Lambda polls a shard about once a second when its batching window is shorter.
pub const MIN_POLL_INTERVAL_S: f64 = 1.0;
/// Lambda's synchronous invocation payload limit (6 MB), which also bounds a Kinesis
/// event source mapping's batch.
pub const INVOCATION_PAYLOAD_BYTES: f64 = 6_291_456.0;
/// JSON around one record's base64 data in a Kinesis event (event id, sequence number,
/// ARNs, ...): 575 B per record in `events/aggregate/enriched.json`, about 550 compact.
pub const EVENT_RECORD_OVERHEAD_BYTES: f64 = 550.0;
pub const SECONDS_PER_MONTH: f64 = HOURS_PER_MONTH * 3600.0;

/// One stage, as the model sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct StageInput {
    pub name: String,
    pub memory_mb: f64,
    pub batch_size: f64,
    pub batching_window_s: f64,
    /// Concurrent batches reading the input stream: shards × ParallelizationFactor.
    pub consumers: f64,
    /// Compute per event, measured.
    pub ns_per_event: f64,
    /// Events this stage receives per producer event.
    pub events_per_producer_event: f64,
    /// Kinesis records it receives per producer event.
    pub records_per_producer_event: f64,
    /// Record bytes (data and partition key) it receives per producer event.
    pub bytes_per_producer_event: f64,
}

impl StageInput {
    /// Records one invocation can carry within [`INVOCATION_PAYLOAD_BYTES`]: each
    /// record's data base64-encoded plus its envelope in the event JSON.
    pub fn payload_cap_records(&self) -> f64 {
        if self.records_per_producer_event <= 0.0 {
            return f64::INFINITY;
        }
        let bytes = self.bytes_per_producer_event / self.records_per_producer_event;
        let in_event = (bytes / 3.0).ceil() * 4.0 + EVENT_RECORD_OVERHEAD_BYTES;
        (INVOCATION_PAYLOAD_BYTES / in_event).floor().max(1.0)
    }
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct StageCost {
    pub stage: String,
    pub memory_mb: f64,
    pub invocations_per_second: f64,
    pub events_per_invocation: f64,
    pub billed_ms: f64,
    pub gb_seconds_per_second: f64,
    /// Lambda, dollars per second of the workload.
    pub usd_per_second: f64,
}

/// Lambda's invocations and billed duration for one stage at `events_per_second`.
pub fn stage_cost(s: &StageInput, events_per_second: f64, io_ms: f64) -> StageCost {
    let records_per_s = events_per_second * s.records_per_producer_event;
    if records_per_s <= 0.0 {
        return StageCost {
            stage: s.name.clone(),
            memory_mb: s.memory_mb,
            invocations_per_second: 0.0,
            events_per_invocation: 0.0,
            billed_ms: 0.0,
            gb_seconds_per_second: 0.0,
            usd_per_second: 0.0,
        };
    }
    let per_consumer = records_per_s / s.consumers.max(1.0);
    let cap = s.batch_size.min(s.payload_cap_records()).max(1.0);
    let records_per_invocation =
        (per_consumer * s.batching_window_s.max(MIN_POLL_INTERVAL_S)).clamp(1.0, cap);
    let invocations = records_per_s / records_per_invocation;
    let events_per_invocation =
        records_per_invocation * s.events_per_producer_event / s.records_per_producer_event;
    let cpu_share = (s.memory_mb / FULL_VCPU_MB).min(1.0);
    let compute_ms = events_per_invocation * s.ns_per_event / 1e6 / cpu_share;
    let billed_ms = (io_ms + compute_ms).ceil();
    let gb_seconds = invocations * billed_ms / 1000.0 * s.memory_mb / 1024.0;
    StageCost {
        stage: s.name.clone(),
        memory_mb: s.memory_mb,
        invocations_per_second: invocations,
        events_per_invocation,
        billed_ms,
        gb_seconds_per_second: gb_seconds,
        usd_per_second: gb_seconds * price::LAMBDA_ARM64_PER_GB_SECOND
            + invocations * price::LAMBDA_PER_MILLION_REQUESTS / 1e6,
    }
}

/// One stream hop: what is written to it per producer event.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Hop {
    pub stream: String,
    pub shards: usize,
    pub put_units_per_event: f64,
    pub kib_per_event: f64,
    /// Kinesis records and their bytes (partition keys included), per producer event:
    /// what a provisioned stream's shards must take.
    pub records_per_event: f64,
    pub bytes_per_event: f64,
}

/// Kinesis dollars per second for the hops at `events_per_second`, excluding the
/// per-shard (or per-stream) hourly charge, which [`kinesis_hourly`] gives.
pub fn kinesis_usage_usd_per_second(hops: &[Hop], events_per_second: f64, on_demand: bool) -> f64 {
    hops.iter()
        .map(|h| {
            if on_demand {
                let gb = events_per_second * h.kib_per_event / (1024.0 * 1024.0);
                gb * (price::KINESIS_ON_DEMAND_PER_GB_IN + price::KINESIS_ON_DEMAND_PER_GB_OUT)
            } else {
                events_per_second * h.put_units_per_event * price::KINESIS_PER_MILLION_PUT_UNITS
                    / 1e6
            }
        })
        .sum()
}

/// Kinesis dollars per hour independent of volume: shard-hours (provisioned) or
/// stream-hours (on-demand).
pub fn kinesis_hourly(hops: &[Hop], on_demand: bool) -> f64 {
    if on_demand {
        hops.len() as f64 * price::KINESIS_ON_DEMAND_PER_STREAM_HOUR
    } else {
        hops.iter().map(|h| h.shards as f64).sum::<f64>() * price::KINESIS_PER_SHARD_HOUR
    }
}

/// DynamoDB request units per producer event.
#[derive(Clone, Copy, Debug, Serialize, PartialEq)]
pub struct TableUse {
    pub write_units_per_event: f64,
    pub read_units_per_event: f64,
    pub item_writes_per_event: f64,
}

pub fn dynamodb_usd_per_second(t: &TableUse, events_per_second: f64) -> f64 {
    events_per_second
        * (t.write_units_per_event * price::DYNAMODB_PER_MILLION_WRU
            + t.read_units_per_event * price::DYNAMODB_PER_MILLION_RRU)
        / 1e6
}

/// A priced pipeline.
#[derive(Clone, Debug, Serialize)]
pub struct Bill {
    pub stages: Vec<StageCost>,
    pub table: TableUse,
    pub hops: Vec<Hop>,
    pub lambda_usd_per_month: f64,
    pub dynamodb_usd_per_month: f64,
    pub kinesis_usage_usd_per_month: f64,
    pub kinesis_hourly_usd_per_month: f64,
    pub total_usd_per_month: f64,
    pub usd_per_million_events: f64,
    pub usd_per_million_events_excluding_shard_hours: f64,
}

pub fn bill(
    stages: &[StageInput],
    table: TableUse,
    hops: Vec<Hop>,
    events_per_second: f64,
    io_ms: f64,
    on_demand: bool,
) -> Bill {
    let costs: Vec<StageCost> = stages
        .iter()
        .map(|s| stage_cost(s, events_per_second, io_ms))
        .collect();
    let lambda: f64 = costs.iter().map(|c| c.usd_per_second).sum();
    let dynamodb = dynamodb_usd_per_second(&table, events_per_second);
    let kinesis = kinesis_usage_usd_per_second(&hops, events_per_second, on_demand);
    let hourly = kinesis_hourly(&hops, on_demand);
    let usage = lambda + dynamodb + kinesis;
    let per_million =
        |usd_per_second: f64| usd_per_second / events_per_second.max(f64::MIN_POSITIVE) * 1e6;
    Bill {
        stages: costs,
        table,
        hops,
        lambda_usd_per_month: lambda * SECONDS_PER_MONTH,
        dynamodb_usd_per_month: dynamodb * SECONDS_PER_MONTH,
        kinesis_usage_usd_per_month: kinesis * SECONDS_PER_MONTH,
        kinesis_hourly_usd_per_month: hourly * HOURS_PER_MONTH,
        total_usd_per_month: usage * SECONDS_PER_MONTH + hourly * HOURS_PER_MONTH,
        usd_per_million_events: per_million(usage + hourly / 3600.0),
        usd_per_million_events_excluding_shard_hours: per_million(usage),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stage(records_per_event: f64) -> StageInput {
        StageInput {
            name: "s".into(),
            memory_mb: 512.0,
            batch_size: 1000.0,
            batching_window_s: 2.0,
            consumers: 2.0,
            ns_per_event: 1000.0,
            events_per_producer_event: 1.0,
            records_per_producer_event: records_per_event,
            bytes_per_producer_event: 200.0,
        }
    }

    #[test]
    fn invocations_follow_the_batching_window_and_the_batch_size() {
        // 1,000 records/s over 2 consumers, 2 s windows: 1,000 records per batch, 1/s.
        let c = stage_cost(&stage(1.0), 1000.0, 20.0);
        assert_eq!(c.invocations_per_second, 1.0);
        assert_eq!(c.events_per_invocation, 1000.0);
        // 1,000 events × 1 µs = 1 ms of a full vCPU; 512 MB has 512/1769 of one.
        // 20 + 3.455 = 23.455 ms, billed 24 ms.
        assert_eq!(c.billed_ms, 24.0);
        assert!((c.gb_seconds_per_second - 0.024 * 0.5).abs() < 1e-12);
        let usd = 0.012 * 0.000_013_333_4 + 0.2 / 1e6;
        assert!((c.usd_per_second - usd).abs() < 1e-15);
        // 10× the rate: the batch size caps a batch at 1,000 records: 10 invocations/s.
        let c = stage_cost(&stage(1.0), 10_000.0, 20.0);
        assert_eq!(c.invocations_per_second, 10.0);
        // A short window still waits for Lambda's one-second poll.
        let mut s = stage(1.0);
        s.batching_window_s = 0.0;
        assert_eq!(stage_cost(&s, 100.0, 20.0).invocations_per_second, 2.0);
        // Packed records: 10 events per record, 100 records per batch of 1,000 events.
        let c = stage_cost(&stage(0.1), 1000.0, 20.0);
        assert_eq!(c.invocations_per_second, 1.0);
        assert_eq!(c.events_per_invocation, 1000.0);
    }

    #[test]
    fn a_batch_stops_at_the_six_megabyte_invocation_payload() {
        // 200 B per event, 100 events per record: 20,000 B, 26,668 B of base64, plus
        // 550 B of envelope: 27,218 B per record, 231 records in 6,291,456 B.
        let mut s = stage(0.01);
        s.bytes_per_producer_event = 200.0;
        s.batch_size = 10_000.0;
        s.batching_window_s = 300.0;
        assert_eq!(s.payload_cap_records(), 231.0);
        // 1,000 events/s over 2 consumers for 300 s would be 1,500 records (150,000
        // events) per batch; the payload caps it at 231 records, 23,100 events.
        let c = stage_cost(&s, 1000.0, 20.0);
        assert_eq!(c.events_per_invocation, 23_100.0);
        assert!((c.invocations_per_second - 10.0 / 231.0).abs() < 1e-12);
        // Small records: the batch size binds first.
        let mut s = stage(1.0);
        s.bytes_per_producer_event = 150.0;
        assert!(s.payload_cap_records() > s.batch_size);
        assert_eq!(stage_cost(&s, 1000.0, 20.0).events_per_invocation, 1000.0);
    }

    #[test]
    fn dynamodb_and_kinesis_are_priced_per_unit() {
        // 1,000 events/s at 0.1 WRU and 0.05 RRU each: 100 WRU/s and 50 RRU/s.
        let t = TableUse {
            write_units_per_event: 0.1,
            read_units_per_event: 0.05,
            item_writes_per_event: 0.05,
        };
        let usd = dynamodb_usd_per_second(&t, 1000.0);
        assert!((usd - (100.0 * 0.625 + 50.0 * 0.125) / 1e6).abs() < 1e-15);
        let hops = vec![
            Hop {
                stream: "raw".into(),
                shards: 2,
                put_units_per_event: 1.0,
                kib_per_event: 1.0,
                records_per_event: 1.0,
                bytes_per_event: 150.0,
            },
            Hop {
                stream: "valid".into(),
                shards: 2,
                put_units_per_event: 0.01,
                kib_per_event: 0.2,
                records_per_event: 0.01,
                bytes_per_event: 200.0,
            },
        ];
        // 1,010 PUT units/s at $0.014 per million.
        let usd = kinesis_usage_usd_per_second(&hops, 1000.0, false);
        assert!((usd - 1010.0 * 0.014 / 1e6).abs() < 1e-15);
        // 4 shards × $0.015/h; on-demand: 2 streams × $0.04/h.
        assert!((kinesis_hourly(&hops, false) - 0.06).abs() < 1e-12);
        assert!((kinesis_hourly(&hops, true) - 0.08).abs() < 1e-12);
        // On-demand: 1,200 KB/s in and out.
        let gb = 1200.0 / (1024.0 * 1024.0);
        assert!((kinesis_usage_usd_per_second(&hops, 1000.0, true) - gb * 0.12).abs() < 1e-15);
    }

    #[test]
    fn a_bill_adds_up_per_month_and_per_million_events() {
        let t = TableUse {
            write_units_per_event: 1.0,
            read_units_per_event: 0.0,
            item_writes_per_event: 1.0,
        };
        let hops = vec![Hop {
            stream: "raw".into(),
            shards: 1,
            put_units_per_event: 1.0,
            kib_per_event: 1.0,
            records_per_event: 1.0,
            bytes_per_event: 150.0,
        }];
        let b = bill(&[], t, hops, 1000.0, 20.0, false);
        // Per million events: $0.625 of WRU and $0.014 of PUT units.
        assert!((b.usd_per_million_events_excluding_shard_hours - 0.639).abs() < 1e-9);
        // One shard-hour ($0.015) carries 3.6 million events: + $0.0041667 per million.
        assert!((b.usd_per_million_events - (0.639 + 0.015 / 3.6)).abs() < 1e-9);
        assert!((b.kinesis_hourly_usd_per_month - 0.015 * 730.0).abs() < 1e-9);
        assert!((b.dynamodb_usd_per_month - 1000.0 * 0.625 / 1e6 * 730.0 * 3600.0).abs() < 1e-6);
    }
}
