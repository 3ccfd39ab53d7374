#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls this): installs what is missing, starts a
# private PostgreSQL, then
#   1. builds with gcc -Werror and runs every test (unit, integration, fuzz-corpus replays);
#   2. builds with clang, ASan+UBSan and libFuzzer instrumentation, runs every test again;
#   3. runs each fuzz target from its corpus for a bounded, reproducible run: FUZZ_RUNS inputs
#      (default 20000) from the fixed seed FUZZ_SEED (default 1), at most FUZZ_SECONDS (60) each.
#      A fixed seed makes CI explore what the developer's run explored; pick another seed to
#      explore further (FUZZ_SEED=$RANDOM ./scripts/test.sh). FUZZ_JOBS targets run at once
#      (default: one a core).
# Ends with one line "tests: N passed, M failed". Exit status 0 only if everything passed.
set -uo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"
fuzz_seconds=${FUZZ_SECONDS:-60}
fuzz_runs=${FUZZ_RUNS:-20000}
fuzz_seed=${FUZZ_SEED:-1}
fuzz_jobs=${FUZZ_JOBS:-$(nproc)}
passed=0
failed=0
failures=()

step() { printf '\n==== %s\n' "$*"; }

# count results of one `make check` from its test-suite.log (none: the check did not run)
tally() {
  local log=$1 name=$2 p f e
  if [ ! -f "$log" ]; then
    failed=$((failed + 1)); failures+=("$name: make check did not run (a build error above)")
    return
  fi
  p=$(sed -n 's/^# PASS: *//p' "$log" | head -1)
  f=$(sed -n 's/^# FAIL: *//p' "$log" | head -1)
  e=$(sed -n 's/^# ERROR: *//p' "$log" | head -1)
  f=$(( ${f:-0} + ${e:-0} ))
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0}))
  if [ "${f:-0}" -gt 0 ]; then
    failures+=("$name: $(grep -E '^(FAIL|ERROR):' "$log" | tr '\n' ' ')")
    grep -E '^(FAIL|ERROR):' -A200 "$log" | head -400
  fi
}

# The reference data (../shared/reference) sits beside the checkout, as CI lays it out. A clone
# made elsewhere (e.g. by shared/tools/fresh-clone-test) finds it beside the repository it was
# cloned from, through a symbolic link next to the clone.
if [ ! -d "$top/../shared/reference" ]; then
  origin=$(git -C "$top" remote get-url origin 2>/dev/null || true)
  if [ -n "$origin" ] && [ -d "$origin/../shared/reference" ] && [ ! -e "$top/../shared" ]; then
    ln -s "$(cd "$origin/../shared" && pwd)" "$top/../shared"
    echo "reference data: linked $top/../shared -> $(cd "$origin/../shared" && pwd)"
  fi
fi

step "setup"
"$top/scripts/setup.sh" || { echo "setup failed"; exit 1; }

step "PostgreSQL for the tests"
pgdir=$(mktemp -d /tmp/holovitals-pg.XXXXXX)
if url=$("$top/scripts/pg.sh" start "$pgdir"); then
  export HV_TEST_PG_URL="$url"
  echo "PostgreSQL at $url"
else
  echo "could not start PostgreSQL"; failed=$((failed + 1)); failures+=("postgresql: did not start")
fi
cleanup() { [ -n "${HV_TEST_PG_URL:-}" ] && "$top/scripts/pg.sh" stop "$pgdir" >/dev/null 2>&1; rm -rf "$pgdir"; }
trap cleanup EXIT

step "build 1: gcc, -Werror"
if scripts/build.sh release --enable-werror; then
  step "tests (gcc build)"
  (cd build/release && make -j2 -k check 2>&1 | grep -E '^(PASS|FAIL|ERROR|SKIP|XFAIL|XPASS):|error:')
  tally build/release/test-suite.log "gcc build"
else
  failed=$((failed + 1)); failures+=("gcc build failed")
fi

step "build 2: clang, ASan+UBSan, libFuzzer instrumentation, -Werror"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
if scripts/build.sh sanitize CC=clang --enable-werror --enable-sanitizers --enable-fuzzers; then
  step "tests (sanitizer build)"
  (cd build/sanitize && make -j2 -k check 2>&1 | grep -E '^(PASS|FAIL|ERROR|SKIP|XFAIL|XPASS):|error:')
  tally build/sanitize/test-suite.log "sanitizer build"
  step "fuzzing: $fuzz_runs inputs per target from seed $fuzz_seed (at most ${fuzz_seconds}s each, $fuzz_jobs at a time)"
  # Each target is one process on one core; the machine's cores run that many at once. Each
  # writes its log and its exit status; the results are read back in the targets' order.
  fuzz_one() {
    local t=$1 name=${1##*/fuzz_} corpus rc
    corpus=$(mktemp -d)
    "$t" -seed="$fuzz_seed" -runs="$fuzz_runs" -max_total_time="$fuzz_seconds" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=0 "$corpus" "test/fuzz/corpus/$name" \
      > "build/sanitize/fuzz_$name.log" 2>&1
    rc=$?
    rm -rf "$corpus"
    echo "$rc" > "build/sanitize/fuzz_$name.rc"
  }
  targets=()
  for t in build/sanitize/test/fuzz/fuzz_*; do
    [ -x "$t" ] && targets+=("$t")
  done
  running=0
  for t in "${targets[@]}"; do
    rm -f "build/sanitize/fuzz_${t##*/fuzz_}.rc"
    if [ "$running" -ge "$fuzz_jobs" ]; then wait -n; running=$((running - 1)); fi
    fuzz_one "$t" &
    running=$((running + 1))
  done
  wait
  for t in "${targets[@]}"; do
    name=${t##*/fuzz_}
    if [ "$(cat "build/sanitize/fuzz_$name.rc" 2>/dev/null)" = 0 ]; then
      echo "PASS: fuzz_$name ($(grep -o 'Done [0-9]* runs' "build/sanitize/fuzz_$name.log" | tail -1))"
      passed=$((passed + 1))
    else
      echo "FAIL: fuzz_$name"; tail -40 "build/sanitize/fuzz_$name.log"
      failed=$((failed + 1)); failures+=("fuzz_$name")
    fi
  done
else
  failed=$((failed + 1)); failures+=("sanitizer build failed")
fi

step "summary"
for f in "${failures[@]}"; do echo "failed: $f"; done
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
