"""Runs Sluice pipelines (Flink SQL, issue 17) in Apache Flink and prints the final rows.

Flink is the oracle the Rust side is compared with: one JVM runs any number of cases.
Launch it through `infra/flink/oracle` (which installs PyFlink first).

Input, one case per JSON line of `--cases FILE`:
    {"name": "...", "pipeline": "<the .sql text>", "events": "/path/events.ndjson",
     "reference": {"<table>": "/path/ref.ndjson"}, "views": ["v1", "sink1"]}
or one case from flags: `--pipeline P.sql --events E.ndjson [--reference NAME=FILE ...]
[--view V ...]` (the case is named after the pipeline file).

Output on stdout, per case: one line per result row
    {"case": "<name>", "view": "<view>", "row": {"<column>": value, ...}}
sorted by view, then by the row's canonical JSON (keys sorted), then
    {"case": "<name>", "done": true, "rows": N}
or, when Flink refuses or fails the case, {"case": "<name>", "error": "<Flink's message>"}.
The exit status is 0 unless the harness itself breaks (bad arguments, unreadable cases).

How a pipeline is run: batch mode, `parallelism.default` = 1, `table.local-time-zone` =
UTC, a fresh TableEnvironment per case. The text is split into statements (on `;` outside
quotes and comments) and each statement is rewritten as follows, nothing else:

1. `CREATE TABLE t (...) WITH ('connector' = 'kinesis', ...)`, the source: its WITH
   options become `'connector' = 'filesystem', 'path' = <case events>, 'format' = 'json'`,
   keeping every `json.*` option the user gave, and adding `'json.ignore-parse-errors' =
   'true'` unless the user set it. Without that option one malformed line fails the whole
   job ("Failed to deserialize JSON"), so the oracle could not mirror Sluice dead-lettering
   the line; with it Flink skips the line. Beware: the same option also turns a field of
   the wrong type into NULL and keeps the record (see README). Columns, computed columns,
   `PROCTIME()`, `WATERMARK` and `PRIMARY KEY ... NOT ENFORCED` are kept: Flink 2.3 accepts
   them all in batch mode on the filesystem connector. A `'format'` other than json is
   refused.
2. `CREATE TABLE r (...) WITH ('connector' = 'dynamodb', ...)` that is not an INSERT
   target, a reference table: becomes a filesystem json table on the case's
   `reference[r]` file (strict json: a broken reference file is an input error).
3. `CREATE TABLE s (...) WITH ('connector' = 'dynamodb', ...)` that is an INSERT target,
   a sink: created as a `blackhole` table with the same columns, only so that Flink
   validates `INSERT INTO s ...` against the sink's schema (explain, not run). The query is
   then run as `SELECT CAST(col_i AS <sink type_i>) AS <sink column_i> ...` over the
   INSERT's query: the implicit casts and positional renaming Flink's INSERT performs.
   Its rows are reported under the sink's name.
4. `FOR SYSTEM_TIME AS OF <column>` is removed from every statement: a filesystem table
   is not a lookup source ("unexpected correlate variable $cor0 in the plan"); the plain
   join over the whole reference table gives the same rows for a static reference table.
5. Any other connector option (`'stream'`, `'aws.region'`, `'table-name'`, ...) is
   dropped. Tables of other connectors, views and other statements run unchanged; an
   INSERT into a table that is not a dynamodb sink is refused.

Stored views (reported when the case gives no `views`): each CREATE VIEW whose query
calls TUMBLE or HOP, and each INSERT INTO target, in text order.

Canonical values: TIMESTAMP and TIMESTAMP_LTZ as RFC 3339 UTC with 3 fractional digits
and `Z`; integers as JSON integers; FLOAT/DOUBLE as JSON numbers ("NaN", "Infinity",
"-Infinity" as strings); DECIMAL as a JSON number written with Flink's exact text (its
scale kept: 7.500000); BOOLEAN, STRING, NULL as themselves; ROW as an object by field
name; ARRAY as a list; MAP as an object with string keys; DATE/TIME as ISO strings.
"""

import argparse
import datetime
import decimal
import json
import math
import os
import re
import sys
import time
from pathlib import Path

# Flink's JVM and PyFlink may print to stdout; results go to a private copy of it.
_OUT = os.fdopen(os.dup(1), "w", buffering=1)
os.dup2(2, 1)
sys.stdout = sys.stderr


