/*
 * compartment_int.h — the FHIR R4 compartments (compartmentdefinition.html): for each
 * compartment (Patient, Encounter, Practitioner, RelatedPerson, Device), the resource
 * types that can be in it and the search parameters that put a resource there. A
 * resource of type T is in the compartment of owner O/id when any of T's parameters
 * refers to O/id (search.html#compartments). Generated into fhir/compartments_gen.c
 * from the official definitions by fhir/gen/gen_compartments.py.
 */
#ifndef HV_FHIR_COMPARTMENT_INT_H
#define HV_FHIR_COMPARTMENT_INT_H

#include <stddef.h>

typedef struct hv__compartment_res {
    const char *type;            /* a resource type */
    const char *const *params;   /* its linking search parameters, NULL-terminated */
} hv__compartment_res_t;

typedef struct hv__compartment {
    const char *code;                  /* the owner's type: "Patient", "Encounter"… */
    const hv__compartment_res_t *res;  /* sorted by type */
    size_t n;
} hv__compartment_t;

extern const hv__compartment_t hv__compartments[];
extern const size_t hv__ncompartments;

/* The compartment owned by resources of type code, or NULL (fhir/rest_compartment.c). */
const hv__compartment_t *hv__compartment_find(const char *code);
/* The linking parameters of type in compartment c, or NULL when type is not in it. */
const char *const *hv__compartment_params(const hv__compartment_t *c, const char *type);

#endif /* HV_FHIR_COMPARTMENT_INT_H */
