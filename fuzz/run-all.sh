#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 600), one after another, seeded with the
# known attacks in seeds/<target>/ (read only; new inputs go to corpus/<target>/). Logs to fuzz/logs/<target>.log. Needs cargo-fuzz; on a stable toolchain,
# RUSTC_BOOTSTRAP=1 lets it pass the sanitizer flags.
set -euo pipefail
cd "$(dirname "$0")"
secs=${1:-600}
shift || true
targets=${*:-response frame record_batch request}
export RUSTC_BOOTSTRAP=1
mkdir -p logs
cargo fuzz build -O
for t in $targets; do
    mkdir -p "corpus/$t"
    seeds=()
    [ -d "seeds/$t" ] && seeds=("seeds/$t")
    cargo fuzz run -O "$t" "corpus/$t" "${seeds[@]}" -- -max_total_time="$secs" -rss_limit_mb=2048 -print_final_stats=1 \
        >"logs/$t.log" 2>&1 || echo "$t: exited with $?" >>"logs/$t.log"
    echo "$t: $(grep -E '^stat::number_of_executed_units' "logs/$t.log" || true) $(ls "artifacts/$t" 2>/dev/null | wc -l) artifacts"
done
