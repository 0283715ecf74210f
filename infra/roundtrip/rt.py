"""Streams/tables for the round trip, and the per-stage checks (boto3)."""
import json, os, sys, time

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

cfg = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=30)
kin = boto3.client("kinesis", endpoint_url=os.environ["KINESIS_URL"] or None, config=cfg)
ddb = boto3.client("dynamodb", endpoint_url=os.environ["DYNAMODB_URL"] or None, config=cfg)

# Names and shard counts / keys as in template.yaml (raw is not needed: the fixtures are
# the Lambda events themselves).
STREAMS = {"valid": 2, "enriched": 2, "window-updates": 1, "alerts": 1, "dead-letter": 1}
TABLES = {
    "aggregates": [("pk", "HASH"), ("sk", "RANGE")],
    "reference": [("key", "HASH")],
    "rules": [("id", "HASH")],
    "alerts": [("alert_id", "HASH")],
}
# Global secondary indexes, as in template.yaml: the query function reads alerts by window.
INDEXES = {"alerts": [("by-window", [("kind", "HASH"), ("window_start", "RANGE")])]}


def code(e):
    return e.response.get("Error", {}).get("Code", "")


def setup(prefix):
    for name, shards in STREAMS.items():
        try:
            kin.create_stream(StreamName=f"{prefix}-{name}", ShardCount=shards)
        except ClientError as e:
            if code(e) != "ResourceInUseException":
                raise
    for name, keys in TABLES.items():
        try:
            indexes = INDEXES.get(name, [])
            attributes = {k for k, _ in keys} | {k for _, ks in indexes for k, _ in ks}
            extra = {}
            if indexes:
                extra["GlobalSecondaryIndexes"] = [
                    {
                        "IndexName": index,
                        "KeySchema": [{"AttributeName": k, "KeyType": t} for k, t in ks],
                        "Projection": {"ProjectionType": "ALL"},
                    }
                    for index, ks in indexes
                ]
            ddb.create_table(
                TableName=f"{prefix}-{name}",
                BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k in sorted(attributes)],
                KeySchema=[{"AttributeName": k, "KeyType": t} for k, t in keys],
                **extra,
            )
        except ClientError as e:
            if code(e) != "ResourceInUseException":
                raise
    deadline = time.time() + 60
    pending = [("stream", f"{prefix}-{n}") for n in STREAMS] + [("table", f"{prefix}-{n}") for n in TABLES]
    while pending:
        kind, name = pending[0]
        if kind == "stream":
            status = kin.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
        else:
            status = ddb.describe_table(TableName=name)["Table"]["TableStatus"]
        if status == "ACTIVE":
            pending.pop(0)
            continue
        if time.time() > deadline:
            sys.exit(f"{kind} {name} is still {status} after 60 s")
        time.sleep(0.1)
    # Reference data for the enrich fixture, one rule for the detect fixture (stored
    # flat, the attribute names crates/aws/src/dynamodb/rules.rs reads).
    ddb.put_item(TableName=f"{prefix}-reference", Item={"key": {"S": "sensor-1"}, "site": {"S": "north"}})
    ddb.put_item(
        TableName=f"{prefix}-rules",
        Item={
            "id": {"S": "too-hot"}, "kind": {"S": "threshold"}, "type": {"S": "temperature"},
            "key_prefix": {"S": ""}, "window_seconds": {"N": "60"}, "stat": {"S": "max"},
            "op": {"S": ">"}, "threshold": {"N": "80"}, "min_count": {"N": "0"},
            "severity": {"S": "warning"},
        },
    )


def teardown(prefix):
    for name in STREAMS:
        try:
            kin.delete_stream(StreamName=f"{prefix}-{name}", EnforceConsumerDeletion=True)
        except ClientError as e:
            if code(e) != "ResourceNotFoundException":
                print(f"delete stream {prefix}-{name}: {e}", file=sys.stderr)
    for name in TABLES:
        try:
            ddb.delete_table(TableName=f"{prefix}-{name}")
        except ClientError as e:
            if code(e) != "ResourceNotFoundException":
                print(f"delete table {prefix}-{name}: {e}", file=sys.stderr)


