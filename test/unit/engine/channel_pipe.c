/* channel_pipe.c — tests of engine/channel_pipe.c's reader of pipelined HTTP/1.1 answers
 * (through hv__pipe_feed_answers: no socket): which outcomes a batch reports for what the
 * peer sends back, table-driven, each case fed whole and one byte at a time. */
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

int run_channel_pipe_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(pipe_answers_map_to_outcomes_in_order),
        cmocka_unit_test(pipe_response_body_over_cap_is_a_failure),
    };
    return cmocka_run_group_tests_name("channel_pipe", tests, NULL, NULL);
}
