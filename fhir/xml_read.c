/*
 * xml_read.c — reading the FHIR R4 XML format (FHIR R4 xml.html) into the JSON
 * form of a resource (the mapping table is in xml.c).
 *
 * libxml2 builds the tree through its SAX2 handlers, wrapped here to (1) count
 * the depth and stop past the cap, (2) stop at any DTD (no entity declarations,
 * hence no entity expansion), and (3) record the byte offsets where each XHTML
 * div starts and ends, so that the narrative is carried into JSON exactly as it
 * was written. Offsets are absolute: input->consumed plus the position in the
 * current buffer. When they do not frame a "<div" ... ">", the div is serialized by
 * libxml2 instead. A document in another encoding than UTF-8 is refused (R4
 * http.html), so the input bytes are the text libxml2 read.
 */
#include "config.h"

#include <errno.h>
#include <json-c/json.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/SAX2.h>
#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir_int.h"

#define FHIR_NS "http://hl7.org/fhir"
#define XHTML_NS "http://www.w3.org/1999/xhtml"
#define XSI_NS "http://www.w3.org/2001/XMLSchema-instance"
#define MAX_DIVS 100000

typedef struct div_span {
    xmlNodePtr node;
    size_t start, end;
} div_span_t;

typedef struct rd {
    const char *text;
    size_t len;
    int depth, max_depth;
    int too_deep, dtd, oom;
    div_span_t *divs;
    size_t ndivs, capdivs;
    hv__fhir_path_t path;
    hv_error_t *err;
    int rc;
} rd_t;

static void quiet_error(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

static size_t abs_offset(xmlParserCtxtPtr ctxt) {
    return (size_t)ctxt->input->consumed + (size_t)(ctxt->input->cur - ctxt->input->base);
}

static void sax_start(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                      const xmlChar *uri, int nb_ns, const xmlChar **namespaces, int nb_attr,
                      int nb_def, const xmlChar **attrs) {
    xmlParserCtxtPtr ctxt = ctx;
    rd_t *r = ctxt->_private;
    if (++r->depth > r->max_depth) {
        r->too_deep = 1;
        xmlStopParser(ctxt);
        return;
    }
    size_t off = abs_offset(ctxt);
    xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_ns, namespaces, nb_attr, nb_def, attrs);
    if (uri != NULL && strcmp((const char *)localname, "div") == 0 &&
        strcmp((const char *)uri, XHTML_NS) == 0 && ctxt->node != NULL) {
        if (r->ndivs == r->capdivs) {
            size_t cap = r->capdivs ? r->capdivs * 2 : 16;
            div_span_t *d = cap <= MAX_DIVS ? hv_realloc(r->divs, cap * sizeof(*d)) : NULL;
            if (d == NULL) {
                r->oom = 1;
                xmlStopParser(ctxt);
                return;
            }
            r->divs = d;
            r->capdivs = cap;
        }
        /* The start tag began at the last '<' before the parser's position ('<' cannot
         * occur inside attribute values, XML 1.0 §3.1 AttValue). */
        size_t s = off < r->len ? off : r->len;
        while (s > 0 && r->text[s] != '<')
            s--;
        r->divs[r->ndivs].node = ctxt->node;
        r->divs[r->ndivs].start = s;
        r->divs[r->ndivs].end = 0;
        r->ndivs++;
    }
}

static void sax_end(void *ctx, const xmlChar *localname, const xmlChar *prefix,
                    const xmlChar *uri) {
    xmlParserCtxtPtr ctxt = ctx;
    rd_t *r = ctxt->_private;
    if (uri != NULL && strcmp((const char *)localname, "div") == 0 &&
        strcmp((const char *)uri, XHTML_NS) == 0) {
        for (size_t i = r->ndivs; i > 0; i--) {
            if (r->divs[i - 1].node == ctxt->node && r->divs[i - 1].end == 0) {
                r->divs[i - 1].end = abs_offset(ctxt);
                break;
            }
        }
    }
    xmlSAX2EndElementNs(ctx, localname, prefix, uri);
    r->depth--;
}

