#!/usr/bin/env bash
# Sets everything up, then runs the server on the embedded SQLite default
# (var/medsettle.db), with Prometheus metrics on 127.0.0.1:9464 and the
# national-interface JSON gateway on 127.0.0.1:8080, and plays the demo bills
# against it. Ctrl-C stops it.
# Extra arguments go to `medsettle serve` (e.g. --exit-after-demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/medsettle serve --db var/medsettle.db --listen 127.0.0.1:50051 --metrics-listen 127.0.0.1:9464 --http-listen 127.0.0.1:8080 --demo "$@"
