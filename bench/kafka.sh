#!/usr/bin/env bash
# bench/kafka.sh: Kafka clients through the listener vs SQL on the same rows.
#
# Builds and installs the extension and starts the private cluster (as bench/run.sh
# does, through scripts/lib.sh), builds bench/kafka_bench.c (a librdkafka producer and
# consumer) with cc -lrdkafka, and runs bench/kafka_bench.py, which measures, for
# 100-byte and 1 kB values on 4-partition bytea topics in database postgres:
#   produce: librdkafka producer (acks=1, default batching) vs stream.publish_batch of
#            the same values (1000 per transaction, one session)
#   consume: librdkafka consumer from offset 0 vs stream.read_bytea of the same
#            rows (1000 per call, one session)
# 3 runs each, alternating which side goes first; prints messages/s and MB/s per run,
# the medians and the ratios Kafka/SQL. Output also in bench/results/kafka.txt.
#
# Environment: KBENCH_RUNS (3), KBENCH_SIZES ("100 1024"), KBENCH_PARTITIONS (4),
# KBENCH_MESSAGES_100 (300000), KBENCH_MESSAGES_1024 (100000); STREAM_PGPORT etc. as
# for scripts/lib.sh.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/../scripts/lib.sh"
cd "$STREAM_ROOT"

ensure_packages
build_install || die "build failed"
ensure_cluster

results=bench/results
mkdir -p "$results"
bin=$results/kafka_bench
cc -O2 -Wall -o "$bin" bench/kafka_bench.c -lrdkafka || die "could not build bench/kafka_bench.c"

exec > >(tee "$results/kafka.txt") 2>&1
echo "stream Kafka benchmark  $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
echo "commit $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD -- src sql 2>/dev/null || echo ' (src/sql modified)')," \
     "$("$PG_BIN/postgres" --version), $(nproc) CPUs, librdkafka $(/usr/bin/python3 -c 'import confluent_kafka; print(confluent_kafka.libversion()[0])' 2>/dev/null || echo '?')," \
     "listener 127.0.0.1:$STREAM_KAFKA_PORT"
"$PG_BIN/psql" -X -q -d postgres -Atc "SELECT string_agg(name || '=' || setting || coalesce(unit, ''), ' ' ORDER BY name)
    FROM pg_settings WHERE name IN ('shared_buffers', 'synchronous_commit', 'fsync', 'max_wal_size', 'wal_level')"
start=$SECONDS
/usr/bin/python3 bench/kafka_bench.py "$bin"
echo "($((SECONDS - start)) s)"
