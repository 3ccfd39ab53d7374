/*
 * auth.c — what authentication costs.
 *
 *   bench/bin/auth [--seconds S] [--bin PATH] [--http-only]
 *
 * 1. In process: access-token validations per second (signature, claims,
 *    revocation lookups, scope parsing: hv__auth_token_validate, exactly what
 *    the guard runs per request) for ES256 and RS256 tokens, and SMART scope
 *    decisions (hv_auth_allow) per second.
 * 2. Over HTTP, in the same run: one keep-alive client doing GET requests
 *    against a real `holovitals serve` (PATH, default ./holovitals), first with
 *    --auth off and no token, then with authentication on and a Bearer token
 *    (rate limits set out of reach so that they do not cap the figure). The
 *    route is a FHIR read, GET /fhir/Patient/bench-1 (an admin token: the scope
 *    check's fast path; the per-resource compartment check of patient/ tokens is
 *    measured in process, 3.). Besides
 *    requests per second (noisy on a shared machine) it prints the servers' CPU
 *    time per request, read from /proc, which load from other processes does
 *    not distort.
 * 3. In process: the FHIR scope check of one stored Observation
 *    (hv__authz_resource, fhir/rest_authz.c) for a patient/ token — parse, the
 *    compartment walk and the category match — per second.
 */
#include "config.h"
#include "engine/auth/auth_int.h"
#include "fhir/store_int.h"

#include <arpa/inet.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static double now_s(void) { return (double)hv_mono_ns() / 1e9; }

static void bench_validate(const char *alg, double seconds) {
    hv__auth_t a;
    hv_auth_principal_t *p = hv_malloc(sizeof(*p));
    hv_buf_t tok;
    hv_error_t err;
    long n = 0;
    double t0, t;
    memset(&a, 0, sizeof(a));
    snprintf(a.issuer, sizeof(a.issuer), "https://ehr.example.org");
    snprintf(a.audience, sizeof(a.audience), "https://ehr.example.org/fhir");
    snprintf(a.alg, sizeof(a.alg), "%s", alg);
    a.revoked = hv__strset_new(100000);
    a.leeway = 30;
    hv__key_generate(alg, &a.keys[0].pkey);
    snprintf(a.keys[0].kid, sizeof(a.keys[0].kid), "k1");
    snprintf(a.keys[0].alg, sizeof(a.keys[0].alg), "%s", alg);
    a.keys[0].current = 1;
    a.nkeys = 1;
    hv_buf_init(&tok, 0);
    hv__auth_token_issue(&a, "alice", HV_AUTH_ROLE_CLINICIAN, "user/*.rs patient/Observation.rs", "sid1", "", "", 300,
                         &tok, NULL);
    /* first without the verified-signature cache (every request a new token), then with it */
    t0 = now_s();
    do {
        int i;
        for (i = 0; i < 100; i++) {
            hv__auth_vcache_free(&a);
            if (hv__auth_token_validate(&a, tok.data, tok.len, p, &err) != HV_OK) abort();
        }
        n += 100;
        t = now_s() - t0;
    } while (t < seconds);
    printf("token validations/s (%s, signature verified each time): %.0f  (%.1f us each)\n", alg, n / t,
           t / n * 1e6);
    n = 0;
    t0 = now_s();
    do {
        int i;
        for (i = 0; i < 100; i++)
            if (hv__auth_token_validate(&a, tok.data, tok.len, p, &err) != HV_OK) abort();
        n += 100;
        t = now_s() - t0;
    } while (t < seconds);
    printf("token validations/s (%s, same token again, cached): %.0f  (%.1f us each)\n", alg, n / t,
           t / n * 1e6);
    hv_buf_release(&tok);
    hv__auth_keys_free(&a);
    hv__auth_vcache_free(&a);
    hv__strset_free(a.revoked);
    hv_free(p);
}

