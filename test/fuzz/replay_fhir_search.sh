#!/bin/sh
# Replays the committed fhir_search corpus through its fuzz target: a regression test in every build.
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_fhir_search" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/fhir_search"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_fhir_search" "$HV_SRCDIR/test/fuzz/corpus/fhir_search"
