/*
 * sender.c — tests of adapters/hl7v2/sender.c against a scripted MLLP peer on the
 * same libuv loop: AA/AE/AR map to delivered/retry/error, an ACK for another
 * control id or no ACK at all makes the sender reconnect and resend, and a peer
 * that never listens exhausts the attempts. Every test ends with every handle
 * closed and uv_loop_close() == 0.
 */
#include <string.h>

#include "tests.h"

typedef struct peer {
    uv_tcp_t server;
    uv_tcp_t conn[8];
    int nconn;
    hv_mllp_framer_t fr[8];
    const char *script; /* one char per frame received: A, E, R = answer; S = stay silent; W = wrong id */
    int frames;
    int port;
} peer_t;

typedef struct result {
    int calls, status, outcome;
    char code[3];
} result_t;

static peer_t P;

static void on_peer_write(uv_write_t *w, int status) {
    (void)status;
    hv_free(w->data);
    hv_free(w);
}

static void peer_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
    static char buf[4096];
    (void)h;
    (void)s;
    b->base = buf;
    b->len = sizeof(buf);
}

static void peer_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
    int i = (int)(intptr_t)st->data;
    size_t off = 0;
    if (n < 0) {
        if (!uv_is_closing((uv_handle_t *)st)) uv_close((uv_handle_t *)st, NULL);
        return;
    }
    while (off < (size_t)n) {
        const char *msg;
        size_t len, used;
        hv_arena_t *a;
        hv_hl7v2_msg_t m;
        hv_hl7v2_ack_opts_t o;
        hv_buf_t ack, framed;
        char c;
        int rc = hv_mllp_framer_feed(&P.fr[i], b->base + off, (size_t)n - off, &used, &msg, &len);
        off += used;
        if (rc != HV_OK) break;
        c = P.script[P.frames < (int)strlen(P.script) ? P.frames : (int)strlen(P.script) - 1];
        P.frames++;
        if (c == 'S') continue;
        a = hv_arena_new(0);
        assert_int_equal(hv_hl7v2_parse(a, msg, len, NULL, &m, NULL, NULL), HV_OK);
        if (c == 'W') assert_int_equal(hv_hl7v2_set_text(&m, "MSH-10", "OTHER", 5), HV_OK);
        memset(&o, 0, sizeof(o));
        o.code = c == 'A' || c == 'W' ? HV_HL7V2_ACK_ACCEPT
                 : c == 'E'           ? HV_HL7V2_ACK_ERROR
                                      : HV_HL7V2_ACK_REJECT;
        hv_buf_init(&ack, 0);
        hv_buf_init(&framed, 0);
        assert_int_equal(hv_hl7v2_ack_build(&m, &o, &ack), HV_OK);
        assert_int_equal(hv_mllp_wrap(ack.data, ack.len, &framed), HV_OK);
        {
            uv_write_t *w = hv_calloc(1, sizeof(*w));
            uv_buf_t ub = uv_buf_init(framed.data, (unsigned)framed.len);
            w->data = framed.data;
            uv_write(w, st, &ub, 1, on_peer_write);
        }
        hv_buf_release(&ack);
        hv_arena_free(a);
    }
}

static void peer_accept(uv_stream_t *s, int status) {
    int i = P.nconn++;
    assert_int_equal(status, 0);
    assert_true(i < 8);
    uv_tcp_init(s->loop, &P.conn[i]);
    P.conn[i].data = (void *)(intptr_t)i;
    hv_mllp_framer_init(&P.fr[i], 1 << 20);
    assert_int_equal(uv_accept(s, (uv_stream_t *)&P.conn[i]), 0);
    uv_read_start((uv_stream_t *)&P.conn[i], peer_alloc, peer_read);
}

static void peer_start(uv_loop_t *loop, const char *script) {
    struct sockaddr_in sa;
    int len = sizeof(sa);
    memset(&P, 0, sizeof(P));
    P.script = script;
    uv_tcp_init(loop, &P.server);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&P.server, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&P.server, 16, peer_accept), 0);
    uv_tcp_getsockname(&P.server, (struct sockaddr *)&sa, &len);
    P.port = ntohs(sa.sin_port);
}

static void peer_stop(void) {
    int i;
    uv_close((uv_handle_t *)&P.server, NULL);
    for (i = 0; i < P.nconn; i++) {
        if (!uv_is_closing((uv_handle_t *)&P.conn[i])) uv_close((uv_handle_t *)&P.conn[i], NULL);
        hv_mllp_framer_release(&P.fr[i]);
    }
}

