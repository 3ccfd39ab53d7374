/*
 * modules.c — the one table of modules: the only place that knows them all
 * (as nginx's ngx_modules). The engine runs their init/start/stop/free in this
 * order and stops them in reverse. A module listed here is compiled in; which
 * ones run in a process is chosen with --services.
 */
#include "config.h"
#include "engine/engine.h"
#include "engine/auth/auth.h"
#include "adapters/ehr/ehr.h"
#include "adapters/hl7v2/hl7v2.h"
#include "fhir/fhir.h"
#include "fhir/fhirpath.h"
#include "terminology/terminology.h"
#include "mappings/mappings.h"
#include "console/console.h"

const hv_module_t *const hv_modules[] = {
    &hv_auth_module, /* first: its guard must be in place before other modules take requests */
    &hv_fhir_module,
    &hv_fhirpath_module,
    &hv_fhir_channels_module,
    &hv_terminology_module,
    &hv_terminology_channels_module,
    &hv_hl7v2_module,
    &hv_hl7v2_channels_module,
    &hv_mappings_module,
    &hv_mappings_channels_module,
    &hv_ehr_module,
    &hv_channels_module, /* after the modules that register sources, steps, destinations */
    &hv_console_module,
    NULL,
};
