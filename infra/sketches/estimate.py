"""Reads HLL sketches (DataSketches' serialization, base64, one per line on stdin) with
Apache DataSketches for Python and prints each one's estimate, one per line: the
independent reader crates/cli/tests/datasketches_python.rs compares Sluice's estimates
with."""

import base64
import sys

from datasketches import hll_sketch

for line in sys.stdin:
    line = line.strip()
    if line:
        print(repr(hll_sketch.deserialize(base64.b64decode(line)).get_estimate()))
