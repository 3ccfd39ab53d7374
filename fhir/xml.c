/*
 * xml.c — the FHIR R4 XML format (FHIR R4 xml.html), converted to and from the
 * JSON form that is the in-memory resource.
 *
 * The mapping, element by element (xml.html §XML representation, json.html):
 *
 *   JSON                                   XML
 *   "resourceType": "Patient" (root)       <Patient xmlns="http://hl7.org/fhir">
 *   "birthDate": "1970"                    <birthDate value="1970"/>
 *   "_birthDate": {"id": "a",              <birthDate id="a" value="1970">
 *      "extension": [...]}                   <extension url="..">..</extension></birthDate>
 *   "given": ["a", null], "_given": [null, {"id": "b"}]   <given value="a"/><given id="b"/>
 *   "id" of a complex element, Extension "url"  attributes (representation xmlAttr)
 *   "div": "<div xmlns=...>..</div>"       the XHTML element itself
 *   "contained": [{"resourceType": "X"}]   <contained><X>..</X></contained>
 *
 * Writing is text generation into a capped buffer, in the specification's element
 * order; the narrative div is copied verbatim (after a well-formedness check).
 * Reading uses libxml2 with a SAX2 wrapper that records where each XHTML div starts
 * and ends in the input, so the div text goes back to JSON byte for byte. libxml2
 * is protected: no network (XML_PARSE_NONET), no entity substitution (no
 * XML_PARSE_NOENT), any DTD stops the parse, a byte cap and a depth cap.
 */
#include "config.h"

#include <json-c/json.h>
#include <libxml/parser.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir_int.h"

#define FHIR_NS "http://hl7.org/fhir"
#define XHTML_NS "http://www.w3.org/1999/xhtml"

/* ---- writing ------------------------------------------------------------------ */

typedef struct xw {
    hv_buf_t *out;
    unsigned flags;
    hv__fhir_path_t path;
    hv_error_t *err;
    int rc;
} xw_t;

static void xw_fail(xw_t *w, int rc, const char *msg) {
    if (w->rc == HV_OK) {
        w->rc = rc;
        hv_error_set(w->err, rc, w->path.buf, "%s", msg);
    }
}

static void put(xw_t *w, const char *s) {
    if (w->rc == HV_OK)
        w->rc = hv_buf_puts(w->out, s);
}

static void putn(xw_t *w, const char *s, size_t n) {
    if (w->rc == HV_OK)
        w->rc = hv_buf_append(w->out, s, n);
}

static void nl(xw_t *w, int depth) {
    if (!(w->flags & HV_FHIR_WRITE_PRETTY))
        return;
    put(w, "\n");
    for (int i = 0; i < depth; i++)
        put(w, "  ");
}

/* Escapes an attribute value (XML 1.0 §3.3.3: literal TAB, CR, LF would be normalized
 * to spaces, so they are written as character references). */
static void put_attr_value(xw_t *w, const char *s, size_t n) {
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *rep = NULL;
        switch (c) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\t':
            rep = "&#x9;";
            break;
        case '\n':
            rep = "&#xA;";
            break;
        case '\r':
            rep = "&#xD;";
            break;
        default:
            /* XML 1.0 §2.2 Char excludes the C0 controls but TAB/LF/CR, and U+FFFE/U+FFFF. */
            if (c < 0x20 ||
                (c == 0xEF && i + 2 < n && (unsigned char)s[i + 1] == 0xBF &&
                 ((unsigned char)s[i + 2] == 0xBE || (unsigned char)s[i + 2] == 0xBF))) {
                xw_fail(w, HV_EINVAL, "a character that XML cannot carry");
                return;
            }
        }
        if (rep != NULL) {
            putn(w, s + start, i - start);
            put(w, rep);
            start = i + 1;
        }
    }
    putn(w, s + start, n - start);
}

