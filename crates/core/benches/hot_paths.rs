//! Micro-benchmarks of the per-record hot paths (`cargo bench -p sluice-core`).
//!
//! Each benchmark works on one realistic input: a ~150-byte envelope like the ones
//! `sluice produce` writes, a batch of 10,000 events over 100 keys like `sluice bench`
//! aggregates. Numbers are per call; divan prints the fastest, slowest, median and mean.

use std::collections::HashMap;
use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use sluice_core::config::AggregateConfig;
use sluice_core::input::envelope::{TimeBounds, decode_line, decode_record};
use sluice_core::input::record::{LinePacker, pack_lines};
use sluice_core::state::fingerprint::{FingerprintSet, fingerprint};
use sluice_core::state::idempotency::{Candidate, anchor_of, event_identity, plan_group};
use sluice_core::state::item::GroupKey;
use sluice_core::state::sequence::SeqNo;
use sluice_core::state::statistics::AggState;
use sluice_core::state::window::WindowSet;

fn main() {
    divan::main();
}

const NOW_MS: i64 = 1_764_000_000_000;

fn envelope(i: usize) -> String {
    format!(
        r#"{{"id":"evt-{i:08}","key":"sensor-{:03}","type":"temperature","ts":{},"value":{}.25,"attrs":{{"site":"plant-{}","unit":"celsius"}}}}"#,
        i % 100,
        NOW_MS - 60_000 + (i as i64 % 60_000),
        i % 40,
        i % 7
    )
}

fn bounds() -> TimeBounds {
    TimeBounds {
        now_ms: NOW_MS,
        max_future_skew_ms: 300_000,
    }
}

mod envelope_decode {
    use super::*;

    /// One ~150-byte envelope: JSON parse plus validation.
    #[divan::bench]
    fn line(bencher: divan::Bencher) {
        let line = envelope(7);
        bencher.bench(|| decode_line(black_box(line.as_bytes()), bounds()));
    }

    /// An envelope with an RFC 3339 timestamp (the other accepted `ts` form).
    #[divan::bench]
    fn line_rfc3339_ts(bencher: divan::Bencher) {
        let line = r#"{"id":"evt-1","key":"sensor-001","type":"temperature","ts":"2025-11-24T16:00:00.250Z","value":21.5}"#;
        bencher.bench(|| decode_line(black_box(line.as_bytes()), bounds()));
    }

    /// Base64 decode (as Lambda hands the data over) and then the record's one line.
    #[divan::bench]
    fn base64_and_record(bencher: divan::Bencher) {
        let encoded = STANDARD.encode(envelope(7));
        bencher.bench(|| {
            let data = STANDARD.decode(black_box(&encoded)).unwrap_or_default();
            decode_record(&data, bounds()).len()
        });
    }

    /// A record of 100 newline-delimited envelopes.
    #[divan::bench]
    fn ndjson_record_of_100(bencher: divan::Bencher) {
        let data = (0..100).map(envelope).collect::<Vec<_>>().join("\n");
        bencher
            .counter(divan::counter::ItemsCount::new(100usize))
            .bench(|| decode_record(black_box(data.as_bytes()), bounds()).len());
    }
}

mod window {
    use super::*;

    /// Every window start of the default set (1m, 5m, 1h) that one event time falls in.
    #[divan::bench]
    fn assign_default_set(bencher: divan::Bencher) {
        let set = WindowSet::default();
        bencher.bench(|| {
            let ts = black_box(NOW_MS + 12_345);
            set.anchor().latest_start(ts) + set.coarser_windows_of(ts).map(|(_, s)| s).sum::<i64>()
        });
    }

    /// The anchor item key of one event (what the aggregate stage builds per event).
    #[divan::bench]
    fn anchor_of_event(bencher: divan::Bencher) {
        let config = AggregateConfig::default();
        let group = GroupKey {
            key: "sensor-042".into(),
            metric: "temperature".into(),
        };
        bencher.bench(|| {
            anchor_of(
                black_box(&group),
                &config.plan_settings(),
                black_box(NOW_MS),
            )
        });
    }
}

mod combine {
    use super::*;

    /// Folding 10,000 values into one partial aggregate.
    #[divan::bench]
    fn push_10k(bencher: divan::Bencher) {
        let values: Vec<f64> = (0..10_000).map(|i| f64::from(i) * 0.5).collect();
        bencher
            .counter(divan::counter::ItemsCount::new(values.len()))
            .bench(|| black_box(&values).iter().copied().collect::<AggState>());
    }

    /// Merging two partial aggregates (associative: the in-batch and stored states).
    #[divan::bench]
    fn merge_states(bencher: divan::Bencher) {
        let a: AggState = (0..100).map(f64::from).collect();
        let b: AggState = (50..300).map(f64::from).collect();
        bencher.bench(|| black_box(a).merged(black_box(&b)));
    }
}

mod fingerprinting {
    use super::*;

    /// MD5-based fingerprint of one event id.
    #[divan::bench]
    fn id(bencher: divan::Bencher) {
        bencher.bench(|| fingerprint(black_box("evt-00001234")));
    }

    /// The exactly-once identity of one event (the fingerprint of its id).
    #[divan::bench]
    fn event_identity_exactly_once(bencher: divan::Bencher) {
        let config = AggregateConfig::default();
        bencher.bench(|| {
            event_identity(
                config.delivery,
                black_box("evt-00001234"),
                "shardId-000000000000:49590338271490256608559692538361571095921575989136588898:0",
            )
        });
    }

