"""Checks infra/flink/oracle against rows computed by hand from testdata/ (issue 17).

Every expected row below was worked out from the events files, not copied from Flink.
Where Flink's answer differs from the naive one, the comment says which Flink semantic
explains it (see README.md, "Flink semantics to copy").
"""

import json
import subprocess
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "testdata"
ORACLE = HERE / "oracle"


def ts(hms):
    return f"2026-01-01T{hms}Z"


def win(start, end):
    return {"window_start": ts(start), "window_end": ts(end)}


# orders.sql over orders.ndjson (the malformed line "bad" is skipped: never counted).
# o1 A fr t=00:10 qty 2 price 500 | o2 B fr t=00:20 qty 5 price 300
# o3 Z de t=00:45 qty null price 1000 | o4 A de t=01:05 qty 3 price 700
# o5 B fr t=01:50 qty 1 price 250 (no placed_at) | o6 A fr t=00:59.999 qty 4 price 999
def minute(start, end, country, n, qty_sum, qty_avg, avg_price, big, last):
    return {**win(start, end), "country": country, "n": n, "qty_sum": qty_sum,
            "qty_avg": qty_avg, "avg_price": avg_price, "big_orders": big, "last_placed": last}


PER_MINUTE = [
    # fr: o1, o2, o6. AVG(qty) of a BIGINT is a BIGINT: 11 / 3 = 3; 1799 / 3 = 599.
    minute("00:00:00.000", "00:01:00.000", "fr", 3, 11, 3, 599, 2, ts("00:00:59.999")),
    # de: o3 alone; SUM and AVG over only NULLs are NULL; COUNT(*) FILTER of none is 0.
    minute("00:00:00.000", "00:01:00.000", "de", 1, None, None, 1000, 0, ts("00:00:44.250")),
    minute("00:01:00.000", "00:02:00.000", "de", 1, 3, 3, 700, 1, ts("00:01:04.000")),
    # o5 has no placed_at: MAX over only NULLs is NULL.
    minute("00:01:00.000", "00:02:00.000", "fr", 1, 1, 1, 250, 0, None),
]


def hop(start, end, label, n, qty_sum):
    return {**win(start, end), "label": label, "n": n, "qty_sum": qty_sum}


# HOP slide 30 s, size 1 min: an event at t is in the windows starting at
# floor(t / 30 s) * 30 s and 30 s earlier, including one that starts the day before.
BY_LABEL = [
    {"window_start": "2025-12-31T23:59:30.000Z", "window_end": ts("00:00:30.000"),
     "label": "apple", "n": 1, "qty_sum": 2},
    {"window_start": "2025-12-31T23:59:30.000Z", "window_end": ts("00:00:30.000"),
     "label": "banana", "n": 1, "qty_sum": 5},
    hop("00:00:00.000", "00:01:00.000", "apple", 2, 6),  # o1, o6
    hop("00:00:00.000", "00:01:00.000", "banana", 1, 5),  # o2
    hop("00:00:00.000", "00:01:00.000", "unknown", 1, None),  # o3: LEFT join, key Z missing
    hop("00:00:30.000", "00:01:30.000", "unknown", 1, None),
    hop("00:00:30.000", "00:01:30.000", "apple", 2, 7),  # o6, o4
    hop("00:01:00.000", "00:02:00.000", "apple", 1, 3),
    hop("00:01:00.000", "00:02:00.000", "banana", 1, 1),
    hop("00:01:30.000", "00:02:30.000", "banana", 1, 1),
]


def total(start, end, label, orders, revenue):
    return {**win(start, end), "label": label, "orders": orders, "revenue_cents": revenue}


# INSERT INTO order_totals: the sink's column names; SUM(BIGINT) cast to the sink's DOUBLE.
ORDER_TOTALS = [
    total("00:00:00.000", "00:01:00.000", "apple", 2, 4996.0),  # 2*500 + 4*999
    total("00:00:00.000", "00:01:00.000", "banana", 1, 1500.0),
    total("00:00:00.000", "00:01:00.000", "unknown", 1, None),  # qty NULL: NULL * 1000
    total("00:01:00.000", "00:02:00.000", "apple", 1, 2100.0),
    total("00:01:00.000", "00:02:00.000", "banana", 1, 250.0),
]


def dec(row):
    # id, v, t, tl
    return dict(zip(["id", "v", "t", "tl"], row))


