"""Tries each word of a file (argv[1]) as an alias and a table alias in Flink SQL and
prints, as a JSON array, those Flink refuses to parse: its reserved words."""
import re, sys, json
from pyflink.table import EnvironmentSettings, TableEnvironment
words = sorted(set(w.strip().upper() for w in open(sys.argv[1]) if w.strip() and re.fullmatch(r'[A-Za-z_][A-Za-z0-9_]*', w.strip())))
env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
env.execute_sql("CREATE TEMPORARY VIEW t AS SELECT 1 AS x")
reserved = []
for w in words:
    for q in (f"SELECT x AS {w} FROM t", f"SELECT {w}.x FROM t AS {w}"):
        try:
            env.explain_sql(q)
        except Exception as e:
            m = str(e)
            if 'SqlParseException' in m or 'SQL parse failed' in m or 'Encountered' in m:
                reserved.append(w); break
print(json.dumps(reserved))
