/*
 * ucum_load.c — loads the UCUM definitions from the essence file (ucum-essence.xml,
 * https://ucum.org/ucum §§ "The Unified Code for Units of Measure in XML") with
 * libxml2, and resolves every unit atom to its canonical form.
 *
 * The essence has three kinds of entries under <root version=.. revision-date=..>:
 *
 *   <prefix Code="k"><name>kilo</name><value value="1e3"/></prefix>
 *   <base-unit Code="m" dim="L"><name>meter</name></base-unit>
 *   <unit Code="N" isMetric="yes" [isSpecial="yes"] [isArbitrary="yes"]>
 *       <name>newton</name>
 *       <value Unit="kg.m/s2" value="1"/>                       ratio-scale units
 *       <value Unit="cel(1 K)"><function name="Cel" value="1" Unit="K"/></value>  special
 *   </unit>
 *
 * Each unit's definition is itself a UCUM expression, parsed with the same parser
 * (ucum_parse.c) and resolved depth-first; a definition cycle or an unknown atom
 * fails the load. Once loaded the table is immutable, which makes it safe to share
 * between threads.
 */
#include "config.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxml/parser.h>
#include <libxml/tree.h>

#include "terminology/ucum_int.h"

#ifndef HV_UCUM_DATADIR
#define HV_UCUM_DATADIR "/usr/local/share/holovitals"
#endif
#ifndef HV_UCUM_SRCDIR
#define HV_UCUM_SRCDIR "."
#endif

#define DEFAULT_CACHE 4096

/* Base-unit dimension letters of the essence (dim="L" ...), in enum hv_ucum_dim order. */
static const char base_dims[HV_UCUM_NDIM] = {'L', 'T', 'M', 'A', 'C', 'Q', 'F'};

static const struct {
    const char *name;
    int fn;
} functions[] = {
    {"Cel", HV__UCUM_FN_CEL},         {"degF", HV__UCUM_FN_DEGF},
    {"degRe", HV__UCUM_FN_DEGRE},     {"tanTimes100", HV__UCUM_FN_TANTIMES100},
    {"100tan", HV__UCUM_FN_100TAN},   {"hpX", HV__UCUM_FN_HPX},
    {"hpC", HV__UCUM_FN_HPC},         {"hpM", HV__UCUM_FN_HPM},
    {"hpQ", HV__UCUM_FN_HPQ},         {"pH", HV__UCUM_FN_PH},
    {"ln", HV__UCUM_FN_LN},           {"lg", HV__UCUM_FN_LG},
    {"lgTimes2", HV__UCUM_FN_LGTIMES2}, {"sqrt", HV__UCUM_FN_SQRT},
    {"ld", HV__UCUM_FN_LD},
};

uint64_t hv__ucum_hash(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    size_t i;
    for (i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ULL;
    }
    return h;
}

const hv__ucum_atom_t *hv__ucum_atom_find(const hv_ucum_t *u, const char *code, size_t n) {
    size_t i = (size_t)hv__ucum_hash(code, n) & u->index_mask;
    for (;;) {
        uint32_t k = u->index[i];
        const hv__ucum_atom_t *a;
        if (k == 0) return NULL;
        a = &u->atoms[k - 1];
        if (strncmp(a->code, code, n) == 0 && a->code[n] == '\0') return a;
        i = (i + 1) & u->index_mask;
    }
}

/* Copies an attribute as an hv_malloc'd string; NULL if absent (or on ENOMEM, *oom set). */
static char *attr_dup(xmlNodePtr n, const char *name, int *oom) {
    xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
    char *s;
    if (v == NULL) return NULL;
    s = hv_strdup((const char *)v);
    xmlFree(v);
    if (s == NULL) *oom = 1;
    return s;
}

static int attr_is_yes(xmlNodePtr n, const char *name) {
    xmlChar *v = xmlGetProp(n, (const xmlChar *)name);
    int yes = v != NULL && strcmp((const char *)v, "yes") == 0;
    xmlFree(v);
    return yes;
}