# json_types.ndjson: the malformed line, `[1,2]` and the empty line give no row; a field
# of the wrong type becomes NULL and the record stays ('json.ignore-parse-errors').
JSON_SQL = [  # default 'json.timestamp-format.standard' = 'SQL'
    dec(["1", 7, ts("00:00:05.250"), ts("00:00:05.250")]),  # "… 00:00:05.250" / "…250Z"
    dec(["2", 12, None, None]),  # "12" (a string) is read as BIGINT 12; T-forms are NULL
    dec(["3", 12, None, None]),  # 12.7 is truncated to 12; offsets and numbers: NULL
    dec(["4", None, None, None]),  # "oops"
    dec(["5", None, None, None]),  # true
    dec(["6", None, None, None]),  # 99999999999999999999 overflows BIGINT
    dec(["7", -3, None, None]),  # unknown fields are ignored
]
JSON_ISO = [  # 'json.timestamp-format.standard' = 'ISO-8601'
    dec(["1", 7, None, None]),  # the SQL forms are NULL here
    dec(["2", 12, ts("00:00:05.000"), ts("00:00:05.250")]),  # "…T00:00:05" / "…T…250Z"
    dec(["3", 12, None, None]),
    dec(["4", None, None, None]),
    dec(["5", None, None, ts("00:00:05.123")]),  # .123999Z is truncated to .123
    dec(["6", None, None, None]),
    dec(["7", -3, None, None]),
]

# json_coerce.ndjson: Flink's lenient coercions, and values it reads as NULL (the cases
# crates/core/src/sql/json.rs rejects naming the column).
def coerced(row):
    return dict(zip(["id", "i", "b", "d", "dc", "s", "bo", "r"], row))


JSON_COERCE = [
    # "12" → INT 12; -12.7 → BIGINT -12 (toward zero); "NaN" → DOUBLE NaN; "1.675" →
    # DECIMAL(5,2) 1.68 (half up); 1.50 → STRING "1.50" (the number's text); "TRUE" → true;
    # nested "2" → INT 2 and 5 → STRING "5".
    coerced(["c1", 12, -12, "NaN", Decimal("1.68"), "1.50", True, {"a": 2, "n": {"x": "5"}}]),
    # 2147483648 overflows INT and "1.0" is no BIGINT: NULL; "1.5d" is Java's double 1.5;
    # -1.675 → -1.68 (away from zero); an object into STRING is Jackson's text of it (with
    # a DECIMAL in the table fractions are BigDecimals, trailing zeros stripped: 1E+3);
    # "yes" is false; a nested field Flink cannot read is NULL, the row stays.
    coerced(["c2", None, None, 1.5, Decimal("-1.68"), '{"a":1.5,"c":1E+3}', False,
             {"a": None, "n": None}]),
    # 1e3 → INT 1000; "007" → 7; 1e400 → Infinity; 999.995 rounds to 1000.00, which
    # overflows DECIMAL(5,2): NULL; true → STRING "true"; 1 → BOOLEAN false; a ROW given
    # as a string is NULL.
    coerced(["c3", 1000, 7, "Infinity", None, "true", False, None]),
]

# edges.ndjson, TUMBLE 10 s. Rows with ms NULL or absent have a NULL et: in no window.
STATS = [
    {**win("00:00:00.000", "00:00:10.000"), "k": "a", "c": 3, "cv": 2,
     # AVG and / on integers truncate toward zero: -5 / 2 = -2, -5 / 3 = -1.
     "sum_n": -5, "avg_n": -2, "sum_v": -5, "avg_v": -2, "div_v": -1, "min_v": -7,
     "sum_d": 0.30000000000000004, "avg_d": 0.15000000000000002,  # IEEE doubles
     # DECIMAL(10,2): SUM is DECIMAL(38,2), AVG is DECIMAL(38,6); "1.10" (a string) parses.
     "sum_price": Decimal("3.35"), "avg_price": Decimal("1.675000"), "sum_big": None},
    {**win("00:00:00.000", "00:00:10.000"), "k": "b", "c": 2, "cv": 2,
     # SUM of an INT column stays INT and wraps: 2147483647 + 1 = -2147483648;
     # AVG(INT) sums wider and is 1073741824; SUM(BIGINT) is exact.
     "sum_n": -2147483648, "avg_n": 1073741824, "sum_v": 2147483648,
     "avg_v": 1073741824, "div_v": 1073741824, "min_v": 1,
     "sum_d": 4.0, "avg_d": 2.0, "sum_price": Decimal("0.03"),
     "avg_price": Decimal("0.015000"), "sum_big": 2147483647},
]

