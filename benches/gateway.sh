#!/usr/bin/env bash
# sollol against a direct connection and nginx on a zero-latency backend, all on loopback.
#
#   benches/gateway.sh [--seconds N]     (10 s per measured point by default)
#
# Installs nginx and wrk from Debian's packages and oha from crates.io when they are
# missing, builds the release binary, runs `cargo bench --bench gateway`, then the
# in-process costs (`cargo bench -p sollol-actors --bench observer`, shortened), and stops every process
# the run started, also when it fails or is interrupted. The system's nginx
# configuration and service are never touched: nginx runs from a config in a temporary
# directory.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v nginx >/dev/null || ! command -v wrk >/dev/null; then
    echo "installing nginx and wrk from Debian's packages" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk >/dev/null
fi
if ! command -v oha >/dev/null; then
    echo "installing oha from crates.io" >&2
    cargo install oha --locked --quiet
fi

run_dir=$(mktemp -d -t sollol-bench.XXXXXX)
stop_children() {
    # The bench writes one pid file per child it starts; stop any it could not stop.
    for pid_file in "$run_dir"/*.pid; do
        [ -e "$pid_file" ] || continue
        kill -TERM "$(cat "$pid_file")" 2>/dev/null || true
    done
    sleep 0.5
    for pid_file in "$run_dir"/*.pid; do
        [ -e "$pid_file" ] || continue
        kill -KILL "$(cat "$pid_file")" 2>/dev/null || true
    done
    rm -rf "$run_dir"
}
trap stop_children EXIT INT TERM

cargo build --release --quiet --bin sollol
target_dir=${CARGO_TARGET_DIR:-target}
cargo bench --quiet --bench gateway -- \
    --sollol "$target_dir/release/sollol" --dir "$run_dir" "$@"

echo
echo "## In-process costs (criterion, cargo bench --bench observer -p sollol-actors)"
echo
cargo bench --quiet -p sollol-actors --bench observer -- --warm-up-time 1 --measurement-time 3 2>/dev/null |
    awk '/time:/ { if ($1 == "time:") { $1 = prev " time:" } print "    " $0; next } { prev = $1 }'