static xmlNodePtr child(xmlNodePtr n, const char *name) {
    xmlNodePtr c;
    for (c = n->children; c != NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE && strcmp((const char *)c->name, name) == 0) return c;
    return NULL;
}

/* The trimmed text of child element `name`, hv_malloc'd; "" if absent. */
static char *child_text(xmlNodePtr n, const char *name, int *oom) {
    xmlNodePtr c = child(n, name);
    xmlChar *t = c != NULL ? xmlNodeGetContent(c) : NULL;
    const char *s = t != NULL ? (const char *)t : "";
    size_t len;
    char *out;
    while (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r') s++;
    len = strlen(s);
    while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\n' || s[len - 1] == '\t' ||
                       s[len - 1] == '\r'))
        len--;
    out = hv_strndup(s, len);
    if (out == NULL) *oom = 1;
    xmlFree(t);
    return out;
}

static int parse_number(const char *s, double *out) {
    char *end = NULL;
    double v;
    if (s == NULL || *s == '\0') return HV_EINVAL;
    v = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(v)) return HV_EINVAL;
    *out = v;
    return HV_OK;
}

/* Reads one <unit> or <base-unit> into a (zeroed by the caller). */
static int read_unit(xmlNodePtr n, int is_base, hv__ucum_atom_t *a, hv_error_t *err) {
    int oom = 0;
    int rc = HV_EPROTO;
    a->code = attr_dup(n, "Code", &oom);
    a->name = child_text(n, "name", &oom);
    if (oom) return HV_ENOMEM;
    if (a->code == NULL || a->code[0] == '\0') {
        hv_error_set(err, HV_EPROTO, "ucum-essence", "a unit at line %ld has no Code",
                     (long)xmlGetLineNo(n));
        return HV_EPROTO;
    }
    a->is_base = is_base != 0;
    a->is_metric = attr_is_yes(n, "isMetric") || is_base;
    a->is_special = attr_is_yes(n, "isSpecial");
    a->is_arbitrary = attr_is_yes(n, "isArbitrary");
    if (is_base) {
        xmlChar *dim = xmlGetProp(n, (const xmlChar *)"dim");
        int i;
        a->base_dim = -1;
        for (i = 0; dim != NULL && i < HV_UCUM_NDIM; i++)
            if (dim[0] == (xmlChar)base_dims[i] && dim[1] == '\0') a->base_dim = i;
        xmlFree(dim);
        if (a->base_dim < 0) {
            hv_error_set(err, HV_EPROTO, "ucum-essence", "base unit '%s' has an unknown dim",
                         a->code);
            return HV_EPROTO;
        }
        return HV_OK;
    }
    {
        xmlNodePtr val = child(n, "value");
        xmlNodePtr fn = val != NULL ? child(val, "function") : NULL;
        char *num = NULL;
        if (val == NULL) {
            hv_error_set(err, HV_EPROTO, "ucum-essence", "unit '%s' has no <value>", a->code);
            return HV_EPROTO;
        }
        if (a->is_special) {
            xmlChar *fname = fn != NULL ? xmlGetProp(fn, (const xmlChar *)"name") : NULL;
            size_t i;
            for (i = 0; fname != NULL && i < HV_ARRAY_LEN(functions); i++)
                if (strcmp((const char *)fname, functions[i].name) == 0)
                    a->special_fn = functions[i].fn;
            xmlFree(fname);
            if (a->special_fn == HV__UCUM_FN_NONE) {
                hv_error_set(err, HV_EPROTO, "ucum-essence",
                             "special unit '%s' has no known <function>", a->code);
                return HV_EPROTO;
            }
            a->def_unit = attr_dup(fn, "Unit", &oom);
            num = attr_dup(fn, "value", &oom);
        } else {
            a->def_unit = attr_dup(val, "Unit", &oom);
            num = attr_dup(val, "value", &oom);
        }
        if (oom) {
            hv_free(num);
            return HV_ENOMEM;
        }
        if (a->def_unit == NULL || parse_number(num, &a->def_value) != HV_OK) {
            hv_error_set(err, HV_EPROTO, "ucum-essence", "unit '%s' has no valid value or Unit",
                         a->code);
        } else {
            rc = HV_OK;
        }
        hv_free(num);
    }
    return rc;
}

