#!/bin/sh
# Replays the committed map_v2 corpus through its fuzz target: a regression test in every build.
# A libFuzzer build (--enable-fuzzers) runs the corpus once with -runs=0.
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_map_v2" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/map_v2"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_map_v2" "$HV_SRCDIR/test/fuzz/corpus/map_v2"
