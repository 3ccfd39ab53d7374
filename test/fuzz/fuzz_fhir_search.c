/*
 * fuzz_fhir_search.c — fuzzes the search planner of fhir/search_plan.c (FHIR R4
 * search.html) and the date/prefix readers of fhir/search_index.c.
 *
 * Input: a query string as it arrives after '?' (the first byte picks the resource
 * type, strict handling, and a system-level or compartment search). Invariants:
 * planning never crashes; a refusal is HV_EINVAL (or HV_ENOTSUP) with a message;
 * planning is deterministic (the same SQL and the same bound values twice); the SQL
 * holds exactly the placeholders $1..$nbinds, each value bound, only the markers the run
 * replaces (@VS, @TX, and @C/@R/@E naming a planned criterion), and never a quote
 * character coming from the input (values are bound, not spliced: the only quotes are
 * the fixed ESCAPE '\' and '/' fragments); every date range accepted has lo <= hi.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "fhir/search_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_sql(const hv__search_plan_t *p)
{
    const char *s = p->where.data ? p->where.data : "";
    int max = 0;
    for (const char *c = s; *c; c++) {
        if (*c == '$') {
            int n = atoi(c + 1);
            if (n < 1)
                abort();
            if (n > max)
                max = n;
        } else if (*c == '@') {
            /* a marker the run replaces: "@VS<k>@" or "@TX<column>:<placeholder>@" (_text, _content),
             * the correlation and index markers "@C<k>@" "@R<k>@" "@I<k>:table@", a _has's "@H<k>@",
             * "@J<k>@" and head "@E<k>@", a string column's collation "@K@" */
            const char *e = strchr(c + 1, '@');
            if (e == NULL || (strncmp(c, "@VS", 3) != 0 && strncmp(c, "@TX", 3) != 0 && strncmp(c, "@C", 2) != 0 &&
                              strncmp(c, "@R", 2) != 0 && strncmp(c, "@I", 2) != 0 && strncmp(c, "@H", 2) != 0 &&
                              strncmp(c, "@J", 2) != 0 && strncmp(c, "@E", 2) != 0 && strncmp(c, "@K@", 3) != 0))
                abort();
            /* an index marker names a planned criterion and an index table */
            if (c[1] == 'I') {
                const char *colon = strchr(c, ':');
                if (colon == NULL || colon > e || strncmp(colon + 1, "sp_", 3) != 0)
                    abort();
                for (const char *t = colon + 1; t < e; t++)
                    if (!((*t >= 'a' && *t <= 'z') || *t == '_'))
                        abort();
            }
            /* a correlation marker names a planned criterion */
            if ((c[1] == 'C' || c[1] == 'R' || c[1] == 'I' || c[1] == 'E') && (atoi(c + 2) < 0 || atoi(c + 2) >= p->ncrit))
                abort();
            if (c[1] == 'T') {
                const char *colon = strchr(c, ':');
                int n = colon != NULL && colon < e ? atoi(colon + 1) : 0;
                if (n < 1 || n > p->nbinds || (c[3] != '0' && c[3] != '1'))
                    abort();
            }
            c = e;
        } else if (*c == '\'') {
            /* the only literals the planner writes: ESCAPE '\' and uri :above's '/' */
            if (strncmp(c, "'\\'", 3) != 0 && strncmp(c, "'/'", 3) != 0)
                abort();
            c += 2;
        }
    }
    if (max > p->nbinds)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const types[] = {"Patient", "Observation", "Encounter", "Condition", "Location"};
    hv__search_plan_t a, b;
    char *q;
    int ra, rb;
    if (size < 1 || size > 4096)
        return 0;
    q = hv_malloc(size);
    if (q == NULL)
        return 0;
    memcpy(q, data + 1, size - 1);
    q[size - 1] = '\0';
    hv__search_plan_init(&a);
    hv__search_plan_init(&b);
    a.system = b.system = (data[0] & 8) != 0;
    if (data[0] & 16) {
        memcpy(a.compartment, "p1", 3);
        memcpy(b.compartment, "p1", 3);
    }
    ra = hv__search_plan_build(&a, types[(data[0] & 32) ? 4 : data[0] % 4], q, data[0] & 4, 10, 100);
    rb = hv__search_plan_build(&b, types[(data[0] & 32) ? 4 : data[0] % 4], q, data[0] & 4, 10, 100);
    if (ra != rb)
        abort();
    if ((ra == HV_EINVAL || ra == HV_ENOTSUP) && a.msg[0] == '\0')
        abort();
    if (ra == HV_OK) {
        check_sql(&a);
        if (a.where.len != b.where.len || (a.where.len && memcmp(a.where.data, b.where.data, a.where.len) != 0) ||
            a.nbinds != b.nbinds || a.count != b.count)
            abort();
        for (int i = 0; i < a.nbinds; i++)
            if (a.binds[i].kind != b.binds[i].kind || (a.binds[i].kind == 0 && strcmp(a.binds[i].s, b.binds[i].s)))
                abort();
    }
    {
        int64_t lo, hi;
        const char *v = q;
        (void)hv__search_prefix(&v);
        if (hv__search_date_range(v, &lo, &hi) == HV_OK && lo > hi)
            abort();
    }
    hv__search_plan_clear(&a);
    hv__search_plan_clear(&b);
    hv_free(q);
    return 0;
}