int hv__ucum_atom_resolve(hv_ucum_t *u, hv__ucum_atom_t *a, hv_error_t *err) {
    hv_ucum_canon_t c;
    int rc;
    if (a->state == HV__ATOM_DONE) return HV_OK;
    if (a->state == HV__ATOM_RESOLVING) {
        hv_error_set(err, HV_EPROTO, "ucum-essence", "the definition of '%s' is circular",
                     a->code);
        return HV_EPROTO;
    }
    if (a->is_base) {
        hv__ucum_unity(&a->canon);
        a->canon.dim[a->base_dim] = 1;
        a->state = HV__ATOM_DONE;
        return HV_OK;
    }
    a->state = HV__ATOM_RESOLVING;
    rc = hv__ucum_parse(u, a->def_unit, strlen(a->def_unit), &c, NULL, err);
    if (rc != HV_OK) {
        char inner[512];
        snprintf(inner, sizeof inner, "%s", err != NULL ? err->message : "");
        hv_error_set(err, HV_EPROTO, "ucum-essence", "the definition '%s' of '%s' is invalid: %s",
                     a->def_unit, a->code, inner);
        a->state = HV__ATOM_NEW;
        return HV_EPROTO;
    }
    if ((c.flags & (HV_UCUM_SPECIAL | HV_UCUM_SPECIAL_MIXED)) != 0) {
        hv_error_set(err, HV_EPROTO, "ucum-essence", "'%s' is defined by a special unit", a->code);
        a->state = HV__ATOM_NEW;
        return HV_EPROTO;
    }
    c.magnitude *= a->def_value;
    if (a->is_arbitrary && (c.flags & HV_UCUM_ARBITRARY) == 0) {
        /* UCUM §23: an arbitrary unit defined as a number is its own kind of quantity. */
        c.flags |= HV_UCUM_ARBITRARY;
        c.narb = 1;
        c.arb[0].atom = (uint16_t)(a - u->atoms);
        c.arb[0].exp = 1;
    }
    if (a->is_special) {
        c.flags |= HV_UCUM_SPECIAL;
        c.special_fn = a->special_fn;
        c.special_scale = 1.0;
    }
    a->canon = c;
    a->state = HV__ATOM_DONE;
    return HV_OK;
}

static int build_index(hv_ucum_t *u, hv_error_t *err) {
    size_t size = 16, i;
    while (size < u->natoms * 2) size <<= 1;
    u->index = hv_calloc(size, sizeof *u->index);
    if (u->index == NULL) return HV_ENOMEM;
    u->index_mask = size - 1;
    for (i = 0; i < u->natoms; i++) {
        const char *code = u->atoms[i].code;
        size_t n = strlen(code);
        size_t j = (size_t)hv__ucum_hash(code, n) & u->index_mask;
        while (u->index[j] != 0) {
            if (strcmp(u->atoms[u->index[j] - 1].code, code) == 0) {
                hv_error_set(err, HV_EPROTO, "ucum-essence", "unit code '%s' is defined twice",
                             code);
                return HV_EPROTO;
            }
            j = (j + 1) & u->index_mask;
        }
        u->index[j] = (uint32_t)(i + 1);
    }
    return HV_OK;
}

