/*
 * mllp.c — the MLLP load generator (bench/bin/mllp).
 *
 *   bench/bin/mllp [--host 127.0.0.1] [--port 2575] [--connections 50] [--messages 1000]
 *                  [--window 1] [--rate 0] DIR|FILE...
 *
 * Opens N connections; each sends `messages` messages taken round-robin from the
 * files given (every message of every file; batches are split), keeping up to
 * `window` unacknowledged messages in flight, and checks that each ACK is AA/CA and
 * names the MSH-10 it answers. Every message gets a unique MSH-10 ("B<conn>.<n>.<run>")
 * so the receiver's dedup never answers from its cache. With --rate R the whole run is
 * paced at R messages per second (latency at a given load); without, as fast as the
 * window allows (throughput).
 *
 * Prints: messages, seconds, messages/s, ACK latency p50/p99/p999/max in ms, and
 * the count of non-AA ACKs. Never part of `make check`.
 */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adapters/hl7v2/hl7v2.h"

typedef struct conn {
    uv_tcp_t tcp;
    uv_connect_t creq;
    hv_mllp_framer_t fr;
    int id;
    long sent, acked;
    long *seq_sent;    /* ring of sequence numbers in flight */
    uint64_t *t_sent;  /* send time of each in-flight message */
    size_t head, count;
    char rbuf[65536];
} conn_t;

static struct {
    const char *host;
    int port, nconn, window;
    long per_conn;
    double rate;
    hv_buf_t *msgs; /* framed templates with MSH-10 replaced by a %s hole */
    size_t nmsgs;
    conn_t *conns;
    double *lat;    /* ms, one per ACK */
    long nlat, bad, total_sent;
    uint64_t t0, t1;
    uv_loop_t *loop;
    uv_timer_t pacer;
    int open;
    unsigned run;
} g;

/* Messages: each template is split at MSH-10 into a prefix and a suffix. */
typedef struct tmpl {
    char *pre, *post;
    size_t pre_len, post_len;
} tmpl_t;
static tmpl_t *tmpls;

static int add_message(const char *p, size_t n) {
    hv_arena_t *a = hv_arena_new(0);
    hv_hl7v2_msg_t m;
    hv_hl7v2_span_t s;
    tmpl_t *t;
    int rc = -1;
    if (hv_hl7v2_parse(a, p, n, NULL, &m, NULL, NULL) != HV_OK ||
        hv_hl7v2_get(&m, "MSH-10", &s) != HV_OK || m.iconv_name != NULL)
        goto out;
    tmpls = realloc(tmpls, (g.nmsgs + 1) * sizeof(*tmpls));
    t = &tmpls[g.nmsgs++];
    t->pre_len = (size_t)(s.p - p);
    t->pre = malloc(t->pre_len);
    memcpy(t->pre, p, t->pre_len);
    t->post_len = n - t->pre_len - s.len;
    t->post = malloc(t->post_len);
    memcpy(t->post, s.p + s.len, t->post_len);
    rc = 0;
out:
    hv_arena_free(a);
    return rc;
}

static void add_file(const char *path) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    hv_arena_t *a;
    hv_hl7v2_span_t *spans;
    size_t cnt, i;
    if (f == NULL) return;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    a = hv_arena_new(0);
    if (hv_hl7v2_batch_split(a, buf, (size_t)n, 100000, &spans, &cnt, NULL) == HV_OK)
        for (i = 0; i < cnt; i++) add_message(spans[i].p, spans[i].len);
    hv_arena_free(a);
    free(buf);
}

static void add_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            char p[4096];
            if (e->d_name[0] == '.') continue;
            snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
            add_path(p);
        }
        if (d) closedir(d);
    } else {
        size_t l = strlen(path);
        if (l > 4 && (strcmp(path + l - 4, ".hl7") == 0 || strcmp(path + l - 4, ".txt") == 0))
            add_file(path);
    }
}

static void on_write(uv_write_t *w, int status) {
    (void)status;
    free(w->data);
    free(w);
}

