/*
 * search_special.c — the write-time index of FHIR R4's special search parameters
 * (search.html#text, #content; location.html#near): the full-text rows of `_text`
 * and `_content` and the position rows of Location `near`. Called from
 * hv__search_index_put (fhir/search_index.c) in the transaction that writes the
 * version, so these rows follow the current version like the other index rows —
 * except the full-text rows on SQLite, which are written after the commit:
 *
 * Deferred full-text indexing (SQLite). Computing and inserting a resource's FTS5
 * row was about 40% of an import, so a write only deletes the rows of the versions
 * it supersedes, and hv__search_text_catch_up indexes later, in order of rid, the
 * versions written since sp_text_mark.last_rid, advancing the mark in the same
 * transaction as the rows it inserts. rids are assigned in commit order (one
 * writer; `rid INTEGER PRIMARY KEY` takes max + 1 and no version is ever removed),
 * so every version above the mark is unindexed and every current version at or
 * below it is indexed: a crash between a write's commit and its catch-up leaves
 * the mark behind, never ahead. The engine runs a catch-up on an idle 250 ms tick
 * (forced every 5 s) and every search using _text/_content runs one to the end
 * first, in its own storage job (fhir/search_run.c), so it sees every committed
 * version. A version superseded or deleted before its catch-up is skipped (it is
 * not current); one superseded after it loses its row in the superseding write.
 * PostgreSQL keeps the write-time tsvector: its identity rids are not committed
 * in order when several processes write, so a mark could pass a row committed
 * late; and its rows cost a GIN pending-list append, not an FTS5 segment merge.
 *
 *   table    backend      key                      columns
 *   sp_text  SQLite FTS5  rowid = resources.rid     type, id (unindexed); narrative, content
 *                                                    (columnsize=0: no per-row sizes, nothing ranks)
 *   sp_text  PostgreSQL   rid = resources.rid       type, id; narrative, content (tsvector, GIN)
 *   sp_geo   both         type, id                  lat, lon (degrees, WGS84); x, y, z (unit vector)
 *
 * The full-text columns hold normalized text (case-folded, accents and other marks
 * dropped for all of Unicode: hv__search_normalize, fhir/search_fold.c) so both
 * backends compare words alike: FTS5's unicode61 tokenizer and PostgreSQL's
 * 'simple' configuration, neither of which stems.
 * `narrative` is Resource.text.div with its tags stripped and its character
 * references decoded; `content` is the narrative as stripped text and the values
 * of the string and markdown elements of the resource (walk_content below),
 * joined by spaces. Both are capped at
 * HV__SEARCH_TEXT_MAX bytes (longer text is indexed up to the cap).
 *
 * sp_geo keeps the position's unit vector on the sphere so that the exact
 * great-circle test of `near` is arithmetic in SQL (fhir/search_plan.c): for two
 * points of chord length c on the unit sphere the haversine distance is
 * 2·R·asin(c/2), so "within d" is c² ≤ (2·sin(d/2R))².
 */
#include "config.h"

#include <json-c/json.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fhir/fhir_int.h"
#include "fhir/rest_int.h"
#include "fhir/search_int.h"

/* The third migration's parts that are the same on both backends: Location positions
 * and the partial index of the long date ranges (the date range plan, search_plan.c). */
#define MIGRATION3_COMMON                                                                                        \
    "CREATE TABLE sp_geo (type TEXT NOT NULL, id TEXT NOT NULL, lat DOUBLE PRECISION NOT NULL,"                \
    " lon DOUBLE PRECISION NOT NULL, x DOUBLE PRECISION NOT NULL, y DOUBLE PRECISION NOT NULL,"               \
    " z DOUBLE PRECISION NOT NULL);"                                                                         \
    "CREATE INDEX sp_geo_v ON sp_geo (type, lat);"                                                           \
    "CREATE INDEX sp_geo_id ON sp_geo (type, id);"                                                           \
    "CREATE INDEX sp_date_long ON sp_date (type, code, lo) WHERE hi - lo > " HV__SEARCH_DATE_SHORT_SQL ";"        \
    /* (type, id) becomes (type, id, code): a criterion checked per candidate row reads \
     * only its own parameter's rows of the resource (fhir/search_run.c). */             \
    "DROP INDEX sp_str_id; CREATE INDEX sp_str_idc ON sp_str (type, id, code);"                              \
    "DROP INDEX sp_tok_id; CREATE INDEX sp_tok_idc ON sp_tok (type, id, code);"                              \
    "DROP INDEX sp_ref_id; CREATE INDEX sp_ref_idc ON sp_ref (type, id, code);"                              \
    "DROP INDEX sp_date_id; CREATE INDEX sp_date_idc ON sp_date (type, id, code);"                           \
    "DROP INDEX sp_num_id; CREATE INDEX sp_num_idc ON sp_num (type, id, code);"                              \
    "DROP INDEX sp_uri_id; CREATE INDEX sp_uri_idc ON sp_uri (type, id, code);"

const char hv__search_migration3_sqlite[] =
    MIGRATION3_COMMON
    "CREATE VIRTUAL TABLE sp_text USING fts5(type UNINDEXED, id UNINDEXED, narrative, content,"
    " tokenize = 'unicode61 remove_diacritics 2');";

/* The fourth (SQLite only): the deferred full-text index's mark. The versions already
 * stored were indexed when written, so the mark starts at the highest rid. */
const char hv__search_migration4_sqlite[] =
    "CREATE TABLE sp_text_mark (one INTEGER PRIMARY KEY CHECK (one = 1), last_rid INTEGER NOT NULL);"
    "INSERT INTO sp_text_mark VALUES (1, (SELECT COALESCE(MAX(rid), 0) FROM resources));";

