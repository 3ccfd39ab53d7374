#!/bin/sh
# Replays the committed fhir_json_read corpus through its fuzz target: a regression test in every build.
# A libFuzzer build (--enable-fuzzers) runs the corpus once with -runs=0.
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_fhir_json_read" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/fhir_json_read"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_fhir_json_read" "$HV_SRCDIR/test/fuzz/corpus/fhir_json_read"
