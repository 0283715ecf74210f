#!/usr/bin/env python3
"""The oracle corpus of issue 17: writes at least 40 cases (a pipeline, its events and its
reference tables) that together use every clause, column type, aggregate, operator and
function docs/sql.md lists, for infra/flink/corpus/check to run in Apache Flink and in
`sluice sql eval` and compare row by row.

    infra/flink/corpus/generate.py OUT_DIR [--seed N]   # writes OUT_DIR/NAME.sql, NAME.events.ndjson, NAME.TABLE.ndjson, cases.jsonl

Deterministic: the same seed writes the same bytes (random.Random(seed), no clock).

Left out on purpose, as documented deliberate differences between Sluice and Flink
(docs/sql.md) or as inputs whose answer depends on what Flink happens to do:
- fields of the wrong JSON type (Sluice dead-letters the record, Flink with
  json.ignore-parse-errors reads NULL), non-JSON lines, BOOLEANs given as strings,
  DECIMALs overflowing their precision;
- repeated PRIMARY KEY values (Sluice counts the event once; Flink does not enforce keys):
  every event id is unique;
- AVG next to VAR_*/STDDEV_* in one view (Flink rewrites AVG as SUM/COUNT: 32-bit INT
  wrap, FLOAT sums), and FLOAT values other than small multiples of 1/4 (FLOAT sums are
  summed in input order in Flink): FLOAT sums stay exact;
- a SUM(DECIMAL) passing 38 digits (Flink's result depends on the input order);
- DOUBLE values other than multiples of 1/4 in sums and variances (order-dependent last
  digits around zero would defeat a relative tolerance), -0.0 and NaN inputs (MIN/MAX
  order them as Java's Double.compare, Flink keeps the first seen);
- integer division or MOD by zero and failing CASTs (Flink fails the job, Sluice
  dead-letters the record): divisors are non-zero literals, CAST inputs are valid;
- STRING compared with a number, BOOLEAN or timestamp (refused by Sluice);
- PROCTIME() values (the wall clock), lateness (a batch has no order to be late in);
- Flink's reserved words as names (`value`, `count`, `views`, `raw`, `ref`, ...);
- APPROX_PERCENTILE (Flink has no streaming counterpart): crates/cli/tests/sql_sketches.rs
  checks it against exact percentiles computed from the events it sends.
"""

import json
import random
import sys
from pathlib import Path

BASE_MS = 1767225600000  # 2026-01-01T00:00:00Z
KEYS = ["alpha", "beta", "Gamma", "delta_x", " pad ", "%pct", "a_b"]
WORDS = ["apple", "Banana", "  cherry  ", "date_1", "elder%berry", "fig", "", "ÄÖü straße",
         "x\\y", "line\nbreak", "abc", "ABC", "mango tango", "q"]
LABELS = {"alpha": "first", "beta": "second", "Gamma": "third", "%pct": "percent"}


def ts_sql(ms):
    """TIMESTAMP(3) text in the SQL standard: `2026-01-01 00:00:05.250`."""
    import datetime
    t = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%d %H:%M:%S.") + f"{ms % 1000:03d}"


def ts_iso(ms):
    return ts_sql(ms).replace(" ", "T")


