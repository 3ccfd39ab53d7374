/*
 * channel_file.c — the `file` source: a directory polled for files, each file
 * one message, moved (or deleted) once its message is stored.
 *
 * Which files: regular files directly in "dir" whose name matches "glob"
 * (fnmatch(3), default "*"), except names that start with '.' or end in ".tmp",
 * so that a writer can use the rename convention (write "x.tmp", then rename it
 * to "x"). A file is taken only once it is complete: its modification time is
 * at least "stable_ms" old (default 500), and its size and modification time
 * are the same after it was read as before; a file still being written is
 * looked at again later. Files are taken oldest first (modification time, then
 * name), at most "batch" per round and 64 MiB of content per round.
 *
 * When: a scan runs every "poll_interval_ms" (default 1000), soon after a change
 * of the directory (uv_fs_event, when the platform has it), and at once again
 * while a round was full. Directory reads, file reads and moves run in the libuv
 * thread pool, never on the loop thread.
 *
 * Exactly once into the store: each file is handed to the channel with a source
 * key made of its name, size, modification time and inode; only after the
 * commit is the file moved to "move_to" (default <dir>/done; a name already
 * there gets the message id appended) or deleted ("after": "delete"). A crash
 * between the commit and the move leaves the file in place; at the next start
 * it is read again, its key is found in the store, nothing new is stored, and
 * it is moved. A file the source cannot take (larger than "max_size", default
 * 64 MiB, or unreadable) is moved to "error_dir" (default <dir>/error) and
 * logged. A file refused for now (store busy, channel paused) stays for the next
 * round.
 */
#include "config.h"
#include "engine/channel_rt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FILE_ROUND_BYTES (64u << 20) /* content read per round, at most (one file may exceed) */
#define FILE_SCAN_MAX 100000         /* directory entries looked at per round */
#define FILE_NAME_MAX 255

enum { F_PENDING = 0, F_STORED, F_FAILED, F_LEAVE };

typedef struct fitem {
    char name[FILE_NAME_MAX + 1];
    char key[FILE_NAME_MAX + 96];
    uint64_t mtime_ns;
    char *data;
    size_t len;
    int outcome;
    int64_t id;
    char reason[160];
    struct fsrc *src;
} fitem_t;

typedef struct fsrc {
    hv_channel_t *ch;
    uv_loop_t *loop;
    char *dir, *glob, *done_dir, *error_dir, *content_type;
    int delete_after;
    uint64_t poll_ms, stable_ms;
    size_t max_size, batch;
    uv_timer_t timer;
    uv_fs_event_t watch;
    uv_work_t work;
    int refs; /* the handles, plus one while a round is in flight */
    int stopping, busy, again, watch_open;
    /* the current round (thread pool, then loop thread) */
    fitem_t *items;
    size_t nitems, pending;
    int more;             /* the round was full: scan again at once */
    uint64_t retry_in_ms; /* a file not yet stable: look again after this */
} fsrc_t;

/* ------------------------------------------------------------------------- */
/* Keys                                                                      */
/* ------------------------------------------------------------------------- */

static int get_u64(json_object *conf, const char *k, uint64_t min, uint64_t max, uint64_t def,
                   uint64_t *out) {
    json_object *v = NULL;
    int64_t n;
    if (!json_object_object_get_ex(conf, k, &v)) {
        *out = def;
        return HV_OK;
    }
    if (!json_object_is_type(v, json_type_int)) return HV_ECONFIG;
    n = json_object_get_int64(v);
    if (n < 0 || (uint64_t)n < min || (uint64_t)n > max) return HV_ECONFIG;
    *out = (uint64_t)n;
    return HV_OK;
}

static const struct {
    const char *key;
    uint64_t min, max;
} num_keys[] = {
    {"poll_interval_ms", 10, 86400000},
    {"stable_ms", 0, 86400000},
    {"max_size", 1, (uint64_t)2 << 30},
    {"batch", 1, 1024},
};