def read_stream(name):
    """Every event on the stream, one per line of each record (NDJSON records)."""
    events = []
    for shard in kin.list_shards(StreamName=name)["Shards"]:
        it = kin.get_shard_iterator(
            StreamName=name, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for _ in range(1000):
            r = kin.get_records(ShardIterator=it, Limit=1000)
            for rec in r["Records"]:
                for line in rec["Data"].split(b"\n"):
                    if line.strip():
                        events.append(json.loads(line))
            it = r.get("NextShardIterator")
            if not it or (not r["Records"] and r.get("MillisBehindLatest", 0) == 0):
                break
    return events


def dead_letters(prefix, stage):
    return [d for d in read_stream(f"{prefix}-dead-letter") if d.get("stage") == stage]


def check(stage, prefix, response_path="", ran=""):
    problems = []
    ran = ran.split(",")

    def expect(what, got, want):
        ok = got == want
        print(f"  {'ok  ' if ok else 'FAIL'} {what}: {got!r}" + ("" if ok else f" (expected {want!r})"))
        if not ok:
            problems.append(what)

    if stage == "ingest":
        valid = read_stream(f"{prefix}-valid")
        expect("valid events", len(valid), 4)
        expect("valid ids", sorted(str(v.get("id")) for v in valid), ["t-1", "t-2", "t-3", "t-4"])
        dls = dead_letters(prefix, "ingest")
        expect("dead letters", len(dls), 6)
        expect(
            "dead-letter reasons",
            sorted(d.get("reason") for d in dls),
            ["key_too_long", "missing_field", "non_finite_value", "not_json", "ts_out_of_range", "wrong_type"],
        )
    elif stage == "enrich":
        out = read_stream(f"{prefix}-enriched")
        expect("enriched events", len(out), 3)
        s1 = [e for e in out if e.get("key") == "sensor-1"]
        expect("sensor-1 attrs.site", s1[0].get("attrs", {}).get("site") if s1 else None, "north")
        dls = dead_letters(prefix, "enrich")
        expect("dead-letter reasons", [d.get("reason") for d in dls], ["not_json"])
    elif stage == "aggregate":
        item = ddb.get_item(
            TableName=f"{prefix}-aggregates",
            Key={"pk": {"S": "temperature#sensor-1"}, "sk": {"S": "60#2026-01-01T00:00:00Z"}},
            ConsistentRead=True,
        ).get("Item")
        count = item.get("count", {}).get("N") if item else None
        expect("sensor-1 temperature 60 s @ 2026-01-01T00:00:00Z count", count and int(count), 2)
        updates = read_stream(f"{prefix}-window-updates")
        expect("window updates", len(updates), 5)
        expect("dead letters", len(dead_letters(prefix, "aggregate")), 1)
    elif stage == "detect":
        alerts = ddb.scan(TableName=f"{prefix}-alerts", ConsistentRead=True)["Items"]
        expect("alerts in the alerts table", len(alerts), 1)
        announced = read_stream(f"{prefix}-alerts")
        expect("alerts on the alerts stream", len(announced), 1)
        if announced:
            a = announced[0]
            expect("alert", (a.get("rule_id"), a.get("key"), a.get("value")), ("too-hot", "sensor-7", 90.5))
        expect("dead-letter reasons", [d.get("reason") for d in dead_letters(prefix, "detect")], ["wrong_type"])
    elif stage == "query":
        response = json.loads(open(response_path).read())
        expect("status", response.get("statusCode"), 200)
        body = json.loads(response.get("body") or "{}")
        got = [a.get("alert_id") for a in body.get("items", [])]
        stored = ddb.scan(TableName=f"{prefix}-alerts", ConsistentRead=True)["Items"]
        # Newest window first (ties in any order): compare the order of window starts and
        # the set of ids with the table's content.
        want = sorted(stored, key=lambda i: i["window_start"]["S"], reverse=True)
        starts = [a.get("window_start") for a in body.get("items", [])]
        expect("window starts, newest first", starts, [i["window_start"]["S"] for i in want])
        expect("alert ids", sorted(got), sorted(i["alert_id"]["S"] for i in stored))
        expect("next", body.get("next"), None)
        if "detect" in ran:
            expect("the alert detect raised", got, ["too-hot|temperature#sensor-7|60#2026-01-01T00:00:00Z"])
    return 1 if problems else 0


def response_ok(path, stage=""):
    """The invoke response must be exactly {"batchItemFailures": []} (the query function:
    an HTTP response with a JSON body, checked by `check`)."""
    text = open(path).read().strip()
    if stage == "query":
        try:
            r = json.loads(text)
            ok = r.get("statusCode") == 200 and isinstance(json.loads(r.get("body", "")), dict)
        except (ValueError, AttributeError):
            ok = False
        print(f"  {'ok  ' if ok else 'FAIL'} response: {text[:300]}")
        return 0 if ok else 1
    try:
        ok = json.loads(text) == {"batchItemFailures": []}
    except ValueError:
        ok = False
    print(f"  {'ok  ' if ok else 'FAIL'} response: {text}")
    return 0 if ok else 1


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, pid, seconds):
    import socket
    end = time.time() + float(seconds)
    while time.time() < end:
        try:
            os.kill(int(pid), 0)
        except OSError:
            return 1
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", int(port))) == 0:
                return 0
        time.sleep(0.2)
    return 1


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "setup":
        setup(*args)
    elif cmd == "teardown":
        teardown(*args)
    elif cmd == "check":
        sys.exit(check(*args))
    elif cmd == "response-ok":
        sys.exit(response_ok(*args))
    elif cmd == "free-port":
        print(free_port())
    elif cmd == "wait-port":
        sys.exit(wait_port(*args))
    else:
        sys.exit(f"unknown command {cmd}")
