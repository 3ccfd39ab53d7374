/*
 * channel_edit.c — editing and trying channels over HTTP (the console's channel
 * editor and "test with a sample message"):
 *
 *   GET  /channels/:id/file            {"id", "path", "text"}: the channel file as written
 *   PUT  /channels/:id/file[?validate=true]
 *                                      body: the new text. Checked exactly as `serve`
 *                                      checks a file (every type must be registered);
 *                                      an error answers 422 {"error", "message", "line",
 *                                      "column"} at the offending key or value and
 *                                      changes nothing. Valid text is written atomically
 *                                      (temporary file, fsync, rename) and the channels
 *                                      directory reloaded; with validate=true nothing
 *                                      is written. The channel id cannot change here.
 *   POST /channels/:id/test            body: a sample message. A dry run of the running
 *                                      channel's filter and steps (nothing stored or
 *                                      sent): {"filter": {"passed", "rule"}, "steps":
 *                                      [{"type", "ok", "output" | "error"}],
 *                                      "destinations": [{"name", "type", "receives"}]}
 *
 * The routes are under /channels, so the guard gives them to admins and integrators.
 * Files are small (channel files are capped at 4 MiB) and read on the loop thread.
 */
#include "config.h"
#include "engine/channel_rt.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_MAX (4u << 20)
#define OUTPUT_MAX 65536 /* bytes of a step's output shown by the dry run */

static int read_file(const char *path, hv_buf_t *out) {
    FILE *f = fopen(path, "rb");
    char chunk[8192];
    size_t n;
    int rc = HV_OK;
    if (f == NULL) return HV_EIO;
    while (rc == HV_OK && (n = fread(chunk, 1, sizeof chunk, f)) > 0) rc = hv_buf_append(out, chunk, n);
    if (rc == HV_OK && ferror(f)) rc = HV_EIO;
    fclose(f);
    return rc;
}

static void route_file_get(hv_http_req_t *req, void *ud) {
    hv__chan_t *ch = hv__chan_or_404(req, ud);
    hv_buf_t text;
    struct json_object *o;
    if (ch == NULL) return;
    hv_buf_init(&text, FILE_MAX);
    if (ch->conf->path == NULL || ch->conf->path[0] == '\0' || read_file(ch->conf->path, &text) != HV_OK) {
        hv_buf_release(&text);
        hv_http_respond_error(req, 404, "not-found", "the channel's file cannot be read");
        return;
    }
    o = json_object_new_object();
    hv_json_set_str(o, "id", ch->conf->id);
    hv_json_set_str(o, "path", ch->conf->path);
    hv_json_set(o, "text", json_object_new_string_len(text.data ? text.data : "", (int)text.len));
    hv_buf_release(&text);
    hv_http_respond_json(req, 200, o); /* takes o */
}

/* Writes text to path atomically: a temporary file beside it, fsync, rename. */
static int write_atomic(const char *path, const char *text, size_t len) {
    char tmp[4200];
    int fd, rc = HV_OK;
    size_t off = 0;
    if (snprintf(tmp, sizeof tmp, "%s.console-tmp", path) >= (int)sizeof tmp) return HV_ETOOBIG;
    /* A dot-less .json suffix is what the directory scan loads; this name is skipped. */
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return HV_EIO;
    while (rc == HV_OK && off < len) {
        ssize_t w = write(fd, text + off, len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) rc = HV_EIO;
        else off += (size_t)w;
    }
    if (rc == HV_OK && fsync(fd) != 0) rc = HV_EIO;
    if (close(fd) != 0 && rc == HV_OK) rc = HV_EIO;
    if (rc == HV_OK && rename(tmp, path) != 0) rc = HV_EIO;
    if (rc != HV_OK) unlink(tmp);
    return rc;
}

static void route_file_put(hv_http_req_t *req, void *ud) {
    hv__chans_t *rt = ud;
    hv__chan_t *ch = hv__chan_or_404(req, rt);
    const char *v = hv_http_req_query_param(req, "validate");
    int validate_only = v != NULL && strcmp(v, "true") == 0;
    hv__chan_conf_t *conf = NULL;
    hv_error_t err;
    size_t len = 0;
    const char *body;
    char path[4096];
    if (ch == NULL) return;
    body = hv_http_req_body(req, &len);
    if (body == NULL) body = "";
    snprintf(path, sizeof path, "%s", ch->conf->path ? ch->conf->path : "");
    hv_error_clear(&err);
    if (hv__chan_conf_parse(body, len, path, &rt->engine->chan_reg, &conf, &err) != HV_OK) {
        struct json_object *o = json_object_new_object();
        hv_json_set_str(o, "error", "invalid");
        hv_json_set_str(o, "message", err.message);
        hv_json_set_int(o, "line", err.line);
        hv_json_set_int(o, "column", err.column);
        hv_http_respond_json(req, 422, o); /* takes o */
        return;
    }
    if (strcmp(conf->id, ch->conf->id) != 0) {
        hv__chan_conf_free(conf);
        hv_http_respond_error(req, 422, "invalid", "the channel id cannot change here (it is \"%s\")",
                              ch->conf->id);
        return;
    }
    hv__chan_conf_free(conf);
    if (validate_only) {
        hv_http_respond(req, 200, "application/json", "{\"valid\":true}", 14);
        return;
    }
    if (path[0] == '\0' || write_atomic(path, body, len) != HV_OK) {
        hv_http_respond_error(req, 500, "io", "the channel file could not be written");
        return;
    }
    hv_log(HV_LOG_INFO, "channel.edited", "channel %s: file replaced through the API", ch->conf->id);
    (void)hv__chans_reload(rt);
    hv_http_respond(req, 200, "application/json", "{\"valid\":true,\"saved\":true}", 27);
}

