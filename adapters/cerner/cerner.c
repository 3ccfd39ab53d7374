/*
 * cerner.c — what Oracle Health (Cerner) Millennium's FHIR R4 API does
 * differently, from its public documentation (fhir.cerner.com, "Authorization
 * Framework" and "R4 API"); each difference is one field of the vendor table:
 *
 *  - System accounts: a client id and a client secret from Oracle Health's code
 *    console, exchanged with `grant_type=client_credentials` and the secret in
 *    HTTP Basic (RFC 6749 §2.3.1), `system/` scopes. A private key
 *    (private_key_jwt) is accepted too.
 *  - Tenant-specific base URLs: https://fhir-ehr.cerner.com/r4/{tenant-id}; the
 *    token endpoint is per tenant and comes from the tenant's
 *    .well-known/smart-configuration. The base URL must end in the tenant id.
 *  - Paging: `next` links are opaque and carry their own state; they must be
 *    followed as given, with the same token, and never rebuilt (the generic
 *    client always does so). _count is honoured up to 200.
 *  - Bulk export at the Group level as well (Group/{id}/$export) or, without a
 *    group, at the Patient level.
 */
#include "config.h"
#include "adapters/cerner/cerner.h"

#include <string.h>

int hv_cerner_check_base_url(const char *url, hv_error_t *err) {
    const char *end = url + strlen(url), *seg;
    size_t n;
    while (end > url && end[-1] == '/') end--;
    seg = end;
    while (seg > url && seg[-1] != '/') seg--;
    n = (size_t)(end - seg);
    if (n < 8 || seg - url < 9) goto bad;
    for (; seg < end; seg++)
        if (!((*seg >= '0' && *seg <= '9') || (*seg >= 'a' && *seg <= 'f') || (*seg >= 'A' && *seg <= 'F') ||
              *seg == '-'))
            goto bad;
    return HV_OK;
bad:
    hv_error_set(err, HV_EINVAL, "base_url",
                 "an Oracle Health base URL ends in the tenant id (https://fhir-ehr.cerner.com/r4/{tenant-id})");
    return HV_EINVAL;
}

const hv_ehr_vendor_t hv_cerner_vendor = {
    "cerner",
    "Oracle Health (Cerner)",
    "A system account from Oracle Health's code console: its client id and client secret (or a private "
    "key), and the tenant's base URL https://fhir-ehr.cerner.com/r4/{tenant-id}; system/ scopes.",
    2,
    "RS384",
    100,
    200,
    NULL,
    "patient",
    hv_cerner_check_base_url,
    0, /* Oracle Health offers no type-level _history */
};