static int file_check(struct json_object *conf, hv_error_t *err) {
    json_object_object_foreach(conf, k, v) {
        size_t i;
        uint64_t n;
        int num = 0;
        for (i = 0; i < HV_ARRAY_LEN(num_keys); i++) {
            if (strcmp(k, num_keys[i].key) != 0) continue;
            num = 1;
            if (get_u64(conf, k, num_keys[i].min, num_keys[i].max, 0, &n) != HV_OK) {
                hv_error_set(err, HV_ECONFIG, k, "\"%s\" is an integer from %llu to %llu", k,
                             (unsigned long long)num_keys[i].min,
                             (unsigned long long)num_keys[i].max);
                return HV_ECONFIG;
            }
        }
        if (num) continue;
        if (strcmp(k, "dir") == 0 || strcmp(k, "glob") == 0 || strcmp(k, "move_to") == 0 ||
            strcmp(k, "error_dir") == 0 || strcmp(k, "content_type") == 0) {
            if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0 ||
                json_object_get_string_len(v) > 1024) {
                hv_error_set(err, HV_ECONFIG, k, "\"%s\" must be a non-empty string", k);
                return HV_ECONFIG;
            }
        } else if (strcmp(k, "after") == 0) {
            const char *s = json_object_get_string(v);
            if (!json_object_is_type(v, json_type_string) ||
                (strcmp(s, "move") != 0 && strcmp(s, "delete") != 0)) {
                hv_error_set(err, HV_ECONFIG, k, "\"after\" is move or delete");
                return HV_ECONFIG;
            }
        } else {
            hv_error_set(err, HV_ECONFIG, k,
                         "unknown key \"%s\" in a file source (known: dir, glob, after, move_to, "
                         "error_dir, poll_interval_ms, stable_ms, max_size, batch, content_type)",
                         k);
            return HV_ECONFIG;
        }
    }
    if (hv_json_get_str(conf, "dir") == NULL) {
        hv_error_set(err, HV_ECONFIG, NULL, "a file source needs \"dir\"");
        return HV_ECONFIG;
    }
    if (hv_json_get_str(conf, "move_to") != NULL && strcmp(hv_json_get_str(conf, "move_to"),
                                                           hv_json_get_str(conf, "dir")) == 0) {
        hv_error_set(err, HV_ECONFIG, "move_to", "\"move_to\" must not be \"dir\" itself");
        return HV_ECONFIG;
    }
    return HV_OK;
}

/* The content type of a file by its extension, when "content_type" is not set. */
static const char *type_of(const char *name) {
    const char *dot = strrchr(name, '.');
    if (dot == NULL) return "application/octet-stream";
    if (strcasecmp(dot, ".json") == 0) return "application/json";
    if (strcasecmp(dot, ".xml") == 0) return "application/xml";
    if (strcasecmp(dot, ".hl7") == 0 || strcasecmp(dot, ".er7") == 0)
        return "x-application/hl7-v2+er7";
    if (strcasecmp(dot, ".txt") == 0) return "text/plain";
    return "application/octet-stream";
}

/* ------------------------------------------------------------------------- */
/* Thread pool: scan and read, then move                                     */
/* ------------------------------------------------------------------------- */

typedef struct cand {
    char name[FILE_NAME_MAX + 1];
    uint64_t mtime_ns, size, ino;
} cand_t;

static uint64_t mtime_ns(const struct stat *sb) {
    return (uint64_t)sb->st_mtim.tv_sec * 1000000000ull + (uint64_t)sb->st_mtim.tv_nsec;
}