static int send_one(conn_t *c) {
    tmpl_t *t = &tmpls[(size_t)(c->id + c->sent) % g.nmsgs];
    char ctl[64];
    size_t cl, n;
    char *buf;
    uv_write_t *w;
    uv_buf_t b;
    size_t slot;
    if (c->sent >= g.per_conn || c->count >= (size_t)g.window) return 0;
    cl = (size_t)snprintf(ctl, sizeof(ctl), "B%d.%ld.%u", c->id, c->sent, g.run);
    n = 1 + t->pre_len + cl + t->post_len + 2;
    buf = malloc(n);
    buf[0] = HV_MLLP_SB;
    memcpy(buf + 1, t->pre, t->pre_len);
    memcpy(buf + 1 + t->pre_len, ctl, cl);
    memcpy(buf + 1 + t->pre_len + cl, t->post, t->post_len);
    buf[n - 2] = HV_MLLP_EB;
    buf[n - 1] = HV_MLLP_CR;
    w = malloc(sizeof(*w));
    w->data = buf;
    b = uv_buf_init(buf, (unsigned)n);
    slot = (c->head + c->count) % (size_t)g.window;
    c->seq_sent[slot] = c->sent;
    c->t_sent[slot] = hv_mono_ns();
    c->count++;
    c->sent++;
    g.total_sent++;
    uv_write(w, (uv_stream_t *)&c->tcp, &b, 1, on_write);
    return 1;
}

static void fill(conn_t *c) {
    if (g.rate > 0) return; /* the pacer sends */
    while (send_one(c)) {
    }
}

static void on_pace(uv_timer_t *t) {
    double elapsed = (double)(hv_mono_ns() - g.t0) / 1e9;
    long due = (long)(elapsed * g.rate) - g.total_sent;
    int i, progress = 1;
    (void)t;
    while (due > 0 && progress) {
        progress = 0;
        for (i = 0; i < g.nconn && due > 0; i++) {
            if (send_one(&g.conns[(g.total_sent + i) % g.nconn])) {
                due--;
                progress = 1;
            }
        }
    }
}

