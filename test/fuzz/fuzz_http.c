/*
 * fuzz_http.c — fuzzes the HTTP request path: bytes from a client go through
 * the real server (parser, limits, router, responses) on a loopback socket.
 *
 * One server (with an /echo route, a parameter route and tight limits) lives
 * for the whole run; each input is sent on a new connection whose write side
 * is then shut, and the loop runs until the server has closed it.
 *
 * Invariants: the server never crashes or leaks a connection; whatever it
 * sends back is a sequence of HTTP/1.1 responses (each starts with a status
 * line, headers and exactly Content-Length bytes of body); it never sends more
 * final responses than the input had lines.
 */
#include "config.h"
#include "engine/engine_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static hv_engine_t *eng;
static hv__http_server_t *srv;
static int port;

static void h_echo(hv_http_req_t *req, void *ud) {
    size_t n;
    const char *b = hv_http_req_body(req, &n);
    const char *q = hv_http_req_query_param(req, "a");
    (void)ud;
    if (q != NULL) hv_http_header_add(req, "X-A", "present");
    hv_http_respond(req, 200, "application/octet-stream", b, n);
}

static void h_param(hv_http_req_t *req, void *ud) {
    const char *id = hv_http_req_param(req, "id");
    (void)ud;
    hv_http_respond(req, 200, "text/plain", id, strlen(id));
}

static void setup(void) {
    hv__http_limits_t lim = {1024, 4096, 16, 1000, 1000, 1000, 65536, 0, 0, ""}; /* no spooling */
    hv_error_t err;
    eng = calloc(1, sizeof(*eng));
    uv_loop_init(&eng->loop);
    eng->router = hv__router_new();
    eng->metrics = hv__metrics_new();
    hv_router_add(eng->router, HV_HTTP_GET | HV_HTTP_POST, "/echo", h_echo, NULL);
    hv_router_add(eng->router, HV_HTTP_GET, "/p/:id/x", h_param, NULL);
    hv_log_configure(HV_LOG_OFF, HV_LOG_JSON);
    if (hv__http_server_new(eng, &lim, NULL, &srv) != HV_OK) abort();
    if (hv__http_server_listen(srv, "127.0.0.1", 0, &err) != HV_OK) abort();
    port = hv__http_server_port(srv);
}

/* Walks what the server sent as a sequence of responses: status line, headers
 * ending in CRLF CRLF, then Content-Length bytes of body (none for 1xx).
 * Returns the number of final responses, or -1 if the bytes are not that. */
static long walk_responses(const uint8_t *d, size_t n) {
    size_t p = 0;
    long finals = 0;
    while (p < n) {
        const uint8_t *end;
        size_t hlen, i, body = 0;
        int status;
        if (n - p < 13 || memcmp(d + p, "HTTP/1.1 ", 9) != 0) return -1;
        if (d[p + 9] < '1' || d[p + 9] > '5' || d[p + 10] < '0' || d[p + 10] > '9' ||
            d[p + 11] < '0' || d[p + 11] > '9' || d[p + 12] != ' ')
            return -1;
        status = (d[p + 9] - '0') * 100 + (d[p + 10] - '0') * 10 + (d[p + 11] - '0');
        end = memmem(d + p, n - p, "\r\n\r\n", 4);
        if (end == NULL) return -1;
        hlen = (size_t)(end - (d + p)) + 4;
        for (i = p; i + 16 < p + hlen; i++) {
            if (strncasecmp((const char *)d + i, "\r\nContent-Length: ", 18) == 0) {
                body = strtoul((const char *)d + i + 18, NULL, 10);
                break;
            }
        }
        if (status >= 200) finals++;
        else body = 0;
        p += hlen;
        if (body > n - p) return -1;
        p += body;
    }
    return finals;
}

/* connect(), which a signal may interrupt (EINTR: libFuzzer's timers): the connection then
 * completes in the background, so this waits for it and takes its outcome from SO_ERROR
 * instead of failing the input. Returns 0 or -1 with errno set. */
static int connect_to(int fd, const struct sockaddr_in *sa) {
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = 0, r;
    socklen_t len = sizeof(err);
    if (connect(fd, (const struct sockaddr *)sa, sizeof(*sa)) == 0) return 0;
    if (errno != EINTR) return -1;
    do r = poll(&p, 1, 10000);
    while (r < 0 && errno == EINTR);
    if (r <= 0) {
        if (r == 0) errno = ETIMEDOUT;
        return -1;
    }
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) return -1;
    if (err != 0) {
        errno = err;
        return -1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static unsigned conns;
    struct sockaddr_in sa, src;
    int fd, i, closed = 0;
    uint8_t out[1 << 16];
    size_t got = 0;
    if (size > 16384) return 0;
    if (eng == NULL) setup();
    fd = socket(AF_INET, SOCK_STREAM, 0);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* Each input is one connection, and the client's side of a finished one waits in
     * TIME_WAIT for a minute: at ~3,000 inputs/s the ephemeral ports of one source address
     * (28,232 here) run out, and connect fails with EADDRNOTAVAIL — the machine, not the
     * server. So the client binds to a source address of its own among 127.0.0.2–241 in
     * turn (all of 127/8 is local), which gives each address a fraction of the inputs. */
    memset(&src, 0, sizeof(src));
    src.sin_family = AF_INET;
    src.sin_addr.s_addr = htonl(INADDR_LOOPBACK + 1 + (uint32_t)(conns++ % 240));
    if (fd < 0 || bind(fd, (struct sockaddr *)&src, sizeof(src)) != 0) {
        fprintf(stderr, "fuzz_http: socket/bind: %s\n", strerror(errno));
        abort();
    }
    if (connect_to(fd, &sa) != 0) {
        fprintf(stderr, "fuzz_http: connect: %s\n", strerror(errno));
        abort();
    }
    if (size > 0 && send(fd, data, size, MSG_NOSIGNAL) != (ssize_t)size) abort();
    shutdown(fd, SHUT_WR);
    for (i = 0; i < 20000 && !closed; i++) {
        ssize_t r;
        uv_run(&eng->loop, UV_RUN_NOWAIT);
        r = recv(fd, out + got, sizeof(out) - got, MSG_DONTWAIT);
        if (r == 0) closed = 1;
        else if (r > 0) got += (size_t)r;
        else if (errno != EAGAIN && errno != EWOULDBLOCK) closed = 1;
        if (got == sizeof(out)) got = 0; /* too much to check whole: keep reading, skip the check */
        if (r < 0 && !closed) usleep(50);
    }
    close(fd);
    while (hv__http_server_connections(srv) > 0) uv_run(&eng->loop, UV_RUN_NOWAIT);
    if (!closed) abort(); /* the server must close a connection whose client has finished */
    if (got > 0 && got < sizeof(out)) {
        long finals = walk_responses(out, got);
        size_t lines = 1, k;
        for (k = 0; k < size; k++) lines += data[k] == '\n';
        if (finals < 0 || (size_t)finals > lines) abort();
    }
    return 0;
}
