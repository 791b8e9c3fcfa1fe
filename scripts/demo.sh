#!/usr/bin/env bash
# The demo: build and install stream, start the private cluster, create database
# stream_demo with a fresh extension, and run the example (examples/blog/run.sh when it
# exists, else examples/quickstart.sql).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$STREAM_ROOT"

ensure_packages
build_install
ensure_cluster

psql=("$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1)
if [ -z "$("${psql[@]}" -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'stream_demo'")" ]; then
    "${psql[@]}" -d postgres -c 'CREATE DATABASE stream_demo'
fi
"${psql[@]}" -d stream_demo -c 'SET client_min_messages = warning' -c 'DROP EXTENSION IF EXISTS stream CASCADE' -c 'CREATE EXTENSION stream'

export PGDATABASE=stream_demo
if [ -x examples/blog/run.sh ]; then
    exec examples/blog/run.sh
fi
exec "$PG_BIN/psql" -X -v ON_ERROR_STOP=1 -f examples/quickstart.sql
