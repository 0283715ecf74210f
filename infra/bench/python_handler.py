#!/usr/bin/env python3
"""The Python baseline of `sluice bench --stage ... --compare-python` (stdlib only).

A plain Lambda handler as one would write it in Python for the same job: per record of a
Kinesis batch, base64-decode and JSON-parse the envelope, validate it (the fields and
types ingest checks), assign its event-time windows (60 s and 3600 s, tumbling, as the
template's default) and combine it into per-(key, type, window) partial aggregates
(count, sum, min, max). No I/O: it measures the handler's CPU work, as the Rust stages
are measured on in-memory ports.

Input: a file with one Lambda `KinesisEvent` JSON per line (what `sluice bench --stage
--write-events FILE` writes). Each timed batch includes `json.loads` of the event, which
the Python Lambda runtime does before calling the handler (the Rust side times
`serde_json::from_slice` of the event likewise).

Output: one JSON line {"records", "records_per_sec", "ns_per_record", "groups"}.

    python3 infra/bench/python_handler.py events.jsonl --warmup 2
"""

import argparse
import base64
import json
import math
import sys
import time
from datetime import datetime

WINDOWS_MS = (60_000, 3_600_000)
MAX_KEY_CHARS = 256


def event_time_ms(ts):
    """Epoch milliseconds from a number or an RFC 3339 string, or None."""
    if isinstance(ts, bool):
        return None
    if isinstance(ts, (int, float)):
        return int(ts) if math.isfinite(ts) else None
    if isinstance(ts, str):
        try:
            return int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            return None
    return None


def validate(event):
    """(key, type, ts_ms, value) of a valid envelope, or None."""
    if not isinstance(event, dict):
        return None
    eid, key, typ, value = event.get("id"), event.get("key"), event.get("type"), event.get("value")
    if not isinstance(eid, str) or not isinstance(key, str) or not isinstance(typ, str):
        return None
    if not key or len(key) > MAX_KEY_CHARS:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    attrs = event.get("attrs")
    if attrs is not None and not (
        isinstance(attrs, dict) and all(isinstance(v, str) for v in attrs.values())
    ):
        return None
    ts = event_time_ms(event.get("ts"))
    if ts is None:
        return None
    return key, typ, ts, float(value)


def handler(event, groups):
    """One Lambda invocation: returns how many records were invalid."""
    invalid = 0
    for record in event["Records"]:
        data = base64.b64decode(record["kinesis"]["data"])
        for line in data.split(b"\n"):
            if not line:
                continue
            try:
                parsed = validate(json.loads(line))
            except ValueError:
                parsed = None
            if parsed is None:
                invalid += 1
                continue
            key, typ, ts, value = parsed
            for size in WINDOWS_MS:
                window = (key, typ, size, ts - ts % size)
                agg = groups.get(window)
                if agg is None:
                    groups[window] = [1, value, value, value]
                else:
                    agg[0] += 1
                    agg[1] += value
                    if value < agg[2]:
                        agg[2] = value
                    if value > agg[3]:
                        agg[3] = value
    return invalid


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", help="one Lambda KinesisEvent JSON per line")
    parser.add_argument("--warmup", type=int, default=0, help="untimed batches first")
    args = parser.parse_args()
    with open(args.events, "rb") as f:
        batches = [line for line in f.read().split(b"\n") if line]
    records, seconds, groups_total = 0, 0.0, 0
    for i, raw in enumerate(batches):
        groups = {}
        started = time.perf_counter()
        event = json.loads(raw)
        invalid = handler(event, groups)
        elapsed = time.perf_counter() - started
        if invalid:
            print(f"batch {i}: {invalid} invalid records", file=sys.stderr)
            return 1
        if i >= args.warmup:
            seconds += elapsed
            records += len(event["Records"])
            groups_total += len(groups)
    rate = records / seconds if seconds > 0 else 0.0
    print(json.dumps({
        "records": records,
        "records_per_sec": rate,
        "ns_per_record": seconds * 1e9 / records if records else 0.0,
        "groups": groups_total,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
