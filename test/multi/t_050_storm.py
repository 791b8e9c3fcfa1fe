"""Invariants 1 and 2 under a randomized storm of concurrent publishers.

Four publisher sessions run random transactions of 1-5 publishes (random keys, NULL
keys, explicit partitions, small batches; some savepoints rolled back, some whole
rollbacks, some held open a little) on a 3-partition topic, and record what committed
from the RETURNING rows and the COMMIT outcome.  Two followers read every partition from
their last offset (next = last returned + 1) while the storm runs: one in autocommit,
one in REPEATABLE READ transactions that span several reads.  Had a read ever returned
an offset above one still open, the follower would have moved past it and miss it when
it committed; had it used an old snapshot, it would miss messages committed since.  At
the end each follower must have read exactly the committed set, each once, in offset
order per partition, and nothing rolled back.

The seed is printed; rerun one with STREAM_STORM_SEED=<seed>.
"""
from lib import TAP, connect
from lso_util import check_storm, drop_topic, fresh_topic, run_storm, storm_seed

t = TAP()
TOPIC, PARTITIONS = "lso_storm", 3
seed = storm_seed()
t.diag("storm seed %d (set STREAM_STORM_SEED to change it)" % seed)
conn = connect()
fresh_topic(conn, TOPIC, partitions=PARTITIONS)
pubs, fols = run_storm(t, TOPIC, PARTITIONS, seed, txns_total=2000)
check_storm(t, conn, TOPIC, PARTITIONS, pubs, fols)
drop_topic(conn, TOPIC)
t.exit()
