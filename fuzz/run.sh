#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS each, one after the
# other on one core, starting from the committed corpus. New inputs go to a
# scratch directory, so the committed corpus stays as it is.
#
#   fuzz/run.sh [SECONDS] [TARGET...]      (default: 20 s, every target)
#
# Exits non-zero on the first target that crashes, hangs (-timeout) or runs
# out of memory; the reproducer is in fuzz/artifacts/TARGET/ and
# `cargo fuzz run TARGET fuzz/artifacts/TARGET/crash-...` replays it.
# Each run's libFuzzer output is in $FUZZ_LOGS (default: a scratch
# directory); one summary line per target is printed.
#
# FUZZ_KEEP_GOING=1: carry on past a finding (libFuzzer's fork mode), so a
# long run collects every reproducer in fuzz/artifacts/ instead of stopping
# at the first. FUZZ_WORK=DIR: keep the inputs found in DIR/TARGET (for
# `cargo fuzz cmin`) instead of throwing them away. FUZZ_DEV=1: build
# without optimisation (CI's smoke run: the build is most of its time).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-20}
shift || true
all=(yaml_merge template webhook observe sim_routes sops)
targets=("${@:-${all[@]}}")

# Without a sanitizer cargo-fuzz needs no nightly-only flag, so the
# machine's one toolchain builds the targets. Safe Rust gains little from
# AddressSanitizer, and it halves the speed.
opts=(--sanitizer none)
if [ -n "${CARGO_TARGET_DIR:-}" ]; then
    opts+=(--target-dir "$CARGO_TARGET_DIR")
fi
if [ -n "${FUZZ_DEV:-}" ]; then
    opts+=(--dev)
    export CARGO_PROFILE_DEV_DEBUG=false
fi
keep_going=()
if [ -n "${FUZZ_KEEP_GOING:-}" ]; then
    keep_going=(-fork=1 -ignore_crashes=1 -ignore_timeouts=1 -ignore_ooms=1)
fi

logs=${FUZZ_LOGS:-$(mktemp -d)}
mkdir -p "$logs"
cargo fuzz build "${opts[@]}" >"$logs/build.log" 2>&1 || {
    tail -n 40 "$logs/build.log"
    exit 1
}

# Per-target budgets: a render that takes seconds is a finding, not a slow
# input; inputs larger than real ones only slow the search down.
limits() {
    case $1 in
        template) echo "-timeout=5 -max_len=4096" ;;
        sim_routes) echo "-timeout=10 -max_len=16384" ;;
        observe) echo "-timeout=10 -max_len=16384" ;;
        *) echo "-timeout=10 -max_len=8192" ;;
    esac
}

status=0
for t in "${targets[@]}"; do
    if [ -n "${FUZZ_WORK:-}" ]; then
        scratch=$FUZZ_WORK/$t
        mkdir -p "$scratch"
    else
        scratch=$(mktemp -d)
    fi
    set +e
    # shellcheck disable=SC2046
    cargo fuzz run "${opts[@]}" "$t" "$scratch" "fuzz/corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -dict="fuzz/dict/$t.dict" \
        -print_final_stats=1 $(limits "$t") "${keep_going[@]}" >"$logs/$t.log" 2>&1
    rc=$?
    set -e
    # The last status line: `#RUNS ... cov: N ft: N corp: N/SIZE exec/s: N ...`
    # (fork mode: `#RUNS: cov: N ft: N corp: N exec/s N ... time: Ns`).
    last=$(grep -E '^#[0-9]+' "$logs/$t.log" | tail -n 1 || true)
    runs=$(echo "$last" | grep -oE '^#[0-9]+' | tr -d '#' || true)
    speed=$(echo "$last" | grep -oE 'exec/s:? [0-9]+' | grep -oE '[0-9]+$' || true)
    cov=$(echo "$last" | grep -oE 'cov: [0-9]+' || true)
    found=$(find "fuzz/artifacts/$t" -type f 2>/dev/null | wc -l)
    if [ $rc -eq 0 ]; then
        printf 'fuzz %-11s ok: %s runs in %ss, %s exec/s, %s, %s files in fuzz/artifacts/%s\n' \
            "$t" "${runs:-?}" "$seconds" "${speed:-?}" "${cov:-cov: ?}" "$found" "$t"
    else
        printf 'fuzz %-11s FAILED (exit %s); log: %s\n' "$t" "$rc" "$logs/$t.log"
        grep -E -A 30 '^==[0-9]+== ERROR|panicked at|^SUMMARY|Test unit written' "$logs/$t.log" | head -n 60 || tail -n 40 "$logs/$t.log"
        status=1
    fi
    [ -n "${FUZZ_WORK:-}" ] || rm -rf "$scratch"
done
exit $status
