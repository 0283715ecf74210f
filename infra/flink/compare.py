"""Comparing Sluice's rows with Flink's (issue 17), shared by infra/flink/examples and
infra/flink/corpus/check: run cases in one oracle JVM, run `sluice sql eval` on the same
input, and list what differs (rows as multisets per view, numbers within 1e-9 relative).

A case is the oracle's: {"name", "pipeline" (the .sql text), "events" (a path),
"reference": {table: path}, optionally "views"}.
"""

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ORACLE = ROOT / "infra/flink/oracle"
_BUILT = []


def sluice_bin():
    """$SLUICE_BIN, or target/debug/sluice (built with cargo once, in $CARGO_TARGET_DIR
    when that is set)."""
    if os.environ.get("SLUICE_BIN"):
        return os.environ["SLUICE_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    if not _BUILT:
        subprocess.run(["cargo", "build", "-q", "-p", "sluice"], cwd=ROOT, check=True)
        _BUILT.append(True)
    return str(target / "debug/sluice")


def sluice_rows(case, stages=False):
    """({view: [row, ...]}, the summary line) of `sluice sql eval` on the case, or with
    `stages` of `sluice demo --sql` (the pipeline on the in-process stages)."""
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(case["pipeline"])
        sql = f.name
    args = [sluice_bin(), "sql", "eval", sql, "--events", case["events"]]
    if stages:
        # Flink's batch mode judges no lateness: nor do the stages here (31 days, the most).
        args = [sluice_bin(), "demo", "--sql", sql, "--file", case["events"], "--json",
                "--allowed-lateness", str(31 * 86400)]
    for table, path in case.get("reference", {}).items():
        args += ["--reference", f"{table}={path}"]
    try:
        run = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        Path(sql).unlink()
    if run.returncode != 0:
        return None, {"error": run.stderr.strip() or f"exit {run.returncode}"}
    rows, summary = {}, {}
    for line in run.stdout.splitlines():
        r = json.loads(line)
        if r["kind"] == "row":
            rows.setdefault(r["view"], []).append(r["row"])
        elif r["kind"] == "summary":
            summary = r
    return rows, summary


def flink_rows(cases, show=False):
    """Runs every case in one oracle JVM: ({case: {view: [row, ...]}}, {case: error})."""
    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        for case in cases:
            f.write(json.dumps(case) + "\n")
        path = f.name
    try:
        out = subprocess.run([str(ORACLE), "--cases", path], check=True,
                             stdout=subprocess.PIPE, text=True).stdout
    finally:
        Path(path).unlink()
    rows, errors = {}, {}
    for line in out.splitlines():
        r = json.loads(line)
        if "error" in r:
            errors[r["case"]] = r["error"]
        elif "view" in r:
            rows.setdefault(r["case"], {}).setdefault(r["view"], []).append(r["row"])
            if show:
                print(line)
        elif r.get("done"):
            rows.setdefault(r["case"], {})
    return rows, errors


def same(a, b):
    """Equal JSON values, numbers within 1e-9 relative."""
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def differences(flink, ours):
    """What differs between two multisets of rows (a row of one matched once):
    (rows only Flink has, rows only Sluice has)."""
    left = list(ours)
    missing = []
    for row in flink:
        match = next((i for i, r in enumerate(left) if same(row, r)), None)
        if match is None:
            missing.append(row)
        else:
            left.pop(match)
    return missing, left


def compare_views(tool, name, views, ours, limit):
    """The differences of one engine's rows from Flink's, per view; a line per view on
    stderr."""
    failed = []
    for view in sorted(set(views) | set(ours)):
        missing, extra = differences(views.get(view, []), ours.get(view, []))
        for row in missing[:limit]:
            failed.append(f"{name}: {view}: Flink has {json.dumps(row)}, Sluice has not")
        for row in extra[:limit]:
            failed.append(f"{name}: {view}: Sluice has {json.dumps(row)}, Flink has not")
        verdict = "same rows" if not missing and not extra else f"{len(missing)} missing, {len(extra)} extra"
        print(f"infra/flink/{tool}: {name}: {view}: Flink {len(views.get(view, []))} rows, "
              f"Sluice {len(ours.get(view, []))}: {verdict}", file=sys.stderr)
    return failed


def compare(cases, tool, show=False, allow_empty=False, limit=5):
    """Runs the cases in Flink and in Sluice; prints a line per view to stderr and
    returns the failures (strings). A case Flink refuses is a failure, and so, unless
    `allow_empty` or the case says "may_be_empty", is a case whose stored views have no
    row in Flink; so is a record Sluice rejects unless the case gives "rejected" (the
    number expected)."""
    flink, errors = flink_rows(cases, show)
    failed = []
    for case in cases:
        name = case["name"]
        if name in errors:
            failed.append(f"{name}: Flink refused it: {errors[name].strip().splitlines()[0]}")
        views = flink.get(name, {})
        if (not any(views.values()) and name not in errors and not allow_empty
                and not case.get("may_be_empty")):
            failed.append(f"{name}: no stored view computed a row")
        ours, summary = sluice_rows(case)
        if ours is None:
            failed.append(f"{name}: sluice sql eval failed: {summary['error']}")
            continue
        rejected = summary.get("rejected", 0)
        if rejected != case.get("rejected", rejected if tool == "examples" else 0):
            failed.append(f"{name}: Sluice rejected {rejected} records: "
                          f"{json.dumps(summary.get('rejected_by_reason'))}")
        failed += compare_views(tool, f"{name}", views, ours, limit)
        # The same case on the stages (ingest, enrich, aggregate in process): the rows
        # stored for every (view, window, group) must be Flink's too.
        staged, summary = sluice_rows(case, stages=True)
        if staged is None:
            failed.append(f"{name}: sluice demo --sql failed: {summary['error']}")
            continue
        for field in ("late", "unsettled"):
            if summary.get(field):
                failed.append(f"{name}: on the stages, {summary[field]} events {field}")
        failed += compare_views(tool, f"{name} (stages)", views, staged, limit)
    for f in failed:
        print(f"infra/flink/{tool}: {f}", file=sys.stderr)
    return failed
