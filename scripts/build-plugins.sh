#!/usr/bin/env bash
# Builds the built-in plugins (plugins/*), the test plugins (tests/plugins/*) and the Rust
# example plugins (examples/plugins/rust/*) as wasm32-wasip2 components into
# target/wasm32-wasip2/release/. The gateway embeds the built-ins
# itself (gateway/build.rs); these files are for tests, benchmarks and overriding a built-in:
# a sluice_plugin_NAME.wasm in SLUICE_PLUGIN_DIR (or plugins/ beside the binary) replaces the
# embedded builtin/NAME. The build shares target/builtin-plugins with gateway/build.rs, so
# neither builds what the other built.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed 2>/dev/null | grep -q wasm32-wasip2 || rustup target add wasm32-wasip2
packages=()
for manifest in plugins/*/Cargo.toml tests/plugins/*/Cargo.toml examples/plugins/rust/*/Cargo.toml; do
  [ -f "$manifest" ] || continue
  packages+=(-p "$(sed -n 's/^name = "\(.*\)"/\1/p' "$manifest" | head -n 1)")
done
# Whole-program optimisation for the plugins only (the gateway keeps the workspace's release
# profile): about 6 % less time per call for redact and slo (cargo bench --bench plugins). No
# debug info (the function names stay for trap messages). The same settings as gateway/build.rs.
target="${CARGO_TARGET_DIR:-target}"
CARGO_TARGET_DIR="$target/builtin-plugins" CARGO_PROFILE_RELEASE_LTO=true CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1 \
  CARGO_PROFILE_RELEASE_DEBUG=false CARGO_PROFILE_RELEASE_STRIP=debuginfo \
  cargo build --release --target wasm32-wasip2 "${packages[@]}"
mkdir -p "$target/wasm32-wasip2/release"
cp "$target"/builtin-plugins/wasm32-wasip2/release/*.wasm "$target/wasm32-wasip2/release/"
ls -1 "$target"/wasm32-wasip2/release/*.wasm