static int cand_cmp(const void *a, const void *b) {
    const cand_t *x = a, *y = b;
    if (x->mtime_ns != y->mtime_ns) return x->mtime_ns < y->mtime_ns ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int ends_with(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

/* Reads one file whole into it->data; F_FAILED with a reason, or F_LEAVE when it
 * changed while being read. */
static void read_one(fsrc_t *s, const cand_t *c, fitem_t *it) {
    char path[4096 + FILE_NAME_MAX + 2];
    struct stat sb;
    size_t off = 0;
    int fd;
    snprintf(path, sizeof(path), "%s/%s", s->dir, c->name);
    if (c->size > s->max_size) {
        it->outcome = F_FAILED;
        snprintf(it->reason, sizeof(it->reason), "larger than max_size (%zu bytes)", s->max_size);
        return;
    }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        it->outcome = errno == ENOENT ? F_LEAVE : F_FAILED;
        snprintf(it->reason, sizeof(it->reason), "cannot open: %s", strerror(errno));
        return;
    }
    it->data = hv_malloc(c->size ? c->size : 1);
    if (it->data == NULL) {
        close(fd);
        it->outcome = F_LEAVE;
        return;
    }
    while (off < c->size) {
        ssize_t n = read(fd, it->data + off, c->size - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        off += (size_t)n;
    }
    /* Complete only if nothing changed while it was read. */
    if (fstat(fd, &sb) != 0 || off != c->size || (uint64_t)sb.st_size != c->size ||
        mtime_ns(&sb) != c->mtime_ns) {
        it->outcome = F_LEAVE;
        hv_free(it->data);
        it->data = NULL;
    }
    close(fd);
    it->len = off;
}

static void scan_work(uv_work_t *w) {
    fsrc_t *s = w->data;
    DIR *d = opendir(s->dir);
    struct dirent *de;
    cand_t *cands = NULL;
    size_t n = 0, cap = 0, seen = 0, i, bytes = 0;
    uint64_t now_ns = hv_now_ms() * 1000000ull, stable_ns = s->stable_ms * 1000000ull;
    s->more = 0;
    s->retry_in_ms = 0;
    s->items = NULL;
    s->nitems = 0;
    if (d == NULL) return;
    while ((de = readdir(d)) != NULL && seen < FILE_SCAN_MAX) {
        char path[4096 + FILE_NAME_MAX + 2];
        struct stat sb;
        uint64_t mt;
        seen++;
        if (de->d_name[0] == '.' || ends_with(de->d_name, ".tmp") ||
            strlen(de->d_name) > FILE_NAME_MAX || fnmatch(s->glob, de->d_name, 0) != 0)
            continue;
        snprintf(path, sizeof(path), "%s/%s", s->dir, de->d_name);
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) continue;
        mt = mtime_ns(&sb);
        if (mt + stable_ns > now_ns) {
            /* Not yet stable: look again when it may be. */
            uint64_t wait = (mt + stable_ns - now_ns) / 1000000ull + 1;
            if (s->retry_in_ms == 0 || wait < s->retry_in_ms) s->retry_in_ms = wait;
            continue;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            cand_t *c2 = hv_realloc(cands, nc * sizeof(*c2));
            if (c2 == NULL) break;
            cands = c2;
            cap = nc;
        }
        snprintf(cands[n].name, sizeof(cands[n].name), "%s", de->d_name);
        cands[n].mtime_ns = mt;
        cands[n].size = (uint64_t)sb.st_size;
        cands[n].ino = (uint64_t)sb.st_ino;
        n++;
    }
    closedir(d);
    if (seen >= FILE_SCAN_MAX) s->more = 1;
    if (n == 0) goto out;
    qsort(cands, n, sizeof(*cands), cand_cmp);
    s->items = hv_calloc(n < s->batch ? n : s->batch, sizeof(*s->items));
    if (s->items == NULL) goto out;
    for (i = 0; i < n && s->nitems < s->batch; i++) {
        fitem_t *it = &s->items[s->nitems];
        if (s->nitems > 0 && bytes + cands[i].size > FILE_ROUND_BYTES) break;
        snprintf(it->name, sizeof(it->name), "%s", cands[i].name);
        snprintf(it->key, sizeof(it->key), "file:%s|%llu|%llu|%llu", cands[i].name,
                 (unsigned long long)cands[i].size, (unsigned long long)cands[i].mtime_ns,
                 (unsigned long long)cands[i].ino);
        it->mtime_ns = cands[i].mtime_ns;
        it->src = s;
        read_one(s, &cands[i], it);
        if (it->outcome == F_PENDING) bytes += it->len;
        s->nitems++;
    }
    if (i < n) s->more = 1;
out:
    hv_free(cands);
}

/* Moves target names: <to>/<name>, or <to>/<name>.<id> when that exists. */
static int move_to(const char *from_dir, const char *name, const char *to_dir, int64_t id) {
    char from[4096 + FILE_NAME_MAX + 2], to[4096 + FILE_NAME_MAX + 32];
    struct stat sb;
    snprintf(from, sizeof(from), "%s/%s", from_dir, name);
    snprintf(to, sizeof(to), "%s/%s", to_dir, name);
    if (stat(to, &sb) == 0) snprintf(to, sizeof(to), "%s/%s.%lld", to_dir, name, (long long)id);
    return rename(from, to) == 0 ? 0 : errno;
}

static void move_work(uv_work_t *w) {
    fsrc_t *s = w->data;
    size_t i;
    for (i = 0; i < s->nitems; i++) {
        fitem_t *it = &s->items[i];
        int e = 0;
        if (it->outcome == F_STORED) {
            if (s->delete_after) {
                char path[4096 + FILE_NAME_MAX + 2];
                snprintf(path, sizeof(path), "%s/%s", s->dir, it->name);
                e = unlink(path) == 0 ? 0 : errno;
            } else {
                e = move_to(s->dir, it->name, s->done_dir, it->id);
            }
        } else if (it->outcome == F_FAILED) {
            e = move_to(s->dir, it->name, s->error_dir, (int64_t)hv_now_ms());
        }
        if (e != 0 && e != ENOENT)
            snprintf(it->reason, sizeof(it->reason), "cannot move or delete: %s", strerror(e));
        else if (it->outcome == F_STORED)
            it->reason[0] = '\0';
    }
}

/* ------------------------------------------------------------------------- */
/* Loop thread                                                               */
/* ------------------------------------------------------------------------- */

static void scan_start(fsrc_t *s);
static void on_tick(uv_timer_t *t);

static void src_free(fsrc_t *s) {
    hv_free(s->dir);
    hv_free(s->glob);
    hv_free(s->done_dir);
    hv_free(s->error_dir);
    hv_free(s->content_type);
    hv_free(s);
}

static void src_unref(fsrc_t *s) {
    if (--s->refs == 0) src_free(s);
}

static void items_free(fsrc_t *s) {
    size_t i;
    for (i = 0; i < s->nitems; i++) hv_free(s->items[i].data);
    hv_free(s->items);
    s->items = NULL;
    s->nitems = 0;
}

static void move_after(uv_work_t *w, int status) {
    fsrc_t *s = w->data;
    size_t i;
    (void)status;
    for (i = 0; i < s->nitems; i++) {
        fitem_t *it = &s->items[i];
        if (it->outcome == F_FAILED || (it->outcome == F_STORED && it->reason[0])) {
            hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "channel.file.refused");
            hv_log_str(r, "channel", hv_channel_id(s->ch));
            hv_log_str(r, "file", it->name);
            hv_log_str(r, "reason", it->reason);
            hv_log_end(r);
        }
    }
    items_free(s);
    s->busy = 0;
    if (!s->stopping && (s->more || s->again)) {
        s->again = 0;
        scan_start(s);
    } else if (!s->stopping && s->retry_in_ms > 0 && s->retry_in_ms < s->poll_ms) {
        /* A file not yet stable: look again as soon as it may be. */
        uv_timer_start(&s->timer, on_tick, s->retry_in_ms, s->poll_ms);
    }
    src_unref(s); /* the round's */
}

