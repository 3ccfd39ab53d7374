#!/bin/sh
# Replays the committed corpus of the FHIR scope check (fhir/rest_authz.c) through its fuzz target.
set -e
if [ "$HV_FUZZ_MODE" = libfuzzer ]; then
  exec "$HV_BUILDDIR/test/fuzz/fuzz_fhir_authz" -runs=0 "$HV_SRCDIR/test/fuzz/corpus/fhir_authz"
fi
exec "$HV_BUILDDIR/test/fuzz/fuzz_fhir_authz" "$HV_SRCDIR/test/fuzz/corpus/fhir_authz"
