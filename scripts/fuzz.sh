#!/usr/bin/env bash
# Fuzzes the parsers that face untrusted input (OTLP protobuf and JSON, remote_write, config,
# scrape bodies) with cargo fuzz (libFuzzer), each for FUZZ_SECONDS (default 20), and prints the
# executions run. A crash fails the run and leaves its input in fuzz/artifacts/TARGET/; add that
# input to fuzz/seeds/TARGET/ (and fix the bug) so it stays a regression test.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${FUZZ_SECONDS:-20}"
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
# Without a sanitizer cargo fuzz needs no nightly toolchain; coverage guidance still works.
cargo fuzz build -s none -O
for target in otlp_protobuf otlp_json remote_write decode_budget config expfmt; do
    mkdir -p "corpus/$target"
    extra=()
    if [ "$target" = config ]; then extra=(../deploy/examples); fi
    log="$(mktemp)"
    if ! cargo fuzz run -s none -O "$target" "corpus/$target" "seeds/$target" "${extra[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -timeout=10 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz target $target failed; its input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    runs="$(grep -o 'Done [0-9]* runs' "$log" | tail -n 1 || true)"
    echo "fuzz $target: ${runs:-no summary} in ${seconds}s"
    rm -f "$log"
done
