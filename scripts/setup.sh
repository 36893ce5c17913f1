#!/usr/bin/env bash
# Installs what the test suite needs and is missing, on a Debian-like machine with Rust (rustup):
# Debian's prometheus (and promtool), openssl, chromium and g++; rustfmt, clippy and the
# wasm32-wasip2 target; the Python packages of tests/requirements.txt (componentize-py among
# them); the npm packages of the JavaScript plugin SDK and its examples (componentize-js, from
# their lock files). What is present is left alone, so a second run only checks. Run by
# scripts/test.sh before anything else.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for need in prometheus:prometheus promtool:prometheus openssl:openssl chromium:chromium g++:g++; do
  command -v "${need%%:*}" >/dev/null 2>&1 || missing+=("${need#*:}")
done
if [ ${#missing[@]} -gt 0 ]; then
  packages=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: missing $packages and no apt-get here: install them with your package manager" >&2
    exit 1
  fi
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "setup: missing $packages: run as root or install them" >&2; exit 1; }
    sudo=(sudo)
  fi
  echo "== setup: apt-get install $packages"
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  # shellcheck disable=SC2086
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends $packages >/dev/null
fi

if command -v rustup >/dev/null 2>&1; then
  # rust-toolchain.toml names them; older rustup versions install them only when asked.
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
fi

python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore -r tests/requirements.txt

# The JavaScript plugin SDK and example plugins: their lock files pin componentize-js and the
# rest; `npm ci` runs again only when a lock file is newer than what it installed.
if command -v npm >/dev/null 2>&1; then
  for project in sdk/js examples/plugins/js/*/; do
    project="${project%/}"
    [ -f "$project/package-lock.json" ] || continue
    if [ ! -f "$project/node_modules/.package-lock.json" ] || [ "$project/package-lock.json" -nt "$project/node_modules/.package-lock.json" ]; then
      echo "== setup: npm ci in $project"
      (cd "$project" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
  done
else
  echo "setup: npm not found: install Node.js 20 or later with npm (the JavaScript plugin SDK's tests need it)" >&2
  exit 1
fi