/*
 * sp_text again, with FTS5's columnsize=0: no %_docsize row (a B-tree insert of each
 * version's column sizes, about 4 k instructions of a catch-up's ~27 k FTS5 insert,
 * docs/performance.md, s12-fts), which only ranking reads (bm25, xColumnSize) and no
 * query here ranks; MATCH, column filters and deletes by rowid work as before. The
 * rows are copied as they are (rowid, normalized text), so the index holds what it
 * held and sp_text_mark stays true: every current version at or below it is indexed.
 * The copy re-tokenizes every row once (about 25 k instructions a row).
 */
const char hv__search_migration_text_nosize_sqlite[] =
    "CREATE VIRTUAL TABLE sp_text_nosize USING fts5(type UNINDEXED, id UNINDEXED, narrative, content,"
    " tokenize = 'unicode61 remove_diacritics 2', columnsize = 0);"
    "INSERT INTO sp_text_nosize (rowid, type, id, narrative, content)"
    " SELECT rowid, type, id, narrative, content FROM sp_text ORDER BY rowid;"
    "DROP TABLE sp_text;"
    "ALTER TABLE sp_text_nosize RENAME TO sp_text;";

const char hv__search_migration3_pg[] =
    MIGRATION3_COMMON
    "CREATE TABLE sp_text (rid BIGINT PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL, narrative TSVECTOR,"
    " content TSVECTOR);"
    "CREATE INDEX sp_text_n ON sp_text USING GIN (narrative);"
    "CREATE INDEX sp_text_c ON sp_text USING GIN (content);";

#define MAX_DEPTH 64 /* JSON nesting the _content walk descends */
/* JSON nesting the catch-up reads a stored version to: above any fhir.max_depth a write
 * accepts in practice (default 128), so that no stored version fails to read there. */
#define CATCH_UP_PARSE_DEPTH 1024

/* Appends n bytes of s, a separating space first, up to the buffer's cap (then stops quietly). */
static void add_text(hv_buf_t *b, const char *s, size_t n)
{
    if (n == 0 || b->len + n + 2 > HV__SEARCH_TEXT_MAX)
        return;
    if (b->len > 0)
        hv_buf_putc(b, ' ');
    hv_buf_append(b, s, n);
}

/* add_text for one text given in pieces (*state 1 before the first, then 0; -1 once a
 * piece did not fit): the separating space before the first piece only, so that a word
 * across two pieces stays one word, and nothing after a piece the cap refused. */
static void add_piece(hv_buf_t *b, const char *s, size_t n, int *state)
{
    if (n == 0 || *state < 0)
        return;
    if (b->len + n + 2 > HV__SEARCH_TEXT_MAX) {
        *state = -1;
        return;
    }
    if (*state == 1 && b->len > 0)
        hv_buf_putc(b, ' ');
    hv_buf_append(b, s, n);
    *state = 0;
}

/*
 * The text of an XHTML fragment (the narrative div): tags dropped (each leaves a
 * space, so "<td>a</td><td>b</td>" is two words), the five predefined entities,
 * &nbsp; and numeric references below 128 decoded, other references a space.
 */
static void strip_xhtml(const char *s, hv_buf_t *b)
{
    char tmp[512];
    size_t o = 0;
    int state = 1;
    if (b->len > 0)
        add_text(b, " ", 1);
    for (; *s; s++) {
        char c = *s;
        if (c == '<') {
            const char *e = strchr(s, '>');
            if (e == NULL)
                break;
            s = e;
            c = ' ';
        } else if (c == '&') {
            static const struct { const char *name; char c; } ent[] = {
                {"amp;", '&'}, {"lt;", '<'}, {"gt;", '>'}, {"quot;", '"'}, {"apos;", '\''}, {"nbsp;", ' '}};
            const char *semi = strchr(s, ';');
            c = ' ';
            if (semi != NULL && semi - s < 12) {
                for (size_t k = 0; k < HV_ARRAY_LEN(ent); k++)
                    if (strncmp(s + 1, ent[k].name, strlen(ent[k].name)) == 0)
                        c = ent[k].c;
                if (s[1] == '#') {
                    long v = s[2] == 'x' || s[2] == 'X' ? strtol(s + 3, NULL, 16) : strtol(s + 2, NULL, 10);
                    c = v > 31 && v < 127 ? (char)v : ' ';
                }
                s = semi;
            }
        }
        if (c == ' ' && (o == 0 || tmp[o - 1] == ' '))
            continue;
        tmp[o++] = c;
        if (o == sizeof(tmp)) {
            add_piece(b, tmp, o, &state);
            o = 0;
        }
    }
    add_piece(b, tmp, o, &state);
}

/*
 * What _content holds (FHIR R4 search.html#content leaves the choice to the server): the
 * narrative as text and the values of the elements whose type is string or markdown —
 * names, addresses, displays, identifiers' values, references, notes — in the resource
 * and its contained resources, as HAPI FHIR JPA indexes it. Not code, uri, url,
 * canonical, id, oid, uuid, dates, times, numbers, booleans or base64Binary: machine
 * tokens that made `_content=org` match every resource naming http://loinc.org and
 * `_content=2020` every one dated 2020, and were 60% of the indexed text of the Synthea
 * population (docs/performance.md, s22-text).
 * The types come from the FHIR model (fhir/model.c) as the walk descends; a member the
 * model does not know contributes nothing, nor does an element's own id (string in R4's
 * definitions, but an identifier, written as an XML attribute).
 */
static pthread_once_t content_once = PTHREAD_ONCE_INIT;
static const hv_fhir_type_t *type_string, *type_markdown, *type_element, *type_resource;

static void content_types(void)
{
    type_string = hv_fhir_type_find("string", 6);
    type_markdown = hv_fhir_type_find("markdown", 8);
    type_element = hv_fhir_type_find("Element", 7);
    type_resource = hv_fhir_type_find("Resource", 8);
}