def log(msg):
    print(f"infra/flink/oracle: {msg}", file=sys.stderr, flush=True)


class CaseError(Exception):
    """The case is refused before Flink runs it (a bad case or unsupported pipeline)."""


# --- SQL text: tokens, statements -------------------------------------------------------

_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<lcomment>--[^\n]*)
      | (?P<bcomment>/\*.*?\*/)
      | (?P<str>'(?:[^']|'')*')
      | (?P<bq>`(?:[^`]|``)*`)
      | (?P<dq>"(?:[^"]|"")*")
      | (?P<word>[A-Za-z_][A-Za-z_0-9$]*)
      | (?P<num>[0-9][0-9.]*(?:[eE][+-]?[0-9]+)?)
      | (?P<punct>.)""",
    re.VERBOSE | re.DOTALL,
)


class Tok:
    __slots__ = ("kind", "text", "start", "end")

    def __init__(self, kind, text, start, end):
        self.kind, self.text, self.start, self.end = kind, text, start, end

    def is_word(self, *words):
        return self.kind == "word" and self.text.upper() in words

    def is_punct(self, ch):
        return self.kind == "punct" and self.text == ch


def tokenize(text):
    """Significant tokens (no whitespace or comments) with their offsets in `text`."""
    out = []
    for m in _TOKEN.finditer(text):
        kind = m.lastgroup
        if kind in ("ws", "lcomment", "bcomment"):
            continue
        out.append(Tok(kind, m.group(), m.start(), m.end()))
    return out


def split_statements(text):
    """The statements of a script, split on `;` outside quotes and comments."""
    stmts, start = [], 0
    for tok in tokenize(text):
        if tok.is_punct(";"):
            stmts.append(text[start : tok.start])
            start = tok.end
    stmts.append(text[start:])
    return [s.strip() for s in stmts if tokenize(s)]


def ident(tok):
    """The name an identifier token stands for (backquotes removed)."""
    if tok.kind == "bq":
        return tok.text[1:-1].replace("``", "`")
    if tok.kind == "word":
        return tok.text
    raise CaseError(f"expected a name, found {tok.text!r}")


def quote(name):
    return "`" + name.replace("`", "``") + "`"


def sql_string(value):
    return "'" + value.replace("'", "''") + "'"


def unquote_string(tok):
    if tok.kind != "str":
        raise CaseError(f"expected a quoted string in WITH, found {tok.text!r}")
    return tok.text[1:-1].replace("''", "'")


def read_name(toks, i):
    """A possibly dotted name starting at toks[i]: (last part, index after it)."""
    name = ident(toks[i])
    i += 1
    while i + 1 < len(toks) and toks[i].is_punct("."):
        name = ident(toks[i + 1])
        i += 2
    return name, i


def matching_paren(toks, i):
    """Index of the `)` that closes the `(` at toks[i]."""
    depth = 0
    for j in range(i, len(toks)):
        if toks[j].is_punct("("):
            depth += 1
        elif toks[j].is_punct(")"):
            depth -= 1
            if depth == 0:
                return j
    raise CaseError("unbalanced parentheses")


def strip_system_time(text):
    """Removes `FOR SYSTEM_TIME AS OF <name>` (rewrite 4)."""
    toks = tokenize(text)
    cuts = []
    for i in range(len(toks) - 4):
        if (
            toks[i].is_word("FOR")
            and toks[i + 1].is_word("SYSTEM_TIME")
            and toks[i + 2].is_word("AS")
            and toks[i + 3].is_word("OF")
        ):
            j = i + 4
            _, j = read_name(toks, j)
            if j < len(toks) and toks[j].is_punct("("):
                j = matching_paren(toks, j) + 1
            cuts.append((toks[i].start, toks[j - 1].end))
    for start, end in reversed(cuts):
        text = text[:start] + text[end:]
    return text


# --- statements -------------------------------------------------------------------------


class Table:
    def __init__(self, name, text, toks, with_open, with_close, options):
        self.name, self.text, self.toks = name, text, toks
        self.with_open, self.with_close, self.options = with_open, with_close, options

    @property
    def connector(self):
        return self.options.get("connector", "").lower()

    def with_options(self, options):
        """The statement with its WITH (...) replaced by `options`."""
        body = ", ".join(f"{sql_string(k)} = {sql_string(v)}" for k, v in options.items())
        head = self.text[: self.toks[self.with_open].start]
        tail = self.text[self.toks[self.with_close].end :]
        return f"{head}WITH ({body}){tail}"


