# scripts/lib.sh: helpers shared by demo.sh, test.sh and psql.sh.
# shellcheck shell=bash
#
# Sourcing defines functions and a few variables and runs nothing. The functions:
#   ensure_packages   install the Debian packages the build and the tests need (no apt
#                     call when all are present)
#   build_install     make, then make install (incremental)
#   ensure_cluster    start the private PostgreSQL 15 cluster (initdb on first use,
#                     restart when its config or the installed stream.so changed) and
#                     export PGHOST PGPORT PGUSER PG_BIN STREAM_CLUSTER_DIR
#                     STREAM_PGDATA STREAM_PGLOG for clients
#   stop_cluster      stop it:  bash -c '. scripts/lib.sh && stop_cluster'
#
# The cluster runs as the postgres system user (PostgreSQL refuses root) in
# $STREAM_ROOT/.cluster, or in /tmp/stream-cluster-<hash> when postgres cannot reach the
# work tree. Variables read: STREAM_PGPORT (default 5499) and STREAM_PRELOAD (default
# 'stream'; set it empty only to start a server without the module, e.g. to debug).

STREAM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
# STREAM_PG_BIN / STREAM_PG_CONFIG point at another PostgreSQL 15 installation (a copy
# used to run a second private cluster beside this one, for instance).
PG_BIN=${STREAM_PG_BIN:-/usr/lib/postgresql/15/bin}
PG_CONFIG=${STREAM_PG_CONFIG:-/usr/bin/pg_config}
STREAM_PACKAGES=(postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap
                 libtap-parser-sourcehandler-pgtap-perl python3-psycopg build-essential
                 libipc-run-perl zlib1g-dev kcat python3-confluent-kafka python3-kafka
                 librdkafka-dev)

note() { printf '%s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly, or through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"
    elif command -v sudo >/dev/null; then sudo "$@"
    else die "'$*' needs root, and sudo is not installed; run this script as root"
    fi
}

# Run a command as the postgres user, from / so that an unreadable cwd does not matter.
as_pg() {
    if [ "$(id -un)" = postgres ]; then (cd / && "$@")
    elif [ "$(id -u)" -eq 0 ]; then (cd / && runuser -u postgres -- "$@")
    elif command -v sudo >/dev/null; then (cd / && sudo -u postgres -- "$@")
    else die "'$*' must run as the postgres user, and sudo is not installed; run this script as root"
    fi
}

