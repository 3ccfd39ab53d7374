/*
 * terminology.h — the terminology module: code systems (LOINC, SNOMED CT,
 * ICD-10-CM, CPT), lab-result standardization, and the medical-standards API.
 *
 * UCUM has its own header, terminology/ucum.h, because it is a leaf library that
 * fhir/ includes directly (DESIGN.md); this header is what modules.c and the rest
 * of the engine see of the module.
 */
#ifndef HV_TERMINOLOGY_H
#define HV_TERMINOLOGY_H

#include <stdio.h>

#include "engine/engine.h"
#include "terminology/ucum.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The module (settings, CLI commands, routes), for modules.c. */
extern const hv_module_t hv_terminology_module;

/*
 * The `ucum` commands, without the engine: essence is the essence path (NULL for
 * the default), argv the arguments after "ucum convert" / "ucum validate".
 * Results go to out, errors to errf. Returns an HV_EXIT_* code.
 */
int hv_terminology_ucum_convert_cmd(const char *essence, int argc, char **argv, FILE *out,
                                    FILE *errf);
int hv_terminology_ucum_validate_cmd(const char *essence, int argc, char **argv, FILE *out,
                                     FILE *errf);

#ifdef __cplusplus
}
#endif
#endif /* HV_TERMINOLOGY_H */