static void bench_allow(double seconds) {
    hv_auth_principal_t *p = hv_calloc(1, sizeof(*p));
    hv_auth_target_t t = {"Observation", "p1", NULL, 0};
    hv_error_t err;
    long n = 0, ok = 0;
    double t0, el;
    snprintf(p->patient, sizeof(p->patient), "p1");
    hv_auth_scopes_parse("launch/patient openid patient/Condition.rs patient/MedicationRequest.rs patient/Observation.rs",
                         &p->scopes, &err);
    t0 = now_s();
    do {
        int i;
        for (i = 0; i < 1000; i++) ok += hv_auth_allow(p, HV_AUTH_READ, &t) == HV_OK;
        n += 1000;
        el = now_s() - t0;
    } while (el < seconds);
    printf("scope decisions/s (hv_auth_allow, 3 scopes): %.0f\n", n / el);
    if (ok != n) abort();
    hv_free(p);
}

/* ---- HTTP ---- */

static pid_t spawn(const char *bin, const char *data, int port, const char *cfg, int auth) {
    char listen[64], mllp[64];
    pid_t pid;
    fflush(stdout);
    pid = fork();
    if (pid != 0) return pid;
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    snprintf(mllp, sizeof(mllp), "127.0.0.1:%d", port + 1);
    if (freopen("/dev/null", "w", stdout) == NULL || freopen("/dev/null", "w", stderr) == NULL) _exit(127);
    execl(bin, bin, "serve", "--data", data, "--http", listen, "--mllp", mllp, "--config", cfg, "--auth",
          auth ? "on" : "off", "--log-level", "error", (char *)NULL);
    _exit(127);
}

static int dial(int port) {
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

/* Sends req and reads one response (Content-Length framing); returns the status or -1. */
static int roundtrip(int fd, const char *req, size_t n, char *buf, size_t cap, char **body) {
    size_t got = 0;
    long clen = -1;
    char *hend = NULL;
    if (write(fd, req, n) != (ssize_t)n) return -1;
    for (;;) {
        ssize_t r = read(fd, buf + got, cap - 1 - got);
        if (r <= 0) return -1;
        got += (size_t)r;
        buf[got] = '\0';
        if (hend == NULL && (hend = strstr(buf, "\r\n\r\n")) != NULL) {
            char *cl = strcasestr(buf, "\r\nContent-Length:");
            clen = cl ? strtol(cl + 17, NULL, 10) : 0;
        }
        if (hend != NULL && got >= (size_t)(hend + 4 - buf) + (size_t)clen) break;
    }
    if (body) *body = hend + 4;
    return atoi(buf + 9);
}

/* CPU seconds (user + system) a process has used so far, from /proc/PID/stat. */
static double cpu_of(pid_t pid) {
    char path[64], buf[2048], *p;
    unsigned long ut = 0, st = 0;
    FILE *f;
    size_t n;
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    f = fopen(path, "r");
    if (f == NULL) return 0;
    n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    p = strrchr(buf, ')'); /* fields after the command name: state is field 3, utime 14, stime 15 */
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) != 2) return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long g_count; /* requests of the last http_rate */

#define READ_PATH "/fhir/Patient/bench-1"

static void bench_authz_resource(double seconds) {
    static const char obs[] =
        "{\"resourceType\":\"Observation\",\"id\":\"o1\",\"meta\":{\"versionId\":\"1\",\"lastUpdated\":"
        "\"2026-01-01T00:00:00.000Z\"},\"status\":\"final\",\"category\":[{\"coding\":[{\"system\":"
        "\"http://terminology.hl7.org/CodeSystem/observation-category\",\"code\":\"vital-signs\"}]}],\"code\":"
        "{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"8867-4\",\"display\":\"Heart rate\"}]},"
        "\"subject\":{\"reference\":\"Patient/p1\"},\"effectiveDateTime\":\"2026-01-01T10:00:00Z\","
        "\"valueQuantity\":{\"value\":72,\"unit\":\"beats/minute\",\"system\":\"http://unitsofmeasure.org\","
        "\"code\":\"/min\"}}";
    hv_auth_principal_t *p = hv_calloc(1, sizeof(*p));
    long n = 0;
    double t0, t;
    if (p == NULL || hv_auth_scopes_parse("patient/*.rs", &p->scopes, NULL) != HV_OK) return;
    snprintf(p->patient, sizeof(p->patient), "p1");
    t0 = now_s();
    do {
        for (int i = 0; i < 1000; i++)
            if (hv__authz_resource(p, HV_AUTH_READ, "Observation", "o1", NULL, obs) != HV_OK) abort();
        n += 1000;
        t = now_s() - t0;
    } while (t < seconds);
    printf("FHIR scope checks/s of a stored Observation (patient/*.rs token: parse, compartment, category): %.0f "
           "(%.1f us each)\n", n / t, t / n * 1e6);
    hv_free(p);
}