/* The element of the member key[0..len) of an object whose children owner describes, and
 * its type (*t); NULL when the model does not know it. `_name`, a primitive's id and
 * extensions, is an Element (no element of its own). */
static const hv_fhir_elem_t *content_member(const hv_fhir_elem_t *owner, const char *key, size_t len,
                                            const hv_fhir_type_t **t)
{
    *t = NULL;
    if (owner == NULL)
        return NULL;
    if (len > 1 && key[0] == '_') {
        if (hv_fhir_elem_child(owner, key + 1, len - 1, NULL) != NULL)
            *t = type_element;
        return NULL;
    }
    return hv_fhir_elem_child(owner, key, len, t);
}

/* The element whose children describe an object of element e with type t: for a resource
 * (the root, contained, Bundle.entry.resource) the root of the type its resourceType
 * member, rt[0..rt_len), names; NULL when that is no resource type. */
static const hv_fhir_elem_t *content_owner(const hv_fhir_elem_t *e, const hv_fhir_type_t *t, const char *rt,
                                           size_t rt_len)
{
    if (t == NULL || hv_fhir_type_kind(t) != HV_FHIR_KIND_RESOURCE)
        return hv_fhir_elem_owner(e, t);
    if (rt == NULL || strlen(rt) != rt_len)
        return NULL;
    return hv_fhir_type_root(hv_fhir_resource_type(rt));
}

/* Adds the string s[0..n) at depth, a value of element e with type t, to the content:
 * text for string and markdown, the text of the XHTML for the narrative's div. */
static void add_value(hv_buf_t *b, const char *s, size_t n, int depth, const hv_fhir_elem_t *e,
                      const hv_fhir_type_t *t)
{
    if (e == NULL || depth > MAX_DEPTH || b->len + 2 > HV__SEARCH_TEXT_MAX)
        return;
    if ((t == type_string || t == type_markdown) && !hv_fhir_elem_is_xml_attr(e))
        add_text(b, s, n);
    else if (hv_fhir_elem_is_xhtml(e))
        strip_xhtml(s, b);
}

/* The content under o, a value of element e with type t (e NULL: the resource, or a
 * primitive's `_name`), depth-first. */
static void walk_content(struct json_object *o, const hv_fhir_elem_t *e, const hv_fhir_type_t *t, hv_buf_t *b,
                         int depth)
{
    if (o == NULL || t == NULL || depth > MAX_DEPTH || b->len + 2 > HV__SEARCH_TEXT_MAX)
        return;
    switch (json_object_get_type(o)) {
    case json_type_string:
        add_value(b, json_object_get_string(o), (size_t)json_object_get_string_len(o), depth, e, t);
        break;
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(o); i++)
            walk_content(json_object_array_get_idx(o, i), e, t, b, depth + 1);
        break;
    case json_type_object: {
        struct json_object *rt = NULL;
        const hv_fhir_elem_t *owner = content_owner(e, t, NULL, 0);
        if (hv_fhir_type_kind(t) == HV_FHIR_KIND_RESOURCE && json_object_object_get_ex(o, "resourceType", &rt) &&
            json_object_is_type(rt, json_type_string))
            owner = content_owner(e, t, json_object_get_string(rt), (size_t)json_object_get_string_len(rt));
        if (owner == NULL)
            break;
        json_object_object_foreach(o, k, v)
        {
            const hv_fhir_type_t *kt;
            const hv_fhir_elem_t *ke = content_member(owner, k, strlen(k), &kt);
            walk_content(v, ke, kt, b, depth + 1);
        }
        break;
    }
    default:
        break;
    }
}

/*
 * The normalized copy of b's text (owned; NULL when out of memory). Folding may
 * lengthen text (an invalid byte becomes U+FFFD, three bytes; a compatibility
 * character may decompose into several): three times the input holds every text
 * but one made mostly of such characters, which is indexed up to that length.
 */
static char *normalized(const hv_buf_t *b)
{
    size_t cap = 3 * b->len + 1;
    char *o = hv_malloc(cap);
    if (o != NULL)
        hv__search_normalize(b->len ? b->data : "", o, cap);
    return o;
}

int hv__search_exec2(hv_db_t *db, const char *sql, const char *type, const char *id)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_text(st, 1, type, strlen(type));
    hv_db_bind_text(st, 2, id, strlen(id));
    rc = hv_db_step_later(st);
    hv_db_done(st);
    return rc;
}

/* The normalized narrative (*nar) and content (*con) of a resource (both owned). */
static int text_of(struct json_object *resource, char **nar, char **con)
{
    hv_buf_t bn, bc;
    struct json_object *text = NULL, *div = NULL;
    char *n1 = NULL, *n2 = NULL;
    int rc = HV_OK;
    hv_buf_init(&bn, HV__SEARCH_TEXT_MAX);
    hv_buf_init(&bc, HV__SEARCH_TEXT_MAX);
    if (json_object_object_get_ex(resource, "text", &text) && json_object_object_get_ex(text, "div", &div) &&
        json_object_is_type(div, json_type_string))
        strip_xhtml(json_object_get_string(div), &bn);
    pthread_once(&content_once, content_types);
    walk_content(resource, NULL, type_resource, &bc, 0);
    n1 = normalized(&bn);
    n2 = normalized(&bc);
    if (n1 == NULL || n2 == NULL) {
        hv_free(n1);
        hv_free(n2);
        rc = HV_ENOMEM;
        goto out;
    }
    *nar = n1;
    *con = n2;
out:
    hv_buf_release(&bn);
    hv_buf_release(&bc);
    return rc;
}

int hv__search_text_of_tree(struct json_object *resource, char **nar, char **con)
{
    return text_of(resource, nar, con);
}