static void sax_subset(void *ctx, const xmlChar *name, const xmlChar *eid, const xmlChar *sid) {
    xmlParserCtxtPtr ctxt = ctx;
    rd_t *r = ctxt->_private;
    (void)name;
    (void)eid;
    (void)sid;
    r->dtd = 1; /* FHIR XML has no DTD; refusing it rules out entity expansion attacks */
    xmlStopParser(ctxt);
}

void hv__fhir_xml_quiet_begin(hv__fhir_xml_quiet_t *q)
{
    /* libxml2 reports some errors (encoding conversion) through its generic error
     * function even with XML_PARSE_NOERROR: route them nowhere for this thread while we
     * parse (documents may carry PHI; errors reach the caller through hv_error_t). */
    q->fn = xmlGenericError;
    q->ctx = xmlGenericErrorContext;
    xmlSetGenericErrorFunc(NULL, quiet_error);
}

void hv__fhir_xml_quiet_end(hv__fhir_xml_quiet_t *q)
{
    xmlSetGenericErrorFunc(q->ctx, q->fn);
}

/* ---- conversion ---------------------------------------------------------------- */

static void fail(rd_t *r, int rc, const char *fmt, const char *arg) {
    if (r->rc == HV_OK) {
        r->rc = rc;
        hv_error_set(r->err, rc, r->path.buf, fmt, arg);
    }
}

static int is_xsi(xmlAttrPtr a)
{
    return a->ns != NULL && a->ns->href != NULL && strcmp((const char *)a->ns->href, XSI_NS) == 0;
}

