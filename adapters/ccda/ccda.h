/*
 * ccda.h — the C-CDA reader (adapters/ccda): C-CDA R2.1 documents → FHIR R4.
 *
 * The mapping itself is called through mappings/mappings.h (hv_map_ccda_to_fhir);
 * this header states the reader's caps. A document is parsed with libxml2 with no
 * network access, no entity substitution and no DTD (a DOCTYPE is refused), and is
 * refused when larger or deeper than these caps.
 */
#ifndef HV_ADAPTERS_CCDA_H
#define HV_ADAPTERS_CCDA_H

#include "mappings/mappings.h"

#define HV_CCDA_MAX_BYTES ((size_t)32 << 20) /* largest document accepted */
#define HV_CCDA_MAX_DEPTH 256                /* deepest element nesting accepted */
#define HV_CCDA_MAX_ENTRIES 20000            /* Bundle entries; more are dropped with an issue */
#define HV_CCDA_MAX_KNOWN 256                /* distinct practitioners/organizations de-duplicated */
#define HV_CCDA_MAX_SECTION_DEPTH 8          /* nested sections followed */

#endif