/*
 * The same narrative and content read from a version's stored JSON text (RFC 8259)
 * directly, without a json-c tree: the catch-up's parse and free of each version cost
 * more than computing its text (issue 5). It visits the values in document order as
 * walk_content visits the tree's (json-c keeps members in text order), typing them
 * alike: a resource's members by the type its resourceType names (read ahead when it
 * is not the first member), nothing nested deeper than MAX_DEPTH; the narrative is the
 * top-level text.div. Text that is not JSON, or nests deeper than CATCH_UP_PARSE_DEPTH,
 * is HV_EINVAL: the catch-up leaves such a version out, as it does when json-c refuses it.
 */
typedef struct jscan {
    const char *p, *end;
    hv_buf_t *nar, *con;
    hv_buf_t str; /* the string just read, decoded, NUL-terminated */
} jscan_t;

enum { J_PLAIN, J_ROOT, J_TEXT }; /* where an object is: elsewhere, the resource, its text */

static void jskip_ws(jscan_t *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* Appends code point cp as UTF-8 (lone surrogates as U+FFFD). */
static int jput_utf8(hv_buf_t *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp >= 0xD800 && cp <= 0xDFFF)
        cp = 0xFFFD;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    return hv_buf_append(b, u, n);
}

/* Reads the string at j->p (its opening quote) into j->str, escapes decoded. */
static int jstring(jscan_t *j)
{
    j->str.len = 0;
    j->p++;
    while (j->p < j->end) {
        const char *run = j->p, *q, *bs;
        char c;
        int rc;
        /* the run up to the next quote or backslash, found by memchr (vectorized) rather
         * than a byte at a time: most of the scan's time is in strings */
        q = memchr(run, '"', (size_t)(j->end - run));
        bs = memchr(run, '\\', (size_t)((q != NULL ? q : j->end) - run));
        j->p = bs != NULL ? bs : q != NULL ? q : j->end;
        if (j->p > run) {
            /* j->str has room for the whole text (hv__search_text_of_json reserves it), and a
             * decoded string is never longer than its JSON text: no growth check per run */
            memcpy(j->str.data + j->str.len, run, (size_t)(j->p - run));
            j->str.len += (size_t)(j->p - run);
        }
        if (j->p >= j->end)
            return HV_EINVAL;
        if (*j->p == '"') {
            j->p++;
            j->str.data[j->str.len] = '\0';
            return HV_OK;
        }
        if (++j->p >= j->end)
            return HV_EINVAL;
        c = *j->p++;
        switch (c) {
        case '"': case '\\': case '/': rc = hv_buf_putc(&j->str, c); break;
        case 'b': rc = hv_buf_putc(&j->str, '\b'); break;
        case 'f': rc = hv_buf_putc(&j->str, '\f'); break;
        case 'n': rc = hv_buf_putc(&j->str, '\n'); break;
        case 'r': rc = hv_buf_putc(&j->str, '\r'); break;
        case 't': rc = hv_buf_putc(&j->str, '\t'); break;
        case 'u': {
            unsigned cp, lo;
            if (!hv__fhir_hex4(j->p, j->end, &cp))
                return HV_EINVAL;
            j->p += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u' &&
                hv__fhir_hex4(j->p + 2, j->end, &lo) && lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                j->p += 6;
            }
            rc = jput_utf8(&j->str, cp);
            break;
        }
        default:
            return HV_EINVAL;
        }
        if (rc != HV_OK)
            return rc;
    }
    return HV_EINVAL;
}

static int jvalue(jscan_t *j, int depth, int where, const hv_fhir_elem_t *e, const hv_fhir_type_t *t);

/* Reads the ':' after a member's name and the blanks around it. */
static int jcolon(jscan_t *j)
{
    jskip_ws(j);
    if (j->p >= j->end || *j->p != ':')
        return HV_EINVAL;
    j->p++;
    jskip_ws(j);
    return HV_OK;
}

/* After a member: 1 when another follows (its ',' read), 0 at the object's end ('}' read). */
static int jnext_member(jscan_t *j)
{
    jskip_ws(j);
    if (j->p < j->end && *j->p == ',') {
        j->p++;
        return 1;
    }
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return 0;
    }
    return HV_EINVAL;
}

/* *owner for the resource object at j->p (element e, type t): content_owner with the
 * object's resourceType, read ahead; j->p is left where it was. Stored versions write
 * resourceType first, so this usually reads one member. */
static int jresource_owner(jscan_t *j, int depth, const hv_fhir_elem_t *e, const hv_fhir_type_t *t,
                           const hv_fhir_elem_t **owner)
{
    const char *start = j->p;
    int rc = HV_OK;
    *owner = content_owner(e, t, NULL, 0);
    j->p++;
    jskip_ws(j);
    if (j->p < j->end && *j->p == '}')
        goto out;
    for (;;) {
        int rt;
        jskip_ws(j);
        if (j->p >= j->end || *j->p != '"') {
            rc = HV_EINVAL;
            break;
        }
        if ((rc = jstring(j)) != HV_OK)
            break;
        rt = strcmp(j->str.data, "resourceType") == 0;
        if ((rc = jcolon(j)) != HV_OK)
            break;
        if (rt && j->p < j->end && *j->p == '"') {
            if ((rc = jstring(j)) == HV_OK)
                *owner = content_owner(e, t, j->str.data, j->str.len);
            break;
        }
        if ((rc = jvalue(j, depth + 1, J_PLAIN, NULL, NULL)) != HV_OK)
            break;
        if ((rc = jnext_member(j)) <= 0)
            break;
    }
out:
    j->p = start;
    return rc < 0 ? rc : HV_OK;
}

/* An object at depth (walk_content's depth: the resource is 0), a value of element e
 * with type t (t NULL: nothing in it is content). */
