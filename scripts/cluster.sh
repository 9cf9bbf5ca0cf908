#!/usr/bin/env bash
# A throwaway cluster on this machine, in one command: a PostgreSQL server
# of its own (initdb into a temporary folder, reachable only through a Unix
# socket there), `medsettle db upgrade`, two `medsettle serve` processes on
# two ports against it, the demo played against both (the second answers
# every bill with the settlement the first stored), `medsettle verify`.
# Then everything stops and the folder is removed; with --keep it serves
# on until Ctrl-C (or SIGTERM), which stops it the same way.
#
#   scripts/cluster.sh [--keep] [--port PORT]
#
# --port: the first server's port (default 50061; the second gets the next
# one); 0 lets each take any free port (the ports are printed).
# As root, PostgreSQL runs as the `postgres` user (it refuses root).
set -euo pipefail
cd "$(dirname "$0")/.."

keep=0
port=50061
while [ $# -gt 0 ]; do
  case "$1" in
    --keep) keep=1 ;;
    --port) [ $# -ge 2 ] || { echo "cluster: --port needs a number" >&2; exit 2; }; port=$2; shift ;;
    -h|--help) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "cluster: unknown argument $1 (try --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$port" in ''|*[!0-9]*) echo "cluster: --port must be a number, got $port" >&2; exit 2 ;; esac

bash scripts/setup.sh
. scripts/lib/postgres.sh
. scripts/lib/serve_on.sh
bindir=$(pg_bindir) || { echo "cluster: no PostgreSQL server binaries (initdb, pg_ctl); run scripts/setup.sh --for-tests as root (it installs Debian's postgresql) or install PostgreSQL" >&2; exit 1; }

home=$(mktemp -d "${TMPDIR:-/tmp}/medsettle-cluster.XXXXXX")
server_pids=()
pg_started=0

stop_all() {
  local status=$?
  trap - EXIT INT TERM
  for pid in "${server_pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true  # drains in-flight calls
  done
  for pid in "${server_pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$pg_started" = 1 ]; then
    local postmaster
    postmaster=$(head -1 "$home/pg/postmaster.pid" 2>/dev/null || true)
    pg_as_owner "$home" "$bindir/pg_ctl" -D "$home/pg" -m fast -w stop >/dev/null || true
    # pg_ctl returns once the pid file is gone; the postmaster exits just after: wait for it (at most 30 s)
    for _ in $(seq 600); do
      [ -n "$postmaster" ] && kill -0 "$postmaster" 2>/dev/null || break
      sleep 0.05
    done
  fi
  rm -rf "$home"
  echo "cluster: stopped (servers, PostgreSQL), $home removed"
  exit "$status"
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "cluster: working folder $home"
pg_throwaway_start "$bindir" "$home"
pg_started=1
db="postgresql:///medsettle?host=$home&user=medsettle"
echo "cluster: PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on the Unix socket in $home (database medsettle)"
.venv/bin/medsettle db upgrade --db "$db"

for number in 1 2; do
  listen_port=$(( port == 0 ? 0 : port + number - 1 ))
  setsid .venv/bin/medsettle serve --db "$db" --listen "127.0.0.1:$listen_port" --port-file "$home/port$number" \
    --metrics-listen 127.0.0.1:0 --log-format json >"$home/server$number.log" 2>&1 &
  server_pids+=($!)
done
targets=()
for number in 1 2; do
  for _ in $(seq 600); do
    [ -s "$home/port$number" ] && break
    kill -0 "${server_pids[$((number - 1))]}" 2>/dev/null || { echo "cluster: server $number exited:" >&2; tail -20 "$home/server$number.log" >&2; exit 1; }
    sleep 0.1
  done
  [ -s "$home/port$number" ] || { echo "cluster: server $number did not start in 60 s" >&2; exit 1; }
  targets+=("127.0.0.1:$(cat "$home/port$number")")
done
echo "cluster: servers on ${targets[0]} (pid ${server_pids[0]}) and ${targets[1]} (pid ${server_pids[1]})"

.venv/bin/medsettle demo --db "$db" --target "${targets[0]}" --target "${targets[1]}"
.venv/bin/medsettle verify --db "$db"

if [ "$keep" = 1 ]; then
  echo "cluster: serving on ${targets[0]} and ${targets[1]}, ledger $db; Ctrl-C stops it all."
  echo "cluster: a credential: .venv/bin/medsettle credentials issue --db '$db' --code H44010100001 --label me"
  wait_while_all_run "${server_pids[@]}"  # returns when a server stops; a signal runs its trap within 1 s
  echo "cluster: a server stopped" >&2
  exit 1
fi
