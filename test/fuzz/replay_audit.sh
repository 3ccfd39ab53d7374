#!/bin/sh
# Replays the committed audit corpus through its fuzz target: a regression test in every build.
# A libFuzzer build (--enable-fuzzers) runs the corpus once with -runs=0.
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_audit" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/audit"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_audit" "$HV_SRCDIR/test/fuzz/corpus/audit"
