#!/bin/sh
# run.sh — FHIRPath evaluations/s: HoloVitals and fhirpath.js (npm `fhirpath`) on the same
# search-parameter expressions, on the official examples and on Synthea resources, in the same
# run, with the ratio. fhirpath.js
# is installed at run time into a bench-local directory of the build tree (never
# committed). Run from the build directory after `make`:  bench/fhirpath/run.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
build=${HV_BUILDDIR:-$(pwd)}
export HV_SRCDIR="${HV_SRCDIR:-$(cd "$here/../.." && pwd)}"
npmdir="$build/bench/fhirpath/npm"
version=5.2.2
if [ ! -d "$npmdir/node_modules/fhirpath" ]; then
  mkdir -p "$npmdir"
  npm install --silent --no-audit --no-fund --prefix "$npmdir" "fhirpath@$version" >/dev/null
fi
bench="$build/bench/fhirpath/fhirpath_bench"
"$bench" --cases > "$npmdir/cases.json"
"$bench" | tee "$npmdir/hv.txt"
NODE_PATH="$npmdir/node_modules" node "$here/fhirpath_js_bench.js" "$npmdir/cases.json" | tee "$npmdir/js.txt"
hv=$(awk '$2 == "all" {print $3}' "$npmdir/hv.txt")
js=$(awk '$2 == "all" {print $3}' "$npmdir/js.txt")
awk -v a="$hv" -v b="$js" 'BEGIN { printf "ratio (holovitals / fhirpath.js): %.1fx\n", a / b }'