    /// Inserting 10,000 fingerprints into an anchor's sorted set, then serialising it.
    #[divan::bench]
    fn set_insert_10k(bencher: divan::Bencher) {
        let fps: Vec<u64> = (0..10_000u64)
            .map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .collect();
        bencher
            .counter(divan::counter::ItemsCount::new(fps.len()))
            .bench(|| {
                let mut set = FingerprintSet::new();
                set.extend(black_box(&fps).iter().copied());
                set.to_bytes().len()
            });
    }
}

mod merge {
    use super::*;

    /// Planning one group's 100 events (one key of a 10,000-event batch over 100 keys)
    /// against an empty table: de-duplication, anchor and coarser-window merges.
    #[divan::bench]
    fn plan_group_100_events(bencher: divan::Bencher) {
        let config = AggregateConfig::default();
        let group = GroupKey {
            key: "sensor-042".into(),
            metric: "temperature".into(),
        };
        let seq = SeqNo::parse("49590338271490256608559692538361571095921575989136588898")
            .expect("a valid sequence number");
        let candidates: Vec<Candidate> = (0..100)
            .map(|i| Candidate {
                index: i,
                ts: NOW_MS + (i as i64) * 600,
                value: i as f64,
                adds: None,
                fingerprint: fingerprint(&format!("evt-{i}")),
                shard: "shardId-000000000000".into(),
                seq: seq.clone(),
                late: false,
            })
            .collect();
        let items = HashMap::new();
        let pages = HashMap::new();
        bencher
            .counter(divan::counter::ItemsCount::new(candidates.len()))
            .bench(|| {
                plan_group(
                    &group,
                    black_box(&candidates),
                    &[],
                    &items,
                    &pages,
                    &config.plan_settings(),
                )
            });
    }
}

mod packing {
    use super::*;

    /// Packing 10,000 ~150-byte output lines over 100 partition keys into records.
    #[divan::bench]
    fn pack_10k_lines(bencher: divan::Bencher) {
        let lines: Vec<(String, Vec<u8>)> = (0..10_000)
            .map(|i| (format!("sensor-{:03}", i % 100), envelope(i).into_bytes()))
            .collect();
        bencher
            .counter(divan::counter::ItemsCount::new(lines.len()))
            .with_inputs(|| lines.clone())
            .bench_values(|lines| pack_lines(lines, 1024 * 1024).map(|r| r.len()));
    }
}

mod packing_as_they_come {
    use super::*;

    /// The same 10,000 lines pushed one by one from a borrowed buffer, as ingest and
    /// enrich do (`pack_10k_lines` above takes owned `(String, Vec<u8>)` pairs).
    #[divan::bench]
    fn line_packer_10k_lines(bencher: divan::Bencher) {
        let lines: Vec<(String, Vec<u8>)> = (0..10_000)
            .map(|i| (format!("sensor-{:03}", i % 100), envelope(i).into_bytes()))
            .collect();
        bencher
            .counter(divan::counter::ItemsCount::new(lines.len()))
            .bench(|| {
                let mut packer = LinePacker::new(1024 * 1024);
                for (key, line) in &lines {
                    if packer.push(key, line).is_err() {
                        return 0;
                    }
                }
                packer.finish().len()
            });
    }
}

mod lambda_event {
    use super::*;
    use aws_lambda_events::event::kinesis::KinesisEvent;
    use sluice_core::stage::lambda_event::{KinesisBatch, records_of};

    /// A 1,000-record Kinesis trigger event as Lambda sends it.
    fn event_json() -> String {
        let records: Vec<String> = (0..1_000)
            .map(|i| {
                format!(
                    r#"{{"kinesis":{{"kinesisSchemaVersion":"1.0","partitionKey":"sensor-{:03}","sequenceNumber":"49{i:054}","data":"{}","approximateArrivalTimestamp":1764000000.123}},"eventSource":"aws:kinesis","eventVersion":"1.0","eventID":"shardId-000000000000:49{i:054}","eventName":"aws:kinesis:record","invokeIdentityArn":"arn:aws:iam::123456789012:role/r","awsRegion":"us-east-1","eventSourceARN":"arn:aws:kinesis:us-east-1:123456789012:stream/sluice-raw"}}"#,
                    i % 100,
                    STANDARD.encode(envelope(i))
                )
            })
            .collect();
        format!(r#"{{"Records":[{}]}}"#, records.join(","))
    }

    /// What the Lambdas read now: straight into records.
    #[divan::bench]
    fn kinesis_batch_1k(bencher: divan::Bencher) {
        let json = event_json();
        bencher
            .counter(divan::counter::ItemsCount::new(1_000usize))
            .bench(|| {
                serde_json::from_str::<KinesisBatch>(black_box(&json)).map(|b| b.records.len())
            });
    }

    /// What they read before: `aws_lambda_events`' event, then copied into records.
    #[divan::bench]
    fn kinesis_event_then_records_of_1k(bencher: divan::Bencher) {
        let json = event_json();
        bencher
            .counter(divan::counter::ItemsCount::new(1_000usize))
            .bench(|| {
                serde_json::from_str::<KinesisEvent>(black_box(&json)).map(|e| records_of(&e).len())
            });
    }
}
