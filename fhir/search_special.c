/*
 * search_special.c — the write-time index of FHIR R4's special search parameters
 * (search.html#text, #content; location.html#near): the full-text rows of `_text`
 * and `_content` and the position rows of Location `near`. Called from
 * hv__search_index_put (fhir/search_index.c) in the transaction that writes the
 * version, so these rows follow the current version like the other index rows.
 *
 *   table    backend      key                      columns
 *   sp_text  SQLite FTS5  rowid = resources.rid     type, id (unindexed); narrative, content
 *   sp_text  PostgreSQL   rid = resources.rid       type, id; narrative, content (tsvector, GIN)
 *   sp_geo   both         type, id                  lat, lon (degrees, WGS84); x, y, z (unit vector)
 *
 * The full-text columns hold normalized text (lower case, Latin-1 accents folded,
 * hv__search_normalize) so both backends compare words alike: FTS5's unicode61
 * tokenizer and PostgreSQL's 'simple' configuration, neither of which stems.
 * `narrative` is Resource.text.div with its tags stripped and its character
 * references decoded; `content` is every string value of the resource (the
 * narrative as stripped text) joined by spaces. Both are capped at
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

const char hv__search_migration3_pg[] =
    MIGRATION3_COMMON
    "CREATE TABLE sp_text (rid BIGINT PRIMARY KEY, type TEXT NOT NULL, id TEXT NOT NULL, narrative TSVECTOR,"
    " content TSVECTOR);"
    "CREATE INDEX sp_text_n ON sp_text USING GIN (narrative);"
    "CREATE INDEX sp_text_c ON sp_text USING GIN (content);";

#define MAX_DEPTH 64 /* JSON nesting the _content walk descends */

/* Appends n bytes of s, a separating space first, up to the buffer's cap (then stops quietly). */
static void add_text(hv_buf_t *b, const char *s, size_t n)
{
    if (n == 0 || b->len + n + 2 > HV__SEARCH_TEXT_MAX)
        return;
    if (b->len > 0)
        hv_buf_putc(b, ' ');
    hv_buf_append(b, s, n);
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
            add_text(b, tmp, o);
            o = 0;
        }
    }
    add_text(b, tmp, o);
}

/* Every string value under o (the narrative's div as its text), depth-first. */
static void walk_strings(struct json_object *o, hv_buf_t *b, int depth)
{
    if (o == NULL || depth > MAX_DEPTH || b->len + 2 > HV__SEARCH_TEXT_MAX)
        return;
    switch (json_object_get_type(o)) {
    case json_type_string:
        add_text(b, json_object_get_string(o), (size_t)json_object_get_string_len(o));
        break;
    case json_type_array:
        for (size_t i = 0; i < json_object_array_length(o); i++)
            walk_strings(json_object_array_get_idx(o, i), b, depth + 1);
        break;
    case json_type_object: {
        json_object_object_foreach(o, k, v)
        {
            if (strcmp(k, "div") == 0 && json_object_is_type(v, json_type_string))
                strip_xhtml(json_object_get_string(v), b);
            else if (strcmp(k, "resourceType") != 0)
                walk_strings(v, b, depth + 1);
        }
        break;
    }
    default:
        break;
    }
}

/* The normalized copy of b's text (owned; NULL when out of memory). */
static char *normalized(const hv_buf_t *b)
{
    char *o = hv_malloc(b->len + 1);
    if (o != NULL)
        hv__search_normalize(b->len ? b->data : "", o, b->len + 1);
    return o;
}

static int exec2(hv_db_t *db, const char *sql, const char *type, const char *id)
{
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, sql, &st);
    if (rc != HV_OK)
        return rc;
    hv_db_bind_text(st, 1, type, strlen(type));
    hv_db_bind_text(st, 2, id, strlen(id));
    rc = hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* The full-text row of the current version (the newest row of type/id). */
static int put_text(hv_db_t *db, const char *type, const char *id, struct json_object *resource)
{
    int pg = hv_db_kind(db) == HV_DB_PG;
    hv_buf_t nar, con;
    hv_db_stmt_t *st = NULL;
    struct json_object *text = NULL, *div = NULL;
    char *n1 = NULL, *n2 = NULL;
    int rc;
    hv_buf_init(&nar, HV__SEARCH_TEXT_MAX);
    hv_buf_init(&con, HV__SEARCH_TEXT_MAX);
    if (json_object_object_get_ex(resource, "text", &text) && json_object_object_get_ex(text, "div", &div) &&
        json_object_is_type(div, json_type_string))
        strip_xhtml(json_object_get_string(div), &nar);
    walk_strings(resource, &con, 0);
    n1 = normalized(&nar);
    n2 = normalized(&con);
    if (n1 == NULL || n2 == NULL) {
        rc = HV_ENOMEM;
        goto out;
    }
    rc = hv_db_prepare(db,
                       pg ? "INSERT INTO sp_text (rid, type, id, narrative, content) SELECT rid, $1, $2,"
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
    rc = hv_db_step(st);
    hv_db_done(st);
    rc = rc < 0 ? rc : HV_OK;
out:
    hv_free(n1);
    hv_free(n2);
    hv_buf_release(&nar);
    hv_buf_release(&con);
    return rc;
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

int hv__search_special_put(hv_db_t *db, const char *type, const char *id, struct json_object *resource, int replace)
{
    int rc = HV_OK, loc = strcmp(type, "Location") == 0;
    if (replace) {
        rc = exec2(db,
                   hv_db_kind(db) == HV_DB_PG
                       ? "DELETE FROM sp_text WHERE rid IN (SELECT rid FROM resources WHERE type = $1 AND id = $2)"
                       : "DELETE FROM sp_text WHERE rowid IN (SELECT rid FROM resources WHERE type = $1 AND id = $2)",
                   type, id);
        if (rc == HV_OK && loc)
            rc = exec2(db, "DELETE FROM sp_geo WHERE type = $1 AND id = $2", type, id);
        if (rc != HV_OK)
            return rc;
    }
    if (resource == NULL)
        return HV_OK;
    rc = put_text(db, type, id, resource);
    if (rc == HV_OK && loc)
        rc = put_geo(db, type, id, resource);
    return rc;
}
