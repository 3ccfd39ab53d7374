#!/bin/sh
# Replays the committed ehr_page corpus through its fuzz target: a regression test in every build.
# A libFuzzer build (--enable-fuzzers) runs the corpus once with -runs=0.
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_ehr_page" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/ehr_page"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_ehr_page" "$HV_SRCDIR/test/fuzz/corpus/ehr_page"
