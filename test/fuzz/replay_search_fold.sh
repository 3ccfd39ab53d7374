#!/bin/sh
# Replays the committed search_fold corpus through its fuzz target: a regression test in every build.
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_search_fold" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/search_fold"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_search_fold" "$HV_SRCDIR/test/fuzz/corpus/search_fold"
