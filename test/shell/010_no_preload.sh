#!/usr/bin/env bash
# CREATE EXTENSION without shared_preload_libraries = 'stream' must fail with SQLSTATE
# 55000 and a hint that says how to fix it, and must leave nothing behind.
# Starts a second, throwaway cluster (no preload) on the first free port above the main one.
set -euo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
stream_env
port=$((STREAM_PORT + 1))
while port_busy "$port"; do port=$((port + 1)); done
dir=$(mktemp -d /tmp/stream-nopreload.XXXXXX)
chown postgres "$dir"
cleanup() {
    as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

echo "1..4"
as_pg "$PG_BIN/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
cat >>"$dir/data/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$dir'
CONF
as_pg "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/log" -w start >/dev/null

psql=("$PG_BIN/psql" -X -h 127.0.0.1 -p "$port" -U postgres -d postgres)
out=$("${psql[@]}" -v VERBOSITY=verbose -c 'CREATE EXTENSION stream' 2>&1 || true)
if grep -q 'ERROR:  55000: stream must be loaded via shared_preload_libraries' <<<"$out"; then
    echo "ok 1 - CREATE EXTENSION fails with 55000"
else
    echo "not ok 1 - CREATE EXTENSION fails with 55000"; sed 's/^/# /' <<<"$out"
fi
if grep -q "HINT:  Add 'stream' to shared_preload_libraries" <<<"$out"; then
    echo "ok 2 - the hint says how to fix it"
else
    echo "not ok 2 - the hint says how to fix it"
fi
left=$("${psql[@]}" -At -c "SELECT count(*) FROM pg_namespace WHERE nspname IN ('stream', 'stream_data')")
if [ "$left" = 0 ]; then echo "ok 3 - nothing left behind"; else echo "not ok 3 - nothing left behind ($left schemas)"; fi
# the library itself loads without the preload (so the error above can be raised)
if "${psql[@]}" -c "LOAD 'stream'" >/dev/null 2>&1; then
    echo "ok 4 - LOAD 'stream' works without the preload"
else
    echo "not ok 4 - LOAD 'stream' works without the preload"
fi
