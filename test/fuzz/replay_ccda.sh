#!/bin/sh
# Replays the committed ccda corpus through its fuzz target: a regression test in every build.
# A libFuzzer build (--enable-fuzzers) runs the corpus once with -runs=0.
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_ccda" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/ccda"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_ccda" "$HV_SRCDIR/test/fuzz/corpus/ccda"