class Events:
    """The wide record every case reads, with NULLs and missing fields."""

    def __init__(self, rng, n, span_s=600, null_rate=0.08, missing_rate=0.06, null_time=0.05,
                 ints=(-1000, 1000)):
        self.rng, self.n, self.span_s = rng, n, span_s
        self.null_rate, self.missing_rate, self.null_time, self.ints = null_rate, missing_rate, null_time, ints

    def maybe(self, v):
        r = self.rng.random()
        if r < self.null_rate:
            return None
        return v

    def record(self, i):
        rng = self.rng
        ms = BASE_MS + rng.randrange(self.span_s * 1000)
        if rng.random() < 0.15:  # on a window edge
            ms = BASE_MS + rng.randrange(self.span_s // 10) * 10000 - rng.choice([0, 1])
            ms = max(ms, BASE_MS)
        rec = {
            "eid": f"e-{i:04d}",
            "k": self.maybe(rng.choice(KEYS)),
            "s": self.maybe(rng.choice(WORDS)),
            "b": self.maybe(rng.random() < 0.5),
            "c": self.maybe(rng.random() < 0.4),
            "i": self.maybe(rng.randint(*self.ints)),
            "n": self.maybe(rng.randint(-10**12, 10**12) if rng.random() < 0.5 else rng.randint(-50, 50)),
            "f": self.maybe(rng.randint(-400, 400) / 4),
            "d": self.maybe(rng.randint(-40000, 40000) / 4),
            "m": self.maybe(round(rng.randint(-999999, 999999) / 100, 2)),
            "ts": self.maybe(ts_sql(BASE_MS + rng.randrange(self.span_s * 1000))),
            "nest": self.nest(),
            "code": self.maybe(str(rng.randint(-500, 500))),
            "ms": None if rng.random() < self.null_time else ms,
        }
        for key in list(rec):
            if key != "eid" and rng.random() < self.missing_rate:
                del rec[key]
        return rec

    def nest(self):
        rng = self.rng
        r = rng.random()
        if r < 0.07:
            return None
        deep = None if rng.random() < 0.1 else {"x": self.maybe(rng.randint(-20, 20)),
                                                "y": self.maybe(rng.randint(-100, 100) / 4)}
        out = {"a": self.maybe(rng.choice(["red", "green", "blue"])), "deep": deep}
        if rng.random() < 0.1:
            del out["a"]
        if rng.random() < 0.1:
            del out["deep"]
        return out

    def all(self):
        return [self.record(i) for i in range(self.n)]


COLUMNS = {
    "eid": "STRING", "k": "STRING", "s": "STRING", "b": "BOOLEAN", "c": "BOOLEAN",
    "i": "INT", "n": "BIGINT", "f": "FLOAT", "d": "DOUBLE", "m": "DECIMAL(10, 2)",
    "ts": "TIMESTAMP(3)", "nest": "ROW<a STRING, deep ROW<x INT, y DOUBLE>>",
    "code": "STRING", "ms": "BIGINT",
}


def source(name="src", extra_options="", time="et AS TO_TIMESTAMP_LTZ(ms, 3)", watermark="et",
           columns=None, lateness="INTERVAL '5' SECOND"):
    cols = columns or COLUMNS
    lines = [f"  {c} {t}," for c, t in cols.items()]
    if time:
        lines.append(f"  {time},")
    lines.append("  proc_time AS PROCTIME(),")
    lines.append(f"  WATERMARK FOR {watermark} AS {watermark} - {lateness},")
    lines.append("  PRIMARY KEY (eid) NOT ENFORCED")
    opts = "'connector' = 'kinesis', 'stream' = 'events', 'format' = 'json'" + extra_options
    return f"CREATE TABLE {name} (\n" + "\n".join(lines) + f"\n) WITH ({opts})"


def labels_table(name="labels"):
    return (f"CREATE TABLE {name} (\n  lk STRING,\n  label STRING,\n  weight INT,\n"
            f"  PRIMARY KEY (lk) NOT ENFORCED\n) WITH ('connector' = 'dynamodb', 'table-name' = 'labels')")


def labels_rows():
    rows = []
    for j, (k, v) in enumerate(sorted(LABELS.items())):
        row = {"lk": k, "label": v, "weight": j * 10 - 5}
        if k == "Gamma":
            row["weight"] = None
        rows.append(row)
    return rows


def tumble(table, size="INTERVAL '1' MINUTE", col="et"):
    return f"TABLE(TUMBLE(TABLE {table}, DESCRIPTOR({col}), {size}))"


def hop(table, slide, size, col="et"):
    return f"TABLE(HOP(TABLE {table}, DESCRIPTOR({col}), {slide}, {size}))"


def windowed(name, frm, items, group=(), where=None):
    """A stored view: window_start, window_end, the group items, the aggregates."""
    sel = ["window_start", "window_end"] + [g if " AS " in g else g for g in group] + items
    keys = ["window_start", "window_end"] + [g.split(" AS ")[0] for g in group]
    sql = f"CREATE VIEW {name} AS\nSELECT " + ",\n       ".join(sel) + f"\nFROM {frm}"
    if where:
        sql += f"\nWHERE {where}"
    return sql + "\nGROUP BY " + ", ".join(keys)


def per_event(name, view, exprs, base="src", where=None, size="INTERVAL '1' MINUTE"):
    """Scalar expressions, each checked once per event: an intermediate view computes
    them, a stored view groups by the event id and every expression."""
    inter = f"CREATE VIEW {name}_x AS\nSELECT eid, et, " + ",\n       ".join(
        f"{e} AS {a}" for a, e in exprs) + f"\nFROM {base}"
    if where:
        inter += f"\nWHERE {where}"
    names = [a for a, _ in exprs]
    stored = windowed(view, tumble(f"{name}_x", size), ["COUNT(*) AS cnt"], group=["eid"] + names)
    return [inter, stored]


CASES = []


def case(name, n=120, refs=None, may_be_empty=False, events=None, **ev):
    def register(fn):
        CASES.append((name, fn, n, refs, may_be_empty, events, ev))
        return fn
    return register


# ---- aggregates ---------------------------------------------------------------------

ALL_AGGS = ("COUNT(*) AS cnt, COUNT({x}) AS cnt_x, SUM({x}) AS total, MIN({x}) AS lo, "
            "MAX({x}) AS hi, AVG({x}) AS mean")


for col in ["i", "n", "d", "m", "f"]:
    @case(f"agg_{col}")
    def _agg(col=col):
        return [source(), windowed("per_key", tumble("src"), [ALL_AGGS.format(x=col)], group=["k"]),
                windowed("overall", tumble("src", "INTERVAL '2' MINUTE"), [ALL_AGGS.format(x=col)])]


for col in ["i", "n", "d", "m"]:
    @case(f"variance_{col}", n=160)
    def _var(col=col):
        aggs = (f"STDDEV_POP({col}) AS sd_pop, STDDEV_SAMP({col}) AS sd_samp, "
                f"VAR_POP({col}) AS vpop, VAR_SAMP({col}) AS vsamp, COUNT({col}) AS cnt")
        return [source(), windowed("spread", tumble("src", "INTERVAL '2' MINUTE"), [aggs], group=["b"]),
                windowed("spread_all", tumble("src", "INTERVAL '10' MINUTE"), [aggs])]


@case("variance_float_minmax")
def _():
    return [source(), windowed("fl", tumble("src"), [
        "MIN(f) AS lo, MAX(f) AS hi, COUNT(f) AS cnt, VAR_POP(f) AS vp, STDDEV_SAMP(f) AS ss"], group=["c"])]


@case("agg_strings_times")
def _():
    return [source(), windowed("extremes", tumble("src", "INTERVAL '2' MINUTE"), [
        "MIN(s) AS s_lo, MAX(s) AS s_hi, MIN(ts) AS ts_lo, MAX(ts) AS ts_hi, MIN(et) AS et_lo, "
        "MAX(et) AS et_hi, MIN(k) AS k_lo, COUNT(s) AS cnt"], group=["b"])]


@case("agg_filter")
def _():
    return [source(), windowed("filtered", tumble("src"), [
        "COUNT(*) FILTER (WHERE b) AS cnt_b",
        "COUNT(i) FILTER (WHERE i > 0) AS cnt_pos",
        "SUM(i) FILTER (WHERE NOT b) AS sum_not_b",
        "AVG(d) FILTER (WHERE c IS NULL) AS avg_c_null",
        "MIN(m) FILTER (WHERE k LIKE '%a%') AS min_a",
        "MAX(n) FILTER (WHERE i BETWEEN -100 AND 100) AS max_mid",
        "VAR_SAMP(d) FILTER (WHERE b OR c) AS var_bc",
        "COUNT(*) FILTER (WHERE i > 5000) AS cnt_none",
        "SUM(n) FILTER (WHERE i > 5000) AS sum_none"], group=["k"])]


@case("empty_groups", may_be_empty=True)
def _():
    return [source(),
            windowed("never", tumble("src"), ["COUNT(*) AS cnt, SUM(i) AS total"], group=["k"],
                     where="i > 100000"),
            "CREATE VIEW none_pass AS SELECT eid, et, i FROM src WHERE 1 = 0",
            windowed("never_either", hop("none_pass", "INTERVAL '30' SECOND", "INTERVAL '1' MINUTE"),
                     ["COUNT(*) AS cnt, MAX(i) AS hi"])]


@case("nulls_only")
def _():
    return [source(), windowed("nullish", tumble("src"), [
        "SUM(CASE WHEN k = 'nope' THEN i END) AS sum_null",
        "AVG(CASE WHEN k = 'nope' THEN d END) AS avg_null",
        "MIN(CASE WHEN k = 'nope' THEN s END) AS min_null",
        "STDDEV_POP(CASE WHEN k = 'nope' THEN m END) AS sd_null",
        "VAR_SAMP(CASE WHEN eid = 'e-0001' THEN d END) AS var_one",
        "COUNT(CASE WHEN k = 'nope' THEN 1 END) AS cnt_null",
        "COUNT(*) AS cnt"])]


@case("int_wrap", ints=(2147480000, 2147483647))
def _():
    return [source(), windowed("wraps", tumble("src", "INTERVAL '5' MINUTE"), [
        "SUM(i) AS sum_wraps, AVG(i) AS avg_no_wrap, MAX(i) AS hi, SUM(i * 2) AS sum_twice, "
        "SUM(CAST(i AS BIGINT)) AS sum_wide, MIN(i + 10000) AS min_wrapped"], group=["b"])]


# ---- scalar expressions, once per event ---------------------------------------------

@case("arith_int")
def _():
    return [source()] + per_event("ai", "arith", [
        ("plus", "i + n"), ("less3", "i - 3"), ("times", "i * 7"), ("div", "i / 7"),
        ("div_neg", "i / -3"), ("modf", "MOD(i, 7)"), ("pct", "i % -4"), ("neg", "-i"),
        ("big_div", "n / 1000"), ("big_mod", "MOD(n, 13)"), ("mixed_mod", "MOD(n, 7)"),
        ("prec", "2 + 3 * i - (i - 1) / 2")])


@case("arith_overflow", ints=(2147483000, 2147483647))
def _():
    return [source()] + per_event("ao", "overflow", [
        ("i_plus", "i + 1000"), ("i_times", "i * i"), ("i_neg", "-i - 10000"),
        ("n_times", "n * 100000000"), ("abs_min", "ABS(i + 1000)")])


@case("arith_double")
def _():
    return [source()] + per_event("ad", "darith", [
        ("plus", "d + 0.25"), ("times", "d * 1.5"), ("div", "d / 4"), ("div_i", "d / i"),
        ("inf", "d / CAST(0 AS DOUBLE)"), ("neg", "-d"), ("sub", "d - f"), ("f2", "f * 2"),
        ("fd", "f + d"), ("id", "i + d")], where="d IS NULL OR d <> 0")


@case("arith_decimal")
def _():
    return [source()] + per_event("am", "decarith", [
        ("twice", "m * 2"), ("third", "m / 3"), ("plus", "m + 0.005"), ("minus_i", "m - i"),
        ("times_d", "m * d"), ("const", "7 / 0.5"), ("round1", "ROUND(m, 1)"),
        ("floor_m", "FLOOR(m)"), ("ceil_m", "CEIL(m)"), ("abs_m", "ABS(m)"), ("times_n", "m * n"),
        ("div_i", "i / 2.0"), ("mod_m", "MOD(m, 3)")])


@case("comparisons")
def _():
    return [source()] + per_event("cmp", "compared", [
        ("eq", "i = n"), ("ne", "i <> 3"), ("lt", "i < d"), ("ge", "m >= 10"), ("le", "f <= d"),
        ("gt", "n > i"), ("s_eq", "s = 'apple'"), ("s_lt", "s < k"), ("b_eq", "b = c"),
        ("ts_lt", "ts < ts"), ("m_eq_i", "m = i"), ("ne2", "s <> 'fig'")])


@case("logic_nulls")
def _():
    return [source()] + per_event("lg", "logic", [
        ("a_and", "b AND c"), ("a_or", "b OR c"), ("a_not", "NOT b"), ("nand", "NOT (b AND c)"),
        ("mix", "b OR i > 0"), ("mix2", "c AND s IS NULL"), ("tri", "(b OR c) AND NOT c"),
        ("is_true", "b IS NULL OR b")])


@case("in_between")
def _():
    return [source()] + per_event("ib", "membership", [
        ("in_i", "i IN (1, 2, 3, -5)"), ("in_null", "i IN (1, CAST(NULL AS INT))"),
        ("not_in_null", "i NOT IN (1, CAST(NULL AS INT))"), ("not_in", "MOD(i, 5) NOT IN (0, 1)"),
        ("in_k", "k IN ('alpha', 'beta')"), ("in_mixed", "n IN (1, 2.5, 3)"),
        ("btw", "i BETWEEN -10 AND 300"), ("not_btw", "d NOT BETWEEN -5 AND 50"),
        ("btw_m", "m BETWEEN 0 AND 100.5"), ("btw_s", "s BETWEEN 'a' AND 'f'")])


@case("like_patterns")
def _():
    return [source()] + per_event("lk", "liked", [
        ("starts", "s LIKE 'a%'"), ("ends", "s LIKE '%a'"), ("one_char", "s LIKE '_ig'"),
        ("l_has", "s LIKE '%an%'"), ("not_like", "s NOT LIKE '%e%'"), ("pct", "k LIKE '\\%pct'"),
        ("l_under", "k LIKE 'a_b'"), ("l_back", "s LIKE 'x\\y'"), ("brk", "s LIKE 'line_break'"),
        ("any_s", "s LIKE '%'"), ("l_empty", "s LIKE ''"), ("pct2", "k LIKE '%\\%%'")])


@case("null_tests")
def _():
    return [source()] + per_event("nt", "nullness", [
        ("i_null", "i IS NULL"), ("s_not_null", "s IS NOT NULL"), ("a_null", "nest.a IS NULL"),
        ("x_null", "nest.deep.x IS NULL"), ("deep_null", "nest.deep IS NULL"),
        ("nest_null", "nest IS NULL"), ("b_not_null", "b IS NOT NULL"), ("ts_null", "ts IS NULL")])


@case("case_simple")
def _():
    return [source()] + per_event("cs", "simple_case", [
        ("code1", "CASE k WHEN 'alpha' THEN 1 WHEN 'beta' THEN 2 ELSE 0 END"),
        ("no_else", "CASE k WHEN 'alpha' THEN 'A' WHEN 'Gamma' THEN 'G' END"),
        ("by_int", "CASE MOD(i, 3) WHEN 0 THEN d WHEN 1 THEN i ELSE m END"),
        ("by_bool", "CASE b WHEN TRUE THEN 'yes' WHEN FALSE THEN 'no' ELSE 'unknown' END")])


@case("case_searched")
def _():
    return [source()] + per_event("cw", "searched_case", [
        ("sign", "CASE WHEN i > 0 THEN 'pos' WHEN i < 0 THEN 'neg' ELSE 'zero' END"),
        ("num", "CASE WHEN b THEN i WHEN c THEN n ELSE 0 END"),
        ("dec_v", "CASE WHEN m > 0 THEN m ELSE 0.5 END"),
        ("nul", "CASE WHEN b THEN s END"),
        ("dbl", "CASE WHEN c THEN d ELSE i END"),
        ("nested", "CASE WHEN k IS NULL THEN CASE WHEN b THEN 1 ELSE 2 END ELSE 3 END")])


@case("casts")
def _():
    return [source()] + per_event("ct", "casted", [
        ("i_str", "CAST(i AS STRING)"), ("n_int", "CAST(n AS INT)"), ("d_int", "CAST(d AS INT)"),
        ("d_big", "CAST(d AS BIGINT)"), ("m_int", "CAST(m AS INT)"), ("i_dec", "CAST(i AS DECIMAL(12, 3))"),
        ("d_dec", "CAST(d AS DECIMAL(12, 1))"), ("b_str", "CAST(b AS STRING)"),
        ("f_dbl", "CAST(f AS DOUBLE)"), ("code_int", "CAST(code AS INT)"),
        ("code_dec", "CAST(code AS DECIMAL(8, 2))"), ("m_str", "CAST(m AS STRING)"),
        ("i_dbl", "CAST(i AS DOUBLE)"), ("m_dbl", "CAST(m AS DOUBLE)"), ("n_str", "CAST(n AS VARCHAR(40))"),
        ("i_big", "CAST(i AS BIGINT) * 3000000000"), ("d_float", "CAST(d AS FLOAT)"),
        ("m_narrow", "CAST(m AS DECIMAL(4, 1))")])


@case("coalesce")
def _():
    return [source()] + per_event("co", "coalesced", [
        ("c1", "COALESCE(i, n, 0)"), ("c2", "COALESCE(s, k, 'none')"), ("c3", "COALESCE(d, i)"),
        ("c4", "COALESCE(m, 0)"), ("c5", "COALESCE(nest.deep.x, -1)"), ("c6", "COALESCE(b, c, FALSE)"),
        ("c7", "COALESCE(ts, CAST(NULL AS TIMESTAMP(3)))")])


@case("strings")
def _():
    return [source()] + per_event("st", "stringy", [
        ("cat", "s || '-' || k"), ("concat", "CONCAT(s, k, '!')"), ("lo", "LOWER(s)"), ("up", "UPPER(s)"),
        ("trimmed", "TRIM(s)"), ("lead_t", "TRIM(LEADING ' ' FROM s)"), ("trail", "TRIM(TRAILING ' ' FROM k)"),
        ("sub2", "SUBSTRING(s, 2)"), ("sub23", "SUBSTRING(s, 2, 3)"), ("sub0", "SUBSTRING(s, 0, 2)"),
        ("subneg", "SUBSTRING(s, -3)"), ("subfrom", "SUBSTRING(s FROM 3 FOR 2)"), ("len", "CHAR_LENGTH(s)"),
        ("len_cat", "CHAR_LENGTH(s || k)"), ("sub_far", "SUBSTRING(s, 40)"), ("up_k", "UPPER(TRIM(k))")])


@case("numeric_functions")
def _():
    return [source()] + per_event("nf", "numeric_fns", [
        ("abs_i", "ABS(i)"), ("abs_d", "ABS(d)"), ("abs_n", "ABS(n)"), ("floor_d", "FLOOR(d)"),
        ("ceil_d", "CEIL(d)"), ("round_d", "ROUND(d, 1)"), ("round_m0", "ROUND(m, 0)"),
        ("round_i", "ROUND(i, -1)"), ("round_m", "ROUND(m, 1)"), ("floor_f", "FLOOR(f)"),
        ("ceil_m", "CEIL(m / 3)"), ("mod_n", "MOD(n, 5)"), ("mod_i", "MOD(i, -3)"),
        ("round_dn", "ROUND(d / 3, 2)"), ("abs_f", "ABS(f)"), ("floor_i", "FLOOR(i)")])


@case("nested_rows", n=150)
def _():
    return [source(), windowed("by_colour", tumble("src"), [
        "COUNT(*) AS cnt, SUM(nest.deep.x) AS sx, MAX(nest.deep.y) AS my, COUNT(nest.deep) AS cnt_deep"],
        group=["nest.a AS colour"]),
        "CREATE VIEW flat AS SELECT eid, et, nest.deep.x AS x, nest.deep AS deep, nest FROM src",
        windowed("flat_stats", tumble("flat", "INTERVAL '2' MINUTE"), [
            "AVG(x) AS ax, MIN(deep.y) AS mindy, COUNT(nest.a) AS cnt_a"])]


# ---- filters, group keys, windows ---------------------------------------------------

@case("where_filters")
def _():
    return [source(),
            windowed("filtered", tumble("src"), ["COUNT(*) AS cnt, SUM(d) AS sd"], group=["k"],
                     where="i > 0 AND (b OR c IS NULL) AND s IS NOT NULL"),
            windowed("filtered2", tumble("src", "INTERVAL '30' SECOND"), ["COUNT(*) AS cnt, MAX(m) AS mm"],
                     where="k NOT IN ('alpha', 'beta') OR m BETWEEN -10 AND 10")]


@case("group_by_expressions")
def _():
    return [source(),
            windowed("by_expr", tumble("src", "INTERVAL '2' MINUTE"), ["COUNT(*) AS cnt, SUM(n) AS sn"],
                     group=["UPPER(k) AS uk", "MOD(i, 3) AS r", "i / 250 AS bucket"]),
            windowed("by_case", tumble("src", "INTERVAL '5' MINUTE"), ["COUNT(*) AS cnt, AVG(m) AS am"],
                     group=["CASE WHEN d > 0 THEN 'up' WHEN d < 0 THEN 'down' END AS dir", "b", "c"])]


@case("tumble_sizes", n=200)
def _():
    return [source(),
            windowed("t10s", tumble("src", "INTERVAL '10' SECOND"), ["COUNT(*) AS cnt, SUM(i) AS si"]),
            windowed("t90s", tumble("src", "INTERVAL '90' SECOND"), ["COUNT(*) AS cnt, MIN(d) AS md"], group=["b"]),
            windowed("t1h", tumble("src", "INTERVAL '1' HOUR"), ["COUNT(*) AS cnt, MAX(s) AS ms_"]),
            windowed("t1d", tumble("src", "INTERVAL '1' DAY"), ["COUNT(*) AS cnt"], group=["k"])]


@case("hop_windows", n=150)
def _():
    return [source(),
            windowed("h30_60", hop("src", "INTERVAL '30' SECOND", "INTERVAL '1' MINUTE"),
                     ["COUNT(*) AS cnt, SUM(i) AS si"], group=["k"]),
            windowed("h10_60", hop("src", "INTERVAL '10' SECOND", "INTERVAL '1' MINUTE"),
                     ["COUNT(*) AS cnt, AVG(d) AS ad"])]


@case("hop_long", n=150)
def _():
    return [source(),
            windowed("h1_5", hop("src", "INTERVAL '1' MINUTE", "INTERVAL '5' MINUTE"),
                     ["COUNT(*) AS cnt, MAX(m) AS mm, STDDEV_SAMP(d) AS sd"], group=["b"]),
            windowed("h20_60", hop("src", "INTERVAL '20' SECOND", "INTERVAL '1' MINUTE"),
                     ["COUNT(i) AS cnt, MIN(n) AS mn"], where="i IS NOT NULL"),
            windowed("h1h_2h", hop("src", "INTERVAL '1' HOUR", "INTERVAL '2' HOUR"), ["COUNT(*) AS cnt"])]


@case("null_event_times", null_time=0.5)
def _():
    return [source(), windowed("timed", tumble("src"), ["COUNT(*) AS cnt, COUNT(ms) AS cnt_ms"], group=["b"]),
            windowed("timed_hop", hop("src", "INTERVAL '30' SECOND", "INTERVAL '1' MINUTE"), ["COUNT(*) AS cnt"])]


@case("view_chain")
def _():
    return [source(),
            "CREATE VIEW step1 AS SELECT eid, et, k, i * 2 AS i2, d, UPPER(s) AS us FROM src WHERE i IS NOT NULL",
            "CREATE VIEW step2 AS SELECT eid, et, k, i2 + 1 AS i3, d, us FROM step1 WHERE i2 > -500",
            "CREATE VIEW step3 AS SELECT * FROM step2 WHERE us LIKE '%A%' OR d > 0",
            windowed("chained", tumble("step3"), ["COUNT(*) AS cnt, SUM(i3) AS s3, MAX(us) AS mu"], group=["k"]),
            windowed("chained_hop", hop("step2", "INTERVAL '30' SECOND", "INTERVAL '90' SECOND"),
                     ["COUNT(*) AS cnt, MIN(i3) AS lo"])]


# ---- lookup joins -------------------------------------------------------------------

JOIN = "{kind} JOIN labels FOR SYSTEM_TIME AS OF e.proc_time AS l ON e.k = l.lk"


@case("left_join", refs={"labels": labels_rows})
def _():
    return [source(), labels_table(),
            "CREATE VIEW enriched AS SELECT e.*, l.label, l.weight FROM src AS e\n" + JOIN.format(kind="LEFT"),
            windowed("by_label", tumble("enriched"), [
                "COUNT(*) AS cnt, SUM(weight) AS sw, COUNT(label) AS labelled"],
                group=["COALESCE(label, 'unknown') AS lab"]),
            windowed("by_key", hop("enriched", "INTERVAL '1' MINUTE", "INTERVAL '3' MINUTE"),
                     ["COUNT(*) AS cnt, MAX(weight * i) AS wi"], group=["k", "label"])]


@case("inner_join", refs={"labels": labels_rows})
def _():
    return [source(), labels_table(),
            "CREATE VIEW joined AS SELECT e.eid, e.et, e.i, l.label AS lab, l.weight + e.i AS wsum FROM src AS e\n"
            + JOIN.format(kind=""),
            windowed("joined_counts", tumble("joined", "INTERVAL '2' MINUTE"),
                     ["COUNT(*) AS cnt, SUM(wsum) AS ws, MIN(i) AS lo"], group=["lab"])]


@case("join_filtered_view", refs={"labels": labels_rows})
def _():
    return [source(), labels_table(),
            "CREATE VIEW pre AS SELECT eid, et, proc_time, TRIM(k) AS k, d FROM src WHERE d IS NOT NULL",
            "CREATE VIEW enriched AS SELECT e.eid, e.et, e.d, l.label FROM pre AS e\n"
            "LEFT JOIN labels FOR SYSTEM_TIME AS OF e.proc_time AS l ON e.k = l.lk WHERE l.label IS NULL OR e.d > 0",
            windowed("stats", tumble("enriched"), ["COUNT(*) AS cnt, AVG(d) AS ad, MIN(label) AS ml"],
                     group=["label IS NULL AS missing"])]


# ---- types and timestamps -----------------------------------------------------------

SQL_TIMES = {"eid": "STRING", "k": "STRING", "i": "INT", "t": "TIMESTAMP(3)", "lt": "TIMESTAMP_LTZ(3)"}


def time_events(rng, n, iso):
    out = []
    for j in range(n):
        ms = BASE_MS + rng.randrange(300000)
        ms2 = BASE_MS + rng.randrange(300000)
        t = ts_iso(ms) if iso else ts_sql(ms)
        if rng.random() < 0.3:
            t = t[:-4]  # no fraction
        lt = (ts_iso(ms2) if iso else ts_sql(ms2)) + "Z"
        rec = {"eid": f"t-{j:04d}", "k": rng.choice(KEYS[:3]), "i": rng.randint(-9, 9), "t": t, "lt": lt}
        if rng.random() < 0.08:
            rec["t"] = None
        if rng.random() < 0.08:
            del rec["lt"]
        out.append(rec)
    return out


for std, iso in [("sql", False), ("iso", True)]:
    for col in ["t", "lt"]:
        @case(f"time_{std}_{col}", events=lambda rng, n, iso=iso: time_events(rng, n, iso))
        def _t(std=std, col=col, iso=iso):
            opt = ", 'json.timestamp-format.standard' = 'ISO-8601'" if iso else \
                ", 'json.timestamp-format.standard' = 'SQL'"
            other = "lt" if col == "t" else "t"
            return [source(extra_options=opt, time=None, watermark=col, columns=SQL_TIMES,
                           lateness="INTERVAL '1' MINUTE"),
                    windowed("by_time", tumble("src", col=col), [
                        f"COUNT(*) AS cnt, SUM(i) AS si, MIN({other}) AS lo, MAX({other}) AS hi"], group=["k"]),
                    windowed("by_time_hop", hop("src", "INTERVAL '30' SECOND", "INTERVAL '2' MINUTE", col=col),
                             [f"COUNT({other}) AS cnt, MAX({col}) AS latest"])]


def seconds_events(rng, n):
    return [{"eid": f"s-{j:03d}", "k": rng.choice(KEYS), "sec": None if rng.random() < 0.05
             else BASE_MS // 1000 + rng.randrange(900), "i": rng.randint(0, 100)} for j in range(n)]


@case("epoch_seconds", events=seconds_events)
def _():
    cols = {"eid": "STRING", "k": "STRING", "sec": "BIGINT", "i": "INT"}
    return [source(columns=cols, time="et AS TO_TIMESTAMP_LTZ(sec, 0)"),
            windowed("per_min", tumble("src", "INTERVAL '3' MINUTE"), ["COUNT(*) AS cnt, SUM(i) AS si, MIN(et) AS first_at"],
                     group=["k"])]


def decimal_events(rng, n):
    out = []
    for j in range(n):
        out.append({"eid": f"m-{j:03d}", "p": rng.choice([None, rng.randint(-99999, 99999) / 1000]),
                    "q": rng.randint(-10**8, 10**8) / 10**4, "r": rng.randint(1, 999) / 100,
                    "ms": BASE_MS + rng.randrange(300000)})
    return out


@case("decimal_precision", events=decimal_events)
def _():
    cols = {"eid": "STRING", "p": "DECIMAL(5, 3)", "q": "DECIMAL(18, 4)", "r": "DECIMAL(5, 2)", "ms": "BIGINT"}
    return [source(columns=cols),
            "CREATE VIEW mixed AS SELECT eid, et, p * q AS pq, q / r AS qr, p + q AS ppq, p - r AS pr, "
            "MOD(q, r) AS qmr, p * 1000 AS big, r / 3 AS r3, CAST(q AS DECIMAL(20, 1)) AS qc FROM src",
            windowed("dec_stats", tumble("mixed", "INTERVAL '5' MINUTE"), [
                "SUM(pq) AS spq, AVG(qr) AS aqr, MIN(ppq) AS lo, MAX(pr) AS hi, SUM(qmr) AS sq, "
                "AVG(big) AS ab, MAX(r3) AS mr3, SUM(qc) AS sqc"]),
            windowed("dec_var", tumble("src", "INTERVAL '5' MINUTE"), [
                "VAR_POP(p) AS vp, STDDEV_SAMP(q) AS sq, VAR_SAMP(r) AS vr"])]


@case("booleans_group")
def _():
    return [source(), windowed("by_flags", tumble("src", "INTERVAL '5' MINUTE"),
                               ["COUNT(*) AS cnt, MIN(b) AS mb, MAX(c) AS mc"], group=["b", "c"])]


# ---- several stored views, sinks ----------------------------------------------------

SINK = """CREATE TABLE {name} (
  window_start TIMESTAMP(3),
  window_end TIMESTAMP(3),
  {cols}
) WITH ('connector' = 'dynamodb', 'table-name' = '{name}')"""


@case("sinks", refs={"labels": labels_rows})
def _():
    return [source(), labels_table(),
            "CREATE VIEW enriched AS SELECT e.*, l.label FROM src AS e\n" + JOIN.format(kind="LEFT"),
            SINK.format(name="per_label", cols="label STRING,\n  events BIGINT,\n  total BIGINT,\n  mean DECIMAL(38, 6)"),
            "INSERT INTO per_label\nSELECT window_start, window_end, COALESCE(label, '?') AS lab, COUNT(*) AS c, "
            "SUM(i) AS t, AVG(m) AS a\nFROM " + tumble("enriched") + "\nGROUP BY window_start, window_end, COALESCE(label, '?')",
            SINK.format(name="hopping", cols="events BIGINT,\n  spread DOUBLE,\n  top_n BIGINT"),
            "INSERT INTO hopping\nSELECT window_start, window_end, COUNT(*) AS c, STDDEV_POP(d) AS sp, MAX(n) AS mx\nFROM "
            + hop("src", "INTERVAL '1' MINUTE", "INTERVAL '2' MINUTE") + "\nGROUP BY window_start, window_end",
            windowed("alongside", tumble("src", "INTERVAL '5' MINUTE"), ["COUNT(*) AS cnt"], group=["b"])]


@case("sink_casts")
def _():
    return [source(),
            SINK.format(name="widened", cols="k STRING,\n  cnt DOUBLE,\n  si BIGINT,\n  sm DECIMAL(38, 2),\n  lo DOUBLE"),
            "INSERT INTO widened\nSELECT window_start, window_end, k, COUNT(*) AS cnt, SUM(i) AS si, SUM(m) AS sm, "
            "MIN(i) AS lo\nFROM " + tumble("src", "INTERVAL '2' MINUTE") + "\nGROUP BY window_start, window_end, k"]


@case("many_views", n=200)
def _():
    return [source(),
            "CREATE VIEW positive AS SELECT eid, et, k, i, d, m FROM src WHERE i > 0",
            "CREATE VIEW negative AS SELECT eid, et, k, i, d, m FROM src WHERE i < 0",
            windowed("pos_stats", tumble("positive"), ["COUNT(*) AS cnt, SUM(i) AS si, AVG(m) AS am"], group=["k"]),
            windowed("neg_stats", tumble("negative"), ["COUNT(*) AS cnt, SUM(i) AS si, MIN(d) AS md"], group=["k"]),
            windowed("all_stats", hop("src", "INTERVAL '2' MINUTE", "INTERVAL '4' MINUTE"),
                     ["COUNT(*) AS cnt, VAR_POP(i) AS vi, MAX(d) AS md"]),
            windowed("small", tumble("src", "INTERVAL '15' SECOND"), ["COUNT(*) AS cnt"], group=["c"])]


@case("select_star_and_aliases", refs={"labels": labels_rows})
def _():
    return [source(), labels_table(),
            "CREATE VIEW everything AS SELECT * FROM src",
            "CREATE VIEW renamed AS SELECT e.eid AS event_id, e.et, e.proc_time, e.k AS kk, "
            "`e`.`i` AS `my i` FROM everything AS e",
            "CREATE VIEW joined AS SELECT r.*, l.* FROM renamed AS r\n"
            "LEFT JOIN labels FOR SYSTEM_TIME AS OF r.proc_time AS l ON r.kk = l.lk",
            windowed("star_stats", tumble("joined"), ["COUNT(*) AS cnt, SUM(`my i`) AS si, "
                                                                    "MAX(weight) AS mw"], group=["lk", "kk"])]


@case("big_group", n=300)
def _():
    return [source(), windowed("per_event", tumble("src", "INTERVAL '10' MINUTE"),
                               ["COUNT(*) AS cnt, SUM(i) AS si, MAX(s) AS ms_, MIN(nest.deep.y) AS y"],
                               group=["eid", "k"])]


def build(out, seed=17):
    """Writes the corpus under `out`; returns the oracle's cases."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for index, (name, fn, n, refs, may_be_empty, events, ev) in enumerate(CASES):
        rng = random.Random(f"{seed}:{name}")
        statements = fn()
        pipeline = f"-- corpus case {name} (issue 17), generated by infra/flink/corpus/generate.py\n"
        pipeline += ";\n\n".join(statements) + ";\n"
        (out / f"{name}.sql").write_text(pipeline)
        rows = events(rng, n) if events else Events(rng, n, **ev).all()
        ev_path = out / f"{name}.events.ndjson"
        ev_path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        reference = {}
        for table, make in (refs or {}).items():
            path = out / f"{name}.{table}.ndjson"
            path.write_text("".join(json.dumps(r) + "\n" for r in make()))
            reference[table] = str(path)
        case = {"name": name, "pipeline": pipeline, "events": str(ev_path), "reference": reference}
        if may_be_empty:
            case["may_be_empty"] = True
        cases.append(case)
    with open(out / "cases.jsonl", "w") as f:
        for c in cases:
            f.write(json.dumps(c) + "\n")
    return cases


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args:
        sys.exit(__doc__)
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 17
    print(f"{len(build(args[0], seed))} cases written to {args[0]}", file=sys.stderr)