static int read_essence(hv_ucum_t *u, xmlNodePtr root, hv_error_t *err) {
    xmlNodePtr n;
    size_t np = 0, na = 0;
    int oom = 0, rc;
    for (n = root->children; n != NULL; n = n->next) {
        if (n->type != XML_ELEMENT_NODE) continue;
        if (strcmp((const char *)n->name, "prefix") == 0) np++;
        else if (strcmp((const char *)n->name, "unit") == 0 ||
                 strcmp((const char *)n->name, "base-unit") == 0)
            na++;
    }
    if (na == 0 || na > UINT16_MAX) {
        hv_error_set(err, HV_EPROTO, "ucum-essence", "the file defines %zu units", na);
        return HV_EPROTO;
    }
    u->prefixes = hv_calloc(np + 1, sizeof *u->prefixes);
    u->atoms = hv_calloc(na, sizeof *u->atoms);
    if (u->prefixes == NULL || u->atoms == NULL) return HV_ENOMEM;
    u->version = attr_dup(root, "version", &oom);
    u->revision_date = attr_dup(root, "revision-date", &oom);
    if (oom) return HV_ENOMEM;
    for (n = root->children; n != NULL; n = n->next) {
        if (n->type != XML_ELEMENT_NODE) continue;
        if (strcmp((const char *)n->name, "prefix") == 0) {
            hv__ucum_prefix_t *p = &u->prefixes[u->nprefixes++];
            xmlNodePtr val = child(n, "value");
            char *num = val != NULL ? attr_dup(val, "value", &oom) : NULL;
            p->code = attr_dup(n, "Code", &oom);
            p->name = child_text(n, "name", &oom);
            if (oom) {
                hv_free(num);
                return HV_ENOMEM;
            }
            rc = parse_number(num, &p->value);
            hv_free(num);
            if (rc != HV_OK || p->code == NULL || strlen(p->code) == 0 || strlen(p->code) > 2) {
                hv_error_set(err, HV_EPROTO, "ucum-essence", "prefix at line %ld is invalid",
                             (long)xmlGetLineNo(n));
                return HV_EPROTO;
            }
        } else if (strcmp((const char *)n->name, "unit") == 0 ||
                   strcmp((const char *)n->name, "base-unit") == 0) {
            rc = read_unit(n, n->name[0] == 'b', &u->atoms[u->natoms++], err);
            if (rc != HV_OK) return rc;
        }
    }
    rc = build_index(u, err);
    if (rc != HV_OK) return rc;
    {
        size_t i;
        int d;
        for (d = 0; d < HV_UCUM_NDIM; d++) u->base_atom[d] = -1;
        for (i = 0; i < u->natoms; i++)
            if (u->atoms[i].is_base) u->base_atom[u->atoms[i].base_dim] = (int)i;
        for (d = 0; d < HV_UCUM_NDIM; d++)
            if (u->base_atom[d] < 0) {
                hv_error_set(err, HV_EPROTO, "ucum-essence", "base unit of dimension %c missing",
                             base_dims[d]);
                return HV_EPROTO;
            }
        for (i = 0; i < u->natoms; i++) {
            rc = hv__ucum_atom_resolve(u, &u->atoms[i], err);
            if (rc != HV_OK) return rc;
        }
    }
    return HV_OK;
}

int hv_ucum_new(const char *path, size_t cache_max, hv_ucum_t **out, hv_error_t *err) {
    hv_ucum_t *u = NULL;
    xmlDocPtr doc = NULL;
    xmlNodePtr root;
    size_t slots = 16;
    int rc = HV_ENOMEM;

    if (path == NULL) path = hv_ucum_default_path();
    if (cache_max == 0) cache_max = DEFAULT_CACHE;
    while (slots < cache_max && slots < ((size_t)1 << 24)) slots <<= 1;
    u = hv_calloc(1, sizeof *u);
    if (u == NULL) goto out;
    if (uv_mutex_init(&u->cache_lock) != 0) {
        hv_free(u);
        u = NULL;
        goto out;
    }
    u->cache = hv_calloc(slots, sizeof *u->cache);
    if (u->cache == NULL) goto out;
    u->cache_mask = slots - 1;
    /* No network, no entity expansion, no DTD loading: the essence needs none. */
    doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
    if (doc == NULL) {
        rc = access(path, R_OK) == 0 ? HV_EPROTO : HV_EIO;
        hv_error_set(err, rc, path, "%s",
                     rc == HV_EIO ? "cannot read the UCUM essence file"
                                  : "the UCUM essence file is not well-formed XML");
        goto out;
    }
    root = xmlDocGetRootElement(doc);
    if (root == NULL || strcmp((const char *)root->name, "root") != 0) {
        rc = HV_EPROTO;
        hv_error_set(err, rc, path, "not a UCUM essence file (root element is not <root>)");
        goto out;
    }
    rc = read_essence(u, root, err);
    if (rc == HV_ENOMEM) hv_error_set(err, rc, path, "out of memory loading UCUM");
    if (rc != HV_OK) goto out;
    *out = u;
    u = NULL;
out:
    if (doc != NULL) xmlFreeDoc(doc);
    hv_ucum_free(u);
    return rc;
}

