#!/usr/bin/env python3
"""gen_compartments.py — turns the official FHIR R4 CompartmentDefinitions into
fhir/compartments_gen.c.

Usage: gen_compartments.py DEFINITIONS_DIR OUTPUT.c

Inputs: CompartmentDefinition-{patient,encounter,practitioner,relatedPerson,device}.json
(FHIR R4 4.0.1, compartmentdefinition.html). For each compartment the output lists the
resource types that can be in it and, for each, the search parameters that link a
resource to the compartment's owner (CompartmentDefinition.resource.param); types with
no parameter are not in the compartment and are left out. Python 3 standard library
only; the output is deterministic.
"""
import json
import os
import sys

FILES = ["patient", "encounter", "practitioner", "relatedPerson", "device"]


def main():
    src, out = sys.argv[1], sys.argv[2]
    comps = []
    for name in FILES:
        with open(os.path.join(src, "CompartmentDefinition-%s.json" % name), encoding="utf-8") as f:
            d = json.load(f)
        rows = sorted((r["code"], r["param"]) for r in d.get("resource", []) if r.get("param"))
        comps.append((d["code"], rows))
    lines = ["/* compartments_gen.c — generated from the FHIR R4 CompartmentDefinitions", 
             " * (CompartmentDefinition-{%s}.json) by fhir/gen/gen_compartments.py — do not edit;" % ",".join(FILES),
             " * `make regen-fhir-compartments` regenerates it. The layout is fhir/compartment_int.h. */",
             '#include "config.h"', "", '#include "fhir/compartment_int.h"', ""]
    for code, rows in comps:
        for rtype, params in rows:
            lines.append("static const char *const p_%s_%s[] = {%s, NULL};" % (
                code, rtype, ", ".join('"%s"' % p for p in params)))
        lines.append("static const hv__compartment_res_t r_%s[] = {" % code)
        for rtype, _ in rows:
            lines.append('    {"%s", p_%s_%s},' % (rtype, code, rtype))
        lines.append("};")
        lines.append("")
    lines.append("const hv__compartment_t hv__compartments[] = {")
    for code, rows in comps:
        lines.append('    {"%s", r_%s, %d},' % (code, code, len(rows)))
    lines.append("};")
    lines.append("const size_t hv__ncompartments = %d;" % len(comps))
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