/* Stores the Patient the HTTP figure reads (PUT), with a token when auth is on. */
static int put_patient(int port, const char *token) {
    static const char pat[] = "{\"resourceType\":\"Patient\",\"id\":\"bench-1\",\"name\":[{\"family\":\"Bench\","
                              "\"given\":[\"Ada\"]}],\"gender\":\"female\",\"birthDate\":\"1970-01-01\"}";
    char req[4096], buf[1 << 16];
    int fd = dial(port), st;
    size_t n;
    if (fd < 0) return -1;
    n = (size_t)snprintf(req, sizeof(req),
                         "PUT " READ_PATH " HTTP/1.1\r\nHost: x\r\nContent-Type: application/fhir+json\r\n"
                         "Content-Length: %zu\r\n%s%s%s\r\n%s",
                         strlen(pat), token ? "Authorization: Bearer " : "", token ? token : "", token ? "\r\n" : "", pat);
    st = roundtrip(fd, req, n, buf, sizeof(buf), NULL);
    close(fd);
    return st == 200 || st == 201 ? 0 : -1;
}

static double http_rate(int port, const char *auth_header, double seconds) {
    char req[4096], buf[1 << 16];
    int fd = dial(port);
    size_t n;
    long count = 0;
    double t0, el;
    if (fd < 0) return 0;
    n = (size_t)snprintf(req, sizeof(req), "GET " READ_PATH " HTTP/1.1\r\nHost: x\r\n%s%s%s\r\n",
                         auth_header ? "Authorization: Bearer " : "", auth_header ? auth_header : "",
                         auth_header ? "\r\n" : "");
    t0 = now_s();
    do {
        if (roundtrip(fd, req, n, buf, sizeof(buf), NULL) != 200) {
            fprintf(stderr, "bench: unexpected answer\n");
            close(fd);
            return 0;
        }
        count++;
        el = now_s() - t0;
    } while (el < seconds);
    close(fd);
    g_count = count;
    return count / el;
}

static int wait_up(int port) {
    int i;
    for (i = 0; i < 200; i++) {
        int fd = dial(port);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        usleep(25000);
    }
    return -1;
}

