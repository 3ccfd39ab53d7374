/*
 * ccda_to_fhir.c — C-CDA R2.1 document → FHIR R4 transaction Bundle: the entry
 * point hv_map_ccda_to_fhir, the safe XML reader, and the Bundle assembly.
 *
 * Reading (libxml2): no network (XML_PARSE_NONET), no entity substitution (no
 * XML_PARSE_NOENT), a DOCTYPE stops the parse (no DTD is ever loaded, so no
 * external entities and no entity-expansion bombs), at most HV_CCDA_MAX_BYTES
 * bytes and HV_CCDA_MAX_DEPTH levels. A document that is not well-formed fails
 * with HV_EPROTO and the line and column libxml2 reports.
 *
 * The Bundle (FHIR R4 http.html#transaction) holds one entry per resource with a
 * fullUrl "urn:uuid:…" that references inside the Bundle use. The uuid is derived
 * from the document's id and the resource's position, so that mapping the same
 * document twice gives the same Bundle byte for byte. A resource with a business
 * identifier is written with a conditional update (PUT Type?identifier=system|value,
 * http.html#cond-update) so that a document sent again updates the same resources
 * instead of duplicating them; the Patient's identifier is its recordTarget id
 * (root → system, extension → value). Resources without an identifier are POSTed.
 *
 * Problems that do not make the result unsafe (an unknown section template, a
 * value that is not valid FHIR, a cap reached) become issues of the
 * OperationOutcome and the mapping continues.
 */
#include "config.h"

#include <json-c/json.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/SAX2.h>
#include <stdio.h>
#include <string.h>

#include "adapters/ccda/ccda_int.h"

/* ---- issues ------------------------------------------------------------------------- */

void hv__ccda_issue(hv__ccda_ctx_t *c, const char *severity, const char *code, const char *where,
                    const char *fmt, ...) {
    char msg[512];
    va_list ap;
    if (json_object_array_length(c->issues) >= 1000) return; /* a cap on the outcome's size */
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct json_object *is = json_object_new_object();
    hv_json_set_str(is, "severity", severity);
    hv_json_set_str(is, "code", code);
    hv_json_set_str(is, "diagnostics", msg);
    if (where != NULL && where[0] != '\0') {
        struct json_object *loc = json_object_new_array();
        json_object_array_add(loc, json_object_new_string(where));
        hv_json_set(is, "location", loc);
    }
    json_object_array_add(c->issues, is);
}

/* ---- Bundle entries ------------------------------------------------------------------------ */

