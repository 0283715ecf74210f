//! Ingest: decode, validate and normalize producer records. Valid events go to the
//! valid stream keyed by `key`; every rejected line goes to the dead-letter stream with
//! its reason and original bytes.

use crate::config::IngestConfig;
use crate::dead_letter::DeadLetter;
use crate::envelope::{Reason, Rejection, TimeBounds, decode_record};
use crate::outcome::BatchOutcome;
use crate::ports::{Clock, EventLedger, Fate, RecordSink};
use crate::record::{PACKED_RECORD_BYTES, StreamRecord, pack_lines};
use crate::stage::{Stage, deadline_passed, fail_whole_batch, failure_at};

pub struct Ingest<O, D, L, C> {
    pub output: O,
    pub dead_letters: D,
    pub ledger: L,
    pub clock: C,
    pub config: IngestConfig,
}

impl<O, D, L, C> Stage for Ingest<O, D, L, C>
where
    O: RecordSink,
    D: RecordSink,
    L: EventLedger,
    C: Clock,
{
    fn name(&self) -> &'static str {
        "ingest"
    }

    async fn process(&self, records: &[StreamRecord], deadline_ms: Option<i64>) -> BatchOutcome {
        let mut outcome = BatchOutcome {
            records: records.len(),
            ..Default::default()
        };
        let bounds = TimeBounds {
            now_ms: self.clock.now_ms(),
            max_future_skew_ms: self.config.max_clock_skew_ms,
        };
        let mut valid = Vec::new();
        let mut dead = Vec::new();
        let mut received = Vec::new();
        let mut fates = Vec::new();
        for (index, record) in records.iter().enumerate() {
            if let Some(err) = deadline_passed(
                &self.clock,
                deadline_ms,
                self.config.common.deadline_margin_ms,
            ) {
                outcome.failure = Some(failure_at(records, index, err));
                break;
            }
            outcome.stats.records += 1;
            for line in decode_record(&record.data, bounds) {
                let origin = record.origin_of_line(line.line);
                outcome.stats.events_in += 1;
                // Re-encoding a validated event cannot fail in practice; if it ever did,
                // the line is rejected like any other, never a panic.
                let encoded = line.result.and_then(|decoded| {
                    let mut event = decoded.into_event(|| origin.clone());
                    // The origin is ours to assign: it names this producer write.
                    event.origin = Some(origin.clone());
                    let bytes = serde_json::to_vec(&event).map_err(|e| Rejection {
                        reason: Reason::InvalidValue,
                        field: None,
                        detail: format!("the normalized event could not be encoded: {e}"),
                        id: Some(event.id.clone()),
                    })?;
                    Ok((event.key, bytes))
                });
                match encoded {
                    Ok(keyed) => {
                        valid.push(keyed);
                        outcome.stats.passed_on += 1;
                    }
                    Err(rejection) => {
                        outcome.stats.dead_letter(rejection.reason);
                        fates.push((origin.clone(), Fate::DeadLetter(rejection.reason)));
                        dead.push(
                            DeadLetter::for_line(
                                self.name(),
                                record,
                                line.line,
                                line.bytes,
                                &rejection,
                            )
                            .with_origin(Some(origin.clone()))
                            .into_record(&record.partition_key),
                        );
                    }
                }
                received.push(origin);
            }
        }
        let written = async {
            self.output
                .put_records(pack_lines(valid, PACKED_RECORD_BYTES))
                .await?;
            self.dead_letters.put_records(dead).await
        };
        if let Err(error) = written.await {
            fail_whole_batch(&mut outcome, records, error);
            return outcome;
        }
        for origin in &received {
            self.ledger.received(origin);
        }
        for (origin, fate) in fates {
            self.ledger.settled(&origin, fate);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::testing::*;

    const NOW: i64 = 1_767_225_600_000;

    fn stage() -> Ingest<VecSink, VecSink, MapLedger, FixedClock> {
        Ingest {
            output: VecSink::named("valid"),
            dead_letters: VecSink::named("dlq"),
            ledger: MapLedger::default(),
            clock: FixedClock::at(NOW),
            config: IngestConfig::default(),
        }
    }

    #[test]
    fn valid_events_pass_keyed_by_key_and_bad_ones_are_dead_lettered() {
        let s = stage();
        let records = vec![
            record("shardId-0", 1, "a", br#"{"id":"e1","key":"a","type":"t","ts":1000,"value":1}"#),
            record("shardId-0", 2, "b", b"not json"),
            record("shardId-0", 3, "b", b"{\"key\":\"b\",\"type\":\"t\",\"ts\":2000,\"value\":2}\n{\"key\":\"b\",\"type\":\"t\",\"ts\":2000,\"value\":NaN}"),
        ];
        let outcome = block_on(s.process(&records, None));
        assert!(outcome.is_complete());
        assert_eq!(outcome.stats.events_in, 4);
        assert_eq!(outcome.stats.passed_on, 2);
        let out = s.output.records.lock().expect("lock").clone();
        assert_eq!(
            out.iter()
                .map(|r| r.partition_key.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        let valid = s.output.lines();
        assert_eq!(valid[0]["id"], "e1");
        assert_eq!(valid[0]["origin"], format!("shardId-0:{:056}:0", 1));
        assert_eq!(
            valid[1]["id"],
            format!("shardId-0:{:056}:0", 3),
            "derived id"
        );
        let dead = s.dead_letters.lines();
        assert_eq!(dead.len(), 2);
        assert_eq!(dead[0]["reason"], "not_json");
        assert_eq!(dead[0]["stage"], "ingest");
        assert_eq!(dead[0]["data"], "bm90IGpzb24=", "original bytes, base64");
        assert_eq!(dead[1]["reason"], "non_finite_value");
        assert_eq!(dead[1]["line"], 1);
        let fates = s.ledger.fates.lock().expect("lock");
        assert_eq!(s.ledger.received.lock().expect("lock").len(), 4);
        assert_eq!(fates.len(), 2);
        assert!(
            fates
                .values()
                .any(|f| *f == Fate::DeadLetter(Reason::NotJson))
        );
    }

    #[test]
    fn empty_batch_is_complete_and_writes_nothing() {
        let s = stage();
        let outcome = block_on(s.process(&[], None));
        assert!(outcome.is_complete());
        assert!(s.output.records.lock().expect("lock").is_empty());
    }

    #[test]
    fn a_failing_sink_fails_the_whole_batch_for_retry() {
        let s = stage();
        *s.output.fail.lock().expect("lock") = true;
        let records = vec![record(
            "shardId-0",
            7,
            "a",
            br#"{"key":"a","type":"t","ts":1,"value":1}"#,
        )];
        let outcome = block_on(s.process(&records, None));
        let failure = outcome.failure.expect("fails");
        assert_eq!(failure.index, 0);
        assert!(failure.error.is_retryable());
        assert!(
            s.ledger.received.lock().expect("lock").is_empty(),
            "nothing settled"
        );
    }

    #[test]
    fn stops_before_the_deadline_and_reports_where() {
        let s = stage();
        let records = vec![record(
            "shardId-0",
            1,
            "a",
            br#"{"key":"a","type":"t","ts":1,"value":1}"#,
        )];
        let outcome = block_on(s.process(&records, Some(NOW + 500)));
        let failure = outcome.failure.expect("deadline");
        assert_eq!(failure.sequence_number, records[0].sequence_number);
        assert_eq!(failure.error.code(), "deadline");
    }

    #[test]
    fn a_ten_thousand_record_batch_is_processed_in_full() {
        let s = stage();
        let records: Vec<_> = (0..10_000u64)
            .map(|i| {
                let body = if i % 100 == 0 {
                    "garbage".to_owned()
                } else {
                    format!(
                        r#"{{"id":"e{i}","key":"k{}","type":"t","ts":{},"value":{i}}}"#,
                        i % 100,
                        NOW - 1000
                    )
                };
                record("shardId-0", i + 1, "k", body.as_bytes())
            })
            .collect();
        let outcome = block_on(s.process(&records, None));
        assert!(outcome.is_complete());
        assert_eq!(outcome.stats.passed_on, 9_900);
        assert_eq!(outcome.stats.dead_lettered[&Reason::NotJson], 100);
        assert_eq!(s.output.lines().len(), 9_900);
        assert!(
            s.output.records.lock().expect("lock").len() <= 100,
            "packed per key"
        );
    }
}
