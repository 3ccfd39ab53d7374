#!/bin/sh
# run.sh — installs the npm HL7 v2 parsers into a scratch directory (never into the
# source tree) and runs parse.js on a corpus, beside bench/bin/hl7v2_parse.
#
#   bench/hl7v2_npm/run.sh [--seconds 2] DIR|FILE...
#
# Versions: @redoxengine/redox-hl7-v2 (latest), hl7v2@1.8.0 with hl7v2-dictionary@1.8.0
# (the newest hl7v2 does not install). The scratch directory is $HV_NPM_DIR or
# ${TMPDIR:-/tmp}/holovitals-bench-npm; it is reused between runs.
set -e
here=$(cd "$(dirname "$0")" && pwd)
dir=${HV_NPM_DIR:-${TMPDIR:-/tmp}/holovitals-bench-npm}
mkdir -p "$dir"
if [ ! -d "$dir/node_modules/hl7v2" ] || [ ! -d "$dir/node_modules/@redoxengine/redox-hl7-v2" ]; then
  (cd "$dir" && npm install --no-audit --no-fund --silent \
    @redoxengine/redox-hl7-v2 hl7v2@1.8.0 hl7v2-dictionary@1.8.0 >&2)
fi
cp "$here/parse.js" "$dir/parse.js"
# The C parser first, on the same files, then the ratios (messages/s).
cbench=${HV_BUILDDIR:-$here/../..}/bench/bin/hl7v2_parse
out=$(mktemp)
if [ -x "$cbench" ]; then "$cbench" "$@" | tee "$out"; fi
node "$dir/parse.js" "$@" | tee -a "$out"
awk '/msgs\/s/ { r[$1] = $2 }
     END { for (c in r) if (c == "split" || c == "walk" || c == "json")
             for (n in r) if (n ~ /@/)
               printf "ratio %-5s / %-26s %8.1fx\n", c, n, r[c] / r[n] }' "$out" | sort
rm -f "$out"
