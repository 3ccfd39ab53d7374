/* router.c — tests of engine/router.c and engine/metrics.c. */
#include "tests.h"

#include <string.h>

#include "engine/engine_int.h"

static void noop(hv_http_req_t *req, void *ud) {
    (void)req;
    (void)ud;
}

static hv_router_t *make_router(void) {
    hv_router_t *r = hv__router_new();
    assert_int_equal(hv_router_add(r, HV_HTTP_GET | HV_HTTP_POST, "/patients", noop, "list"), HV_OK);
    assert_int_equal(hv_router_add(r, HV_HTTP_GET, "/patients/search", noop, "search"), HV_OK);
    assert_int_equal(hv_router_add(r, HV_HTTP_GET | HV_HTTP_PUT, "/patients/:id", noop, "one"), HV_OK);
    assert_int_equal(hv_router_add(r, HV_HTTP_GET, "/patients/:id/vitals", noop, "vitals"), HV_OK);
    assert_int_equal(hv_router_add(r, HV_HTTP_GET | HV_HTTP_POST, "/fhir/*", noop, "fhir"), HV_OK);
    return r;
}

static void router_prefers_literal_over_parameter_over_wildcard(void **state) {
    hv_router_t *r = make_router();
    hv_arena_t *a = hv_arena_new(0);
    hv__route_match_t m;
    assert_int_equal(hv__router_match(r, HV_HTTP_GET, "/patients/search", a, &m), HV_OK);
    assert_string_equal(m.route->ud, "search");
    assert_int_equal(hv__router_match(r, HV_HTTP_GET, "/patients/p1", a, &m), HV_OK);
    assert_string_equal(m.route->ud, "one");
    assert_int_equal(m.nparam, 1);
    assert_string_equal(m.pname[0], "id");
    assert_string_equal(m.pval[0], "p1");
    assert_int_equal(hv__router_match(r, HV_HTTP_GET, "/patients/p1/vitals", a, &m), HV_OK);
    assert_string_equal(m.route->ud, "vitals");
    hv__router_free(r);
    hv_arena_free(a);
}

static void router_wildcard_captures_the_rest(void **state) {
    hv_router_t *r = make_router();
    hv_arena_t *a = hv_arena_new(0);
    hv__route_match_t m;
    assert_int_equal(hv__router_match(r, HV_HTTP_POST, "/fhir/Patient/1/_history/2", a, &m), HV_OK);
    assert_string_equal(m.route->ud, "fhir");
    assert_string_equal(m.pname[0], "*");
    assert_string_equal(m.pval[0], "Patient/1/_history/2");
    assert_int_equal(hv__router_match(r, HV_HTTP_GET, "/fhir", a, &m), HV_OK);
    assert_string_equal(m.pval[0], "");
    hv__router_free(r);
    hv_arena_free(a);
}

static void router_reports_allowed_methods_for_405(void **state) {
    hv_router_t *r = make_router();
    hv_arena_t *a = hv_arena_new(0);
    hv__route_match_t m;
    assert_int_equal(hv__router_match(r, HV_HTTP_DELETE, "/patients/p1", a, &m), HV_ENOTFOUND);
    assert_null(m.route);
    assert_int_equal(m.allowed, HV_HTTP_GET | HV_HTTP_PUT);
    assert_int_equal(hv__router_match(r, HV_HTTP_GET, "/nothing/here", a, &m), HV_ENOTFOUND);
    assert_int_equal(m.allowed, 0);
    /* HEAD is served by GET routes */
    assert_int_equal(hv__router_match(r, HV_HTTP_HEAD, "/patients", a, &m), HV_OK);
    hv__router_free(r);
    hv_arena_free(a);
}

static void router_refuses_bad_patterns(void **state) {
    hv_router_t *r = hv__router_new();
    assert_int_equal(hv_router_add(r, HV_HTTP_GET, "no-slash", noop, NULL), HV_EINVAL);
    assert_int_equal(hv_router_add(r, HV_HTTP_GET, "/a/*/b", noop, NULL), HV_EINVAL);
    hv__router_free(r);
}

static void latency_quantiles_follow_the_data(void **state) {
    hv__latency_t l;
    int i;
    memset(&l, 0, sizeof(l));
    for (i = 0; i < 990; i++) hv__latency_add(&l, 100);   /* 100 us */
    for (i = 0; i < 10; i++) hv__latency_add(&l, 50000);  /* 50 ms */
    assert_true(hv__latency_quantile(&l, 0.5) >= 96 && hv__latency_quantile(&l, 0.5) <= 104);
    assert_true(hv__latency_quantile(&l, 0.99) <= 104);
    assert_true(hv__latency_quantile(&l, 0.999) >= 45000 && hv__latency_quantile(&l, 0.999) <= 55000);
}

static double seven(void *ud) {
    (void)ud;
    return 7;
}