static int jobject(jscan_t *j, int depth, int where, const hv_fhir_elem_t *e, const hv_fhir_type_t *t)
{
    const hv_fhir_elem_t *owner = NULL;
    int rc;
    if (t != NULL && depth <= MAX_DEPTH) {
        if (hv_fhir_type_kind(t) != HV_FHIR_KIND_RESOURCE)
            owner = content_owner(e, t, NULL, 0);
        else if ((rc = jresource_owner(j, depth, e, t, &owner)) != HV_OK)
            return rc;
    }
    j->p++;
    jskip_ws(j);
    if (j->p < j->end && *j->p == '}') {
        j->p++;
        return HV_OK;
    }
    for (;;) {
        const hv_fhir_elem_t *ke;
        const hv_fhir_type_t *kt;
        int div = 0, text = 0;
        jskip_ws(j);
        if (j->p >= j->end || *j->p != '"')
            return HV_EINVAL;
        if ((rc = jstring(j)) != HV_OK)
            return rc;
        ke = content_member(owner, j->str.data, strlen(j->str.data), &kt); /* a key ends at a NUL, as in json-c */
        if (where == J_TEXT && strcmp(j->str.data, "div") == 0)
            div = 1;
        else if (where == J_ROOT && strcmp(j->str.data, "text") == 0)
            text = 1;
        if ((rc = jcolon(j)) != HV_OK)
            return rc;
        if (div && j->p < j->end && *j->p == '"') {
            /* the narrative (text_of's top-level text.div), and content as the model says */
            if ((rc = jstring(j)) != HV_OK)
                return rc;
            strip_xhtml(j->str.data, j->nar);
            add_value(j->con, j->str.data, j->str.len, depth + 1, ke, kt);
        } else if ((rc = jvalue(j, depth + 1, text ? J_TEXT : J_PLAIN, ke, kt)) != HV_OK) {
            return rc;
        }
        if ((rc = jnext_member(j)) <= 0)
            return rc;
    }
}

static int jvalue(jscan_t *j, int depth, int where, const hv_fhir_elem_t *e, const hv_fhir_type_t *t)
{
    int rc;
    jskip_ws(j);
    if (j->p >= j->end || depth > CATCH_UP_PARSE_DEPTH)
        return HV_EINVAL;
    switch (*j->p) {
    case '"':
        if ((rc = jstring(j)) != HV_OK)
            return rc;
        add_value(j->con, j->str.data, j->str.len, depth, e, t);
        return HV_OK;
    case '{':
        return jobject(j, depth, where, e, t);
    case '[':
        j->p++;
        jskip_ws(j);
        if (j->p < j->end && *j->p == ']') {
            j->p++;
            return HV_OK;
        }
        for (;;) {
            if ((rc = jvalue(j, depth + 1, J_PLAIN, e, t)) != HV_OK)
                return rc;
            jskip_ws(j);
            if (j->p < j->end && *j->p == ',') {
                j->p++;
                continue;
            }
            if (j->p < j->end && *j->p == ']') {
                j->p++;
                return HV_OK;
            }
            return HV_EINVAL;
        }
    default: {
        /* a number, true, false or null: no text */
        const char *start = j->p;
        while (j->p < j->end && (*j->p == '-' || *j->p == '+' || *j->p == '.' || (*j->p >= '0' && *j->p <= '9') ||
                                 (*j->p >= 'a' && *j->p <= 'z') || *j->p == 'E'))
            j->p++;
        return j->p > start ? HV_OK : HV_EINVAL;
    }
    }
}

int hv__search_text_of_json(const char *json, size_t len, char **nar, char **con)
{
    hv_buf_t bn, bc;
    jscan_t j;
    char *n1 = NULL, *n2 = NULL;
    int rc;
    hv_buf_init(&bn, HV__SEARCH_TEXT_MAX);
    hv_buf_init(&bc, HV__SEARCH_TEXT_MAX);
    memset(&j, 0, sizeof(j));
    j.p = json;
    j.end = json + len;
    j.nar = &bn;
    j.con = &bc;
    /* A decoded string is never longer than its JSON text: room for the text and its NUL
     * is room for any string of it (jstring relies on this). */
    hv_buf_init(&j.str, len + 1);
    rc = hv_buf_reserve(&j.str, len + 1);
    pthread_once(&content_once, content_types);
    if (rc == HV_OK)
        rc = jvalue(&j, 0, J_ROOT, NULL, type_resource);
    if (rc == HV_OK) {
        n1 = normalized(&bn);
        n2 = normalized(&bc);
        if (n1 == NULL || n2 == NULL)
            rc = HV_ENOMEM;
    }
    if (rc == HV_OK) {
        *nar = n1;
        *con = n2;
        n1 = n2 = NULL;
    }
    hv_free(n1);
    hv_free(n2);
    hv_buf_release(&j.str);
    hv_buf_release(&bn);
    hv_buf_release(&bc);
    return rc;
}

/* The full-text row of the current version: row rid when known (> 0), else the newest row of
 * type/id, looked up (on PostgreSQL a seek of resources_tiv per version written, where the
 * writer has the row id in hand). */
