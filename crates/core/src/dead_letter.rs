//! What lands on the dead-letter stream: the reason, where the input came from, and the
//! original bytes (base64), so that nothing rejected is ever lost.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};

use crate::envelope::{Reason, Rejection};
use crate::record::{OutRecord, StreamRecord};

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
            detail: rejection.detail.clone(),
            id: rejection.id.clone(),
            origin: None,
            stage: stage.to_owned(),
            source_stream: record.stream.clone(),
            shard_id: record.shard_id.clone(),
            sequence_number: record.sequence_number.clone(),
            line: Some(line),
            data: Some(BASE64.encode(bytes)),
            end_sequence_number: None,
            batch_size: None,
        }
    }

    pub fn with_origin(mut self, origin: Option<String>) -> Self {
        self.origin = origin;
        self
    }

    /// The original bytes, decoded.
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