def parse_create_table(text):
    toks = tokenize(text)
    i = 2
    while toks[i].is_word("TEMPORARY", "IF", "NOT", "EXISTS"):
        i += 1
    name, i = read_name(toks, i)
    if i < len(toks) and toks[i].is_punct("("):
        i = matching_paren(toks, i) + 1
    with_kw = next((j for j in range(i, len(toks)) if toks[j].is_word("WITH")), None)
    if with_kw is None or not toks[with_kw + 1].is_punct("("):
        return Table(name, text, toks, None, None, {})
    close = matching_paren(toks, with_kw + 1)
    options, j = {}, with_kw + 2
    while j < close:
        if j + 2 >= close + 1 or not toks[j + 1].is_punct("="):
            raise CaseError(f"cannot read the WITH options of table {name}")
        options[unquote_string(toks[j])] = unquote_string(toks[j + 2])
        j += 3
        if toks[j].is_punct(","):
            j += 1
    return Table(name, text, toks, with_kw, close, options)


def statement_kind(toks):
    words = [t.text.upper() for t in toks[:4] if t.kind == "word"]
    if words[:2] == ["CREATE", "TABLE"] or words[:3] == ["CREATE", "TEMPORARY", "TABLE"]:
        return "table"
    if words[:2] == ["CREATE", "VIEW"] or words[:3] == ["CREATE", "TEMPORARY", "VIEW"]:
        return "view"
    if words[:2] == ["INSERT", "INTO"]:
        return "insert"
    return "other"


def view_name(toks):
    i = 2
    while toks[i].is_word("TEMPORARY", "VIEW", "IF", "NOT", "EXISTS"):
        i += 1
    return read_name(toks, i)[0]


def is_windowed(toks):
    return any(
        t.is_word("TUMBLE", "HOP") and k + 1 < len(toks) and toks[k + 1].is_punct("(")
        for k, t in enumerate(toks)
    )


def parse_insert(text):
    """(target name, explicit column list or None, the query text)."""
    toks = tokenize(text)
    name, i = read_name(toks, 2)
    columns = None
    if i < len(toks) and toks[i].is_punct("("):
        close = matching_paren(toks, i)
        columns = [ident(t) for t in toks[i + 1 : close] if not t.is_punct(",")]
        i = close + 1
    return name, columns, text[toks[i].start :]


# --- a case -----------------------------------------------------------------------------


def rewrite_table(table, case, sinks):
    """The statement to execute for one CREATE TABLE (rewrites 1, 2, 3, 5)."""
    if table.connector == "kinesis":
        fmt = table.options.get("format", "json")
        if fmt != "json":
            raise CaseError(f"source {table.name}: only 'format' = 'json' is supported, got {fmt!r}")
        options = {"connector": "filesystem", "path": str(case["events"]), "format": "json"}
        options.update({k: v for k, v in table.options.items() if k.startswith("json.")})
        options.setdefault("json.ignore-parse-errors", "true")
        return table.with_options(options)
    if table.connector == "dynamodb":
        if table.name in sinks:
            return table.with_options({"connector": "blackhole"})
        refs = case.get("reference") or {}
        if table.name not in refs:
            raise CaseError(
                f"reference table {table.name} has no file in the case's reference "
                f"(given: {sorted(refs)})"
            )
        return table.with_options(
            {"connector": "filesystem", "path": str(refs[table.name]), "format": "json"}
        )
    return table.text


