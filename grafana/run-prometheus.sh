#!/usr/bin/env bash
# Run a local Prometheus (Debian's `prometheus` package) against a gateway
# running on this machine, with Sluice's alert rules loaded. `make prometheus`.
#
# Environment:
#   SLUICE_TARGET    host:port of the gateway's /metrics   (default 127.0.0.1:8080)
#   PROM_LISTEN      where Prometheus serves its UI and API (default 127.0.0.1:9090)
#   SCRAPE_INTERVAL  scrape interval                        (default: prometheus.yml's)
# Extra arguments are passed to prometheus. Storage lives in a temporary
# directory that is removed when Prometheus stops (Ctrl-C).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
target="${SLUICE_TARGET:-127.0.0.1:8080}"
listen="${PROM_LISTEN:-127.0.0.1:9090}"
prom="${PROMETHEUS:-prometheus}"

if ! command -v "$prom" >/dev/null 2>&1; then
  echo "run-prometheus: '$prom' not found; install Debian's prometheus package (make promtool)" >&2
  exit 127
fi

workdir="$(mktemp -d "${TMPDIR:-/tmp}/sluice-prometheus.XXXXXX")"
trap 'rm -rf "$workdir"' EXIT

cp "$here/alerts.yml" "$workdir/alerts.yml"
sed -e "s|- gateway:8080|- ${target}|" "$here/prometheus.yml" >"$workdir/prometheus.yml"
if [[ -n "${SCRAPE_INTERVAL:-}" ]]; then
  sed -i -e "s|^  scrape_interval: .*|  scrape_interval: ${SCRAPE_INTERVAL}|" \
         -e "s|^  scrape_timeout: .*|  scrape_timeout: ${SCRAPE_INTERVAL}|" "$workdir/prometheus.yml"
fi

echo "run-prometheus: http://${listen} scraping http://${target}/metrics; storage ${workdir}; Ctrl-C stops"

# A background job of a non-interactive shell ignores SIGINT, so forward
# Ctrl-C (and TERM) to Prometheus ourselves and wait for its clean shutdown.
"$prom" \
  --config.file="$workdir/prometheus.yml" \
  --storage.tsdb.path="$workdir/data" \
  --web.listen-address="$listen" \
  "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM

status=0
wait "$pid" || status=$?
if kill -0 "$pid" 2>/dev/null; then
  # The first wait was interrupted by a signal; now wait for the shutdown.
  status=0
  wait "$pid" || status=$?
fi
exit "$status"