static void on_sent(int status, int outcome, const char *ack, size_t n, void *ud) {
    result_t *r = ud;
    r->calls++;
    r->status = status;
    r->outcome = outcome;
    if (ack != NULL) {
        hv_hl7v2_span_t ctl;
        assert_int_equal(hv_hl7v2_ack_read(ack, n, r->code, &ctl), HV_OK);
    }
}

static const char *MSG = "MSH|^~\\&|A|B|C|D|1||ADT^A01|CTL1|P|2.5\rPID|1\r";
static const char *msg_to_send;

/* Sends one message through a peer following `script`; returns the result. */
static result_t send_through(const char *script, uint64_t ack_timeout_ms, int attempts) {
    uv_loop_t loop;
    hv_mllp_sender_t *s = NULL;
    hv_mllp_sender_opts_t o;
    result_t r;
    memset(&r, 0, sizeof(r));
    if (msg_to_send == NULL) msg_to_send = MSG;
    assert_int_equal(uv_loop_init(&loop), 0);
    peer_start(&loop, script);
    memset(&o, 0, sizeof(o));
    o.host = "127.0.0.1";
    o.port = P.port;
    o.ack_timeout_ms = ack_timeout_ms;
    o.backoff_min_ms = 5;
    o.backoff_max_ms = 20;
    o.max_attempts = attempts;
    assert_int_equal(hv_mllp_sender_new(&loop, &o, &s, NULL), HV_OK);
    assert_int_equal(hv_mllp_sender_send(s, msg_to_send, strlen(msg_to_send), on_sent, &r), HV_OK);
    while (r.calls == 0 && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    /* A message delivered on write (MSH-15 NE) may not have reached the peer yet. */
    while (P.frames == 0 && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    hv_mllp_sender_free(s);
    peer_stop();
    msg_to_send = MSG;
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(r.calls, 1);
    return r;
}

static void hl7v2_sender_maps_ack_codes_to_outcomes(void **state) {
    static const struct {
        const char *script;
        int outcome;
        const char *code;
    } cases[] = {
        {"A", HV_MLLP_DELIVERED, "AA"},
        {"E", HV_MLLP_RETRY, "AE"},
        {"R", HV_MLLP_ERROR, "AR"},
    };
    size_t i;
    (void)state;
    for (i = 0; i < HV_ARRAY_LEN(cases); i++) {
        result_t r = send_through(cases[i].script, 2000, 3);
        assert_int_equal(r.status, HV_OK);
        assert_int_equal(r.outcome, cases[i].outcome);
        assert_string_equal(r.code, cases[i].code);
        assert_int_equal(P.frames, 1);
    }
}

static void hl7v2_sender_resends_after_timeout_or_wrong_ack(void **state) {
    result_t r;
    (void)state;
    /* Silent first, then an answer: the message is resent on a new connection. */
    r = send_through("SA", 100, 3);
    assert_int_equal(r.status, HV_OK);
    assert_int_equal(r.outcome, HV_MLLP_DELIVERED);
    assert_int_equal(P.frames, 2);
    assert_int_equal(P.nconn, 2);
    /* An ACK naming another control id is not taken as this message's. */
    r = send_through("WA", 2000, 3);
    assert_int_equal(r.outcome, HV_MLLP_DELIVERED);
    assert_int_equal(P.frames, 2);
    /* Never answered: gives up after the attempts with a timeout. */
    r = send_through("S", 50, 2);
    assert_int_equal(r.status, HV_ETIMEDOUT);
    assert_int_equal(r.outcome, HV_MLLP_RETRY);
    assert_int_equal(P.frames, 2);
}

static void hl7v2_sender_follows_enhanced_mode_msh15(void **state) {
    result_t r;
    (void)state;
    /* NE: no ACK expected; delivered once written, the peer stays silent. */
    msg_to_send = "MSH|^~\\&|A|B|C|D|1||ADT^A01|CTL2|P|2.5|||NE|NE\rPID|1\r";
    r = send_through("S", 5000, 3);
    assert_int_equal(r.status, HV_OK);
    assert_int_equal(r.outcome, HV_MLLP_DELIVERED);
    assert_int_equal(P.frames, 1);
    /* ER: silence until the ACK timeout means accepted; not resent. */
    msg_to_send = "MSH|^~\\&|A|B|C|D|1||ADT^A01|CTL3|P|2.5|||ER|NE\rPID|1\r";
    r = send_through("S", 50, 3);
    assert_int_equal(r.status, HV_OK);
    assert_int_equal(r.outcome, HV_MLLP_DELIVERED);
    assert_int_equal(P.frames, 1);
    /* ER with an error: CR is reported. */
    msg_to_send = "MSH|^~\\&|A|B|C|D|1||ADT^A01|CTL4|P|2.5|||ER|NE\rPID|1\r";
    r = send_through("R", 2000, 3);
    assert_int_equal(r.outcome, HV_MLLP_ERROR);
    assert_string_equal(r.code, "CR");
}

static void hl7v2_sender_reports_unreachable_peer(void **state) {
    uv_loop_t loop;
    uv_tcp_t probe;
    struct sockaddr_in sa;
    int len = sizeof(sa), port;
    hv_mllp_sender_t *s = NULL;
    hv_mllp_sender_opts_t o;
    result_t r;
    (void)state;
    memset(&r, 0, sizeof(r));
    assert_int_equal(uv_loop_init(&loop), 0);
    /* A port that was free a moment ago: bind, read it, close. */
    uv_tcp_init(&loop, &probe);
    uv_ip4_addr("127.0.0.1", 0, &sa);
    uv_tcp_bind(&probe, (struct sockaddr *)&sa, 0);
    uv_tcp_getsockname(&probe, (struct sockaddr *)&sa, &len);
    port = ntohs(sa.sin_port);
    uv_close((uv_handle_t *)&probe, NULL);
    memset(&o, 0, sizeof(o));
    o.host = "127.0.0.1";
    o.port = port;
    o.backoff_min_ms = 5;
    o.max_attempts = 3;
    assert_int_equal(hv_mllp_sender_new(&loop, &o, &s, NULL), HV_OK);
    assert_int_equal(hv_mllp_sender_send(s, "garbage", 7, on_sent, &r), HV_EINVAL);
    assert_int_equal(hv_mllp_sender_send(s, MSG, strlen(MSG), on_sent, &r), HV_OK);
    assert_int_equal(hv_mllp_sender_queued(s), 1);
    while (r.calls == 0 && uv_run(&loop, UV_RUN_ONCE) != 0) {
    }
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, HV_EIO);
    assert_int_equal(r.outcome, HV_MLLP_RETRY);
    /* The reason in words names the peer. */
    assert_non_null(strstr(hv_mllp_sender_last_error(s), "127.0.0.1:"));
    hv_mllp_sender_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* TLS files are loaded when the sender is made: a bad one fails at once, with the file named. */
static void hl7v2_sender_tls_refuses_unloadable_files(void **state) {
    uv_loop_t loop;
    hv_mllp_sender_t *s = NULL;
    hv_mllp_sender_opts_t o;
    hv_error_t err;
    (void)state;
    assert_int_equal(uv_loop_init(&loop), 0);
    memset(&o, 0, sizeof(o));
    o.host = "127.0.0.1";
    o.port = 2575;
    o.tls = 1;
    o.tls_ca_file = "/nonexistent/ca.pem";
    hv_error_clear(&err);
    assert_int_equal(hv_mllp_sender_new(&loop, &o, &s, &err), HV_ECONFIG);
    assert_null(s);
    assert_string_equal(err.location, "/nonexistent/ca.pem");
    assert_non_null(strstr(err.message, "cannot load the CA certificates"));
    /* A certificate without its key. */
    o.tls_insecure = 1;
    o.tls_ca_file = NULL;
    o.tls_cert_file = "/nonexistent/client.pem";
    hv_error_clear(&err);
    assert_int_equal(hv_mllp_sender_new(&loop, &o, &s, &err), HV_ECONFIG);
    assert_null(s);
    assert_non_null(strstr(err.message, "needs its key"));
    /* Unverified TLS needs no file at all. */
    o.tls_cert_file = NULL;
    assert_int_equal(hv_mllp_sender_new(&loop, &o, &s, &err), HV_OK);
    assert_string_equal(hv_mllp_sender_last_error(s), "");
    hv_mllp_sender_free(s);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int run_sender_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hl7v2_sender_maps_ack_codes_to_outcomes),
        cmocka_unit_test(hl7v2_sender_resends_after_timeout_or_wrong_ack),
        cmocka_unit_test(hl7v2_sender_follows_enhanced_mode_msh15),
        cmocka_unit_test(hl7v2_sender_reports_unreachable_peer),
        cmocka_unit_test(hl7v2_sender_tls_refuses_unloadable_files),
    };
    return cmocka_run_group_tests_name("hl7v2_sender", tests, NULL, NULL);
}
