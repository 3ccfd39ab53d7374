#!/bin/sh
# Replays the committed fhir_patch corpus through its fuzz target: a regression test in every build.
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_fhir_patch" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/fhir_patch"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_fhir_patch" "$HV_SRCDIR/test/fuzz/corpus/fhir_patch"