void hv_ucum_free(hv_ucum_t *u) {
    size_t i;
    if (u == NULL) return;
    for (i = 0; i < u->nprefixes; i++) {
        hv_free(u->prefixes[i].code);
        hv_free(u->prefixes[i].name);
    }
    for (i = 0; i < u->natoms; i++) {
        hv_free(u->atoms[i].code);
        hv_free(u->atoms[i].name);
        hv_free(u->atoms[i].def_unit);
    }
    hv_free(u->prefixes);
    hv_free(u->atoms);
    hv_free(u->index);
    if (u->cache != NULL) {
        hv_free(u->cache);
        uv_mutex_destroy(&u->cache_lock);
    }
    hv_free(u->version);
    hv_free(u->revision_date);
    hv_free(u);
}

const char *hv_ucum_version(const hv_ucum_t *u) { return u->version != NULL ? u->version : ""; }

const char *hv_ucum_revision_date(const hv_ucum_t *u) {
    return u->revision_date != NULL ? u->revision_date : "";
}

const char *hv_ucum_default_path(void) {
    static const char installed[] = HV_UCUM_DATADIR "/ucum-essence.xml";
    static const char source[] = HV_UCUM_SRCDIR "/terminology/data/ucum-essence.xml";
    if (access(installed, R_OK) == 0) return installed;
    return source;
}

/* ---- the process-wide table ---------------------------------------------- */

static uv_once_t shared_once = UV_ONCE_INIT;
static uv_mutex_t shared_lock;
static hv_ucum_t *shared_table;
static hv_error_t shared_err;
static char *shared_path;
static size_t shared_cache;
static int shared_tried;

static void shared_init_lock(void) {
    if (uv_mutex_init(&shared_lock) != 0) abort();
}

int hv_ucum_shared_set_path(const char *path) { return hv_ucum_shared_configure(path, 0); }

int hv_ucum_shared_configure(const char *path, size_t cache_max) {
    int rc = HV_OK;
    char *p = NULL;
    uv_once(&shared_once, shared_init_lock);
    if (path != NULL && (p = hv_strdup(path)) == NULL) return HV_ENOMEM;
    uv_mutex_lock(&shared_lock);
    if (shared_tried) {
        rc = HV_EBUSY;
    } else {
        hv_free(shared_path);
        shared_path = p;
        shared_cache = cache_max;
        p = NULL;
    }
    uv_mutex_unlock(&shared_lock);
    hv_free(p);
    return rc;
}

hv_ucum_t *hv_ucum_shared(hv_error_t *err) {
    hv_ucum_t *u;
    uv_once(&shared_once, shared_init_lock);
    uv_mutex_lock(&shared_lock);
    if (!shared_tried) {
        shared_tried = 1;
        hv_error_clear(&shared_err);
        if (hv_ucum_new(shared_path, shared_cache, &shared_table, &shared_err) != HV_OK)
            shared_table = NULL;
    }
    u = shared_table;
    if (u == NULL && err != NULL) *err = shared_err;
    uv_mutex_unlock(&shared_lock);
    return u;
}
