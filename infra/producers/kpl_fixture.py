#!/usr/bin/env python3
"""Regenerates events/ingest/kpl.json: a Kinesis Lambda event whose records were made by
the reference KPL aggregation library (aws-kinesis-agg) and by gzip, as a Lambda
consumer receives them. Run with the venv infra/local/up installs:
  $SLUICE_PRODUCER_PYTHON infra/producers/kpl_fixture.py > events/ingest/kpl.json
"""

import base64
import gzip
import json

from aws_kinesis_agg.aggregator import RecordAggregator

SHARD = "shardId-000000000000"
SEQ = "4959033827149025660855969253836157109592157598913600{:04d}"


def line(**e):
    return json.dumps(e, separators=(",", ":"))


def aggregate(user_records):
    agg = RecordAggregator()
    for pk, data in user_records:
        agg.add_user_record(pk, data.encode())
    return agg.clear_and_get().get_contents()[2]


def record(n, pk, data):
    seq = SEQ.format(n)
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": pk,
            "sequenceNumber": seq,
            "data": base64.b64encode(data).decode(),
            "approximateArrivalTimestamp": 1767225661.5,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{SHARD}:{seq}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/sluice-ingest-role",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/sluice-raw",
    }


def main():
    id_less = line(key="sensor-3", type="temperature", ts=1767225607000, value=18)
    good = aggregate(
        [
            ("sensor-1", line(id="kpl-1", key="sensor-1", type="temperature", ts="2026-01-01T00:00:05Z", value=21.5, attrs={"unit": "C"})),
            ("sensor-2", line(id="kpl-2", key="sensor-2", type="temperature", ts=1767225606000, value=19.0) + "\n"
             + line(id="kpl-3", key="sensor-2", type="temperature", ts=1767225606500, value=19.5)),
            ("sensor-3", id_less),
            ("sensor-3", id_less),  # the same bytes again: a second event, its own id
            ("sensor-4", "not json"),
        ]
    )
    compressed = gzip.compress(
        (line(id="gz-1", key="sensor-5", type="temperature", ts=1767225608000, value=20) + "\n"
         + line(id="gz-2", key="sensor-5", type="temperature", ts=1767225609000, value=20.5) + "\n").encode(),
        mtime=0,
    )
    corrupt = bytearray(aggregate([("sensor-6", line(id="lost", key="sensor-6", type="t", ts=1, value=1))]))
    corrupt[-1] ^= 0xFF  # the MD5 trailer no longer matches
    event = {"Records": [record(1, "agg", good), record(2, "gz", compressed), record(3, "bad", bytes(corrupt))]}
    print(json.dumps(event, indent=2))


if __name__ == "__main__":
    main()
