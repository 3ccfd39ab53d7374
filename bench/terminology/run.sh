#!/bin/sh
# run.sh — UCUM conversions/s: HoloVitals and @lhncbc/ucum-lhc on the same conversions,
# in the same run. ucum-lhc is installed at run time into a bench-local directory of
# the build tree (never committed). Run from the build directory after `make`:
#   bench/terminology/run.sh        (HV_REFERENCE_DIR or HV_SRCDIR locate the test cases)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${HV_BUILDDIR:-$(pwd)}
export HV_SRCDIR="${HV_SRCDIR:-$(cd "$here/../.." && pwd)}"
npmdir="$build/bench/terminology/npm"
version=7.1.10
if [ ! -d "$npmdir/node_modules/@lhncbc/ucum-lhc" ]; then
  mkdir -p "$npmdir"
  npm install --silent --no-audit --no-fund --prefix "$npmdir" "@lhncbc/ucum-lhc@$version" >/dev/null
fi
bench="$build/bench/terminology/ucum_bench"
"$bench" --cases > "$npmdir/cases.json"
echo "UCUM conversions/s (each figure: ~0.5 s of repeated conversions, one thread)"
"$bench"
NODE_PATH="$npmdir/node_modules" node "$here/ucum_lhc_bench.js" "$npmdir/cases.json"