def run_case(case, emit):
    """Runs one case; emits its rows and done line, or raises (CaseError or Flink's)."""
    from pyflink.table import EnvironmentSettings, TableEnvironment

    env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    config = env.get_config()
    config.set("parallelism.default", "1")
    config.set("table.local-time-zone", "UTC")

    stmts = [strip_system_time(s) for s in split_statements(case["pipeline"])]
    kinds = [statement_kind(tokenize(s)) for s in stmts]
    inserts = [parse_insert(s) for s, k in zip(stmts, kinds) if k == "insert"]
    sinks = {name for name, _, _ in inserts}

    stored, queries, dynamo_sinks = [], {}, set()
    for stmt, kind in zip(stmts, kinds):
        toks = tokenize(stmt)
        if kind == "table":
            table = parse_create_table(stmt)
            if table.connector == "dynamodb" and table.name in sinks:
                dynamo_sinks.add(table.name)
            env.execute_sql(rewrite_table(table, case, sinks))
        elif kind == "view":
            env.execute_sql(stmt)
            name = view_name(toks)
            queries[name] = ("view", name)
            if is_windowed(toks):
                stored.append(name)
        elif kind == "insert":
            name, columns, query = parse_insert(stmt)
            if name not in dynamo_sinks:
                raise CaseError(f"INSERT INTO {name}: the oracle only runs dynamodb sinks")
            env.explain_sql(stmt)  # Flink's own check of the query against the sink
            queries[name] = ("sink", name, columns, query)
            stored.append(name)
        else:
            env.execute_sql(stmt)

    views = case.get("views") or stored
    unknown = [v for v in views if v not in queries]
    if unknown:
        raise CaseError(f"unknown view(s) {unknown}; the pipeline defines {sorted(queries)}")

    results = []
    for view in views:
        for row in collect(env, queries[view]):
            results.append((view, canonical(row), row))
    results.sort(key=lambda r: (r[0], r[1]))
    for view, _, row in results:
        emit({"case": case["name"], "view": view, "row": row})
    emit({"case": case["name"], "done": True, "rows": len(results)})


def sink_table(env, name, columns, query):
    """The INSERT's query cast and renamed to the sink's columns, as Flink's INSERT does."""
    schema = env.from_path(quote(name))._j_table.getResolvedSchema()
    sink_cols = [c for c in schema.getColumns() if c.isPhysical()]
    if columns is not None:
        by_name = {c.getName(): c for c in sink_cols}
        sink_cols = [by_name[c] for c in columns]
    source = env.sql_query(query)
    names = source.get_schema().get_field_names()
    select = ", ".join(
        f"CAST({quote(src)} AS {col.getDataType().getLogicalType().copy(True).asSerializableString()})"
        f" AS {quote(col.getName())}"
        for src, col in zip(names, sink_cols)
    )
    return env.sql_query(f"SELECT {select} FROM {source}")


def collect(env, query):
    """The rows of a view or sink as dicts of canonical values, in column order."""
    if query[0] == "view":
        table = env.from_path(quote(query[1]))
    else:
        table = sink_table(env, *query[1:])
    result = table._j_table.execute()
    columns = list(result.getResolvedSchema().getColumns())
    names = [c.getName() for c in columns]
    types = [c.getDataType().getLogicalType() for c in columns]
    rows = []
    it = result.collect()
    try:
        while it.hasNext():
            row = it.next()
            kind = row.getKind().shortString()
            if kind != "+I":
                raise CaseError(f"unexpected {kind} row in batch mode")
            rows.append({n: value(t, row.getField(k)) for k, (n, t) in enumerate(zip(names, types))})
    finally:
        it.close()
    return rows