static void metrics_render_prometheus_text(void **state) {
    hv_metrics_t *m = hv__metrics_new();
    hv_buf_t out;
    hv_counter_t *c = hv_metrics_counter(m, "hv_x_total", "Things.", "kind=\"a\"");
    hv_histogram_t *h;
    static const double b[] = {0.1, 1, 0};
    assert_ptr_equal(c, hv_metrics_counter(m, "hv_x_total", "Things.", "kind=\"a\""));
    hv_counter_add(c, 3);
    h = hv_metrics_histogram(m, "hv_lat_seconds", "Latency.", NULL, b);
    hv_histogram_observe(h, 0.05);
    hv_histogram_observe(h, 0.5);
    hv_histogram_observe(h, 5);
    hv_metrics_gauge_fn(m, "hv_g", "G.", NULL, seven, NULL);
    /* the same name with another kind is refused */
    assert_null(hv_metrics_gauge(m, "hv_x_total", "x", NULL));
    hv_buf_init(&out, 0);
    hv_metrics_render(m, &out);
    assert_non_null(strstr(out.data, "# TYPE hv_x_total counter\nhv_x_total{kind=\"a\"} 3\n"));
    assert_non_null(strstr(out.data, "hv_lat_seconds_bucket{le=\"0.1\"} 1\n"));
    assert_non_null(strstr(out.data, "hv_lat_seconds_bucket{le=\"1\"} 2\n"));
    assert_non_null(strstr(out.data, "hv_lat_seconds_bucket{le=\"+Inf\"} 3\n"));
    assert_non_null(strstr(out.data, "hv_lat_seconds_count 3\n"));
    assert_non_null(strstr(out.data, "hv_g 7\n"));
    hv_buf_release(&out);
    hv__metrics_free(m);
}

/* The index by first segment must pick what a scan of every route in registration order
 * picks: table-driven over literal, parameter and wildcard first segments, the root, a
 * tie between equal patterns (the first registered wins), 405s, and a route added after
 * the index was built. */
static void router_index_matches_a_scan_of_every_route(void **state) {
    static const struct {
        unsigned methods;
        const char *pattern, *name;
    } routes[] = {
        {HV_HTTP_GET, "/a/b", "a/b"},         {HV_HTTP_GET, "/a/:x", "a/:x"},  {HV_HTTP_GET, "/:y/b", ":y/b"},
        {HV_HTTP_GET, "/*", "root*"},         {HV_HTTP_GET, "/", "root"},      {HV_HTTP_GET, "/aa/b", "aa/b"},
        {HV_HTTP_GET, "/b/c", "b/c"},         {HV_HTTP_GET, "/dup", "dup1"},   {HV_HTTP_GET, "/dup", "dup2"},
        {HV_HTTP_POST, "/c/:id", "c-post"},   {HV_HTTP_GET, "/ab/*", "ab*"},   {HV_HTTP_PUT, "/:t/:id", "put"},
    };
    static const struct {
        int method;
        const char *path, *want; /* want NULL: not found */
        unsigned allowed; /* checked when not found */
    } cases[] = {
        {HV_HTTP_GET, "/a/b", "a/b", 0},        {HV_HTTP_GET, "/a/z", "a/:x", 0},
        {HV_HTTP_GET, "/q/b", ":y/b", 0},       {HV_HTTP_GET, "/q/z", "root*", 0},
        {HV_HTTP_GET, "/", "root*", 0},         {HV_HTTP_GET, "/aa/b", "aa/b", 0},
        {HV_HTTP_GET, "/b/c", "b/c", 0},        {HV_HTTP_GET, "/dup", "dup1", 0},
        {HV_HTTP_GET, "/ab/x/y", "ab*", 0},     {HV_HTTP_GET, "/c/1", "root*", 0},
        {HV_HTTP_POST, "/c/1", "c-post", 0},    {HV_HTTP_PUT, "/zz/9", "put", 0},
        {HV_HTTP_DELETE, "/zz/9", NULL, HV_HTTP_GET | HV_HTTP_PUT},
        {HV_HTTP_DELETE, "/c/1", NULL, HV_HTTP_GET | HV_HTTP_POST | HV_HTTP_PUT},
        {HV_HTTP_GET, "/b", "root*", 0},
    };
    hv_router_t *r = hv__router_new();
    hv_arena_t *a = hv_arena_new(0);
    hv__route_match_t m;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++)
        assert_int_equal(hv_router_add(r, routes[i].methods, routes[i].pattern, noop, (void *)routes[i].name), HV_OK);
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int rc = hv__router_match(r, cases[i].method, cases[i].path, a, &m);
        if (cases[i].want == NULL) {
            assert_int_equal(rc, HV_ENOTFOUND);
            assert_null(m.route);
            assert_int_equal(m.allowed, cases[i].allowed); /* the 405's Allow */
        } else {
            assert_int_equal(rc, HV_OK);
            assert_string_equal(m.route->ud, cases[i].want);
        }
    }
    /* added after the first match: the index is rebuilt */
    assert_int_equal(hv_router_add(r, HV_HTTP_GET, "/q/z", noop, "late"), HV_OK);
    assert_int_equal(hv__router_match(r, HV_HTTP_GET, "/q/z", a, &m), HV_OK);
    assert_string_equal(m.route->ud, "late");
    hv__router_free(r);
    hv_arena_free(a);
}

int run_router_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(router_prefers_literal_over_parameter_over_wildcard),
        cmocka_unit_test(router_wildcard_captures_the_rest),
        cmocka_unit_test(router_reports_allowed_methods_for_405),
        cmocka_unit_test(router_refuses_bad_patterns),
        cmocka_unit_test(router_index_matches_a_scan_of_every_route),
        cmocka_unit_test(latency_quantiles_follow_the_data),
        cmocka_unit_test(metrics_render_prometheus_text),
    };
    return cmocka_run_group_tests_name("engine/router", tests, NULL, NULL);
}