static uint64_t mix64(uint64_t x) {
    /* splitmix64's finalizer: a cheap, well-spread, deterministic mix. */
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

static uint64_t fnv1a(uint64_t h, const char *s) {
    for (; s != NULL && *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

/* Percent-encodes a search value (RFC 3986 unreserved and a few safe characters kept). */
static void pct(hv_buf_t *b, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if ((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
            strchr("-._~:/", ch) != NULL) {
            hv_buf_putc(b, (char)ch);
        } else {
            hv_buf_putc(b, '%');
            hv_buf_putc(b, hex[ch >> 4]);
            hv_buf_putc(b, hex[ch & 15]);
        }
    }
}

struct json_object *hv__ccda_ref(const char *url) {
    struct json_object *r = json_object_new_object();
    hv_json_set_str(r, "reference", url);
    return r;
}

const char *hv__ccda_add(hv__ccda_ctx_t *c, const char *type, struct json_object *res,
                         const char *dedup_key) {
    char uuid[64];
    hv_buf_t url;
    const char *full = NULL;
    if (dedup_key != NULL) {
        for (size_t i = 0; i < c->nknown; i++)
            if (strcmp(c->known[i].key, dedup_key) == 0) {
                json_object_put(res);
                return c->known[i].full_url;
            }
    }
    if (json_object_array_length(c->entries) >= c->max_entries) {
        if (!c->too_many)
            hv__ccda_issue(c, "warning", "too-costly", type,
                           "the Bundle reached its cap of %zu entries; later resources are left out",
                           c->max_entries);
        c->too_many = 1;
        json_object_put(res);
        return NULL;
    }
    c->seq++;
    uint64_t a = mix64(c->seed ^ fnv1a(0xcbf29ce484222325ULL, type) ^ ((uint64_t)c->seq << 20));
    uint64_t b = mix64(a ^ c->seq);
    /* A version-4-shaped uuid (RFC 4122 §4.4 layout) from deterministic bits. */
    snprintf(uuid, sizeof(uuid), "urn:uuid:%08x-%04x-4%03x-%04x-%012llx", (unsigned)(a >> 32),
             (unsigned)(a >> 16) & 0xffff, (unsigned)a & 0xfff,
             (unsigned)(0x8000 | ((b >> 48) & 0x3fff)), (unsigned long long)(b & 0xffffffffffffULL));
    full = hv_arena_strdup(c->arena, uuid);

    struct json_object *entry = json_object_new_object(), *req = json_object_new_object();
    hv_json_set_str(entry, "fullUrl", full);
    hv_json_set_str(res, "resourceType", type);
    /* Conditional update by the first identifier that has both a system and a value. */
    struct json_object *ids = NULL, *cond = NULL;
    if (json_object_object_get_ex(res, "identifier", &ids)) {
        if (json_object_is_type(ids, json_type_array)) {
            for (size_t i = 0; i < json_object_array_length(ids) && cond == NULL; i++) {
                struct json_object *id = json_object_array_get_idx(ids, i);
                if (hv_json_get_str(id, "system") != NULL && hv_json_get_str(id, "value") != NULL)
                    cond = id;
            }
        } else if (hv_json_get_str(ids, "system") != NULL && hv_json_get_str(ids, "value") != NULL) {
            cond = ids;
        }
    }
    hv_buf_init(&url, 8192);
    if (cond != NULL) {
        hv_buf_printf(&url, "%s?identifier=", type);
        pct(&url, hv_json_get_str(cond, "system"));
        hv_buf_putc(&url, '|');
        pct(&url, hv_json_get_str(cond, "value"));
    }
    /* Two resources with the same identifier cannot both be conditional updates in one
     * transaction (http.html#trules: they would target the same resource); the later
     * ones are plain creates, reported as an issue. */
    int dup = cond != NULL && url.data != NULL &&
              json_object_object_get_ex(c->cond_urls, url.data, NULL);
    if (dup)
        hv__ccda_issue(c, "information", "duplicate", type,
                       "two %s entries share an identifier; the later one is created, not "
                       "matched by it",
                       type);
    if (cond != NULL && url.data != NULL && url.len < 8000 && !dup) {
        json_object_object_add(c->cond_urls, url.data, NULL);
        hv_json_set_str(req, "method", "PUT");
        hv_json_set_str(req, "url", url.data);
    } else {
        hv_json_set_str(req, "method", "POST");
        hv_json_set_str(req, "url", type);
    }
    hv_buf_release(&url);
    hv_json_set(entry, "resource", res);
    hv_json_set(entry, "request", req);
    json_object_array_add(c->entries, entry);
    if (dedup_key != NULL && c->nknown < HV_CCDA_MAX_KNOWN) {
        c->known[c->nknown].key = hv_arena_strdup(c->arena, dedup_key);
        c->known[c->nknown].full_url = (char *)full;
        c->nknown++;
    }
    return full;
}

/* ---- safe XML reading ---------------------------------------------------------------------- */

typedef struct rd {
    int depth, max_depth, too_deep, dtd;
    int conv_errors; /* errors of libxml2's encoding converters (they drop the bytes) */
    int err_line, err_column; /* the first error libxml2 reported (0 if none) */
    char err_msg[256];
} rd_t;

/* Keeps the first error: libxml2's lastError is the last one, often a consequence. */
static void sax_error(void *ctx, xmlErrorPtr e) {
    xmlParserCtxtPtr ctxt = ctx;
    rd_t *r = ctxt != NULL ? ctxt->_private : NULL;
    if (r == NULL || e == NULL || r->err_line != 0 || e->level < XML_ERR_ERROR) return;
    r->err_line = e->line > 0 ? e->line : 1;
    r->err_column = e->int2;
    snprintf(r->err_msg, sizeof(r->err_msg), "%s", e->message != NULL ? e->message : "not well-formed");
}

static void sax_start(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                      const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                      int nb_attributes, int nb_defaulted, const xmlChar **attributes) {
    xmlParserCtxtPtr ctxt = ctx;
    rd_t *r = ctxt->_private;
    if (++r->depth > r->max_depth) {
        r->too_deep = 1;
        xmlStopParser(ctxt);
        return;
    }
    xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_namespaces, namespaces, nb_attributes,
                          nb_defaulted, attributes);
}

static void sax_end(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                    const xmlChar *uri) {
    xmlParserCtxtPtr ctxt = ctx;
    rd_t *r = ctxt->_private;
    r->depth--;
    xmlSAX2EndElementNs(ctx, localname, prefix, uri);
}

static void sax_subset(void *ctx, const xmlChar *name, const xmlChar *eid, const xmlChar *sid) {
    xmlParserCtxtPtr ctxt = ctx;
    rd_t *r = ctxt->_private;
    (void)name, (void)eid, (void)sid;
    /* C-CDA documents have no DOCTYPE; refusing it rules out DTD loading and entity attacks. */
    r->dtd = 1;
    xmlStopParser(ctxt);
}

/* libxml2's generic error function: counts into the int that ctx points to. */
static void quiet_error(void *ctx, const char *msg, ...) {
    int *count = ctx;
    (void)msg;
    if (count != NULL) (*count)++;
}

static int read_xml(const char *xml, size_t len, xmlDocPtr *out, hv_error_t *err) {
    rd_t r = {.max_depth = HV_CCDA_MAX_DEPTH};
    xmlParserCtxtPtr ctxt = NULL;
    xmlDocPtr doc = NULL;
    int rc = HV_OK;
    if (len > HV_CCDA_MAX_BYTES || len > INT32_MAX) {
        hv_error_set(err, HV_ETOOBIG, NULL, "document of %zu bytes exceeds the cap of %zu", len,
                     HV_CCDA_MAX_BYTES);
        return HV_ETOOBIG;
    }
    if (len == 0) {
        hv_error_set(err, HV_EPROTO, NULL, "invalid XML: the document is empty");
        if (err != NULL) err->line = err->column = 1;
        return HV_EPROTO;
    }
    ctxt = xmlCreateMemoryParserCtxt(xml, (int)len);
    if (ctxt == NULL) {
        hv_error_set(err, HV_ENOMEM, NULL, "out of memory");
        return HV_ENOMEM;
    }
    ctxt->_private = &r;
    ctxt->sax->startElementNs = sax_start;
    ctxt->sax->endElementNs = sax_end;
    ctxt->sax->internalSubset = sax_subset;
    ctxt->sax->externalSubset = sax_subset;
    ctxt->sax->entityDecl = NULL;
    ctxt->sax->serror = sax_error;
    xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING |
                                XML_PARSE_NOCDATA | XML_PARSE_COMPACT);
    /* Some errors (encoding conversion) go to the generic error function even with
     * XML_PARSE_NOERROR; documents carry PHI, so they are only counted while parsing. */
    xmlGenericErrorFunc saved_fn = xmlGenericError;
    void *saved_ctx = xmlGenericErrorContext;
    xmlSetGenericErrorFunc(&r.conv_errors, quiet_error);
    xmlParseDocument(ctxt);
    xmlSetGenericErrorFunc(saved_ctx, saved_fn);
    doc = ctxt->myDoc;
    ctxt->myDoc = NULL;
    if (r.too_deep) {
        rc = HV_ETOOBIG;
        hv_error_set(err, rc, NULL, "the document nests deeper than %d levels", r.max_depth);
    } else if (r.dtd) {
        rc = HV_EPROTO;
        hv_error_set(err, rc, NULL, "a DOCTYPE is not allowed in a C-CDA document");
        if (err != NULL) err->line = ctxt->input != NULL ? ctxt->input->line : 0;
    } else if (r.conv_errors > 0) {
        /* A converter that fails skips what it cannot convert and the parse goes on
         * (libxml2 2.9): a name would lose letters without a word. Refuse instead. */
        const xmlChar *enc = doc != NULL && doc->encoding != NULL ? doc->encoding : ctxt->encoding;
        rc = HV_EPROTO;
        hv_error_set(err, rc, NULL, "invalid XML: bytes that are not valid %.40s",
                     enc != NULL ? (const char *)enc : "in the document's encoding");
        /* The converter does not say where; line 1 holds the declaration (or the byte
         * order mark) that chose it. */
        if (err != NULL) err->line = err->column = 1;
    } else if (!ctxt->wellFormed || doc == NULL) {
        const xmlError *e = &ctxt->lastError;
        char msg[300];
        if (r.err_line == 0) {
            r.err_line = e->line > 0 ? e->line : 1;
            r.err_column = e->int2;
            snprintf(r.err_msg, sizeof(r.err_msg), "%s",
                     e->message != NULL ? e->message : "not well-formed");
        }
        snprintf(msg, sizeof(msg), "%s", r.err_msg);
        size_t ml = strlen(msg);
        while (ml > 0 && (msg[ml - 1] == '\n' || msg[ml - 1] == ' ')) msg[--ml] = '\0';
        rc = HV_EPROTO;
        hv_error_set(err, rc, NULL, "invalid XML: %s", msg);
        if (err != NULL) {
            err->line = r.err_line;
            err->column = r.err_column;
        }
    }
    xmlFreeParserCtxt(ctxt);
    if (rc != HV_OK) {
        xmlFreeDoc(doc);
        return rc;
    }
    *out = doc;
    return HV_OK;
}

/* ---- the mapping ------------------------------------------------------------------------- */

static struct json_object *outcome_new(struct json_object *issues) {
    struct json_object *oo = json_object_new_object();
    hv_json_set_str(oo, "resourceType", "OperationOutcome");
    if (json_object_array_length(issues) == 0) {
        struct json_object *is = json_object_new_object();
        hv_json_set_str(is, "severity", "information");
        hv_json_set_str(is, "code", "informational");
        hv_json_set_str(is, "diagnostics", "the document was mapped without problems");
        json_object_array_add(issues, is);
    }
    hv_json_set(oo, "issue", json_object_get(issues));
    return oo;
}

int hv_map_ccda_to_fhir(const char *xml, size_t len, const hv_map_opts_t *opts,
                        hv_map_result_t *out, hv_error_t *err) {
    hv__ccda_ctx_t c;
    xmlDocPtr doc = NULL;
    struct json_object *comp = NULL, *bundle = NULL;
    int rc;
    (void)opts; /* C-CDA mappings have no override rows and no explain trace yet. */
    memset(&c, 0, sizeof(c));
    if (xml == NULL || out == NULL) {
        hv_error_set(err, HV_EINVAL, NULL, "no document");
        return HV_EINVAL;
    }
    rc = read_xml(xml, len, &doc, err);
    if (rc != HV_OK) goto out;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    if (root == NULL || !hv__ccda_is(root, "ClinicalDocument")) {
        rc = HV_EINVAL;
        hv_error_set(err, rc, "/", "the root element is not an HL7 CDA ClinicalDocument "
                                   "(urn:hl7-org:v3)");
        goto out;
    }
    c.arena = hv_arena_new(0);
    c.entries = json_object_new_array();
    c.issues = json_object_new_array();
    c.cond_urls = json_object_new_object();
    c.doc = doc;
    c.max_entries = HV_CCDA_MAX_ENTRIES;
    if (c.arena == NULL || c.entries == NULL || c.issues == NULL) {
        rc = HV_ENOMEM;
        hv_error_set(err, rc, NULL, "out of memory");
        goto out;
    }
    xmlNodePtr docid = hv__ccda_child(root, "id");
    c.seed = fnv1a(fnv1a(0xcbf29ce484222325ULL, hv__ccda_attr(docid, "root")),
                   hv__ccda_attr(docid, "extension"));

    comp = json_object_new_object();
    rc = hv__ccda_header(&c, root, comp, err);
    if (rc != HV_OK) goto out;
    hv__ccda_body(&c, root, comp);
    if (hv__ccda_add(&c, "Composition", comp, NULL) == NULL) {
        comp = NULL;
        rc = HV_ETOOBIG;
        hv_error_set(err, rc, NULL, "the document has too many entries to map");
        goto out;
    }
    comp = NULL;
    /* The Composition goes first, as a FHIR document would have it. */
    size_t n = json_object_array_length(c.entries);
    struct json_object *ordered = json_object_new_array();
    json_object_array_add(ordered, json_object_get(json_object_array_get_idx(c.entries, n - 1)));
    for (size_t i = 0; i + 1 < n; i++)
        json_object_array_add(ordered, json_object_get(json_object_array_get_idx(c.entries, i)));
    bundle = json_object_new_object();
    hv_json_set_str(bundle, "resourceType", "Bundle");
    hv_json_set_str(bundle, "type", "transaction");
    hv_json_set(bundle, "entry", ordered);
    out->bundle = bundle;
    out->outcome = outcome_new(c.issues);
    out->explain = NULL;
    bundle = NULL;
    rc = HV_OK;
out:
    json_object_put(comp);
    json_object_put(bundle);
    json_object_put(c.entries);
    json_object_put(c.issues);
    json_object_put(c.cond_urls);
    hv_arena_free(c.arena);
    xmlFreeDoc(doc);
    return rc;
}
