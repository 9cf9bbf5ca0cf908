# Shell helpers for a throwaway PostgreSQL server (sourced by
# scripts/setup.sh, scripts/cluster.sh and benchmarks/scale_out.sh).

# Where initdb, pg_ctl and postgres are: pg_config --bindir, Debian's
# /usr/lib/postgresql/<newest>/bin, or the PATH.
pg_bindir() {
  local dir
  if command -v pg_config >/dev/null 2>&1; then
    dir=$(pg_config --bindir 2>/dev/null || true)
    [ -n "$dir" ] && [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
  fi
  for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && { echo "$dir"; return 0; }
  done
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && { dirname "$(command -v initdb)"; return 0; }
  return 1
}

# Runs a command as the owner of the server's folder: as root that is the
# `postgres` user (PostgreSQL refuses to run as root), else the caller.
pg_as_owner() {
  local home=$1
  shift
  if [ "$(id -u)" = 0 ]; then
    (cd "$home" && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# pg_throwaway_start BINDIR HOME: a new cluster in HOME/pg, listening only
# on a Unix socket in HOME (no TCP port), superuser `medsettle` trusted on
# that socket, a database `medsettle`; fsync on (durability is the point).
# Its log: HOME/pg.log.
pg_throwaway_start() {
  local bindir=$1 home=$2
  [ "$(id -u)" = 0 ] && chown postgres:postgres "$home"
  chmod 700 "$home"
  pg_as_owner "$home" "$bindir/initdb" -D "$home/pg" -U medsettle --auth=trust -E UTF8 --locale=C >"$home/initdb.log" 2>&1 \
    || { echo "initdb failed:" >&2; cat "$home/initdb.log" >&2; return 1; }
  pg_as_owner "$home" "$bindir/pg_ctl" -D "$home/pg" -l "$home/pg.log" -w -t 60 \
    -o "-c listen_addresses='' -c unix_socket_directories='$home' -c fsync=on -c synchronous_commit=on -c max_connections=200" \
    start >/dev/null \
    || { echo "PostgreSQL did not start:" >&2; tail -20 "$home/pg.log" >&2; return 1; }
  pg_as_owner "$home" "$bindir/createdb" -h "$home" -U medsettle medsettle
}