static int put_text(hv_db_t *db, const char *type, const char *id, struct json_object *resource, int64_t rid)
{
    int pg = hv_db_kind(db) == HV_DB_PG;
    hv_db_stmt_t *st = NULL;
    char *n1 = NULL, *n2 = NULL;
    int rc = text_of(resource, &n1, &n2);
    if (rc != HV_OK)
        return rc;
    rc = hv_db_prepare(db,
                       pg && rid > 0 ? "INSERT INTO sp_text (rid, type, id, narrative, content) VALUES ($5, $1, $2,"
                                       " to_tsvector('simple', $3), to_tsvector('simple', $4))"
                       : pg ? "INSERT INTO sp_text (rid, type, id, narrative, content) SELECT rid, $1, $2,"
                              " to_tsvector('simple', $3), to_tsvector('simple', $4) FROM resources WHERE type = $1"
                              " AND id = $2 ORDER BY version DESC LIMIT 1"
                            : "INSERT INTO sp_text (rowid, type, id, narrative, content) SELECT rid, $1, $2, $3, $4"
                              " FROM resources WHERE type = $1 AND id = $2 ORDER BY version DESC LIMIT 1",
                       &st);
    if (rc != HV_OK)
        goto out;
    hv_db_bind_text(st, 1, type, strlen(type));
    hv_db_bind_text(st, 2, id, strlen(id));
    hv_db_bind_text(st, 3, n1, strlen(n1));
    hv_db_bind_text(st, 4, n2, strlen(n2));
    if (pg && rid > 0)
        hv_db_bind_int64(st, 5, rid);
    rc = hv_db_step_later(st);
    hv_db_done(st);
out:
    hv_free(n1);
    hv_free(n2);
    return rc;
}

/*
 * SQLite: 1 when the current version of type/id is at or below the mark — indexed by
 * an earlier catch-up, so a rewrite of its index rows (reindex) writes its text row
 * now; 0 when the catch-up is still to see it. Negative on a database error.
 */
static int text_behind_mark(hv_db_t *db, const char *type, const char *id)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db,
                           "SELECT 1 FROM (SELECT rid FROM resources WHERE type = $1 AND id = $2 ORDER BY version DESC"
                           " LIMIT 1) c, sp_text_mark m WHERE c.rid <= m.last_rid",
                           &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_text(st, 1, type, strlen(type));
    hv_db_bind_text(st, 2, id, strlen(id));
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc == HV_DB_ROW ? 1 : rc < 0 ? rc : 0;
}

#define CATCH_UP_CHUNK 256 /* versions one catch-up step reads before it writes */

typedef struct tx_row {
    int64_t rid;
    char type[HV__FHIR_TYPE_MAX];
    char id[HV__FHIR_ID_MAX];
    char *json; /* NULL: not current (superseded or deleted), nothing to index */
} tx_row_t;

/* Copies n bytes of s (NULL: none) into dst of cap bytes, truncated, NUL-terminated (as
 * snprintf "%.*s" did, without its format parsing: two calls per version read). */
static void copy_name(char *dst, size_t cap, const char *s, size_t n)
{
    if (s == NULL)
        n = 0;
    if (n >= cap)
        n = cap - 1;
    memcpy(dst, s ? s : "", n);
    dst[n] = '\0';
}

/* One step of the catch-up: indexes the current versions among the first `max`
 * versions above *mark and moves *mark past all of them; *n is how many it read. */
static int catch_up_step(hv_db_t *db, int64_t *mark, size_t max, size_t *n_out)
{
    hv_db_stmt_t *st = NULL;
    tx_row_t *rows = NULL;
    size_t n = 0, cap = 0;
    int64_t last = *mark;
    int rc;
    rc = hv_db_prepare(db,
                       "SELECT r.rid, r.type, r.id, CASE WHEN r.deleted = 0 AND NOT EXISTS (SELECT 1 FROM resources n"
                       " WHERE n.type = r.type AND n.id = r.id AND n.version > r.version) THEN r.json END"
                       " FROM resources r WHERE r.rid > $1 ORDER BY r.rid LIMIT $2",
                       &st);
    if (rc != HV_OK)
        goto out;
    hv_db_bind_int64(st, 1, *mark);
    hv_db_bind_int64(st, 2, (int64_t)max);
    /* Read the step's versions first, then write: the statement is done before sp_text changes. */
    while ((rc = hv_db_step(st)) == HV_DB_ROW && n < max) {
        size_t len = 0;
        const char *s;
        if (n == cap) {
            /* Grown as rows come: a tick under load reads a few versions, and zeroing
             * `max` rows each step cost more than indexing them (callgrind). */
            size_t ncap = cap == 0 ? 16 : cap * 2 < max ? cap * 2 : max;
            tx_row_t *grown = hv_realloc(rows, ncap * sizeof(*rows));
            if (grown == NULL) {
                rc = HV_ENOMEM;
                break;
            }
            rows = grown;
            cap = ncap;
        }
        rows[n].json = NULL;
        rows[n].rid = last = hv_db_column_int64(st, 0);
        s = hv_db_column_text(st, 1, &len);
        copy_name(rows[n].type, sizeof(rows[n].type), s, len);
        s = hv_db_column_text(st, 2, &len);
        copy_name(rows[n].id, sizeof(rows[n].id), s, len);
        if (!hv_db_column_is_null(st, 3)) {
            s = hv_db_column_text(st, 3, &len);
            rows[n].json = hv_strndup(s ? s : "", s ? len : 0);
            if (rows[n].json == NULL) {
                rc = HV_ENOMEM;
                break;
            }
        }
        n++;
    }
    hv_db_done(st);
    if (rc < 0)
        goto out;
    rc = HV_OK;
    for (size_t i = 0; i < n && rc == HV_OK; i++) {
        char *n1 = NULL, *n2 = NULL;
        if (rows[i].json == NULL)
            continue;
        rc = hv__search_text_of_json(rows[i].json, strlen(rows[i].json), &n1, &n2);
        if (rc == HV_EINVAL) {
            rc = HV_OK; /* stored text is always JSON; a damaged row is left out of the full text */
            continue;
        }
        if (rc != HV_OK)
            break;
        rc = hv_db_prepare(db, "INSERT INTO sp_text (rowid, type, id, narrative, content) VALUES ($1, $2, $3, $4, $5)",
                           &st);
        if (rc == HV_OK) {
            /* not copied: the row and the texts outlive hv_db_done below */
            hv_db_bind_int64(st, 1, rows[i].rid);
            hv_db_bind_text_static(st, 2, rows[i].type, strlen(rows[i].type));
            hv_db_bind_text_static(st, 3, rows[i].id, strlen(rows[i].id));
            hv_db_bind_text_static(st, 4, n1, strlen(n1));
            hv_db_bind_text_static(st, 5, n2, strlen(n2));
            rc = hv_db_step(st);
            hv_db_done(st);
            rc = rc < 0 ? rc : HV_OK;
        }
        hv_free(n1);
        hv_free(n2);
    }
    if (rc == HV_OK) {
        *mark = last;
        *n_out = n;
    }
out:
    for (size_t i = 0; i < n; i++)
        hv_free(rows[i].json);
    hv_free(rows);
    return rc;
}