# --- values -----------------------------------------------------------------------------

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def rfc3339_millis(ms):
    t = _EPOCH + datetime.timedelta(milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


class RawNumber(str):
    """A number kept as its exact decimal text (DECIMAL)."""


def value(ltype, v):
    if v is None:
        return None
    root = ltype.getTypeRoot().name()
    if root == "TIMESTAMP_WITH_LOCAL_TIME_ZONE":
        return rfc3339_millis(v.toEpochMilli())
    if root in ("TIMESTAMP_WITHOUT_TIME_ZONE", "TIMESTAMP_WITH_TIME_ZONE"):
        from pyflink.java_gateway import get_gateway

        utc = get_gateway().jvm.java.time.ZoneOffset.UTC
        odt = v.atOffset(utc) if root == "TIMESTAMP_WITHOUT_TIME_ZONE" else v
        return rfc3339_millis(odt.toInstant().toEpochMilli())
    if root == "DECIMAL":
        d = v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v.toPlainString()))
        text = str(d)
        return RawNumber(format(d, "f") if "E" in text else text)
    if root in ("FLOAT", "DOUBLE"):
        f = float(v)
        if math.isnan(f):
            return "NaN"
        if math.isinf(f):
            return "Infinity" if f > 0 else "-Infinity"
        return f
    if root == "ROW":
        kids = list(ltype.getChildren())
        return {n: value(kids[k], v.getField(k)) for k, n in enumerate(ltype.getFieldNames())}
    if root in ("ARRAY", "MULTISET"):
        return [value(ltype.getElementType(), x) for x in v]
    if root == "MAP":
        kt, vt = ltype.getKeyType(), ltype.getValueType()
        return {str(value(kt, k)): value(vt, v.get(k)) for k in v.keySet()}
    if root in ("BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "CHAR", "VARCHAR"):
        return v
    return str(v.toString()) if hasattr(v, "toString") else str(v)


def dumps(v, sort_keys=False):
    """JSON text; RawNumber verbatim; dict order kept unless sort_keys."""
    if isinstance(v, RawNumber):
        return str.__str__(v)
    if isinstance(v, dict):
        items = sorted(v.items()) if sort_keys else v.items()
        return "{" + ", ".join(f"{json.dumps(k)}: {dumps(x, sort_keys)}" for k, x in items) + "}"
    if isinstance(v, list):
        return "[" + ", ".join(dumps(x, sort_keys) for x in v) + "]"
    return json.dumps(v)


def canonical(row):
    return dumps(row, sort_keys=True)


# --- errors, cases, main ----------------------------------------------------------------


def flink_message(exc, max_lines=6):
    """Flink's message: the first exception line and the deepest causes, not stack frames."""
    if isinstance(exc, CaseError):
        return str(exc)
    lines = [l.strip() for l in str(exc).splitlines()]
    lines = [l for l in lines if l and not l.startswith("at ") and not l.startswith("...")]
    head = [l.lstrip(": ") for l in lines if not l.startswith("Caused by:")]
    head = [l for l in head if not l.startswith("An error occurred while calling")]
    causes = [l[len("Caused by: ") :] for l in lines if l.startswith("Caused by:")]
    picked = head[:3] + causes[-3:]
    seen, out = set(), []
    for l in picked:
        if l not in seen:
            seen.add(l)
            out.append(l)
    return "\n".join(out[:max_lines]) or type(exc).__name__


def load_cases(args):
    if args.cases:
        cases = []
        with open(args.cases) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        cases.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        sys.exit(f"infra/flink/oracle: {args.cases}:{n}: not JSON: {e}")
        return cases
    if not (args.pipeline and args.events):
        sys.exit("infra/flink/oracle: give --cases FILE, or --pipeline P.sql --events E.ndjson")
    refs = {}
    for r in args.reference:
        name, sep, path = r.partition("=")
        if not sep:
            sys.exit(f"infra/flink/oracle: --reference wants NAME=FILE, got {r!r}")
        refs[name] = path
    case = {
        "name": Path(args.pipeline).stem,
        "pipeline": Path(args.pipeline).read_text(),
        "events": args.events,
        "reference": refs,
    }
    if args.view:
        case["views"] = args.view
    return [case]


def check_case(case, n):
    missing = [k for k in ("name", "pipeline", "events") if k not in case]
    if missing:
        raise CaseError(f"case {n} lacks {missing}")
    paths = [case["events"], *(case.get("reference") or {}).values()]
    absent = [p for p in paths if not Path(p).is_file()]
    if absent:
        raise CaseError(f"missing file(s): {absent}")
    case["events"] = str(Path(case["events"]).resolve())
    case["reference"] = {k: str(Path(v).resolve()) for k, v in (case.get("reference") or {}).items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases")
    parser.add_argument("--pipeline")
    parser.add_argument("--events")
    parser.add_argument("--reference", action="append", default=[])
    parser.add_argument("--view", action="append", default=[])
    args = parser.parse_args()
    cases = load_cases(args)

    def emit(obj):
        _OUT.write(dumps(obj) + "\n")

    t0 = time.monotonic()
    from pyflink.java_gateway import get_gateway

    get_gateway()
    log(f"JVM up in {time.monotonic() - t0:.1f}s")
    for n, case in enumerate(cases, 1):
        t = time.monotonic()
        name = case.get("name", f"#{n}")
        try:
            check_case(case, n)
            run_case(case, emit)
        except Exception as exc:  # noqa: BLE001 - a failing case is reported, not fatal
            emit({"case": name, "error": flink_message(exc)})
        log(f"case {name}: {time.monotonic() - t:.1f}s")
    _OUT.flush()


if __name__ == "__main__":
    main()
