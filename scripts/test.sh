#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit and integration tests, and the end-to-end tests
# that drive the real binary with the official OpenTelemetry SDK and a real Prometheus, then a
# bounded fuzzing run of the input parsers. It first installs what is missing (scripts/setup.sh:
# apt packages on a Debian-like machine, the wasm target, the Python packages).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== setup (installs only what is missing)"
./scripts/setup.sh

echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo doc (broken links fail)"
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps -p sluice-wire -p sluice-core -p sluice -p sluice-sdk
echo "== plugins (wasm32-wasip2; the example configs that use builtin/* need them)"
./scripts/build-plugins.sh
echo "== cargo test"
cargo test --workspace
# cargo test built the binary for the gateway's integration tests: the end-to-end tests run it.
# (A separate `cargo build -p sluice` would build much of it again, with the features of one
# package instead of the workspace's.)
target="${CARGO_TARGET_DIR:-$PWD/target}"
export SLUICE_BIN="$target/debug/sluice"
test -x "$SLUICE_BIN"
echo "== plugin SDKs: Python (pytest) and JavaScript (node --test), with their examples"
PYTHONPATH="$PWD/sdk/python" python3 -m pytest -q -p no:cacheprovider sdk/python/tests examples/plugins/python/*/
for project in sdk/js examples/plugins/js/*/; do
  (cd "$project" && npm test --silent)
done
echo "== end-to-end tests"
export SLUICE_TEST_PLUGINS="$target/wasm32-wasip2/release"
python3 -m pytest tests/e2e -q -p no:cacheprovider "$@"
echo "== fuzzing (bounded: FUZZ_SECONDS per target, 20 by default)"
./scripts/fuzz.sh
