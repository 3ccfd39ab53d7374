#!/bin/sh
exec "$HV_BUILDDIR/test/fuzz/fuzz_hl7v2" "$HV_SRCDIR/test/fuzz/corpus/hl7v2"
