/* channel_pipe.c — tests of engine/channel_pipe.c's reader of pipelined HTTP/1.1 answers
 * (through hv__pipe_feed_answers: no socket): which outcomes a batch reports for what the
 * peer sends back, table-driven, each case fed whole (whole answers: the reader's fast
 * path, answer_fast) and one byte at a time (http_parser); and of the request heads it
 * writes (hv__pipe_head), against the wire format built with snprintf. */
#include "tests.h"

#include <string.h>

#include "engine/channel_int.h"

#define D HV_CHANNEL_DELIVERED
#define R HV_CHANNEL_RETRY
#define E HV_CHANNEL_ERROR
#define OK0 "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"

typedef struct answer_case {
    const char *name;
    size_t nreq;
    const char *answers;
    size_t reported;
    int results[4];
} answer_case_t;

static const answer_case_t cases[] = {
    {"all delivered", 3, OK0 OK0 "HTTP/1.1 204 No Content\r\n\r\n", 3, {D, D, D}},
    {"a retry ends the batch, the rest is not attempted", 4,
     OK0 "HTTP/1.1 503 Busy\r\nContent-Length: 4\r\n\r\nbusy" OK0 OK0, 2, {D, R}},
    {"an error (4xx) does not end the batch", 3,
     "HTTP/1.1 404 No\r\nContent-Length: 0\r\n\r\n" OK0 OK0, 3, {E, D, D}},
    {"408 and 429 retry", 2, "HTTP/1.1 429 Slow\r\nContent-Length: 0\r\n\r\n" OK0, 1, {R}},
    {"chunked bodies are skipped", 2,
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" OK0, 2, {D, D}},
    {"an interim 100 is not an answer", 1, "HTTP/1.1 100 Continue\r\n\r\n" OK0, 1, {D}},
    {"the connection ends before the last answer: that one retries", 3, OK0 OK0, 3, {D, D, R}},
    {"nothing answered: the first retries", 2, "", 1, {R}},
    {"a closing answer ends the batch after it (sent again on a new connection)", 3,
     "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n" OK0, 1, {D}},
    {"HTTP/1.0 closes after its answer", 2, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 1,
     {D}},
    {"garbage is a transport failure of the first unanswered", 3, OK0 "HTTQ/9 x\r\n\r\n", 2,
     {D, R}},
    {"HTTP/1.0 with keep-alive keeps the connection", 2,
     "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok" OK0, 2, {D, D}},
    {"a body is skipped by its length, whatever it holds", 2,
     "HTTP/1.1 201 Created\r\nContent-Length: 17\r\n\r\nHTTP/1.1 500 no\r\n" OK0, 2, {D, D}},
    {"header names and Connection values are case-insensitive", 2,
     "HTTP/1.1 200 OK\r\nCONNECTION: Close\r\ncontent-length: 0\r\n\r\n" OK0, 1, {D}},
    {"whitespace around a header value", 2,
     "HTTP/1.1 200 OK\r\nServer:\tx \r\nContent-Length:  0\r\n\r\n" OK0, 2, {D, D}},
    {"a four-digit status is garbage", 2, "HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n" OK0,
     1, {R}},
    {"two Content-Lengths are garbage", 2,
     "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n" OK0, 1, {R}},
    {"a status line without a reason", 2, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n" OK0, 2,
     {D, D}},
    {"an answer split inside its body", 2,
     "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789" OK0, 2, {D, D}},
    {"more answers than requests: the extra one is garbage", 1, OK0 OK0, 1, {D}},
};

static void check_case(const answer_case_t *c, size_t chunk) {
    int results[8];
    size_t reported = 99, i, n = strlen(c->answers);
    memset(results, 0xff, sizeof(results));
    assert_int_equal(hv__pipe_feed_answers(c->answers, n, c->nreq, chunk ? chunk : (n ? n : 1),
                                           results, &reported),
                     HV_OK);
    if (reported != c->reported) fail_msg("%s: reported %zu, expected %zu", c->name, reported, c->reported);
    for (i = 0; i < reported; i++)
        if (results[i] != c->results[i])
            fail_msg("%s: outcome %zu is %d, expected %d", c->name, i, results[i], c->results[i]);
}

static void pipe_answers_map_to_outcomes_in_order(void **state) {
    size_t i;
    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        check_case(&cases[i], 0); /* whole */
        check_case(&cases[i], 1); /* one byte per read */
    }
}

static void pipe_response_body_over_cap_is_a_failure(void **state) {
    static char big[(16 * 65536) + 200];
    int results[2];
    size_t reported = 0, n;
    (void)state;
    n = (size_t)snprintf(big, sizeof(big), "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n",
                         16 * 65536 + 100);
    memset(big + n, 'x', sizeof(big) - n);
    assert_int_equal(hv__pipe_feed_answers(big, sizeof(big), 2, 4096, results, &reported), HV_OK);
    assert_int_equal(reported, 1);
    assert_int_equal(results[0], R);
}

/* The request head of one message, built the way the format at the top of
 * channel_pipe.c states it (snprintf), for comparison with hv__pipe_head. */
static void expected_head(char *out, size_t cap, const char *method, const char *path,
                          const char *host, const char *hdrs, const hv_channel_msg_t *m) {
    snprintf(out, cap,
             "%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Type: %.500s\r\nX-Message-Id: %lld\r\n"
             "Content-Length: %zu\r\n\r\n",
             method, path, host, hdrs,
             m->content_type && m->content_type[0] ? m->content_type : "application/octet-stream",
             (long long)m->id, m->len);
}

static void pipe_request_heads_follow_the_wire_format(void **state) {
    static char long_ct[700];
    const char *hdrs[] = {"Authorization: Bearer t", "X-Site: north"};
    struct {
        int64_t id;
        size_t len;
        const char *ct;
    } msgs[] = {{1, 0, "application/json"},
                {9223372036854775807LL, 157, "text/plain; charset=utf-8"},
                {1234567, 1048576, NULL},
                {42, 10, ""},
                {7, 3, long_ct}};
    uv_loop_t loop;
    hv__pipe_t *p;
    char got[2048], want[2048];
    size_t i, n;
    (void)state;
    memset(long_ct, 'c', sizeof(long_ct) - 1);
    assert_int_equal(uv_loop_init(&loop), 0);
    p = hv__pipe_for(&loop, "http://sink.example:8080/in/x?y=1", "PUT", hdrs, 2, 16, 1000, 1000);
    assert_non_null(p);
    for (i = 0; i < sizeof(msgs) / sizeof(msgs[0]); i++) {
        hv_channel_msg_t m;
        memset(&m, 0, sizeof(m));
        m.id = msgs[i].id;
        m.len = msgs[i].len;
        m.content_type = msgs[i].ct;
        expected_head(want, sizeof(want), "PUT", "/in/x?y=1", "sink.example:8080",
                      "Authorization: Bearer t\r\nX-Site: north\r\n", &m);
        n = hv__pipe_head(p, &m, got, sizeof(got));
        assert_int_equal(n, strlen(want));
        assert_memory_equal(got, want, n);
        assert_int_equal(hv__pipe_head(p, &m, got, 100), 0); /* too small: refused */
    }
    hv__pipe_free(p);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0); /* the pipeline's handles close */
    assert_int_equal(uv_loop_close(&loop), 0);
}

int run_channel_pipe_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pipe_answers_map_to_outcomes_in_order),
        cmocka_unit_test(pipe_response_body_over_cap_is_a_failure),
        cmocka_unit_test(pipe_request_heads_follow_the_wire_format),
    };
    return cmocka_run_group_tests_name("channel_pipe", tests, NULL, NULL);
}