static void round_moves(fsrc_t *s) {
    s->work.data = s;
    if (uv_queue_work(s->loop, &s->work, move_work, move_after) != 0) move_after(&s->work, -1);
}

static void on_stored(int status, int64_t id, void *ud) {
    fitem_t *it = ud;
    fsrc_t *s = it->src;
    if (status == HV_OK || status == HV_ETIMEDOUT) {
        it->outcome = F_STORED; /* timed out: stored, and its deliveries go on */
        it->id = id;
    } else if (status == HV_EPROTO || status == HV_EINVAL) {
        /* Stored, but a step failed or a destination dead-lettered it (response
         * after-destinations): the file goes to error_dir; the message can be reprocessed. */
        it->outcome = F_FAILED;
        it->id = id;
        snprintf(it->reason, sizeof(it->reason), "message %lld %s", (long long)id,
                 status == HV_EINVAL ? "errored in a step" : "was dead-lettered");
    } else {
        it->outcome = F_LEAVE; /* busy or stopped: the next round */
    }
    if (--s->pending > 0) return;
    if (s->stopping) { /* the key finds the stored ones at the next start */
        items_free(s);
        s->busy = 0;
        src_unref(s);
        return;
    }
    round_moves(s);
}

static void scan_after(uv_work_t *w, int status) {
    fsrc_t *s = w->data;
    size_t i;
    if (status != 0 || s->stopping) {
        items_free(s);
        s->busy = 0;
        src_unref(s);
        return;
    }
    s->pending = 1; /* held until every item is submitted */
    for (i = 0; i < s->nitems; i++) {
        fitem_t *it = &s->items[i];
        int rc;
        if (it->outcome != F_PENDING) continue;
        s->pending++;
        rc = hv_channel_receive_keyed(s->ch, it->data, it->len,
                                      s->content_type ? s->content_type : type_of(it->name),
                                      it->key, 0, on_stored, it);
        hv_free(it->data); /* the channel keeps its own copy */
        it->data = NULL;
        if (rc != HV_OK) {
            it->outcome = F_LEAVE;
            s->pending--;
        }
    }
    if (--s->pending == 0) round_moves(s);
}

