#!/bin/sh
# Replays the committed terminology_csv corpus through its fuzz target: a regression test in every build.
# A libFuzzer build (--enable-fuzzers) runs the corpus once with -runs=0.
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_terminology_csv" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/terminology_csv"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_terminology_csv" "$HV_SRCDIR/test/fuzz/corpus/terminology_csv"
