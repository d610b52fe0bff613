#!/usr/bin/env bash
# crawl_bench.sh [--pages N] [--with-scrapy] [--with-crawlee] -- crawl the shared
# benchmark site with this engine and, in the same run, with the peers asked for
# (Scrapy's default variant; Crawlee for Python), through ../shared/bench/run_all.sh,
# which serves the site with nginx on 127.0.0.1:8081, checks every export against the
# site's manifest and prints the table (pages/s, CPU s, peak RSS, ok = every page
# exported exactly once). Peers run first, this engine last; no raw clients, no wrk.
#
# --pages N other than the current site size regenerates the shared site.
# run_all.sh stops nginx when it ends (also an nginx it did not start).
# Env: BENCH_DIR (default ../shared/bench), CRAWL_TIMEOUT (default 900),
#      ENGINE_NAME (default crawler). See bench/README.md.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BENCH_DIR="${BENCH_DIR:-$ROOT/../shared/bench}"
PAGES=10000
WITH_SCRAPY=0
WITH_CRAWLEE=0
usage() { echo "usage: $0 [--pages N] [--with-scrapy] [--with-crawlee]" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pages) [[ $# -ge 2 ]] || usage; PAGES="$2"; shift 2 ;;
    --with-scrapy) WITH_SCRAPY=1; shift ;;
    --with-crawlee) WITH_CRAWLEE=1; shift ;;
    *) usage ;;
  esac
done

# run_all.sh gives BENCH_START_URL, BENCH_OUT, BENCH_CONCURRENCY and BENCH_STATS.
ENGINE_CMD="cd '$ROOT' && exec '$ROOT/.venv/bin/crawl' bench \
  -s 'spider_modules=[\"bench\"]' \
  -s concurrency=\"\$BENCH_CONCURRENCY\" -s max_connections_per_host=\"\$BENCH_CONCURRENCY\" \
  -o \"\$BENCH_OUT\" --stats-json \"\$BENCH_STATS\""
export ENGINE_CMD ENGINE_NAME="${ENGINE_NAME:-crawler}"

# Crawlee runs only when asked for here, whatever the caller's environment says.
unset PEER_CRAWLEE
if [[ "$WITH_CRAWLEE" == 1 ]]; then
  if [[ ! -x "$BENCH_DIR/.venv-crawlee/bin/python" ]]; then
    echo "$0: no Crawlee venv at $BENCH_DIR/.venv-crawlee: run $BENCH_DIR/setup.sh first" >&2
    exit 1
  fi
  export PEER_CRAWLEE=1
fi

if [[ "$WITH_SCRAPY" == 1 || "$WITH_CRAWLEE" == 1 ]]; then
  scrapy=""
  [[ "$WITH_SCRAPY" == 1 ]] && scrapy=scrapy
  SCRAPY_VARIANTS="$scrapy" CLIENTS="" SKIP_LIMIT=1 exec "$BENCH_DIR/run_all.sh" --pages "$PAGES"
else
  ENGINE_ONLY=1 exec "$BENCH_DIR/run_all.sh" --pages "$PAGES"
fi