static struct json_object *text_json(const char *p, size_t n) {
    return json_object_new_string_len(p, (int)(n > OUTPUT_MAX ? OUTPUT_MAX : n));
}

static void route_test(hv_http_req_t *req, void *ud) {
    hv__chans_t *rt = ud;
    hv__chan_t *ch = hv__chan_or_404(req, rt);
    const hv__chan_registry_t *reg = &rt->engine->chan_reg;
    struct json_object *o, *steps, *dests, *filter;
    hv_channel_msg_t m;
    hv_arena_t *arena;
    const char *rule = NULL, *body;
    size_t len = 0, i;
    int stopped = 0;
    if (ch == NULL) return;
    body = hv_http_req_body(req, &len);
    arena = hv_arena_new(0);
    if (arena == NULL) {
        hv_http_respond_error(req, 503, "busy", "out of memory");
        return;
    }
    memset(&m, 0, sizeof m);
    m.channel = ch->conf->id;
    m.content = body ? body : "";
    m.len = len;
    m.content_type = hv_http_req_header(req, "Content-Type");
    if (m.content_type == NULL || strcmp(m.content_type, "text/plain") == 0 ||
        strncmp(m.content_type, "application/octet-stream", 24) == 0)
        m.content_type = hv__chan_guess_type(m.content, m.len);
    m.received_at = hv_now_ms();
    m.arena = arena;
    o = json_object_new_object();
    filter = json_object_new_object();
    steps = json_object_new_array();
    dests = json_object_new_array();
    hv_json_set(o, "filter", filter);
    hv_json_set(o, "steps", steps);
    hv_json_set(o, "destinations", dests);
    hv_json_set_str(o, "content_type", m.content_type);
    if (ch->conf->filter != NULL && !hv__filter_eval(reg, ch->conf->filter, &m, &rule)) {
        hv_json_set(filter, "passed", json_object_new_boolean(0));
        hv_json_set_str(filter, "rule", rule ? rule : "?");
        stopped = 1;
    } else {
        hv_json_set(filter, "passed", json_object_new_boolean(1));
    }
    for (i = 0; !stopped && i < ch->conf->nsteps; i++) {
        const hv_channel_step_t *st = hv__chan_find_step(reg, ch->conf->steps[i].type);
        struct json_object *s = json_object_new_object();
        void *state = NULL;
        hv_error_t err;
        int r;
        hv_json_set_str(s, "type", ch->conf->steps[i].type);
        json_object_array_add(steps, s);
        if (st == NULL) {
            hv_json_set(s, "ok", json_object_new_boolean(0));
            hv_json_set_str(s, "error", "not available in this build");
            stopped = 1;
            break;
        }
        hv_error_clear(&err);
        r = st->init ? st->init(rt->engine, ch->conf->steps[i].conf, &state, &err) : HV_OK;
        if (r == HV_OK) r = st->run(state, &m, &err);
        if (st->free && state) st->free(state);
        hv_json_set(s, "ok", json_object_new_boolean(r == HV_OK));
        if (r != HV_OK) {
            hv_json_set_str(s, "error", err.message[0] ? err.message : hv_strerror(r));
            stopped = 1;
        } else {
            hv_json_set(s, "output", text_json(m.content, m.len));
            hv_json_set_int(s, "bytes", (int64_t)m.len);
        }
    }
    for (i = 0; !stopped && i < ch->conf->ndests; i++) {
        const hv__dest_conf_t *d = &ch->conf->dests[i];
        struct json_object *x = json_object_new_object();
        int on = d->when == NULL || hv__filter_eval(reg, d->when, &m, &rule);
        hv_json_set_str(x, "name", d->name);
        hv_json_set_str(x, "type", d->type);
        hv_json_set(x, "receives", json_object_new_boolean(on));
        if (!on) hv_json_set_str(x, "skipped_by", rule ? rule : "?");
        json_object_array_add(dests, x);
    }
    hv_json_set(o, "errored", json_object_new_boolean(stopped && json_object_array_length(steps) > 0));
    hv_http_respond_json(req, 200, o); /* takes o */
    hv_arena_free(arena);
}

int hv__chan_edit_routes_add(hv_engine_t *e, hv__chans_t *rt) {
    hv_router_t *r = hv_engine_router(e);
    int rc;
    if (r == NULL) return HV_OK;
    rc = hv_router_add(r, HV_HTTP_GET, "/channels/:id/file", route_file_get, rt);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_PUT, "/channels/:id/file", route_file_put, rt);
    if (rc == HV_OK) rc = hv_router_add(r, HV_HTTP_POST, "/channels/:id/test", route_test, rt);
    return rc;
}
