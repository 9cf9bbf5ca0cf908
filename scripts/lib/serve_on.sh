# Shell helper for scripts that serve on until a signal (sourced by
# scripts/cluster.sh).

# wait_while_all_run PID...: returns once one of the PIDs has exited, and
# lets a trapped signal (Ctrl-C, SIGTERM) run its trap within a second.
# Not `wait PID...`: a signal that lands as bash enters `wait` can leave its
# trap pending while bash blocks until a child exits -- servers in their own
# session never do, so the script would never stop (seen under CPU load,
# Ctrl-C sent right after the script's "Ctrl-C stops it all" line).
wait_while_all_run() {
  local pid
  while :; do
    for pid in "$@"; do
      kill -0 "$pid" 2>/dev/null || return 0
    done
    sleep 1
  done
}
