"""Short fuzz run of the SQL surface: ~3000 calls of every public function with random
and malformed arguments, each succeeding or failing with a proper SQLSTATE; no internal
error, crash or lost connection; stream.verify() clean afterwards.

A thin wrapper around test/fuzz/fuzz.py (which documents the checks); the long run is
described in test/fuzz/README.md.  FUZZ_SEED and FUZZ_CALLS override the fixed seed and
the call count; the database is STREAM_TEST_DB (stream_multi) and the server log is
STREAM_PGLOG, as for the other multi-session tests.
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz"))
import fuzz  # noqa: E402

os.environ.setdefault("STREAM_TEST_DB", "stream_multi")
sys.exit(fuzz.main(default_calls=3000, default_seed=1))