int hv__search_text_catch_up(hv_db_t *db, int64_t limit, int64_t *indexed)
{
    hv_db_stmt_t *st = NULL;
    int64_t mark = 0, start, seen = 0;
    int rc;
    if (hv_db_kind(db) != HV_DB_SQLITE)
        return HV_OK; /* PostgreSQL writes its text rows with the version */
    rc = hv_db_prepare(db, "SELECT last_rid FROM sp_text_mark WHERE one = 1", &st);
    if (rc != HV_OK)
        return rc;
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW)
        mark = hv_db_column_int64(st, 0);
    hv_db_done(st);
    if (rc != HV_DB_ROW)
        return rc < 0 ? rc : HV_EINVAL; /* the migration inserts the one row */
    start = mark;
    for (;;) {
        size_t n = 0, max = CATCH_UP_CHUNK;
        if (limit > 0 && limit - seen < (int64_t)max)
            max = (size_t)(limit - seen);
        if (max == 0)
            break;
        if ((rc = catch_up_step(db, &mark, max, &n)) != HV_OK)
            return rc;
        seen += (int64_t)n;
        if (n < max)
            break;
    }
    if (mark != start) {
        rc = hv_db_prepare(db, "UPDATE sp_text_mark SET last_rid = $1 WHERE one = 1", &st);
        if (rc != HV_OK)
            return rc;
        hv_db_bind_int64(st, 1, mark);
        rc = hv_db_step(st);
        hv_db_done(st);
        if (rc < 0)
            return rc;
    }
    if (indexed != NULL)
        *indexed = seen;
    return HV_OK;
}

