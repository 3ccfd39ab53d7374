/*
 * xml2json.c — a test-only reader of FHIR XML (FHIR R4 xml.html) into the JSON form
 * (json.html), for the inputs of the official FHIRPath suite, using libxml2 and the
 * FHIRPath model interface for cardinalities and types: `value` attributes become
 * JSON primitives (numbers, booleans, strings; decimals keep their text), an `id` or
 * extensions on a primitive go to "_name", repeating elements become arrays, choice
 * elements keep their typed name, contained resources get "resourceType", and the
 * XHTML `div` becomes its serialized text.
 */
#include "config.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <string.h>

#include "fhir/fhirpath_int.h"
#include "test/unit/fhirpath/xml2json.h"

static struct json_object *convert_resource(xmlNode *res);

static int is_elem(xmlNode *n) {
    return n->type == XML_ELEMENT_NODE;
}

static const char *attr(xmlNode *n, const char *name, xmlChar **hold) {
    *hold = xmlGetProp(n, (const xmlChar *)name);
    return (const char *)*hold;
}

/* The model type of child `name` under `parent`, resolving choice names. */
static int child_info(const char *parent, const char *name, hv__fp_elem_t *e, const char **type) {
    size_t nl = strlen(name);
    if (hv__fp_model_child(parent, name, nl, e) == HV_OK && !e->is_choice) {
        const char *t = e->types;
        *type = t[0] != '\0' && strchr(t, ' ') == NULL ? hv__fp_model_type(t, strlen(t)) : NULL;
        if (strncmp(t, "System.", 7) == 0) *type = "string";
        return 1;
    }
    for (size_t i = 1; i < nl; i++) {
        if (name[i] >= 'A' && name[i] <= 'Z' && hv__fp_model_child(parent, name, i, e) == HV_OK && e->is_choice) {
            char lower[64];
            const char *t = hv__fp_model_type(name + i, nl - i);
            if (t == NULL && nl - i < sizeof(lower)) {
                memcpy(lower, name + i, nl - i);
                lower[nl - i] = '\0';
                lower[0] = (char)(lower[0] - 'A' + 'a');
                t = hv__fp_model_type(lower, nl - i);
            }
            *type = t;
            return t != NULL;
        }
    }
    return 0;
}

static void add(struct json_object *obj, const char *key, struct json_object *v, int is_array, size_t *index) {
    struct json_object *arr = NULL;
    if (!is_array) {
        json_object_object_add(obj, key, v);
        return;
    }
    if (!json_object_object_get_ex(obj, key, &arr)) {
        arr = json_object_new_array();
        json_object_object_add(obj, key, arr);
    }
    if (index != NULL) {
        /* "_name" arrays align with "name": pad with nulls. */
        while (json_object_array_length(arr) < *index) json_object_array_add(arr, NULL);
    }
    json_object_array_add(arr, v);
}

static struct json_object *prim_value(const char *type, const char *v) {
    if (strcmp(type, "boolean") == 0) return json_object_new_boolean(strcmp(v, "true") == 0);
    if (strcmp(type, "integer") == 0 || strcmp(type, "positiveInt") == 0 || strcmp(type, "unsignedInt") == 0)
        return json_object_new_int64(strtoll(v, NULL, 10));
    if (strcmp(type, "decimal") == 0) return json_object_new_double_s(strtod(v, NULL), v);
    return json_object_new_string(v);
}

static void convert_children(xmlNode *el, const char *parent, struct json_object *obj);

static struct json_object *convert_complex(xmlNode *el, const char *path) {
    struct json_object *o = json_object_new_object();
    xmlChar *h1 = NULL, *h2 = NULL;
    const char *id = attr(el, "id", &h1), *url = attr(el, "url", &h2);
    if (id != NULL) json_object_object_add(o, "id", json_object_new_string(id));
    if (url != NULL) json_object_object_add(o, "url", json_object_new_string(url));
    xmlFree(h1);
    xmlFree(h2);
    convert_children(el, path, o);
    return o;
}

static void convert_children(xmlNode *el, const char *parent, struct json_object *obj) {
    for (xmlNode *ch = el->children; ch != NULL; ch = ch->next) {
        const char *name = (const char *)ch->name, *type = NULL;
        hv__fp_elem_t e;
        if (!is_elem(ch)) continue;
        if (strcmp(name, "div") == 0) {
            xmlBufferPtr b = xmlBufferCreate();
            xmlNodeDump(b, ch->doc, ch, 0, 0);
            json_object_object_add(obj, "div", json_object_new_string((const char *)xmlBufferContent(b)));
            xmlBufferFree(b);
            continue;
        }
        if (!child_info(parent, name, &e, &type)) {
            fprintf(stderr, "xml2json: unknown element %s.%s\n", parent, name);
            continue;
        }
        if (e.cref != NULL && e.cref[0] != '\0') {
            add(obj, name, convert_complex(ch, e.cref), e.is_array, NULL);
        } else if (type != NULL && hv__fp_model_kind(type) == 'P') {
            xmlChar *hv = NULL, *hi = NULL;
            const char *v = attr(ch, "value", &hv), *id = attr(ch, "id", &hi);
            int has_ext = 0;
            size_t index = 0;
            struct json_object *arr = NULL;
            for (xmlNode *k = ch->children; k != NULL; k = k->next)
                if (is_elem(k)) has_ext = 1;
            if (e.is_array && json_object_object_get_ex(obj, name, &arr)) index = json_object_array_length(arr);
            if (v != NULL) add(obj, name, prim_value(type, v), e.is_array, &index);
            else if (e.is_array) add(obj, name, NULL, 1, &index);
            if (id != NULL || has_ext) {
                char key[300];
                struct json_object *x = json_object_new_object();
                if (id != NULL) json_object_object_add(x, "id", json_object_new_string(id));
                convert_children(ch, type, x);
                snprintf(key, sizeof(key), "_%s", name);
                add(obj, key, x, e.is_array, &index);
            }
            xmlFree(hv);
            xmlFree(hi);
        } else if (type == NULL || strcmp(type, "Resource") == 0) {
            for (xmlNode *k = ch->children; k != NULL; k = k->next) {
                if (is_elem(k)) {
                    add(obj, name, convert_resource(k), e.is_array, NULL);
                    break;
                }
            }
        } else if (strcmp(type, "BackboneElement") == 0 || strcmp(type, "Element") == 0) {
            add(obj, name, convert_complex(ch, e.path), e.is_array, NULL);
        } else {
            add(obj, name, convert_complex(ch, type), e.is_array, NULL);
        }
    }
}

static struct json_object *convert_resource(xmlNode *res) {
    struct json_object *o = json_object_new_object();
    const char *t = hv__fp_model_type((const char *)res->name, strlen((const char *)res->name));
    json_object_object_add(o, "resourceType", json_object_new_string((const char *)res->name));
    if (t != NULL) convert_children(res, t, o);
    return o;
}

struct json_object *test_fhir_xml_to_json(const char *path) {
    xmlDoc *doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOBLANKS);
    struct json_object *o = NULL;
    if (doc == NULL) return NULL;
    o = convert_resource(xmlDocGetRootElement(doc));
    xmlFreeDoc(doc);
    return o;
}