ensure_packages() {
    local p missing=()
    for p in "${STREAM_PACKAGES[@]}"; do
        dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^ii' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    note "== installing Debian packages: ${missing[*]}"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

build_install() {
    make -s -C "$STREAM_ROOT" -j"$(nproc)" PG_CONFIG="$PG_CONFIG"
    as_root make -s -C "$STREAM_ROOT" PG_CONFIG="$PG_CONFIG" install
}

# Choose the cluster directory and port, and export the client environment.
stream_env() {
    local dir=$STREAM_ROOT/.cluster
    STREAM_PORT=${STREAM_PGPORT:-5499}
    # postgres must reach the work tree (a clone under /root cannot), and a unix socket
    # path must fit in 107 bytes.
    if ! as_pg test -x "$STREAM_ROOT" || [ ${#dir} -gt 80 ]; then
        dir=/tmp/stream-cluster-$(echo "$STREAM_ROOT" | md5sum | cut -c1-8)
    fi
    # a port picked earlier because the default was taken (see pick_port)
    if [ -z "${STREAM_PGPORT:-}" ] && [ -s "$dir/port" ]; then
        STREAM_PORT=$(cat "$dir/port")
    fi
    export STREAM_CLUSTER_DIR=$dir STREAM_PGDATA=$dir/data STREAM_PGLOG=$dir/postgres.log
    # the Kafka listener of the private cluster: 4000 above its PostgreSQL port, unless
    # STREAM_KAFKA_PORT says otherwise
    if [ -z "${STREAM_KAFKA_PORT:-}" ] || [ -n "${STREAM_KAFKA_PORT_AUTO:-}" ]; then
        STREAM_KAFKA_PORT=$((STREAM_PORT + 4000)) STREAM_KAFKA_PORT_AUTO=1
    fi
    export PGHOST=127.0.0.1 PGPORT=$STREAM_PORT PGUSER=postgres PG_BIN STREAM_KAFKA_PORT STREAM_KAFKA_PORT_AUTO
}

# True when a postmaster of this cluster is alive. After a reboot postmaster.pid may
# name a pid that now belongs to another process: a postmaster's cwd is its data dir.
cluster_running() {
    local pid
    pid=$(as_pg head -n 1 "$STREAM_PGDATA/postmaster.pid" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ "$(as_pg readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(readlink -m "$STREAM_PGDATA")" ]
}

port_busy() { (: <"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

check_port() {
    if port_busy "$STREAM_PORT"; then
        die "port $STREAM_PORT on 127.0.0.1 is used by another program; set STREAM_PGPORT to a free port"
    fi
}

# Before starting: when the port is taken and none was asked for with STREAM_PGPORT,
# take the next free one (up to 5599) and remember it for the next runs.
pick_port() {
    local p
    if port_busy "$STREAM_PORT" && [ -z "${STREAM_PGPORT:-}" ]; then
        for p in $(seq $((STREAM_PORT + 1)) 5599); do
            if ! port_busy "$p"; then
                note "== port $STREAM_PORT is taken, using $p"
                STREAM_PORT=$p
                echo "$p" | as_pg tee "$STREAM_CLUSTER_DIR/port" >/dev/null
                export PGPORT=$p
                [ -z "${STREAM_KAFKA_PORT_AUTO:-}" ] || export STREAM_KAFKA_PORT=$((p + 4000))
                return 0
            fi
        done
    fi
    check_port
}

pg_ctl() { as_pg "$PG_BIN/pg_ctl" -D "$STREAM_PGDATA" -l "$STREAM_PGLOG" "$@"; }

stream_conf() {
    cat <<EOF
# Written by scripts/lib.sh on every run: edit it there.
port = $STREAM_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$STREAM_CLUSTER_DIR/run'
shared_preload_libraries = '${STREAM_PRELOAD-stream}'
max_connections = 100
max_worker_processes = 16
max_prepared_transactions = 10  # tests check that PREPARE TRANSACTION is refused
logging_collector = off
log_line_prefix = '%m [%p] '
fsync = on
# Kafka clients (kcat, librdkafka, kafka-python) on 127.0.0.1, acting as postgres
stream.kafka_port = $STREAM_KAFKA_PORT
stream.kafka_role = 'postgres'
EOF
}

ensure_cluster() {
    stream_env
    local dir=$STREAM_CLUSTER_DIR data=$STREAM_PGDATA restart=
    local so locale=C sum out
    so=$("$PG_CONFIG" --pkglibdir)/stream.so

    as_root mkdir -p "$dir/run"
    as_root chown -R postgres:postgres "$dir"
    if ! as_pg test -f "$data/PG_VERSION"; then
        note "== initdb $data"
        as_pg rm -rf "$data"  # a half-made directory from an interrupted initdb
        locale -a 2>/dev/null | grep -qix 'c\.utf-\?8' && locale=C.UTF-8
        out=$(as_pg "$PG_BIN/initdb" -D "$data" -A trust -U postgres --encoding UTF8 \
            --locale "$locale" 2>&1) || { printf '%s\n' "$out" >&2; die "initdb failed"; }
        echo "include_if_exists = 'stream_test.conf'" | as_pg tee -a "$data/postgresql.conf" >/dev/null
    fi
    [ "$(stream_conf)" = "$(as_pg cat "$data/stream_test.conf" 2>/dev/null)" ] || restart=config

    if cluster_running; then
        # shared_preload_libraries loads stream.so only at server start. make install
        # copies the library every time, so compare its content, not only its time.
        if [ -f "$so" ] && as_pg test "$so" -nt "$data/postmaster.pid" &&
           [ "$(md5sum <"$so")" != "$(cat "$dir/stream.so.md5" 2>/dev/null)" ]; then
            restart="${restart:+$restart, }new stream.so"
        fi
        [ -z "$restart" ] && return 0
        # Do not stop a working server for a new port that is taken.
        [ "$(as_pg sed -n 4p "$data/postmaster.pid")" = "$STREAM_PORT" ] || check_port
        note "== restarting PostgreSQL ($restart)"
        pg_ctl -w -m fast stop >/dev/null
    else
        # Not ours any more (e.g. after a reboot): remove the stale lock files.
        as_pg rm -f "$data/postmaster.pid" "$dir"/run/.s.PGSQL.*.lock
    fi

    pick_port
    stream_conf | as_pg tee "$data/stream_test.conf" >/dev/null
    as_pg touch "$STREAM_PGLOG"
    as_pg chmod 644 "$STREAM_PGLOG"  # pg_ctl would create it 0600; tests read it
    [ -f "$so" ] && sum=$(md5sum <"$so") || sum=
    if ! pg_ctl -w -t 120 start >/dev/null; then
        tail -n 30 "$STREAM_PGLOG" >&2
        die "PostgreSQL did not start (log: $STREAM_PGLOG)"
    fi
    echo "$sum" | as_pg tee "$dir/stream.so.md5" >/dev/null
    note "== PostgreSQL 15 running on 127.0.0.1:$STREAM_PORT (data: $data, log: $STREAM_PGLOG)"
}

stop_cluster() {
    stream_env
    if cluster_running; then pg_ctl -w -m fast stop; fi
}
