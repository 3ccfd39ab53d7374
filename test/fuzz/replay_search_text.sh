#!/bin/sh
# Replays the committed search_text corpus through its fuzz target: a regression test in every build.
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_search_text" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/search_text"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_search_text" "$HV_SRCDIR/test/fuzz/corpus/search_text"
