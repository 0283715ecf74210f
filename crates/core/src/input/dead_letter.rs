//! What lands on the dead-letter stream: the reason, where the input came from, and the
//! original bytes (base64), so that nothing rejected is ever lost.
//!
//! A dead letter always fits one Kinesis record (1 MiB): original bytes are kept up to
//! [`MAX_DEAD_LETTER_DATA_BYTES`] (256 KiB, about 342 KiB in base64) and always come
//! with their full length and SHA-256 (`original`), so a truncated copy can still be
//! matched to its source; `detail` is cut at [`MAX_DETAIL_BYTES`]. Every other field is
//! bounded by validation (ids, keys) or by us (stage, stream and shard names).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::input::envelope::{Reason, Rejection};
use crate::input::record::{OutRecord, StreamRecord};

/// The most original bytes a dead letter carries (before base64).
pub const MAX_DEAD_LETTER_DATA_BYTES: usize = 256 * 1024;
/// The longest `detail` a dead letter carries (details can quote producer values).
pub const MAX_DETAIL_BYTES: usize = 1024;

/// The full original input behind `data`, which may hold only its first bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginalBytes {
    /// Length of the whole original input.
    pub bytes: usize,
    /// SHA-256 of the whole original input, lowercase hex.
    pub sha256: String,
    /// `data` holds only the first [`MAX_DEAD_LETTER_DATA_BYTES`] bytes.
    pub truncated: bool,
}

impl OriginalBytes {
    pub fn of(bytes: &[u8]) -> Self {
        OriginalBytes {
            bytes: bytes.len(),
            sha256: Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect(),
            truncated: bytes.len() > MAX_DEAD_LETTER_DATA_BYTES,
        }
    }
}

/// What one input record's rejected lines came to, when more of them were rejected than
/// get a dead letter each (see `stage::ingest::MAX_LISTED_REJECTIONS`): this one dead
/// letter stands for all the others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionSummary {
    /// Lines (events) the record held, across all its user records.
    pub lines: u64,
    /// Lines rejected in all.
    pub rejected: u64,
    /// Rejected lines that have a dead letter of their own.
    pub listed: u64,
    /// The rejected lines this summary stands for (`rejected - listed`), per reason.
    pub by_reason: BTreeMap<Reason, u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub reason: Reason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub detail: String,
    /// The event id, when one was readable.
    pub id: Option<String>,
    /// `shard:sequence:line` of the raw stream, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// The stage that rejected the input.
    pub stage: String,
    pub source_stream: String,
    pub shard_id: String,
    /// For one record: its sequence number; for a dropped batch: the first one.
    pub sequence_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The original bytes of the record or line, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    /// For a dropped batch (on-failure destination): the last sequence number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_sequence_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// Length and SHA-256 of the whole original input, whenever `data` is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original: Option<OriginalBytes>,
    /// Set on the one dead letter that stands for a record's unlisted rejections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<RejectionSummary>,
}

impl DeadLetter {
    /// A dead letter for one rejected line of a record.
    pub fn for_line(
        stage: &str,
        record: &StreamRecord,
        line: usize,
        bytes: &[u8],
        rejection: &Rejection,
    ) -> Self {
        DeadLetter {
            reason: rejection.reason,
            field: rejection.field.map(str::to_owned),
            detail: bounded_detail(&rejection.detail),
            id: rejection.id.clone(),
            origin: None,
            stage: stage.to_owned(),
            source_stream: record.stream.clone(),
            shard_id: record.shard_id.clone(),
            sequence_number: record.sequence_number.clone(),
            line: Some(line),
            data: Some(bounded_data(bytes)),
            end_sequence_number: None,
            batch_size: None,
            original: Some(OriginalBytes::of(bytes)),
            summary: None,
        }
    }

    /// The one dead letter for the rejected lines of `record` that were not listed one
    /// by one. Its `reason` is the most frequent among them; it carries the record's
    /// original bytes (bounded like any other).
    pub fn for_summary(stage: &str, record: &StreamRecord, summary: RejectionSummary) -> Self {
        let reason = summary
            .by_reason
            .iter()
            .max_by_key(|(reason, n)| (**n, std::cmp::Reverse(**reason)))
            .map_or(Reason::NotJson, |(reason, _)| *reason);
        let unlisted = summary.rejected - summary.listed;
        DeadLetter {
            reason,
            field: None,
            detail: format!(
                "{unlisted} more rejected lines of this record ({} rejected of {} lines, the first {} listed one by one); counts per reason in summary.by_reason",
                summary.rejected, summary.lines, summary.listed
            ),
            id: None,
            origin: None,
            stage: stage.to_owned(),
            source_stream: record.stream.clone(),
            shard_id: record.shard_id.clone(),
            sequence_number: record.sequence_number.clone(),
            line: None,
            data: Some(bounded_data(&record.data)),
            end_sequence_number: None,
            batch_size: None,
            original: Some(OriginalBytes::of(&record.data)),
            summary: Some(summary),
        }
    }

