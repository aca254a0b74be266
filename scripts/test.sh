#!/usr/bin/env bash
# The whole test suite: installs what the tests need when it is missing, then runs
# formatting, lints and every test. CI (.ci/run) runs exactly this.
#
# Needs: Prometheus + promtool (Debian package `prometheus`, 2.42) for the compatibility tests.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test dependencies: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "using $(prometheus --version 2>&1 | head -1)"

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
# Benchmarks run once each in test mode (a smoke test), then the test suite proper, last so
# its summary closes the output (the crate has no doc tests).
cargo test --locked --benches
cargo test --locked --lib --bins --tests
