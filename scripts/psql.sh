#!/usr/bin/env bash
# Open psql on the private test cluster (started if needed); arguments go to psql,
# e.g. scripts/psql.sh -d stream_demo -c 'SELECT * FROM stream.topics'.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
ensure_cluster
exec "$PG_BIN/psql" "$@"