static int is_blank(const xmlChar *s) {
    for (; s != NULL && *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r' && *s != '\n')
            return 0;
    return 1;
}

/* The div's text: the input bytes when the recorded span frames it, else a dump. */
static struct json_object *div_text(rd_t *r, xmlNodePtr node) {
    for (size_t i = 0; i < r->ndivs; i++) {
        div_span_t *d = &r->divs[i];
        if (d->node != node)
            continue;
        if (d->end > d->start + 4 && d->end <= r->len &&
            memcmp(r->text + d->start, "<div", 4) == 0 && r->text[d->end - 1] == '>')
            return json_object_new_string_len(r->text + d->start, (int)(d->end - d->start));
        break;
    }
    xmlBufferPtr buf = xmlBufferCreate();
    struct json_object *s = NULL;
    if (buf == NULL)
        return NULL;
    if (xmlNodeDump(buf, node->doc, node, 0, 0) >= 0)
        s = json_object_new_string_len((const char *)xmlBufferContent(buf), xmlBufferLength(buf));
    xmlBufferFree(buf);
    return s;
}

/* FHIR R4 json.html §Primitive types: the JSON value for a value attribute. */
static struct json_object *prim_value(rd_t *r, const hv_fhir_type_t *t, const char *s) {
    const hv_fhir_type_t *sys = hv_fhir_type_system(t);
    const char *sn = sys != NULL ? hv_fhir_type_name(sys) : "";
    if (strcmp(sn, "System.Boolean") == 0) {
        if (strcmp(s, "true") == 0)
            return json_object_new_boolean(1);
        if (strcmp(s, "false") == 0)
            return json_object_new_boolean(0);
        fail(r, HV_EINVAL, "'%s' is not a boolean", s);
        return NULL;
    }
    if (strcmp(sn, "System.Integer") == 0 || strcmp(sn, "System.Decimal") == 0) {
        int dec = sn[7] == 'D';
        const char *p = s;
        int frac = 0;
        if (*p == '-')
            p++;
        if (!(p[0] == '0' && (p[1] == '\0' || p[1] == '.' || p[1] == 'e' || p[1] == 'E')) &&
            !(p[0] >= '1' && p[0] <= '9'))
            goto bad;
        while (*p >= '0' && *p <= '9')
            p++;
        if (dec && *p == '.') {
            frac = 1;
            p++;
            if (!(*p >= '0' && *p <= '9'))
                goto bad;
            while (*p >= '0' && *p <= '9')
                p++;
        }
        if (dec && (*p == 'e' || *p == 'E')) {
            frac = 1;
            p++;
            if (*p == '+' || *p == '-')
                p++;
            if (!(*p >= '0' && *p <= '9'))
                goto bad;
            while (*p >= '0' && *p <= '9')
                p++;
        }
        if (*p != '\0')
            goto bad;
        if (!frac && strcmp(s, "-0") != 0) {
            /* The JSON number json-c would make of the same text (int64, else uint64). */
            errno = 0;
            long long v = strtoll(s, NULL, 10);
            if (errno == 0)
                return json_object_new_int64(v);
            errno = 0;
            unsigned long long u = s[0] != '-' ? strtoull(s, NULL, 10) : 0;
            if (s[0] != '-' && errno == 0)
                return json_object_new_uint64(u);
            if (!dec)
                goto bad;
        }
        if (!dec)
            goto bad;
        return json_object_new_double_s(strtod(s, NULL), s);
    bad:
        fail(r, HV_EINVAL, "'%s' is not a valid number", s);
        return NULL;
    }
    return json_object_new_string(s);
}

static void convert(rd_t *r, xmlNodePtr node, const hv_fhir_elem_t *owner, struct json_object *obj,
                    int depth);

/* Appends (val, twin) to key/_key of obj: arrays padded with nulls, or single values. */
static void add_prop(rd_t *r, struct json_object *obj, const char *key, const hv__fhir_prop_t *p,
                     struct json_object *val, struct json_object *twin) {
    char tkey[160];
    snprintf(tkey, sizeof(tkey), "_%s", key);
    if (hv_fhir_elem_is_array(p->elem)) {
        struct json_object *a = NULL, *ta = NULL;
        if (!json_object_object_get_ex(obj, key, &a)) {
            a = json_object_new_array();
            json_object_object_add(obj, key, a);
        }
        if (hv_fhir_type_kind(p->type) == HV_FHIR_KIND_PRIMITIVE) {
            if (!json_object_object_get_ex(obj, tkey, &ta)) {
                ta = json_object_new_array();
                json_object_object_add(obj, tkey, ta);
            }
            json_object_array_add(ta, twin);
        }
        json_object_array_add(a, val);
        return;
    }
    if (json_object_object_get_ex(obj, key, NULL) || json_object_object_get_ex(obj, tkey, NULL)) {
        json_object_put(val);
        json_object_put(twin);
        fail(r, HV_EINVAL, "element '%s' does not repeat", key);
        return;
    }
    if (val != NULL)
        json_object_object_add(obj, key, val);
    if (twin != NULL)
        json_object_object_add(obj, tkey, twin);
}

/* Drops the all-null arrays left by add_prop (`_given` when no given has an id). */
static void prune_nulls(struct json_object *obj) {
    const char *drop[64];
    size_t nd = 0;
    json_object_object_foreach(obj, key, val) {
        if (!json_object_is_type(val, json_type_array))
            continue;
        size_t n = json_object_array_length(val), i;
        for (i = 0; i < n && json_object_array_get_idx(val, i) == NULL; i++)
            ;
        if (i == n && nd < HV_ARRAY_LEN(drop))
            drop[nd++] = key;
    }
    for (size_t i = 0; i < nd; i++)
        json_object_object_del(obj, drop[i]);
}

static void convert_child(rd_t *r, xmlNodePtr c, const hv_fhir_elem_t *owner,
                          struct json_object *obj, int depth) {
    hv__fhir_prop_t p;
    const char *name = (const char *)c->name;
    size_t mark = hv__fhir_path_push(&r->path, name, -1);
    int xhtml = c->ns != NULL && strcmp((const char *)c->ns->href, XHTML_NS) == 0;
    if ((c->ns == NULL || strcmp((const char *)c->ns->href, FHIR_NS) != 0) && !xhtml) {
        fail(r, HV_EINVAL, "element '%s' is not in the FHIR namespace", name);
        goto out;
    }
    if (hv__fhir_prop_resolve(owner, name, &p) != HV_OK || p.underscore ||
        hv_fhir_elem_is_xml_attr(p.elem) || (xhtml != hv_fhir_elem_is_xhtml(p.elem))) {
        fail(r, HV_EINVAL, "unknown element '%s'", name);
        goto out;
    }
    hv_fhir_kind_t k = hv_fhir_type_kind(p.type);
    if (k == HV_FHIR_KIND_SYSTEM) {
        fail(r, HV_EINVAL, "unknown element '%s'", name); /* a primitive's value is an attribute */
        goto out;
    }
    if (xhtml) {
        struct json_object *s = div_text(r, c);
        if (s == NULL)
            fail(r, HV_ENOMEM, "%s", "out of memory");
        else
            add_prop(r, obj, name, &p, s, NULL);
    } else if (k == HV_FHIR_KIND_PRIMITIVE) {
        struct json_object *val = NULL, *twin = NULL;
        for (xmlAttrPtr a = c->properties; a != NULL && r->rc == HV_OK; a = a->next) {
            xmlChar *v = xmlNodeListGetString(c->doc, a->children, 1);
            const char *an = (const char *)a->name;
            if (is_xsi(a)) {
                /* xsi:schemaLocation and the like say nothing about the content. */
            } else if (a->ns != NULL) {
                fail(r, HV_EINVAL, "unexpected attribute '%s'", an);
            } else if (strcmp(an, "value") == 0) {
                val = prim_value(r, p.type, v != NULL ? (const char *)v : "");
            } else if (strcmp(an, "id") == 0) {
                if (twin == NULL)
                    twin = json_object_new_object();
                hv_json_set_str(twin, "id", v != NULL ? (const char *)v : "");
            } else {
                fail(r, HV_EINVAL, "unexpected attribute '%s'", an);
            }
            xmlFree(v);
        }
        struct json_object *ext = json_object_new_object();
        convert(r, c, hv_fhir_type_root(p.type), ext, depth + 1);
        if (json_object_object_length(ext) > 0) {
            if (twin == NULL)
                twin = json_object_new_object();
            json_object_object_foreach(ext, ek, ev) {
                if (strcmp(ek, "extension") != 0)
                    fail(r, HV_EINVAL, "unexpected element '%s' in a primitive", ek);
                else
                    json_object_object_add(twin, ek, json_object_get(ev));
            }
        }
        json_object_put(ext);
        if (r->rc == HV_OK && val == NULL && twin == NULL)
            fail(r, HV_EINVAL, "element '%s' has no value and no extension", name);
        if (r->rc == HV_OK) {
            add_prop(r, obj, name, &p, val, twin);
        } else {
            json_object_put(val);
            json_object_put(twin);
        }
    } else if (k == HV_FHIR_KIND_RESOURCE) {
        xmlNodePtr inner = NULL;
        for (xmlNodePtr x = c->children; x != NULL; x = x->next) {
            if (x->type == XML_ELEMENT_NODE) {
                if (inner != NULL)
                    fail(r, HV_EINVAL, "'%s' must hold exactly one resource", name);
                inner = x;
            } else if (x->type == XML_TEXT_NODE && !is_blank(x->content)) {
                fail(r, HV_EINVAL, "unexpected text in '%s'", name);
            }
        }
        const hv_fhir_type_t *rt =
            inner != NULL ? hv_fhir_resource_type((const char *)inner->name) : NULL;
        if (r->rc == HV_OK && (rt == NULL || inner->ns == NULL ||
                               strcmp((const char *)inner->ns->href, FHIR_NS) != 0)) {
            fail(r, HV_EINVAL, "'%s' must hold a known FHIR resource", name);
        }
        if (r->rc == HV_OK) {
            struct json_object *res = json_object_new_object();
            hv_json_set_str(res, "resourceType", hv_fhir_type_name(rt));
            convert(r, inner, hv_fhir_type_root(rt), res, depth + 1);
            add_prop(r, obj, name, &p, res, NULL);
        }
    } else {
        struct json_object *sub = json_object_new_object();
        convert(r, c, hv_fhir_elem_owner(p.elem, p.type), sub, depth + 1);
        add_prop(r, obj, name, &p, sub, NULL);
    }
out:
    hv__fhir_path_pop(&r->path, mark);
}

/* Converts the attributes and child elements of node into properties of obj. */
static void convert(rd_t *r, xmlNodePtr node, const hv_fhir_elem_t *owner, struct json_object *obj,
                    int depth) {
    int primitive = hv_fhir_type_kind(hv_fhir_elem_owner_type(owner)) == HV_FHIR_KIND_PRIMITIVE &&
                    hv_fhir_elem_parent(owner) == NULL;
    if (depth > r->max_depth) {
        r->too_deep = 1;
        fail(r, HV_ETOOBIG, "%s", "the document nests too deeply");
        return;
    }
    if (!primitive) {
        for (xmlAttrPtr a = node->properties; a != NULL && r->rc == HV_OK; a = a->next) {
            hv__fhir_prop_t p;
            const char *an = (const char *)a->name;
            if (is_xsi(a))
                continue; /* xsi:schemaLocation on the root, as many documents carry */
            if (a->ns != NULL || hv__fhir_prop_resolve(owner, an, &p) != HV_OK || p.underscore ||
                !hv_fhir_elem_is_xml_attr(p.elem)) {
                fail(r, HV_EINVAL, "unexpected attribute '%s'", an);
                break;
            }
            xmlChar *v = xmlNodeListGetString(node->doc, a->children, 1);
            hv_json_set_str(obj, an, v != NULL ? (const char *)v : "");
            xmlFree(v);
        }
    }
    for (xmlNodePtr c = node->children; c != NULL && r->rc == HV_OK; c = c->next) {
        switch (c->type) {
        case XML_ELEMENT_NODE:
            convert_child(r, c, owner, obj, depth);
            break;
        case XML_TEXT_NODE:
        case XML_CDATA_SECTION_NODE:
            if (!is_blank(c->content))
                fail(r, HV_EINVAL, "%s", "unexpected text content");
            break;
        case XML_ENTITY_REF_NODE:
            fail(r, HV_EINVAL, "%s", "entity references are not allowed");
            break;
        default:
            break; /* comments, processing instructions */
        }
    }
    prune_nulls(obj);
}

int hv_fhir_xml_parse(const char *text, size_t len, const hv_fhir_parse_opts_t *opts,
                      struct json_object **out, hv_error_t *err) {
    size_t max_bytes =
        opts != NULL && opts->max_bytes > 0 ? opts->max_bytes : HV_FHIR_DEFAULT_MAX_BYTES;
    int max_depth =
        opts != NULL && opts->max_depth > 0 ? opts->max_depth : HV_FHIR_DEFAULT_MAX_DEPTH;
    xmlParserCtxtPtr ctxt = NULL;
    xmlDocPtr doc = NULL;
    struct json_object *obj = NULL;
    rd_t r;
    hv__fhir_xml_quiet_t quiet;
    int rc = HV_EPROTO;

    memset(&r, 0, sizeof(r));
    r.text = text;
    r.len = len;
    r.max_depth = max_depth;
    r.err = err;
    if (len > max_bytes || len > INT32_MAX) {
        hv_error_set(err, HV_ETOOBIG, NULL, "document of %zu bytes exceeds the cap of %zu", len,
                     max_bytes);
        return HV_ETOOBIG;
    }
    if (len == 0) {
        hv_error_set(err, HV_EPROTO, NULL, "invalid XML: the document is empty");
        if (err != NULL)
            err->line = err->column = 1;
        return HV_EPROTO;
    }
    ctxt = xmlCreateMemoryParserCtxt(text, (int)len);
    if (ctxt == NULL) {
        hv_error_set(err, HV_ENOMEM, NULL, "out of memory");
        rc = HV_ENOMEM;
        goto out;
    }
    ctxt->_private = &r;
    ctxt->sax->startElementNs = sax_start;
    ctxt->sax->endElementNs = sax_end;
    ctxt->sax->internalSubset = sax_subset;
    ctxt->sax->externalSubset = sax_subset;
    xmlCtxtUseOptions(ctxt, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    hv__fhir_xml_quiet_begin(&quiet);
    xmlParseDocument(ctxt);
    hv__fhir_xml_quiet_end(&quiet);
    doc = ctxt->myDoc;
    ctxt->myDoc = NULL;
    if (r.oom) {
        rc = HV_ENOMEM;
        goto out;
    }
    if (r.too_deep) {
        rc = HV_ETOOBIG;
        hv_error_set(err, rc, NULL, "the document nests deeper than %d levels", max_depth);
        goto out;
    }
    if (r.dtd) {
        rc = HV_EPROTO;
        hv_error_set(err, rc, NULL, "a DOCTYPE is not allowed in FHIR XML");
        goto out;
    }
    /* R4 http.html §Content Types and encodings: UTF-8 SHALL be used. Another declared
     * encoding is refused even when libxml2 could convert it (its converters drop what
     * they cannot map, so the tree would not say what the sender wrote). */
    const xmlChar *enc = doc != NULL && doc->encoding != NULL ? doc->encoding : ctxt->encoding;
    const xmlCharEncodingHandler *conv =
        ctxt->input != NULL && ctxt->input->buf != NULL ? ctxt->input->buf->encoder : NULL;
    if ((enc != NULL && xmlStrcasecmp(enc, BAD_CAST "UTF-8") != 0) || conv != NULL) {
        rc = HV_EPROTO;
        hv_error_set(err, rc, NULL, "FHIR XML is UTF-8; the document is encoded as \"%.40s\"",
                     enc != NULL ? (const char *)enc : conv->name);
        if (err != NULL)
            err->line = err->column = 1;
        goto out;
    }
    if (!ctxt->wellFormed || doc == NULL) {
        const xmlError *e = &ctxt->lastError;
        char msg[300];
        snprintf(msg, sizeof(msg), "%s", e->message != NULL ? e->message : "not well-formed");
        size_t ml = strlen(msg);
        while (ml > 0 && (msg[ml - 1] == '\n' || msg[ml - 1] == ' '))
            msg[--ml] = '\0';
        hv_error_set(err, HV_EPROTO, NULL, "invalid XML: %s", msg);
        if (err != NULL) {
            err->line = e->line;
            err->column = e->int2;
        }
        goto out;
    }
    xmlNodePtr root = xmlDocGetRootElement(doc);
    const hv_fhir_type_t *rt =
        root != NULL ? hv_fhir_resource_type((const char *)root->name) : NULL;
    if (rt == NULL || root->ns == NULL || strcmp((const char *)root->ns->href, FHIR_NS) != 0) {
        rc = HV_EINVAL;
        hv_error_set(err, rc, NULL, "the root element is not a FHIR resource");
        goto out;
    }
    obj = json_object_new_object();
    if (obj == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    hv_json_set_str(obj, "resourceType", hv_fhir_type_name(rt));
    hv__fhir_path_push(&r.path, hv_fhir_type_name(rt), -1);
    convert(&r, root, hv_fhir_type_root(rt), obj, 0);
    if (r.rc != HV_OK) {
        rc = r.rc;
        goto out;
    }
    *out = obj;
    obj = NULL;
    rc = HV_OK;
out:
    json_object_put(obj);
    xmlFreeDoc(doc);
    if (ctxt != NULL)
        xmlFreeParserCtxt(ctxt);
    hv_free(r.divs);
    return rc;
}
