//! Records as stages see them, independent of the Lambda event type, and records as
//! stages write them.

use std::collections::HashMap;

/// One Kinesis record delivered to a stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamRecord {
    /// Stream name (the last part of `eventSourceARN`).
    pub stream: String,
    pub shard_id: String,
    pub sequence_number: String,
    pub partition_key: String,
    pub data: Vec<u8>,
    /// `approximateArrivalTimestamp` in epoch milliseconds.
    pub arrival_ms: i64,
}

impl StreamRecord {
    /// Identifies a line of this record for ever: `shard:sequence:line`.
    pub fn origin_of_line(&self, line: usize) -> String {
        format!("{}:{}:{}", self.shard_id, self.sequence_number, line)
    }
}

/// One record a stage writes (`PutRecords` entry).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutRecord {
    pub partition_key: String,
    pub data: Vec<u8>,
}

/// Leave room under Kinesis's 1 MiB record limit for the partition key.
pub const PACKED_RECORD_BYTES: usize = 1024 * 1024 - 1024;

/// Packs lines into newline-delimited records, one or more per partition key, keeping
/// the order of lines within each key and the order in which keys first appear.
/// Fewer, larger records cost fewer `PutRecords` entries and keep per-key order across
/// retries (see the Kinesis sink), and every stage accepts NDJSON records.
pub fn pack_lines(
    lines: impl IntoIterator<Item = (String, Vec<u8>)>,
    max_bytes: usize,
) -> Vec<OutRecord> {
    let mut order: Vec<String> = Vec::new();
    let mut by_key: HashMap<String, Vec<Vec<u8>>> = HashMap::new();
    for (key, line) in lines {
        by_key
            .entry(key.clone())
            .or_insert_with(|| {
                order.push(key);
                Vec::new()
            })
            .push(line);
    }
    let mut out = Vec::new();
    for key in order {
        let mut current: Vec<u8> = Vec::new();
        for line in by_key.remove(&key).unwrap_or_default() {
            if !current.is_empty() && current.len() + 1 + line.len() > max_bytes {
                out.push(OutRecord {
                    partition_key: key.clone(),
                    data: std::mem::take(&mut current),
                });
            }
            if !current.is_empty() {
                current.push(b'\n');
            }
            current.extend_from_slice(&line);
        }
        if !current.is_empty() {
            out.push(OutRecord {
                partition_key: key,
                data: current,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packs_by_key_in_first_appearance_order() {
        let lines = vec![
            ("b".to_owned(), b"1".to_vec()),
            ("a".to_owned(), b"2".to_vec()),
            ("b".to_owned(), b"3".to_vec()),
        ];
        let out = pack_lines(lines, 100);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].partition_key, "b");
        assert_eq!(out[0].data, b"1\n3");
        assert_eq!(out[1].data, b"2");
    }

    #[test]
    fn splits_when_a_record_would_exceed_the_limit() {
        let lines = (0..5).map(|i| ("k".to_owned(), vec![b'0' + i; 4]));
        let out = pack_lines(lines, 10);
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|r| r.data.len() <= 10));
        assert_eq!(out[0].data, b"0000\n1111");
        assert_eq!(out[2].data, b"4444");
    }
}