static void scan_start(fsrc_t *s) {
    if (s->stopping) return;
    if (s->busy) {
        s->again = 1;
        return;
    }
    s->busy = 1;
    s->refs++;
    s->work.data = s;
    if (uv_queue_work(s->loop, &s->work, scan_work, scan_after) != 0) {
        s->busy = 0;
        s->refs--;
    }
}

static void on_tick(uv_timer_t *t) { scan_start(t->data); }

static void on_dir_change(uv_fs_event_t *h, const char *filename, int events, int status) {
    fsrc_t *s = h->data;
    (void)filename;
    (void)events;
    if (status < 0 || s->stopping) return;
    scan_start(s);
}

static void on_handle_closed(uv_handle_t *h) { src_unref(h->data); }

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = hv_malloc(n);
    if (p != NULL) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int file_start(hv_channel_t *ch, struct json_object *conf, void **state, hv_error_t *err) {
    fsrc_t *s = hv_calloc(1, sizeof(*s));
    const char *dir = hv_json_get_str(conf, "dir"), *glob = hv_json_get_str(conf, "glob");
    const char *mv = hv_json_get_str(conf, "move_to"), *ed = hv_json_get_str(conf, "error_dir");
    const char *ct = hv_json_get_str(conf, "content_type"), *after = hv_json_get_str(conf, "after");
    const char *dirs[3];
    uint64_t v = 0;
    size_t i;
    if (s == NULL) return HV_ENOMEM;
    s->ch = ch;
    s->loop = hv_engine_loop(hv_channel_engine(ch));
    s->dir = hv_strdup(dir ? dir : ".");
    s->glob = hv_strdup(glob ? glob : "*");
    s->done_dir = mv ? hv_strdup(mv) : join(s->dir ? s->dir : ".", "done");
    s->error_dir = ed ? hv_strdup(ed) : join(s->dir ? s->dir : ".", "error");
    s->content_type = ct ? hv_strdup(ct) : NULL;
    s->delete_after = after != NULL && strcmp(after, "delete") == 0;
    get_u64(conf, "poll_interval_ms", 10, 86400000, 1000, &s->poll_ms);
    get_u64(conf, "stable_ms", 0, 86400000, 500, &s->stable_ms);
    get_u64(conf, "max_size", 1, (uint64_t)2 << 30, 64u << 20, &v);
    s->max_size = (size_t)v;
    get_u64(conf, "batch", 1, 1024, 32, &v);
    s->batch = (size_t)v;
    if (s->dir == NULL || s->glob == NULL || s->done_dir == NULL || s->error_dir == NULL ||
        (ct != NULL && s->content_type == NULL)) {
        src_free(s);
        return HV_ENOMEM;
    }
    dirs[0] = s->dir;
    dirs[1] = s->delete_after ? NULL : s->done_dir;
    dirs[2] = s->error_dir;
    for (i = 0; i < 3; i++) {
        int e = dirs[i] != NULL ? hv__mkdirs(dirs[i]) : 0;
        if (e != 0) {
            hv_error_set(err, HV_EIO, NULL, "file source: cannot create %s: %s", dirs[i],
                         strerror(e));
            src_free(s);
            return HV_EIO;
        }
    }
    uv_timer_init(s->loop, &s->timer);
    s->timer.data = s;
    s->refs = 1;
    uv_timer_start(&s->timer, on_tick, 0, s->poll_ms);
    if (uv_fs_event_init(s->loop, &s->watch) == 0) {
        s->watch.data = s;
        s->watch_open = 1;
        s->refs++;
        if (uv_fs_event_start(&s->watch, on_dir_change, s->dir, 0) != 0)
            hv_log(HV_LOG_INFO, "channel.file.nowatch", "directory changes are found by polling only");
    }
    *state = s;
    return HV_OK;
}

static void file_stop(void *state) {
    fsrc_t *s = state;
    s->stopping = 1;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_handle_closed);
    if (s->watch_open) uv_close((uv_handle_t *)&s->watch, on_handle_closed);
    s->watch_open = 0;
}

const hv_channel_source_t hv__source_file = {"file", file_check, file_start, file_stop};
