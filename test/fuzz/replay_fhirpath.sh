#!/bin/sh
exec "$HV_BUILDDIR/test/fuzz/fuzz_fhirpath" "$HV_SRCDIR/test/fuzz/corpus/fhirpath"
