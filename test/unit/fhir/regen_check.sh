#!/bin/sh
# Checks that the committed fhir/model_gen.c is what fhir/gen/gen_model.py makes of the
# reference definitions today (the tables are generated; this catches a stale commit).
# The reference is beside the project root ($HV_SRCDIR/../shared) or, in a worktree, one
# level further up; a missing reference fails the test.
set -e
ref="$HV_SRCDIR/../shared/reference"
[ -d "$ref" ] || ref="$HV_SRCDIR/../../shared/reference"
if [ ! -d "$ref/fhir/definitions" ]; then
  echo "reference definitions not found beside $HV_SRCDIR" >&2
  exit 1
fi
out="${TMPDIR:-/tmp}/hv-model-gen-$$.c"
trap 'rm -f "$out"' EXIT
python3 "$HV_SRCDIR/fhir/gen/gen_model.py" "$ref/fhir/definitions" "$out"
cmp "$out" "$HV_SRCDIR/fhir/model_gen.c"
echo "fhir/model_gen.c is up to date"
# The compartments likewise (fhir/gen/gen_compartments.py → fhir/compartments_gen.c).
out2="${TMPDIR:-/tmp}/hv-compartments-gen-$$.c"
trap 'rm -f "$out" "$out2"' EXIT
python3 "$HV_SRCDIR/fhir/gen/gen_compartments.py" "$ref/fhir/definitions" "$out2"
cmp "$out2" "$HV_SRCDIR/fhir/compartments_gen.c"
echo "fhir/compartments_gen.c is up to date"
