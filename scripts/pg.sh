#!/usr/bin/env bash
# pg.sh — a private PostgreSQL server for tests and benchmarks.
#
#   scripts/pg.sh start DIR   creates a cluster in DIR (once), starts it on a free
#                             port of 127.0.0.1 only, creates database "holovitals"
#                             and prints its URL on stdout:
#                               postgresql://postgres@127.0.0.1:PORT/holovitals
#   scripts/pg.sh stop DIR    stops it (DIR is kept; remove it yourself).
#   scripts/pg.sh url DIR     prints the URL of the running server again.
#
#   url=$(scripts/pg.sh start /tmp/hvpg) && HV_TEST_PG_URL=$url make check; scripts/pg.sh stop /tmp/hvpg
#
# Uses the Debian package "postgresql" (/usr/lib/postgresql/*/bin; scripts/setup.sh
# installs it); the packaged system service is not needed. PostgreSQL refuses to run
# as root, so as root the server runs as the "postgres" user, which gets DIR; as a
# normal user it runs as that user. Authentication is "trust", which is safe only
# because the server listens on 127.0.0.1 alone and has no Unix socket. Settings are
# for tests: small shared_buffers, fsync left on (benchmarks stay meaningful).
# Progress and errors go to standard error; the server log is DIR/postgres.log.
set -euo pipefail

die() { echo "pg.sh: $*" >&2; exit 1; }

usage() { die "usage: pg.sh start|stop|url DIR"; }

[ $# -eq 2 ] || usage
cmd=$1
dir=$2

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$bindir" ] && [ -x "$bindir/initdb" ] && [ -x "$bindir/pg_ctl" ] ||
  die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin: install the Debian package postgresql (scripts/setup.sh)"

# Runs a command as the server's user: postgres when we are root, else ourselves.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    if command -v runuser >/dev/null 2>&1; then
      runuser -u postgres -- "$@"
    else
      su -s /bin/sh postgres -c "$(printf '%q ' "$@")"
    fi
  else
    "$@"
  fi
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

port_of() { cat "$dir/port" 2>/dev/null || true; }

url_of() { echo "postgresql://postgres@127.0.0.1:$(port_of)/holovitals"; }

running() { [ -f "$dir/data/postmaster.pid" ] && as_owner "$bindir/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; }

start() {
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root needs the postgres user (from the postgresql package)"
    chown postgres: "$dir"
    chmod 700 "$dir"
    as_owner test -w "$dir" ||
      die "the postgres user cannot reach $dir (a parent directory is not searchable by it): choose a DIR under /tmp"
  fi
  if running; then
    echo "pg.sh: already running" >&2
    url_of
    return
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    echo "pg.sh: initdb in $dir/data" >&2
    as_owner "$bindir/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --no-locale --no-sync \
      >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
    cat >>"$dir/data/postgresql.conf" <<'EOF'
# pg.sh: a private server for tests and benchmarks.
listen_addresses = '127.0.0.1'
unix_socket_directories = ''
shared_buffers = 32MB
max_connections = 50
fsync = on
synchronous_commit = on
full_page_writes = on
logging_collector = off
log_min_messages = warning
EOF
    # Loopback only, no password: initdb -A trust already wrote that; make it explicit.
    cat >"$dir/data/pg_hba.conf" <<'EOF'
# TYPE  DATABASE  USER  ADDRESS       METHOD
host    all       all   127.0.0.1/32  trust
EOF
  fi
  # A port is picked at every start; another process could take it between the check
  # and the bind, so try a few times.
  local tries=0 port
  while :; do
    port=$(free_port)
    echo "$port" >"$dir/port"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$dir/port"
    if as_owner "$bindir/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -o "-p $port" -w -t 60 start \
      >/dev/null 2>&1; then
      break
    fi
    tries=$((tries + 1))
    [ $tries -lt 3 ] || { tail -n 20 "$dir/postgres.log" >&2 || true; die "the server did not start"; }
  done
  # Wait until it accepts connections, then create the database once.
  local i
  for i in $(seq 1 100); do
    "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" && break
    sleep 0.1
  done
  if [ "$("$bindir/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname = 'holovitals'")" != "1" ]; then
    "$bindir/createdb" -h 127.0.0.1 -p "$port" -U postgres holovitals || die "createdb failed"
  fi
  url_of
}

stop() {
  [ -d "$dir/data" ] || die "no cluster in $dir"
  if running; then
    as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    echo "pg.sh: stopped" >&2
  else
    echo "pg.sh: not running" >&2
  fi
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  url) running || die "not running"; url_of ;;
  *) usage ;;
esac