static void put_attr(xw_t *w, const char *name, const char *s, size_t n) {
    put(w, " ");
    put(w, name);
    put(w, "=\"");
    put_attr_value(w, s, n);
    put(w, "\"");
}

/* The text of a primitive JSON value for a value attribute. */
static const char *prim_text(struct json_object *v, size_t *n) {
    const char *s;
    switch (json_object_get_type(v)) {
    case json_type_string:
        *n = (size_t)json_object_get_string_len(v);
        return json_object_get_string(v);
    case json_type_boolean:
        s = json_object_get_boolean(v) ? "true" : "false";
        break;
    case json_type_int:
    case json_type_double:
        s = hv_fhir_json_number_text(v);
        break;
    default:
        return NULL;
    }
    *n = strlen(s);
    return s;
}

static void write_children(xw_t *w, struct json_object *obj, const hv_fhir_elem_t *owner, int depth,
                           int in_start_tag);

static int is_xhtml_div_ok(const char *s, size_t n) {
    /*
     * The narrative is copied into the output as it is, so it must be one XHTML div
     * element and nothing else: no XML declaration, DTD, or nodes around it, and the
     * XHTML namespace declared on the div itself (xml.html §Narrative).
     */
    if (n < 6 || memcmp(s, "<div", 4) != 0 || s[n - 1] != '>')
        return 0;
    hv__fhir_xml_quiet_t quiet;
    hv__fhir_xml_quiet_begin(&quiet);
    xmlDocPtr doc = xmlReadMemory(s, (int)n, NULL, "UTF-8",
                                  XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    hv__fhir_xml_quiet_end(&quiet);
    xmlNodePtr root = doc != NULL ? xmlDocGetRootElement(doc) : NULL;
    int ok = root != NULL && doc->intSubset == NULL && doc->children == root &&
             root->next == NULL && strcmp((const char *)root->name, "div") == 0 &&
             root->ns != NULL && root->ns->prefix == NULL &&
             strcmp((const char *)root->ns->href, XHTML_NS) == 0;
    xmlFreeDoc(doc);
    return ok;
}

/* Writes one occurrence of element `name`: value/twin for primitives, else an object. */
static void write_item(xw_t *w, const char *name, const hv__fhir_prop_t *p, struct json_object *val,
                       struct json_object *twin, int depth) {
    hv_fhir_kind_t k = hv_fhir_type_kind(p->type);
    nl(w, depth);
    if (hv_fhir_elem_is_xhtml(p->elem)) {
        if (!json_object_is_type(val, json_type_string) ||
            !is_xhtml_div_ok(json_object_get_string(val),
                             (size_t)json_object_get_string_len(val))) {
            xw_fail(w, HV_EINVAL, "the narrative div is not well-formed XHTML");
            return;
        }
        putn(w, json_object_get_string(val), (size_t)json_object_get_string_len(val));
        return;
    }
    put(w, "<");
    put(w, name);
    if (k == HV_FHIR_KIND_PRIMITIVE) {
        struct json_object *id = NULL, *ext = NULL;
        if (twin != NULL && !json_object_is_type(twin, json_type_object)) {
            xw_fail(w, HV_EINVAL, "a primitive extension must be an object");
            return;
        }
        if (twin != NULL) {
            json_object_object_foreach(twin, tk, tv) {
                if (strcmp(tk, "id") == 0 && json_object_is_type(tv, json_type_string))
                    id = tv;
                else if (strcmp(tk, "extension") == 0)
                    ext = tv;
                else
                    xw_fail(w, HV_EINVAL, "unknown property in a primitive extension");
            }
        }
        if (id != NULL)
            put_attr(w, "id", json_object_get_string(id), (size_t)json_object_get_string_len(id));
        if (val != NULL) {
            size_t n = 0;
            const char *s = prim_text(val, &n);
            if (s == NULL) {
                xw_fail(w, HV_EINVAL, "a primitive value must be a string, number or boolean");
                return;
            }
            put_attr(w, "value", s, n);
        }
        if (ext == NULL) {
            put(w, "/>");
            return;
        }
        put(w, ">");
        struct json_object *holder = json_object_new_object();
        if (holder == NULL) {
            xw_fail(w, HV_ENOMEM, "out of memory");
            return;
        }
        json_object_object_add(holder, "extension", json_object_get(ext));
        write_children(w, holder, hv_fhir_type_root(p->type), depth, 0);
        json_object_put(holder);
    } else if (k == HV_FHIR_KIND_RESOURCE) {
        const hv_fhir_elem_t *root =
            json_object_is_type(val, json_type_object) ? hv__fhir_resource_root(val) : NULL;
        if (root == NULL) {
            xw_fail(w, HV_EINVAL, "a contained resource needs a known resourceType");
            return;
        }
        put(w, ">");
        nl(w, depth + 1);
        put(w, "<");
        put(w, hv_fhir_elem_name(root));
        write_children(w, val, root, depth + 1, 1);
        put(w, "</");
        put(w, hv_fhir_elem_name(root));
        put(w, ">");
    } else {
        if (!json_object_is_type(val, json_type_object)) {
            xw_fail(w, HV_EINVAL, "a complex element must be an object");
            return;
        }
        write_children(w, val, hv_fhir_elem_owner(p->elem, p->type), depth, 1);
    }
    if (w->rc != HV_OK)
        return;
    nl(w, depth);
    put(w, "</");
    put(w, name);
    put(w, ">");
}

typedef struct xent {
    const char *key; /* the name without '_' */
    struct json_object *val, *twin;
    hv__fhir_prop_t prop;
    long order;
} xent_t;

static int cmp_xent(const void *a, const void *b) {
    const xent_t *x = a, *y = b;
    return x->order < y->order ? -1 : x->order > y->order;
}

/*
 * Completes an open start tag "<name" with the attribute elements of obj and '>',
 * then writes the child elements in specification order. The caller writes the end
 * tag. The root (depth 0) also gets the FHIR namespace declaration.
 */
static void write_children(xw_t *w, struct json_object *obj, const hv_fhir_elem_t *owner, int depth,
                           int in_start_tag) {
    size_t n = (size_t)json_object_object_length(obj), m = 0;
    int is_resource = hv_fhir_elem_parent(owner) == NULL &&
                      hv_fhir_type_kind(hv_fhir_elem_owner_type(owner)) == HV_FHIR_KIND_RESOURCE;
    xent_t *ents = hv_malloc((n > 0 ? n : 1) * sizeof(*ents));
    if (ents == NULL) {
        xw_fail(w, HV_ENOMEM, "out of memory");
        return;
    }
    if (depth > HV_FHIR_DEFAULT_MAX_DEPTH * 2) {
        xw_fail(w, HV_ETOOBIG, "the resource nests too deeply");
        goto out;
    }
    json_object_object_foreach(obj, key, val) {
        hv__fhir_prop_t p;
        if (is_resource && strcmp(key, "resourceType") == 0)
            continue;
        if (hv__fhir_prop_resolve(owner, key, &p) != HV_OK) {
            size_t mark = hv__fhir_path_push(&w->path, key, -1);
            xw_fail(w, HV_EINVAL, "unknown element: it has no XML form");
            hv__fhir_path_pop(&w->path, mark);
            goto out;
        }
        const char *name = key + p.underscore;
        /* Merge x and _x into one entry. */
        size_t j;
        for (j = 0; j < m; j++)
            if (ents[j].prop.elem == p.elem && strcmp(ents[j].key, name) == 0)
                break;
        if (j == m) {
            ents[m].key = name;
            ents[m].val = ents[m].twin = NULL;
            ents[m].prop = p;
            ents[m].prop.underscore = 0;
            ents[m].order = (long)hv_fhir_elem_index(p.elem);
            m++;
        }
        if (p.underscore)
            ents[j].twin = val;
        else
            ents[j].val = val;
    }
    if (m > 1)
        qsort(ents, m, sizeof(*ents), cmp_xent);
    /* Attributes first (Element.id, Extension.url), then '>' and the elements. */
    for (size_t i = 0; i < m && in_start_tag; i++) {
        if (!hv_fhir_elem_is_xml_attr(ents[i].prop.elem))
            continue;
        size_t len = 0;
        const char *s = ents[i].val != NULL ? prim_text(ents[i].val, &len) : NULL;
        if (s == NULL || ents[i].twin != NULL) {
            xw_fail(w, HV_EINVAL, "an XML attribute element must be a plain primitive");
            goto out;
        }
        put_attr(w, ents[i].key, s, len);
    }
    if (in_start_tag) {
        if (depth == 0)
            put(w, " xmlns=\"" FHIR_NS "\"");
        put(w, ">");
    }
    for (size_t i = 0; i < m && w->rc == HV_OK; i++) {
        xent_t *e = &ents[i];
        if (hv_fhir_elem_is_xml_attr(e->prop.elem))
            continue;
        size_t mark = hv__fhir_path_push(&w->path, e->key, -1);
        if (hv_fhir_elem_is_array(e->prop.elem)) {
            size_t nv = e->val != NULL && json_object_is_type(e->val, json_type_array)
                            ? json_object_array_length(e->val)
                            : 0;
            size_t nt = e->twin != NULL && json_object_is_type(e->twin, json_type_array)
                            ? json_object_array_length(e->twin)
                            : 0;
            if ((e->val != NULL && !json_object_is_type(e->val, json_type_array)) ||
                (e->twin != NULL && !json_object_is_type(e->twin, json_type_array))) {
                xw_fail(w, HV_EINVAL, "a repeating element must be an array");
                break;
            }
            size_t cnt = nv > nt ? nv : nt;
            for (size_t k = 0; k < cnt && w->rc == HV_OK; k++) {
                struct json_object *v = k < nv ? json_object_array_get_idx(e->val, k) : NULL;
                struct json_object *t = k < nt ? json_object_array_get_idx(e->twin, k) : NULL;
                if (v == NULL && t == NULL) {
                    xw_fail(w, HV_EINVAL, "an array item is null in both x and _x");
                    break;
                }
                write_item(w, e->key, &e->prop, v, t, depth + 1);
            }
        } else {
            write_item(w, e->key, &e->prop, e->val, e->twin, depth + 1);
        }
        hv__fhir_path_pop(&w->path, mark);
    }
out:
    hv_free(ents);
}

static int xml_write(struct json_object *resource, unsigned flags, hv_buf_t *out, hv_error_t *err) {
    xw_t w;
    memset(&w, 0, sizeof(w));
    w.out = out;
    w.flags = flags;
    w.err = err;
    size_t start = out->len;
    const hv_fhir_elem_t *root =
        json_object_is_type(resource, json_type_object) ? hv__fhir_resource_root(resource) : NULL;
    if (root == NULL) {
        hv_error_set(err, HV_EINVAL, NULL, "the resource has no known resourceType");
        return HV_EINVAL;
    }
    hv__fhir_path_push(&w.path, hv_fhir_elem_name(root), -1);
    put(&w, "<");
    put(&w, hv_fhir_elem_name(root));
    write_children(&w, resource, root, 0, 1);
    nl(&w, 0);
    put(&w, "</");
    put(&w, hv_fhir_elem_name(root));
    put(&w, ">");
    if (w.rc != HV_OK) {
        out->len = start;
        if (out->data != NULL)
            out->data[start] = '\0';
    }
    return w.rc;
}

int hv_fhir_xml_write(struct json_object *resource, unsigned flags, hv_buf_t *out) {
    return xml_write(resource, flags, out, NULL);
}

int hv__fhir_xml_write_err(struct json_object *resource, unsigned flags, hv_buf_t *out,
                           hv_error_t *err) {
    return xml_write(resource, flags, out, err);
}