/* Location.position (location.html#position): latitude and longitude in decimal degrees. */
static int put_geo(hv_db_t *db, const char *type, const char *id, struct json_object *resource)
{
    struct json_object *pos = NULL, *jlat = NULL, *jlon = NULL;
    hv_db_stmt_t *st = NULL;
    double lat, lon, x, y, z;
    int rc;
    if (!json_object_object_get_ex(resource, "position", &pos) || !json_object_object_get_ex(pos, "latitude", &jlat) ||
        !json_object_object_get_ex(pos, "longitude", &jlon))
        return HV_OK;
    if ((!json_object_is_type(jlat, json_type_double) && !json_object_is_type(jlat, json_type_int)) ||
        (!json_object_is_type(jlon, json_type_double) && !json_object_is_type(jlon, json_type_int)))
        return HV_OK;
    lat = json_object_get_double(jlat);
    lon = json_object_get_double(jlon);
    if (!(lat >= -90.0 && lat <= 90.0 && lon >= -180.0 && lon <= 180.0))
        return HV_OK; /* not a WGS84 position: nothing to find it by */
    hv__search_geo_vector(lat, lon, &x, &y, &z);
    rc = hv_db_prepare(db, "INSERT INTO sp_geo (type, id, lat, lon, x, y, z) VALUES ($1, $2, $3, $4, $5, $6, $7)", &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_text(st, 1, type, strlen(type));
    hv_db_bind_text(st, 2, id, strlen(id));
    hv_db_bind_double(st, 3, lat);
    hv_db_bind_double(st, 4, lon);
    hv_db_bind_double(st, 5, x);
    hv_db_bind_double(st, 6, y);
    hv_db_bind_double(st, 7, z);
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

void hv__search_geo_vector(double lat, double lon, double *x, double *y, double *z)
{
    double f = lat * M_PI / 180.0, l = lon * M_PI / 180.0;
    *x = cos(f) * cos(l);
    *y = cos(f) * sin(l);
    *z = sin(f);
}

int hv__search_special_put(hv_db_t *db, const char *type, const char *id, struct json_object *resource, int replace,
                           int64_t rid)
{
    int rc = HV_OK, loc = strcmp(type, "Location") == 0;
    if (replace) {
        rc = hv__search_exec2(db,
                   hv_db_kind(db) == HV_DB_PG
                       ? "DELETE FROM sp_text WHERE rid IN (SELECT rid FROM resources WHERE type = $1 AND id = $2)"
                       : "DELETE FROM sp_text WHERE rowid IN (SELECT rid FROM resources WHERE type = $1 AND id = $2)",
                   type, id);
        if (rc == HV_OK && loc)
            rc = hv__search_exec2(db, "DELETE FROM sp_geo WHERE type = $1 AND id = $2", type, id);
        if (rc != HV_OK)
            return rc;
    }
    if (resource == NULL)
        return HV_OK;
    if (hv_db_kind(db) == HV_DB_PG)
        rc = put_text(db, type, id, resource, rid);
    else if (replace && (rc = text_behind_mark(db, type, id)) > 0)
        rc = put_text(db, type, id, resource, 0); /* a reindex of a version the catch-up has passed */
    /* else a new version: above the mark, hv__search_text_catch_up indexes it after the commit */
    if (rc < 0)
        return rc;
    rc = HV_OK;
    if (loc)
        rc = put_geo(db, type, id, resource);
    return rc;
}

/* ---- the catch-up tick (serve) ---- */

#define TICK_MS 250       /* how often the engine looks for versions to index */
#define TICK_LIMIT 4096   /* versions one tick's job indexes at most */
#define TICK_FORCE 20     /* ticks skipped for a busy store before one runs anyway (5 s) */

typedef struct text_tick {
    hv__fhir_t *f;
    uv_timer_t timer;
    int busy;    /* a catch-up job is in the storage queue */
    int skipped; /* ticks skipped because the store was busy */
    int64_t seen; /* storage thread: versions the last job looked at (read by its done callback) */
    int behind;  /* the last job stopped at TICK_LIMIT or yielded: more versions wait */
    int sliced;  /* storage thread: the last job yielded to waiting jobs */
    int closing;
} text_tick_t;

/* A tick's job indexes in slices of TICK_SLICE versions and yields the storage thread
 * as soon as it has indexed a slice and twice as many versions as other jobs wait
 * (hv__search_text_slices): the writes of its batch and those queued behind it wait for
 * all of the job, so it holds them for about one slice (~128 × 45 k instructions, a few
 * ms) — not for a time budget, which let one job run far longer on a loaded machine (a
 * 612 ms job was seen, docs/performance.md, s9-pipe) — while under a long queue it still
 * indexes more versions a turn than the jobs it passes wrote (a create is one version),
 * so that it keeps pace. With nothing waiting it runs up to TICK_LIMIT. */
#define TICK_SLICE 128

static int64_t others_waiting(void *ud)
{
    text_tick_t *t = ud;
    size_t n = hv_storage_queued(t->f->storage);
    return n > 1 ? (int64_t)n - 1 : 0; /* the jobs other than this one */
}

/* See fhir/search_int.h. */
int hv__search_text_slices(hv_db_t *db, int64_t slice, int64_t limit, int64_t (*waiting)(void *), void *ud,
                           int64_t *seen, int *yielded)
{
    int rc = HV_OK;
    *seen = 0;
    *yielded = 0;
    while (*seen < limit) {
        int64_t n = 0, w, max = limit - *seen < slice ? limit - *seen : slice;
        rc = hv__search_text_catch_up(db, max, &n);
        *seen += n;
        if (rc != HV_OK || n < max)
            break;
        /* More versions may wait and so do other jobs: yield (the done callback
         * submits the next slice behind them). */
        if (*seen < limit && waiting != NULL && (w = waiting(ud)) > 0 && *seen >= 2 * w) {
            *yielded = 1;
            break;
        }
    }
    return rc;
}

/* Re-runnable (hv_storage_submit_rerun): each run starts from the mark in the database and
 * sets seen and sliced again, and a rolled-back run leaves nothing behind. Submitted plainly,
 * it would put every later job of its batch — the creates behind it — in a savepoint of
 * its own. */
static int tick_job(hv_db_t *db, void *arg)
{
    text_tick_t *t = arg;
    return hv__search_text_slices(db, TICK_SLICE, TICK_LIMIT, others_waiting, t, &t->seen, &t->sliced);
}

static void tick_done(int status, void *arg)
{
    text_tick_t *t = arg;
    /* A failed catch-up is run again by the next tick or search. */
    t->behind = status == HV_OK && (t->seen >= TICK_LIMIT || t->sliced);
    t->busy = 0;
    /* Behind: the next slice goes to the back of the storage queue at once, after the writes
     * that wait, so that the catch-up keeps pace with sustained writes in short slices. */
    if (t->behind && !t->closing &&
        hv_storage_submit_rerun(t->f->storage, tick_job, tick_done, t) == HV_OK)
        t->busy = 1;
}

/* A tick indexes when the store has nothing else waiting, when it skipped 5 s of
 * ticks, or when the last job left versions waiting: bursts of writes are answered
 * at the store's own rate and indexed after them, while under sustained load the
 * catch-up keeps pace (up to TICK_LIMIT versions a tick), so that the backlog a
 * search must index first stays bounded. Not while a first Bulk sync has the search
 * indexes deferred (hv__search_values_deferring): the run has the storage thread, and the
 * tick catches up after its end (adapters/ehr/bulk.c). */
static void on_tick(uv_timer_t *timer)
{
    text_tick_t *t = timer->data;
    if (t->busy || t->closing || hv__search_values_deferring())
        return;
    if (hv_storage_queued(t->f->storage) > 0 && !t->behind && ++t->skipped < TICK_FORCE)
        return;
    if (hv_storage_submit_rerun(t->f->storage, tick_job, tick_done, t) == HV_OK) {
        t->busy = 1;
        t->skipped = 0;
    }
}

int hv__search_text_start(hv__fhir_t *f)
{
    text_tick_t *t;
    if (hv_engine_db_url(f->e) != NULL)
        return HV_OK; /* PostgreSQL: the text rows are written with the version */
    t = hv_calloc(1, sizeof(*t));
    if (t == NULL)
        return HV_ENOMEM;
    t->f = f;
    uv_timer_init(hv_engine_loop(f->e), &t->timer);
    t->timer.data = t;
    uv_timer_start(&t->timer, on_tick, TICK_MS, TICK_MS);
    uv_unref((uv_handle_t *)&t->timer); /* the tick never keeps the loop alive */
    f->text_state = t;
    return HV_OK;
}

void hv__search_text_stop(hv__fhir_t *f)
{
    text_tick_t *t = f->text_state;
    if (t == NULL)
        return;
    t->closing = 1;
    uv_timer_stop(&t->timer);
}

static void on_tick_closed(uv_handle_t *h)
{
    hv_free(h->data);
}

void hv__search_text_free(hv__fhir_t *f)
{
    text_tick_t *t = f->text_state;
    if (t == NULL)
        return;
    t->closing = 1;
    f->text_state = NULL;
    uv_close((uv_handle_t *)&t->timer, on_tick_closed);
}