    pub fn with_origin(mut self, origin: Option<String>) -> Self {
        self.origin = origin;
        self
    }

    /// The original bytes (or their first [`MAX_DEAD_LETTER_DATA_BYTES`]), decoded.
    pub fn original_bytes(&self) -> Option<Vec<u8>> {
        self.data.as_ref().and_then(|d| BASE64.decode(d).ok())
    }

    /// Dead letters are keyed by the source record's partition key, so one key's
    /// rejections stay in order.
    pub fn into_record(self, partition_key: &str) -> OutRecord {
        let data = serde_json::to_vec(&self).unwrap_or_else(|e| {
            // Serializing plain strings and numbers cannot fail; keep a trace if it does.
            format!(
                "{{\"reason\":\"{}\",\"detail\":\"unserializable: {e}\"}}",
                self.reason
            )
            .into_bytes()
        });
        OutRecord {
            partition_key: if partition_key.is_empty() {
                self.shard_id.clone()
            } else {
                partition_key.to_owned()
            },
            data,
        }
    }
}

fn bounded_data(bytes: &[u8]) -> String {
    BASE64.encode(&bytes[..bytes.len().min(MAX_DEAD_LETTER_DATA_BYTES)])
}

/// Cuts `detail` at [`MAX_DETAIL_BYTES`] on a character boundary.
fn bounded_detail(detail: &str) -> String {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail.to_owned();
    }
    let mut end = MAX_DETAIL_BYTES;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes in all)", &detail[..end], detail.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::record::MAX_KINESIS_RECORD_BYTES;

    fn record(data: &[u8]) -> StreamRecord {
        StreamRecord {
            stream: "raw".into(),
            shard_id: "shardId-000000000000".into(),
            sequence_number: "4".repeat(56),
            partition_key: "p".repeat(256),
            data: data.to_vec(),
            arrival_ms: 0,
        }
    }

    #[test]
    fn a_dead_letter_of_the_largest_input_still_fits_one_record() {
        let bytes: Vec<u8> = (0..MAX_KINESIS_RECORD_BYTES)
            .map(|i| (i % 251) as u8)
            .collect();
        let rejection = Rejection {
            reason: Reason::RecordTooLarge,
            field: Some("type"),
            detail: "é".repeat(600_000),
            id: Some("i".repeat(512)),
        };
        let r = record(&bytes);
        let letter = DeadLetter::for_line("ingest", &r, 7, &bytes, &rejection)
            .with_origin(Some(r.origin_of_line(7)));
        let out = letter.clone().into_record(&r.partition_key);
        assert!(out.data.len() + out.partition_key.len() <= MAX_KINESIS_RECORD_BYTES);
        assert!(letter.detail.len() < MAX_DETAIL_BYTES + 64);
        let original = letter.original.as_ref().expect("original");
        assert_eq!(original.bytes, bytes.len());
        assert!(original.truncated);
        assert_eq!(
            original.sha256,
            OriginalBytes::of(&bytes).sha256,
            "hash of the whole input"
        );
        let kept = letter.original_bytes().expect("base64");
        assert_eq!(kept, bytes[..MAX_DEAD_LETTER_DATA_BYTES]);
        // And it reads back.
        let back: DeadLetter = serde_json::from_slice(&out.data).expect("json");
        assert_eq!(back, letter);
    }

    #[test]
    fn small_inputs_are_kept_whole_with_their_hash() {
        let r = record(b"not json");
        let rejection = Rejection {
            reason: Reason::NotJson,
            field: None,
            detail: "x".into(),
            id: None,
        };
        let letter = DeadLetter::for_line("ingest", &r, 0, b"not json", &rejection);
        assert_eq!(letter.original_bytes().as_deref(), Some(&b"not json"[..]));
        let original = letter.original.expect("original");
        assert!(!original.truncated);
        assert_eq!(
            original.sha256,
            "7ccfa1fbf3940e6f0c0375d87c0f9235a50514e14cb427bdfaf5077987b26ccf"
        );
    }

    #[test]
    fn a_summary_names_its_most_frequent_reason_and_fits() {
        let r = record(&vec![b'x'; MAX_KINESIS_RECORD_BYTES]);
        let summary = RejectionSummary {
            lines: 500_000,
            rejected: 500_000,
            listed: 100,
            by_reason: BTreeMap::from([(Reason::NotJson, 499_890), (Reason::WrongType, 10)]),
        };
        let letter = DeadLetter::for_summary("ingest", &r, summary.clone());
        assert_eq!(letter.reason, Reason::NotJson);
        assert_eq!(letter.line, None);
        let out = letter.into_record(&r.partition_key);
        assert!(out.data.len() + out.partition_key.len() <= MAX_KINESIS_RECORD_BYTES);
        let v: serde_json::Value = serde_json::from_slice(&out.data).expect("json");
        assert_eq!(v["summary"]["by_reason"]["not_json"], 499_890);
        assert_eq!(v["summary"]["listed"], 100);
        assert_eq!(v["original"]["bytes"], MAX_KINESIS_RECORD_BYTES);
    }
}