CASES = [
    ({"name": "orders", "pipeline": "orders.sql", "events": "orders.ndjson",
      "reference": {"products": "products.ndjson"}},
     {"by_label": BY_LABEL, "order_totals": ORDER_TOTALS, "per_minute": PER_MINUTE}),
    ({"name": "json_sql", "pipeline": "json_sql.sql", "events": "json_types.ndjson",
      "views": ["decoded"]}, {"decoded": JSON_SQL}),
    # Flink refuses `COUNT(*) AS views`; the harness reports it and goes on.
    ({"name": "reserved", "pipeline": "reserved.sql", "events": "pages.ndjson"},
     'Encountered "views"'),
    ({"name": "json_iso", "pipeline": "json_iso.sql", "events": "json_types.ndjson",
      "views": ["decoded"]}, {"decoded": JSON_ISO}),
    ({"name": "json_coerce", "pipeline": "json_coerce.sql", "events": "json_coerce.ndjson",
      "views": ["decoded"]}, {"decoded": JSON_COERCE}),
    # No reference file for `products`: refused before Flink runs.
    ({"name": "no_reference", "pipeline": "orders.sql", "events": "orders.ndjson"},
     "reference table products has no file"),
    # The stored views: `nothing` filters every row out, so it has no rows at all.
    ({"name": "edges", "pipeline": "edges.sql", "events": "edges.ndjson"},
     {"stats": STATS, "nothing": []}),
]


def norm(v):
    """Fractional numbers compared by value (expected floats are written by hand)."""
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    if isinstance(v, (float, Decimal)):
        return "num:" + str(Decimal(repr(v) if isinstance(v, float) else v).normalize())
    return v


def canonical(row):
    return json.dumps(norm(row), sort_keys=True)


def run_oracle(cases):
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for case, _ in cases:
            case = dict(case)
            case["pipeline"] = (DATA / case["pipeline"]).read_text()
            case["events"] = str(DATA / case["events"])
            case["reference"] = {k: str(DATA / v) for k, v in case.get("reference", {}).items()}
            f.write(json.dumps(case) + "\n")
    out = subprocess.run([str(ORACLE), "--cases", f.name], capture_output=True, text=True)
    Path(f.name).unlink()
    if out.returncode != 0:
        sys.exit(f"selftest: the oracle exited {out.returncode}:\n{out.stderr[-3000:]}")
    return out.stdout.splitlines()


def check(lines, cases):
    failures = []
    parsed = [json.loads(l, parse_float=Decimal) for l in lines]
    for case, expected in cases:
        name = case["name"]
        mine = [p for p in parsed if p["case"] == name]
        if isinstance(expected, str):
            errors = [p.get("error", "") for p in mine]
            if len(mine) != 1 or expected not in errors[0]:
                failures.append(f"{name}: expected one error containing {expected!r}, got {mine}")
            continue
        rows = [p for p in mine if "row" in p]
        done = [p for p in mine if p.get("done")]
        want = sorted(((v, canonical(r)) for v, rs in expected.items() for r in rs))
        got = [(p["view"], canonical(p["row"])) for p in rows]
        if [v for v, _ in got] != sorted(v for v, _ in got):
            failures.append(f"{name}: rows are not sorted by view")
        if sorted(got) != want:
            for item in sorted(set(want) - set(got)):
                failures.append(f"{name}: missing {item}")
            for item in sorted(set(got) - set(want)):
                failures.append(f"{name}: unexpected {item}")
        if done != [{"case": name, "done": True, "rows": len(want)}]:
            failures.append(f"{name}: expected a done line with rows={len(want)}, got {done}")
    # DECIMAL keeps Flink's scale in the output text.
    if not any('"avg_price": 1.675000' in l for l in lines):
        failures.append("edges: DECIMAL avg_price not written as 1.675000")
    return failures


def check_single_case_form():
    """The flag form: one case named after the pipeline file, --view picks a view."""
    out = subprocess.run(
        [str(ORACLE), "--pipeline", str(DATA / "orders.sql"), "--events",
         str(DATA / "orders.ndjson"), "--reference", f"products={DATA / 'products.ndjson'}",
         "--view", "order_totals"],
        capture_output=True, text=True)
    lines = [json.loads(l) for l in out.stdout.splitlines()]
    got = sorted(canonical(l["row"]) for l in lines if l.get("view") == "order_totals")
    if out.returncode != 0 or got != sorted(canonical(r) for r in ORDER_TOTALS) \
            or lines[-1] != {"case": "orders", "done": True, "rows": len(ORDER_TOTALS)}:
        return [f"single-case form: rc={out.returncode}, stdout={out.stdout[:2000]}"]
    return []


def main():
    failures = check(run_oracle(CASES), CASES) + check_single_case_form()
    for f in failures:
        print(f"selftest: FAIL {f}", file=sys.stderr)
    if failures:
        sys.exit(1)
    print(f"selftest: ok ({len(CASES) + 1} cases)", file=sys.stderr)


if __name__ == "__main__":
    main()
