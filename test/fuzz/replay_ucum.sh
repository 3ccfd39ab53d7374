#!/bin/sh
# Replays the committed ucum corpus through its fuzz target: a regression test in every build.
# A libFuzzer build (--enable-fuzzers) runs the corpus once with -runs=0.
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_ucum" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/ucum"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_ucum" "$HV_SRCDIR/test/fuzz/corpus/ucum"