static void on_alloc(uv_handle_t *h, size_t s, uv_buf_t *b) {
    conn_t *c = h->data;
    (void)s;
    b->base = c->rbuf;
    b->len = sizeof(c->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b) {
    conn_t *c = s->data;
    size_t off = 0;
    if (nread < 0) {
        fprintf(stderr, "connection %d closed by the server after %ld ACKs\n", c->id, c->acked);
        uv_close((uv_handle_t *)&c->tcp, NULL);
        g.open--;
        return;
    }
    while (off < (size_t)nread) {
        const char *m;
        size_t len, used;
        char code[3], want[64];
        hv_hl7v2_span_t ctl;
        int rc = hv_mllp_framer_feed(&c->fr, b->base + off, (size_t)nread - off, &used, &m, &len);
        off += used;
        if (rc == HV_AGAIN) break;
        if (rc != HV_OK || c->count == 0) {
            fprintf(stderr, "connection %d: bad frame\n", c->id);
            exit(1);
        }
        snprintf(want, sizeof(want), "B%d.%ld.%u", c->id, c->seq_sent[c->head], g.run);
        if (hv_hl7v2_ack_read(m, len, code, &ctl) != HV_OK || code[1] != 'A' ||
            ctl.len != strlen(want) || memcmp(ctl.p, want, ctl.len) != 0)
            g.bad++;
        g.lat[g.nlat++] = (double)(hv_mono_ns() - c->t_sent[c->head]) / 1e6;
        c->head = (c->head + 1) % (size_t)g.window;
        c->count--;
        c->acked++;
        if (c->acked == g.per_conn) {
            uv_close((uv_handle_t *)&c->tcp, NULL);
            g.open--;
            if (g.open == 0) {
                g.t1 = hv_mono_ns();
                if (g.rate > 0) uv_timer_stop(&g.pacer);
            }
            return;
        }
    }
    fill(c);
}

static void on_connect(uv_connect_t *req, int status) {
    conn_t *c = req->data;
    if (status < 0) {
        fprintf(stderr, "connect: %s\n", uv_strerror(status));
        exit(1);
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    fill(c);
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p) {
    size_t i = (size_t)(p * (double)(g.nlat - 1));
    return g.nlat ? g.lat[i] : 0;
}

int main(int argc, char **argv) {
    struct sockaddr_in sa;
    int i;
    uv_loop_t loop;
    g.host = "127.0.0.1";
    g.port = 2575;
    g.nconn = 50;
    g.per_conn = 1000;
    g.window = 1;
    g.run = (unsigned)(hv_now_ms() % 100000);
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--host") == 0 && i + 1 < argc) g.host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) g.port = atoi(argv[++i]);
        else if (strcmp(argv[i], "--connections") == 0 && i + 1 < argc) g.nconn = atoi(argv[++i]);
        else if (strcmp(argv[i], "--messages") == 0 && i + 1 < argc) g.per_conn = atol(argv[++i]);
        else if (strcmp(argv[i], "--window") == 0 && i + 1 < argc) g.window = atoi(argv[++i]);
        else if (strcmp(argv[i], "--rate") == 0 && i + 1 < argc) g.rate = atof(argv[++i]);
        else add_path(argv[i]);
    }
    if (g.nmsgs == 0 || g.nconn <= 0 || g.per_conn <= 0 || g.window <= 0) {
        fprintf(stderr, "usage: mllp [--host H] [--port P] [--connections N] [--messages M] "
                        "[--window W] [--rate R] DIR|FILE...\n");
        return 2;
    }
    uv_loop_init(&loop);
    g.loop = &loop;
    g.lat = malloc(sizeof(double) * (size_t)g.nconn * (size_t)g.per_conn);
    g.conns = calloc((size_t)g.nconn, sizeof(conn_t));
    uv_ip4_addr(g.host, g.port, &sa);
    g.t0 = hv_mono_ns();
    for (i = 0; i < g.nconn; i++) {
        conn_t *c = &g.conns[i];
        c->id = i;
        c->seq_sent = calloc((size_t)g.window, sizeof(long));
        c->t_sent = calloc((size_t)g.window, sizeof(uint64_t));
        hv_mllp_framer_init(&c->fr, 1u << 20);
        uv_tcp_init(&loop, &c->tcp);
        uv_tcp_nodelay(&c->tcp, 1);
        c->tcp.data = c;
        c->creq.data = c;
        uv_tcp_connect(&c->creq, &c->tcp, (struct sockaddr *)&sa, on_connect);
        g.open++;
    }
    if (g.rate > 0) {
        uv_timer_init(&loop, &g.pacer);
        uv_timer_start(&g.pacer, on_pace, 1, 1);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    if (g.t1 == 0) g.t1 = hv_mono_ns();
    qsort(g.lat, (size_t)g.nlat, sizeof(double), cmp);
    {
        double secs = (double)(g.t1 - g.t0) / 1e9;
        printf("messages %ld  templates %zu  connections %d  window %d  rate %.0f/s (0: max)\n",
               g.nlat, g.nmsgs, g.nconn, g.window, g.rate);
        printf("seconds %.3f  msgs/s %.0f\n", secs, (double)g.nlat / secs);
        printf("ack latency ms  p50 %.3f  p99 %.3f  p999 %.3f  max %.3f\n", pct(0.50), pct(0.99),
               pct(0.999), g.nlat ? g.lat[g.nlat - 1] : 0);
        printf("non-AA or mismatched ACKs %ld\n", g.bad);
    }
    fflush(stdout);
    for (i = 0; i < g.nconn; i++) {
        free(g.conns[i].seq_sent);
        free(g.conns[i].t_sent);
        hv_mllp_framer_release(&g.conns[i].fr);
    }
    for (i = 0; i < (int)g.nmsgs; i++) {
        free(tmpls[i].pre);
        free(tmpls[i].post);
    }
    free(tmpls);
    free(g.conns);
    free(g.lat);
    uv_loop_close(&loop);
    return g.bad != 0 || g.nlat != (long)g.nconn * g.per_conn;
}
