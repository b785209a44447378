#!/usr/bin/env bash
# A local PostgreSQL server for parallel Optuna workers (`sharenas search optuna --storage URL`) and
# the PostgreSQL tests. Development and CI only: it listens on 127.0.0.1 with password-less
# ("trust") authentication.
#
#   scripts/postgres.sh [start]   install PostgreSQL if missing, create the cluster and the database,
#                                 start the server; prints the database URL (the only stdout line)
#   scripts/postgres.sh stop      stop the server
#   scripts/postgres.sh status    exit 0 if the server runs, 1 otherwise
#   scripts/postgres.sh url       print the database URL
#   scripts/postgres.sh install   only install PostgreSQL (Debian/Ubuntu: apt-get, needs root)
#
# `start --no-install` fails instead of installing. Every command is idempotent.
# Settings (environment): SHARENAS_PG_PORT (55432), SHARENAS_PG_DB (sharenas),
# SHARENAS_PG_DIR (${TMPDIR:-/tmp}/sharenas-postgres-PORT: cluster, socket and server log).
# As root the server runs as the `postgres` system user (PostgreSQL refuses to run as root).
set -euo pipefail

PORT="${SHARENAS_PG_PORT:-55432}"
DB="${SHARENAS_PG_DB:-sharenas}"
BASE="${SHARENAS_PG_DIR:-${TMPDIR:-/tmp}/sharenas-postgres-$PORT}"
DATA="$BASE/data"
LOG="$BASE/server.log"
DB_USER="sharenas"
URL="postgresql+psycopg2://$DB_USER@127.0.0.1:$PORT/$DB"

die() { echo "postgres.sh: $*" >&2; exit 1; }
say() { echo "postgres.sh: $*" >&2; }

bindir() {
    local d
    for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ]; then echo "$d"; return 0; fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"; return 0
    fi
    return 1
}

install_postgres() {
    if bindir >/dev/null; then return 0; fi
    command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed and apt-get is unavailable; install the PostgreSQL server with your package manager"
    [ "$(id -u)" -eq 0 ] || die "PostgreSQL is not installed; run 'sudo apt-get install postgresql' or this script as root"
    say "installing PostgreSQL from the Debian packages"
    apt-get update >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postgresql >&2
    bindir >/dev/null || die "apt-get installed postgresql but initdb/pg_ctl were not found under /usr/lib/postgresql/*/bin"
}

# Run a server command as the owner of the cluster: the `postgres` system user when we are root.
as_owner() {
    if [ "$(id -u)" -ne 0 ]; then "$@"; return; fi
    id postgres >/dev/null 2>&1 || die "running as root needs the 'postgres' system user (created by the Debian package)"
    if command -v runuser >/dev/null 2>&1; then
        runuser -u postgres -- "$@"
    else
        su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
    fi
}

is_running() {
    local bin
    bin="$(bindir)" || return 1
    [ -f "$DATA/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

start() {
    local no_install="$1" bin
    if [ "$no_install" = 1 ]; then
        bindir >/dev/null || die "PostgreSQL is not installed (initdb/pg_ctl not found); run 'scripts/postgres.sh install' as root"
    else
        install_postgres
    fi
    bin="$(bindir)"
    if [ ! -f "$DATA/PG_VERSION" ]; then
        mkdir -p "$BASE"
        if [ "$(id -u)" -eq 0 ]; then chown postgres: "$BASE"; fi
        chmod 700 "$BASE"
        say "creating a cluster in $DATA"
        as_owner "$bin/initdb" -D "$DATA" -U "$DB_USER" --auth=trust --encoding=UTF8 --no-instructions >&2
    fi
    if ! is_running; then
        say "starting the server on 127.0.0.1:$PORT (log: $LOG)"
        as_owner "$bin/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 \
            -o "-p $PORT -k $BASE -c listen_addresses=127.0.0.1" start >&2 \
            || die "the server did not start; see $LOG"
    fi
    local psql="$bin/psql"
    [ -x "$psql" ] || psql="$(command -v psql)" || die "psql not found"
    if [ -z "$("$psql" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
        say "creating database $DB"
        "$psql" -h 127.0.0.1 -p "$PORT" -U "$DB_USER" -d postgres -qc "CREATE DATABASE \"$DB\"" >&2
    fi
    echo "$URL"
}

stop() {
    if is_running; then
        say "stopping the server on port $PORT"
        as_owner "$(bindir)/pg_ctl" -D "$DATA" -m fast -w stop >&2
    fi
}

command="${1:-start}"
case "$command" in
    start)
        no_install=0
        if [ "${2:-}" = "--no-install" ]; then no_install=1; elif [ -n "${2:-}" ]; then die "unknown option '$2'; use --no-install"; fi
        start "$no_install" ;;
    stop) stop ;;
    status) is_running ;;
    url) echo "$URL" ;;
    install) install_postgres ;;
    *) die "unknown command '$command'; use start [--no-install], stop, status, url or install" ;;
esac