static void bench_http(const char *bin, double seconds) {
    char dir[] = "/tmp/hv-bench-auth-XXXXXX", data[300], data2[300], cfg[300], cmd[1200], req[512], buf[1 << 16];
    char *body = NULL, token[4096] = "";
    FILE *f;
    pid_t pid = -1, pid2 = -1;
    int port = 20000 + (int)(getpid() % 20000), fd, st, i;
    double off, on;
    struct json_object *o;
    if (mkdtemp(dir) == NULL) return;
    snprintf(data, sizeof(data), "%s/data", dir);
    snprintf(data2, sizeof(data2), "%s/data2", dir);
    snprintf(cfg, sizeof(cfg), "%s/holovitals.json", dir);
    f = fopen(cfg, "w");
    if (f == NULL) return;
    fprintf(f, "{\"auth\": {\"password\": {\"scrypt_n\": 1024}, \"rate\": {\"ip_per_sec\": 100000000, "
               "\"ip_burst\": 100000000, \"client_per_sec\": 100000000, \"client_burst\": 100000000}},"
               " \"http\": {\"access_log\": false}}\n");
    fclose(f);
    snprintf(cmd, sizeof(cmd), "echo bench-password | %s user add bench --role admin --data %s --config %s 2>/dev/null",
             bin, data, cfg);
    if (system(cmd) != 0) {
        fprintf(stderr, "bench: cannot add the user (is %s built?)\n", bin);
        return;
    }
    snprintf(cmd, sizeof(cmd), "echo bench-password | %s user add bench --role admin --data %s --config %s 2>/dev/null",
             bin, data2, cfg);
    if (system(cmd) != 0) return;
    /* both servers run at once and the client alternates between them in short slices, so
     * that load from other processes on the machine falls on both figures alike */
    pid = spawn(bin, data, port, cfg, 0);
    pid2 = spawn(bin, data2, port + 2, cfg, 1);
    if (wait_up(port) != 0 || wait_up(port + 2) != 0) goto out;
    fd = dial(port + 2);
    snprintf(req, sizeof(req), "POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                               "Content-Length: %zu\r\n\r\n%s",
             strlen("{\"username\":\"bench\",\"password\":\"bench-password\"}"),
             "{\"username\":\"bench\",\"password\":\"bench-password\"}");
    if (fd < 0 || roundtrip(fd, req, strlen(req), buf, sizeof(buf), &body) != 200) goto out;
    close(fd);
    o = json_tokener_parse(body);
    snprintf(token, sizeof(token), "%s", hv_json_get_str(o, "access_token") ? hv_json_get_str(o, "access_token") : "");
    json_object_put(o);
    if (put_patient(port, NULL) != 0 || put_patient(port + 2, token) != 0) {
        fprintf(stderr, "bench: cannot store the Patient to read\n");
        goto out;
    }
    off = on = 0;
    {
        /* wall-clock rates on a shared machine are noisy; the server's CPU time per request is not */
        double c_off = 0, c_on = 0, c0;
        long n_off = 0, n_on = 0;
        for (i = 0; i < 10; i++) {
            c0 = cpu_of(pid);
            off += http_rate(port, NULL, seconds / 10) / 10;
            c_off += cpu_of(pid) - c0;
            n_off += g_count;
            c0 = cpu_of(pid2);
            on += http_rate(port + 2, token, seconds / 10) / 10;
            c_on += cpu_of(pid2) - c0;
            n_on += g_count;
        }
        printf("HTTP GET " READ_PATH " (FHIR read), 1 keep-alive client: %.0f req/s with --auth off, %.0f req/s "
               "with a Bearer token (ES256, admin)\n", off, on);
        printf("server CPU per request: %.1f us with --auth off, %.1f us with a Bearer token: authentication "
               "costs %.1f%% of the request\n", c_off / n_off * 1e6, c_on / n_on * 1e6,
               c_off > 0 ? (c_on / n_on - c_off / n_off) / (c_off / n_off) * 100 : 0);
    }
out:
    if (pid > 0) {
        kill(pid, SIGTERM);
        waitpid(pid, &st, 0);
    }
    if (pid2 > 0) {
        kill(pid2, SIGTERM);
        waitpid(pid2, &st, 0);
    }
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench: could not remove %s\n", dir);
}

int main(int argc, char **argv) {
    double seconds = 2;
    const char *bin = "./holovitals";
    int i, http_only = 0;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--bin") == 0 && i + 1 < argc) bin = argv[++i];
        else if (strcmp(argv[i], "--http-only") == 0) http_only = 1;
        else {
            fprintf(stderr, "usage: bench/bin/auth [--seconds S] [--bin PATH] [--http-only]\n");
            return 2;
        }
    }
    if (!http_only) {
        bench_validate("ES256", seconds);
        bench_validate("RS256", seconds);
        bench_allow(seconds);
        bench_authz_resource(seconds);
    }
    bench_http(bin, seconds);
    return 0;
}
