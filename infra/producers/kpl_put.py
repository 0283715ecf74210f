#!/usr/bin/env python3
"""Writes real-producer records to a Kinesis stream, for Sluice's wire tests.

Uses the reference KPL aggregation library (aws-kinesis-agg, PyPI) and boto3, both
installed by infra/local/up into the project's venv ($SLUICE_PRODUCER_PYTHON), against
the endpoint in AWS_ENDPOINT_URL_KINESIS. Writes:
  - KPL aggregates, each holding several user records; a user record is one JSON event,
    an NDJSON pair, or an event without an id (ingest derives one per user record);
  - gzip records holding NDJSON, as CloudWatch Logs subscriptions and agents write;
  - one aggregate whose MD5 trailer is corrupted (with --corrupt), which ingest must
    dead-letter as one corrupt_aggregate.
Prints one JSON object on stdout: what it wrote and what ingest must find.

Usage: kpl_put.py --stream NAME [--aggregates N] [--per-aggregate M] [--gzip G] [--corrupt]
"""

import argparse
import gzip
import json
import os
import sys

import boto3
from aws_kinesis_agg.aggregator import RecordAggregator

TS = 1_767_225_600_000  # 2026-01-01T00:00:00Z: in the past, never "ahead of the clock".


def event(i, with_id=True):
    e = {"key": f"sensor-{i % 7}", "type": "temperature", "ts": TS + i, "value": i % 40 + 0.5}
    if with_id:
        e["id"] = f"kpl-{i}"
    return json.dumps(e, separators=(",", ":"))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--stream", required=True)
    p.add_argument("--aggregates", type=int, default=4)
    p.add_argument("--per-aggregate", type=int, default=25)
    p.add_argument("--gzip", type=int, default=3)
    p.add_argument("--corrupt", action="store_true")
    args = p.parse_args()

    kinesis = boto3.client("kinesis", endpoint_url=os.environ.get("AWS_ENDPOINT_URL_KINESIS"))
    ids, id_less, user_records, kinesis_records = [], 0, 0, 0
    n = 0

    def put(pk, ehk, data):
        nonlocal kinesis_records
        kwargs = {"StreamName": args.stream, "PartitionKey": pk, "Data": data}
        if ehk:
            kwargs["ExplicitHashKey"] = ehk
        kinesis.put_record(**kwargs)
        kinesis_records += 1

    for a in range(args.aggregates):
        agg = RecordAggregator()
        for u in range(args.per_aggregate):
            kind = u % 5
            if kind == 3:  # an NDJSON user record: two events
                data = event(n) + "\n" + event(n + 1)
                ids += [f"kpl-{n}", f"kpl-{n + 1}"]
                n += 2
            elif kind == 4:  # no id: ingest derives one per user record
                data = event(n, with_id=False)
                id_less += 1
                n += 1
            else:
                data = event(n)
                ids.append(f"kpl-{n}")
                n += 1
            # Explicit hash keys on some user records: the table must be honoured.
            ehk = str(2**127 + u) if u % 4 == 0 else None
            full = agg.add_user_record(f"pk-{a}-{u % 3}", data.encode(), ehk)
            user_records += 1
            if full is not None:
                put(*full.get_contents())
        if agg.get_num_user_records() > 0:
            put(*agg.clear_and_get().get_contents())

    for g in range(args.gzip):
        lines = []
        for _ in range(10):
            lines.append(event(n))
            ids.append(f"kpl-{n}")
            n += 1
        put(f"gz-{g}", None, gzip.compress(("\n".join(lines) + "\n").encode()))

    corrupt = 0
    if args.corrupt:
        agg = RecordAggregator()
        agg.add_user_record("bad", event(10**6).encode())
        agg.add_user_record("bad", event(10**6 + 1).encode())
        pk, ehk, data = agg.clear_and_get().get_contents()
        data = bytearray(data)
        data[-1] ^= 0xFF  # break the MD5 trailer
        put(pk, ehk, bytes(data))
        corrupt = 1

    json.dump(
        {
            "kinesis_records": kinesis_records,
            "user_records": user_records,
            "events": len(ids) + id_less,
            "ids": ids,
            "id_less": id_less,
            "corrupt_aggregates": corrupt,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
