# A throwaway PostgreSQL cluster on loopback, for the tiers (sourced by scripts/*_tier.sh).
#
#   pg_install             install Debian's postgresql if missing (needs root); sets PG_BIN and as_pg
#   pg_start DIR           initdb in DIR/pgdata and start on a free 127.0.0.1 port; sets PG_PORT, PGDATA
#   pg_createdb NAME       create database NAME (owner postgres, no password: trust on loopback)
#   pg_stop                stop the cluster (immediate: it is thrown away); safe to call when none runs
#   pg_log_tail            the last lines of the server log (for a failure message)
#
# The caller sources scripts/lib/tier.sh first (say, die, free_port, apt_install).

pg_bin_dir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

pg_install() {
  PG_BIN=$(pg_bin_dir)
  if [ -z "$PG_BIN" ] || [ ! -x "$PG_BIN/initdb" ] || [ ! -x "$PG_BIN/pg_ctl" ]; then
    apt_install postgresql
    PG_BIN=$(pg_bin_dir)
    [ -n "$PG_BIN" ] && [ -x "$PG_BIN/initdb" ] || die "postgresql installed, but no initdb under /usr/lib/postgresql/*/bin"
  fi
  say "PostgreSQL: $("$PG_BIN/postgres" --version)"
  # PostgreSQL refuses to run as root: as root, the cluster belongs to the `postgres` system user (the package makes it).
  if [ "$(id -u)" = 0 ]; then
    id postgres >/dev/null 2>&1 || die "running as root, but there is no 'postgres' user to own the cluster"
    as_pg() { runuser -u postgres -- "$@"; }
  else
    as_pg() { "$@"; }
  fi
}

pg_start() {
  local dir=$1
  PGDATA=$dir/pgdata
  PG_LOG=$dir/postgres.log
  chmod 755 "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  PG_PORT=$(free_port)
  as_pg "$PG_BIN/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  # Loopback TCP only (the socket lives in the throwaway directory); durability is worthless for a throwaway cluster.
  as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -l "$PG_LOG" -w -t 60 start \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300" \
    >/dev/null || die "PostgreSQL did not start (log: $PG_LOG)"
  PG_STARTED=1
}

pg_createdb() {
  as_pg "$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U postgres "$1" || die "createdb $1 failed"
}

pg_stop() {
  if [ -n "${PG_STARTED:-}" ]; then
    as_pg "$PG_BIN/pg_ctl" -D "$PGDATA" -m immediate -w stop >/dev/null 2>&1 || true
    PG_STARTED=""
  fi
}

pg_log_tail() {
  [ -s "${PG_LOG:-}" ] && { echo "--- last lines of postgres.log" >&2; tail -n 40 "$PG_LOG" >&2; }
  return 0
}
