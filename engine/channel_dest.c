/*
 * channel_dest.c — built-in destinations `file-write` and `channel`, the `timer`
 * source, filter evaluation and the built-in steps of engine/.
 *
 * file-write writes each message to <dir>/<channel>-<message id>.msg (or the
 * "filename" pattern with ${channel} and ${id}) through the libuv thread pool:
 * written to a temporary name, fsync'd (unless "fsync": false), then renamed, so a
 * reader never sees a half-written file and a message written twice (a retry after a
 * crash) simply replaces the same file. Batches (fw_send_batch) keep that guarantee
 * with an unnamed file (O_TMPFILE) linked under its name where the file system allows. The messages a worker has ready are written
 * by one thread-pool job (fw_send_batch), each file still with that guarantee; with
 * fsync the batch's files are written first, then fsync'd (their writeback overlaps),
 * then renamed, then the directory is fsync'd once, so that the renames are durable
 * too before any of them is reported delivered.
 *
 * "mode": "append" (Mirth's File Writer "append to file") appends each message's
 * content and "separator" (default "\n") to the file the pattern names (default
 * ${channel}.log), in queue order, fsync'd once per batch when configured. A retry
 * after a failure or a crash appends the message again (at-least-once: a reader may
 * find a message twice, or a partial copy followed by a whole one, after a failure).
 *
 * channel hands the message to another channel as if its source had received it;
 * it is delivered once the other channel has stored it. Cycles are refused at
 * deployment (channel.c).
 */
#include "config.h"
#include "engine/channel_rt.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

hv__chans_t *hv__chans_of(hv_engine_t *e) { return hv_engine_module_state(e, "channels"); }

int hv__mkdirs(const char *path) {
    char buf[4096];
    size_t i, n = strlen(path);
    if (n == 0 || n >= sizeof(buf)) return ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        buf[i] = '\0';
        if (mkdir(buf, 0700) != 0 && errno != EEXIST) return errno;
        buf[i] = i < n ? '/' : '\0';
    }
    return 0;
}

/* ------------------------------------------------------------------------- */
/* file-write                                                                */
/* ------------------------------------------------------------------------- */

typedef struct file_write {
    char *dir;
    char *pattern;
    char *channel;
    char *separator; /* append mode: written after each message */
    int fsync;
    int append;
    uv_loop_t *loop;
} file_write_t;

/* Files of a durable batch open at once (fsync'd together), at most. */
#define FW_OPEN_MAX 64

typedef struct fw_job {
    uv_work_t work;
    char path[4096];
    char tmp[4200];
    char sep[65]; /* append mode: the separator */
    char *data;
    size_t len;
    char *src;  /* a large message: copied from its content file, data unused */
    int fsync;
    int append;
    int err; /* errno, 0 on success */
    hv_channel_sent_cb done;
    void *token;
} fw_job_t;

static int fw_check(struct json_object *conf, hv_error_t *err) {
    json_object_object_foreach(conf, k, v) {
        if (strcmp(k, "dir") == 0 || strcmp(k, "filename") == 0) {
            if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) == 0) {
                hv_error_set(err, HV_ECONFIG, k, "\"%s\" must be a non-empty string", k);
                return HV_ECONFIG;
            }
            if (strcmp(k, "filename") == 0 && strchr(json_object_get_string(v), '/') != NULL) {
                hv_error_set(err, HV_ECONFIG, k, "\"filename\" must not contain '/'");
                return HV_ECONFIG;
            }
        } else if (strcmp(k, "fsync") == 0) {
            if (!json_object_is_type(v, json_type_boolean)) {
                hv_error_set(err, HV_ECONFIG, k, "\"fsync\" must be true or false");
                return HV_ECONFIG;
            }
        } else if (strcmp(k, "mode") == 0) {
            if (!json_object_is_type(v, json_type_string) ||
                (strcmp(json_object_get_string(v), "files") != 0 &&
                 strcmp(json_object_get_string(v), "append") != 0)) {
                hv_error_set(err, HV_ECONFIG, k, "\"mode\" is \"files\" or \"append\"");
                return HV_ECONFIG;
            }
        } else if (strcmp(k, "separator") == 0) {
            if (!json_object_is_type(v, json_type_string) || json_object_get_string_len(v) > 64) {
                hv_error_set(err, HV_ECONFIG, k, "\"separator\" must be a string of at most 64 bytes");
                return HV_ECONFIG;
            }
        } else {
            hv_error_set(err, HV_ECONFIG, k,
                         "unknown key \"%s\" in a file-write destination (known: dir, filename, "
                         "fsync, mode, separator)",
                         k);
            return HV_ECONFIG;
        }
    }
    if (hv_json_get_str(conf, "dir") == NULL) {
        hv_error_set(err, HV_ECONFIG, NULL, "a file-write destination needs \"dir\"");
        return HV_ECONFIG;
    }
    return HV_OK;
}

static void fw_close(void *state) {
    file_write_t *f = state;
    if (f == NULL) return;
    hv_free(f->dir);
    hv_free(f->pattern);
    hv_free(f->channel);
    hv_free(f->separator);
    hv_free(f);
}

static int fw_open(hv_engine_t *e, const char *channel, struct json_object *conf, void **state,
                   hv_error_t *err) {
    file_write_t *f = hv_calloc(1, sizeof(*f));
    json_object *v = NULL;
    const char *pat = hv_json_get_str(conf, "filename");
    const char *mode = hv_json_get_str(conf, "mode");
    const char *sep = hv_json_get_str(conf, "separator");
    int mk;
    if (f == NULL) return HV_ENOMEM;
    f->append = mode != NULL && strcmp(mode, "append") == 0;
    f->dir = hv_strdup(hv_json_get_str(conf, "dir"));
    f->pattern = hv_strdup(pat ? pat : f->append ? "${channel}.log" : "${channel}-${id}.msg");
    f->separator = hv_strdup(sep ? sep : "\n");
    f->channel = hv_strdup(channel);
    f->fsync = 1;
    f->loop = hv_engine_loop(e);
    if (json_object_object_get_ex(conf, "fsync", &v)) f->fsync = json_object_get_boolean(v);
    if (f->dir == NULL || f->pattern == NULL || f->channel == NULL || f->separator == NULL) {
        fw_close(f);
        hv_error_set(err, HV_ENOMEM, NULL, "out of memory");
        return HV_ENOMEM;
    }
    if ((mk = hv__mkdirs(f->dir)) != 0) {
        hv_error_set(err, HV_EIO, NULL, "file-write: cannot create %s: %s", f->dir, strerror(mk));
        fw_close(f);
        return HV_EIO;
    }
    *state = f;
    return HV_OK;
}

static void expand(const char *pat, const char *channel, int64_t id, char *out, size_t outlen) {
    size_t n = 0;
    while (*pat && n + 1 < outlen) {
        if (strncmp(pat, "${channel}", 10) == 0) {
            n += (size_t)snprintf(out + n, outlen - n, "%s", channel);
            pat += 10;
        } else if (strncmp(pat, "${id}", 5) == 0) {
            n += (size_t)snprintf(out + n, outlen - n, "%lld", (long long)id);
            pat += 5;
        } else {
            out[n++] = *pat++;
        }
        if (n >= outlen) n = outlen - 1;
    }
    out[n] = '\0';
}

/* Thread pool: copies len bytes of the file src to fd through a 256 KiB buffer (a
 * large message's content file; memory stays at the buffer): 0 or errno. */
static int copy_file(const char *src, int fd, size_t len) {
    enum { CHUNK = 256 * 1024 };
    char *buf = hv_malloc(CHUNK);
    size_t done = 0;
    int in, e = 0;
    if (buf == NULL) return ENOMEM;
    in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        hv_free(buf);
        return errno;
    }
    while (done < len && e == 0) {
        ssize_t n = read(in, buf, len - done < CHUNK ? len - done : CHUNK), off = 0;
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            e = n < 0 ? errno : EIO; /* shorter than its recorded size */
            break;
        }
        while (off < n) {
            ssize_t w = write(fd, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR) continue;
                e = errno;
                break;
            }
            off += w;
        }
        done += (size_t)n;
    }
    close(in);
    hv_free(buf);
    return e;
}

/* Thread pool: writes n bytes at p to fd: 0 or errno. */
static int write_all(int fd, const char *p, size_t n) {
    size_t off = 0;
    while (off < n) {
        ssize_t w = write(fd, p + off, n - off);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        off += (size_t)w;
    }
    return 0;
}

/* Thread pool: a message's content to fd, from memory or (src non-NULL, a large
 * message) copied from its content file: 0 or errno. */
static int write_content(int fd, const char *data, size_t len, const char *src) {
    return src != NULL ? copy_file(src, fd, len) : write_all(fd, data, len);
}

/* Thread pool: append mode, one message: content and separator appended to path,
 * fsync'd when configured: 0 or errno. */
static int append_one(const char *path, const char *data, size_t len, const char *src,
                      const char *sep, int do_fsync) {
    int err, fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) return errno;
    err = write_content(fd, data, len, src);
    if (err == 0) err = write_all(fd, sep, strlen(sep));
    if (err == 0 && do_fsync && fsync(fd) != 0) err = errno;
    if (close(fd) != 0 && err == 0) err = errno;
    return err;
}

/* Thread pool: writes one file as documented above (temporary name, fsync when
 * configured, rename over the final name): 0 or errno. src non-NULL: the content is
 * copied from that file (a large message), data unused. */
static int write_one(const char *tmp, const char *path, const char *data, size_t len,
                     const char *src, int do_fsync) {
    int err = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return errno;
    err = write_content(fd, data, len, src);
    if (err == 0 && do_fsync && fsync(fd) != 0) err = errno;
    if (close(fd) != 0 && err == 0) err = errno;
    if (err == 0 && rename(tmp, path) != 0) err = errno;
    if (err != 0) unlink(tmp);
    return err;
}

/* Thread pool. */
static void fw_work(uv_work_t *w) {
    fw_job_t *j = w->data;
    if (j->append) j->err = append_one(j->path, j->data, j->len, j->src, j->sep, j->fsync);
    else j->err = write_one(j->tmp, j->path, j->data, j->len, j->src, j->fsync);
}

static void fw_after(uv_work_t *w, int status) {
    fw_job_t *j = w->data;
    char detail[128];
    if (status != 0 && j->err == 0) j->err = EIO;
    snprintf(detail, sizeof(detail), "%s", j->err ? strerror(j->err) : "written");
    j->done(j->token, j->err ? HV_CHANNEL_RETRY : HV_CHANNEL_DELIVERED, detail);
    hv_free(j->data);
    hv_free(j->src);
    hv_free(j);
}

static int fw_send(void *state, const hv_channel_msg_t *m, hv_channel_sent_cb done, void *token) {
    file_write_t *f = state;
    fw_job_t *j = hv_calloc(1, sizeof(*j));
    char name[1024];
    if (j == NULL) return HV_ENOMEM;
    if (m->content_file != NULL) j->src = hv_strdup(m->content_file);
    else j->data = hv_malloc(m->len ? m->len : 1);
    if (j->data == NULL && j->src == NULL) {
        hv_free(j);
        return HV_ENOMEM;
    }
    if (m->len && j->data != NULL) memcpy(j->data, m->content, m->len);
    j->len = m->len;
    j->fsync = f->fsync;
    j->append = f->append;
    snprintf(j->sep, sizeof(j->sep), "%s", f->separator);
    j->done = done;
    j->token = token;
    expand(f->pattern, f->channel, m->id, name, sizeof(name));
    snprintf(j->path, sizeof(j->path), "%s/%s", f->dir, name);
    snprintf(j->tmp, sizeof(j->tmp), "%s/.%s.tmp", f->dir, name);
    j->work.data = j;
    if (uv_queue_work(f->loop, &j->work, fw_work, fw_after) != 0) {
        hv_free(j->data);
        hv_free(j->src);
        hv_free(j);
        return HV_EIO;
    }
    return HV_OK;
}

/*
 * Batches (hv__dest_batch_fn): the messages a worker has ready are written by one
 * thread-pool job, one file after the other, each with the guarantee above (a reader
 * never sees a partial file; a message written again replaces its file whole), so
 * what a batch saves is a thread hand-off (two scheduler wake-ups) and an outcome
 * round per message. The job stops at the first failure. The contents are borrowed
 * from the worker's items (they live until done runs), and the job does not touch
 * the destination's state, which close may free while the job runs.
 *
 * The job opens the directory once and names each file relative to it (openat,
 * linkat, renameat: no path walk per file). Where the file system has O_TMPFILE
 * (Linux: tmpfs, ext4, xfs, btrfs) each file is made unnamed, written (and fsync'd),
 * then given its name with linkat — one directory operation instead of a create and
 * a rename of a temporary name, and still all or nothing for a reader. When the name
 * exists already (a retry after a crash), or linkat cannot name an unnamed file (no
 * /proc and no privilege for AT_EMPTY_PATH), the file is linked to the temporary name
 * and renamed over the final one, which replaces it atomically (rename(2)). Without
 * O_TMPFILE the temporary name is created, written and renamed, as fw_send does.
 */
typedef struct fw_one {
    char *name, *tmp; /* hv_malloc'd: the file's name and its temporary name in dir */
    const char *data; /* borrowed */
    const char *src;  /* borrowed: a large message's content file, or NULL */
    size_t len;
    int fd;    /* durable batches: the open file while the chunk is written */
    int anon;  /* fd is an unnamed (O_TMPFILE) file: fw_publish links it */
} fw_one_t;

typedef struct fw_batch {
    uv_work_t work;
    fw_one_t *one;
    size_t n, attempted;
    int fsync;
    int append;
    int dfd;       /* the directory, while the job runs */
    int no_tmpfile; /* O_TMPFILE refused once: temporary names for the rest of the batch */
    char sep[65];  /* append mode: the separator (copied: the state may go first) */
    char *dir;     /* hv_malloc'd */
    int err; /* errno of the last one attempted, 0 when all were written */
    hv__batch_sent_cb done;
    void *token;
} fw_batch_t;

static void fw_batch_free(fw_batch_t *b) {
    size_t i;
    if (b == NULL) return;
    for (i = 0; b->one != NULL && i < b->n; i++) {
        hv_free(b->one[i].name);
        hv_free(b->one[i].tmp);
    }
    hv_free(b->one);
    hv_free(b->dir);
    hv_free(b);
}

/*
 * Thread pool: append mode. The messages are appended in order, to one open file while
 * their names are the same; each file is fsync'd (when configured) before the next is
 * opened and at the end. A failed write stops the batch at that message; a failed
 * fsync reports the first message written through that descriptor as failed (the ones
 * after it are reported not attempted: all are appended again, at-least-once).
 */
static void fw_batch_append(fw_batch_t *b) {
    size_t i, first = 0, seplen = strlen(b->sep);
    const char *open_name = NULL;
    int fd = -1;
    b->err = 0;
    for (i = 0; i < b->n && b->err == 0; i++) {
        fw_one_t *o = &b->one[i];
        b->attempted = i + 1;
        if (fd >= 0 && strcmp(open_name, o->name) != 0) {
            if (b->fsync && fsync(fd) != 0) {
                b->err = errno;
                b->attempted = first + 1;
            }
            close(fd);
            fd = -1;
            if (b->err != 0) break;
        }
        if (fd < 0) {
            fd = openat(b->dfd, o->name, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (fd < 0) {
                b->err = errno;
                break;
            }
            open_name = o->name;
            first = i;
        }
        b->err = write_content(fd, o->data, o->len, o->src);
        if (b->err == 0) b->err = write_all(fd, b->sep, seplen);
    }
    if (fd >= 0) {
        if (b->err == 0 && b->fsync && fsync(fd) != 0) {
            b->err = errno;
            b->attempted = first + 1;
        }
        close(fd);
    }
}

/*
 * Thread pool: creates o's file and writes its content: o->fd open, unnamed (o->anon)
 * or under o->tmp. 0 or errno (nothing left behind).
 */
static int fw_create(fw_batch_t *b, fw_one_t *o) {
    int err, fd = -1;
    o->anon = 0;
#ifdef O_TMPFILE
    if (!b->no_tmpfile) {
        fd = openat(b->dfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
        /* Not supported by this file system (or kernel): temporary names from now on.
         * Any other error (no space, no directory) is the file's. */
        if (fd < 0 && (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL))
            b->no_tmpfile = 1;
        else if (fd < 0)
            return errno;
        else
            o->anon = 1;
    }
#else
    b->no_tmpfile = 1;
#endif
    if (fd < 0) {
        fd = openat(b->dfd, o->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0) return errno;
    }
    err = write_content(fd, o->data, o->len, o->src);
    if (err != 0) {
        close(fd);
        if (!o->anon) unlinkat(b->dfd, o->tmp, 0);
        return err;
    }
    o->fd = fd;
    return 0;
}

/* Thread pool: after a failure, o's file goes (an unnamed one with its descriptor). */
static void fw_discard(fw_batch_t *b, fw_one_t *o) {
    if (o->fd >= 0) close(o->fd);
    o->fd = -1;
    if (!o->anon) unlinkat(b->dfd, o->tmp, 0);
}

#ifdef O_TMPFILE
/* Thread pool: gives the unnamed file fd the name `name` in the batch's directory:
 * 0 or errno (EEXIST: the name is taken). */
static int fw_link(fw_batch_t *b, int fd, const char *name) {
    char proc[64];
    if (linkat(fd, "", b->dfd, name, AT_EMPTY_PATH) == 0) return 0;
    if (errno == EEXIST) return EEXIST;
    /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH: the documented way for everyone else. */
    snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
    if (linkat(AT_FDCWD, proc, b->dfd, name, AT_SYMLINK_FOLLOW) == 0) return 0;
    return errno;
}
#endif

/*
 * Thread pool: the written (and fsync'd, when configured) file of o gets its final
 * name, replacing a file of that name whole; o->fd is closed. 0 or errno (the file
 * is gone then).
 */
static int fw_publish(fw_batch_t *b, fw_one_t *o) {
    int err = 0;
#ifdef O_TMPFILE
    if (o->anon) {
        err = fw_link(b, o->fd, o->name);
        if (err == EEXIST) {
            /* A retry: the old file is replaced by a rename, never unlinked first. */
            unlinkat(b->dfd, o->tmp, 0); /* a crash's leftover */
            err = fw_link(b, o->fd, o->tmp);
            if (err == 0) o->anon = 0; /* now named o->tmp: renamed below */
        }
        if (err != 0 || o->anon) {
            /* A close error after the link (a network file system's late write error)
             * fails the attempt: the retry replaces the file. */
            if (close(o->fd) != 0 && err == 0) err = errno;
            o->fd = -1;
            return err;
        }
    }
#endif
    if (close(o->fd) != 0) err = errno;
    o->fd = -1;
    if (err == 0 && renameat(b->dfd, o->tmp, b->dfd, o->name) != 0) err = errno;
    if (err != 0) unlinkat(b->dfd, o->tmp, 0);
    return err;
}

/*
 * Thread pool: files with fsync, FW_OPEN_MAX at a time: every file of the chunk is
 * written and its writeback started, then each is fsync'd (the disk sees the chunk's
 * writes together instead of one flush per file), then named in order, then the
 * directory is fsync'd once, so that the names are durable too before any is
 * reported delivered. A failure at file f of the chunk keeps the files before it
 * (named, the directory fsync'd), removes the files from f on, and reports f as
 * failed; a failed directory fsync reports the chunk's first file as failed.
 */
static void fw_batch_durable(fw_batch_t *b) {
    size_t base, k;
    for (base = 0; base < b->n; base += FW_OPEN_MAX) {
        size_t m = b->n - base < FW_OPEN_MAX ? b->n - base : FW_OPEN_MAX, ok = 0, f;
        fw_one_t *c = &b->one[base];
        int err = 0;
        for (k = 0; k < m; k++) {
            c[k].fd = -1;
            if ((err = fw_create(b, &c[k])) != 0) break;
#ifdef SYNC_FILE_RANGE_WRITE
            (void)sync_file_range(c[k].fd, 0, 0, SYNC_FILE_RANGE_WRITE); /* a hint: fsync decides */
#endif
            ok = k + 1;
        }
        f = ok;
        for (k = 0; k < f; k++)
            if (fsync(c[k].fd) != 0) {
                f = k;
                err = errno;
            }
        for (k = 0; k < f; k++)
            if ((err = fw_publish(b, &c[k])) != 0) {
                f = k;
                break;
            }
        for (k = f; k < ok; k++) fw_discard(b, &c[k]);
        if (f > 0 && fsync(b->dfd) != 0) {
            err = errno;
            f = 0;
        }
        if (err != 0 || f < m) {
            b->err = err != 0 ? err : EIO;
            b->attempted = base + f + 1;
            return;
        }
        b->attempted = base + m;
    }
    b->err = 0;
}

/* Thread pool. */
static void fw_batch_work(uv_work_t *w) {
    fw_batch_t *b = w->data;
    size_t i;
    b->attempted = 1;
    b->dfd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (b->dfd < 0) {
        b->err = errno; /* the first message failed: retried later */
        return;
    }
    if (b->append) {
        fw_batch_append(b);
    } else if (b->fsync) {
        fw_batch_durable(b);
    } else {
        for (i = 0; i < b->n; i++) {
            fw_one_t *o = &b->one[i];
            b->attempted = i + 1;
            o->fd = -1;
            b->err = fw_create(b, o);
            if (b->err == 0) b->err = fw_publish(b, o);
            if (b->err != 0) break;
        }
    }
    close(b->dfd);
    b->dfd = -1;
}

static void fw_batch_after(uv_work_t *w, int status) {
    fw_batch_t *b = w->data;
    enum { STACK = 64 };
    int results_s[STACK], *results = results_s;
    const char *details_s[STACK], **details = details_s;
    size_t i, n = b->attempted ? b->attempted : 1;
    if (status != 0 && b->err == 0) b->err = EIO; /* cancelled: nothing written */
    if (status != 0) n = 1;
    if (n > STACK) {
        results = hv_malloc(n * sizeof(*results));
        details = hv_malloc(n * sizeof(*details));
        if (results == NULL || details == NULL) { /* report the first alone: retried */
            if (results != results_s) hv_free(results);
            if (details != details_s) hv_free(details);
            results = results_s;
            details = details_s;
            n = 1;
            b->err = ENOMEM;
        }
    }
    for (i = 0; i < n; i++) {
        int failed = i + 1 == n && b->err != 0;
        results[i] = failed ? HV_CHANNEL_RETRY : HV_CHANNEL_DELIVERED;
        details[i] = failed ? strerror(b->err) : "written";
    }
    b->done(b->token, n, results, details);
    if (results != results_s) hv_free(results);
    if (details != details_s) hv_free(details);
    fw_batch_free(b);
}

static int fw_send_batch(void *state, const hv_channel_msg_t *msgs, size_t n,
                         hv__batch_sent_cb done, void *token) {
    file_write_t *f = state;
    fw_batch_t *b = NULL;
    char name[1024];
    size_t i, plen;
    int rc = HV_ENOMEM;
    if (n == 0) return HV_EINVAL;
    b = hv_calloc(1, sizeof(*b));
    if (b == NULL) goto out;
    b->one = hv_calloc(n, sizeof(*b->one));
    if (b->one == NULL) goto out;
    b->n = n;
    for (i = 0; i < n; i++) {
        fw_one_t *o = &b->one[i];
        expand(f->pattern, f->channel, msgs[i].id, name, sizeof(name));
        plen = strlen(name) + 8;
        o->name = hv_malloc(plen);
        o->tmp = hv_malloc(plen);
        if (o->name == NULL || o->tmp == NULL) goto out;
        snprintf(o->name, plen, "%s", name);
        snprintf(o->tmp, plen, ".%s.tmp", name);
        o->fd = -1;
        o->data = msgs[i].content;
        o->len = msgs[i].len;
        o->src = msgs[i].content_file;
    }
    b->fsync = f->fsync;
    b->append = f->append;
    snprintf(b->sep, sizeof(b->sep), "%s", f->separator);
    b->dir = hv_strdup(f->dir);
    b->dfd = -1;
    if (b->dir == NULL) goto out;
    b->done = done;
    b->token = token;
    b->work.data = b;
    if (uv_queue_work(f->loop, &b->work, fw_batch_work, fw_batch_after) != 0) {
        rc = HV_EIO;
        goto out;
    }
    b = NULL;
    rc = HV_OK;
out:
    fw_batch_free(b);
    return rc;
}

const hv_channel_dest_t hv__dest_file_write = {"file-write", fw_check, fw_open, fw_send, fw_close};

hv__dest_batch_fn hv__dest_batch_of(const hv_channel_dest_t *impl) {
    if (impl == &hv__dest_file_write) return fw_send_batch;
    if (impl == &hv__dest_http_send) return hv__http_send_batch;
    return NULL;
}

/* ------------------------------------------------------------------------- */
/* channel                                                                   */
/* ------------------------------------------------------------------------- */

typedef struct chan_dest {
    hv_engine_t *engine;
    char *target;
} chan_dest_t;

typedef struct chan_send {
    hv_channel_sent_cb done;
    void *token;
} chan_send_t;

static int cd_check(struct json_object *conf, hv_error_t *err) {
    json_object_object_foreach(conf, k, v) {
        if (strcmp(k, "channel") == 0 && json_object_is_type(v, json_type_string)) continue;
        hv_error_set(err, HV_ECONFIG, k,
                     strcmp(k, "channel") == 0 ? "\"channel\" must be a channel id"
                                               : "unknown key in a channel destination (known: "
                                                 "channel)");
        return HV_ECONFIG;
    }
    if (hv_json_get_str(conf, "channel") == NULL) {
        hv_error_set(err, HV_ECONFIG, NULL, "a channel destination needs \"channel\"");
        return HV_ECONFIG;
    }
    return HV_OK;
}

static int cd_open(hv_engine_t *e, const char *channel, struct json_object *conf, void **state,
                   hv_error_t *err) {
    chan_dest_t *c = hv_calloc(1, sizeof(*c));
    (void)channel;
    (void)err;
    if (c == NULL) return HV_ENOMEM;
    c->engine = e;
    c->target = hv_strdup(hv_json_get_str(conf, "channel"));
    if (c->target == NULL) {
        hv_free(c);
        return HV_ENOMEM;
    }
    *state = c;
    return HV_OK;
}

static void cd_stored(int status, int64_t id, void *ud) {
    chan_send_t *s = ud;
    char detail[64];
    if (status == HV_OK) snprintf(detail, sizeof(detail), "stored as %lld", (long long)id);
    else snprintf(detail, sizeof(detail), "not stored: %s", hv_strerror(status));
    s->done(s->token, status == HV_OK ? HV_CHANNEL_DELIVERED : HV_CHANNEL_RETRY, detail);
    hv_free(s);
}

static int cd_send(void *state, const hv_channel_msg_t *m, hv_channel_sent_cb done, void *token) {
    chan_dest_t *c = state;
    hv__chans_t *rt = hv__chans_of(c->engine);
    hv__chan_t *t = rt ? hv__chan_find(rt, c->target) : NULL;
    chan_send_t *s;
    int rc;
    if (t == NULL || t->state == HV__CHAN_STOPPED) return HV_ENOTFOUND;
    s = hv_calloc(1, sizeof(*s));
    if (s == NULL) return HV_ENOMEM;
    s->done = done;
    s->token = token;
    rc = hv__chan_ingest(t, m->content, m->len, m->content_type, 0, 0, cd_stored, s);
    if (rc != HV_OK) hv_free(s);
    return rc;
}

static void cd_close(void *state) {
    chan_dest_t *c = state;
    if (c == NULL) return;
    hv_free(c->target);
    hv_free(c);
}

const hv_channel_dest_t hv__dest_channel = {"channel", cd_check, cd_open, cd_send, cd_close};

/* ------------------------------------------------------------------------- */
/* timer source                                                              */
/* ------------------------------------------------------------------------- */

typedef struct timer_src {
    uv_timer_t timer;
    hv_channel_t *ch;
    char *content;
    char *content_type;
} timer_src_t;

static int timer_check(struct json_object *conf, hv_error_t *err) {
    json_object_object_foreach(conf, k, v) {
        if (strcmp(k, "interval_ms") == 0) {
            if (!json_object_is_type(v, json_type_int) || json_object_get_int64(v) < 10) {
                hv_error_set(err, HV_ECONFIG, k, "\"interval_ms\" must be an integer >= 10");
                return HV_ECONFIG;
            }
        } else if (strcmp(k, "content") == 0 || strcmp(k, "content_type") == 0) {
            if (!json_object_is_type(v, json_type_string)) {
                hv_error_set(err, HV_ECONFIG, k, "\"%s\" must be a string", k);
                return HV_ECONFIG;
            }
        } else {
            hv_error_set(err, HV_ECONFIG, k,
                         "unknown key \"%s\" in a timer source (known: interval_ms, content, "
                         "content_type)",
                         k);
            return HV_ECONFIG;
        }
    }
    if (!json_object_object_get_ex(conf, "interval_ms", NULL)) {
        hv_error_set(err, HV_ECONFIG, NULL, "a timer source needs \"interval_ms\"");
        return HV_ECONFIG;
    }
    return HV_OK;
}

static void on_tick(uv_timer_t *t) {
    timer_src_t *s = t->data;
    /* A refused message (store busy) is simply the next tick's. */
    (void)hv_channel_receive(s->ch, s->content, strlen(s->content), s->content_type, NULL, NULL);
}

static int timer_start(hv_channel_t *ch, struct json_object *conf, void **state, hv_error_t *err) {
    timer_src_t *s = hv_calloc(1, sizeof(*s));
    json_object *v = NULL;
    uint64_t ms = 1000;
    const char *content = hv_json_get_str(conf, "content");
    const char *ct = hv_json_get_str(conf, "content_type");
    (void)err;
    if (s == NULL) return HV_ENOMEM;
    if (json_object_object_get_ex(conf, "interval_ms", &v)) ms = (uint64_t)json_object_get_int64(v);
    s->ch = ch;
    s->content = hv_strdup(content ? content : "");
    s->content_type = hv_strdup(ct ? ct : "text/plain");
    if (s->content == NULL || s->content_type == NULL) {
        hv_free(s->content);
        hv_free(s->content_type);
        hv_free(s);
        return HV_ENOMEM;
    }
    uv_timer_init(hv_engine_loop(hv_channel_engine(ch)), &s->timer);
    s->timer.data = s;
    uv_timer_start(&s->timer, on_tick, ms, ms);
    *state = s;
    return HV_OK;
}

static void on_timer_closed(uv_handle_t *h) {
    timer_src_t *s = h->data;
    hv_free(s->content);
    hv_free(s->content_type);
    hv_free(s);
}

static void timer_stop(void *state) {
    timer_src_t *s = state;
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}

const hv_channel_source_t hv__source_timer = {"timer", timer_check, timer_start, timer_stop};

/* ------------------------------------------------------------------------- */
/* Filters                                                                   */
/* ------------------------------------------------------------------------- */

static const hv_channel_path_provider_t *find_paths(const hv__chan_registry_t *reg,
                                                    const char *syntax) {
    size_t i;
    for (i = 0; i < reg->npaths; i++)
        if (strcmp(reg->paths[i]->syntax, syntax) == 0) return reg->paths[i];
    return NULL;
}

int hv__filter_value(const hv__chan_registry_t *reg, const hv__filter_t *f,
                     const hv_channel_msg_t *m, const char **out) {
    char *val = NULL;
    int rc;
    if (f->kind == HV__F_META) {
        if (strcmp(f->path, "content_type") == 0) *out = m->content_type;
        else if (strcmp(f->path, "channel") == 0) *out = m->channel;
        else if (strcmp(f->path, "size") == 0 && m->arena != NULL)
            *out = hv_arena_sprintf(m->arena, "%zu", m->len);
        else return HV_ENOTFOUND;
        return *out != NULL ? HV_OK : HV_ENOTFOUND;
    } else {
        const hv_channel_path_provider_t *p =
            find_paths(reg, f->kind == HV__F_HL7 ? "hl7v2" : "fhirpath");
        if (p == NULL) return HV_ENOTSUP;
        rc = p->get(m, f->path, &val);
        if (rc == HV_OK) *out = val;
        return rc;
    }
}

static int leaf_eval(const hv__chan_registry_t *reg, const hv__filter_t *f,
                     const hv_channel_msg_t *m) {
    const char *val = NULL;
    char num[32];
    int rc;
    size_t i;
    if (f->kind == HV__F_META && strcmp(f->path, "size") == 0) {
        snprintf(num, sizeof(num), "%zu", m->len);
        val = num;
        rc = HV_OK;
    } else {
        rc = hv__filter_value(reg, f, m, &val);
    }
    if (f->kind == HV__F_FHIRPATH) return rc == HV_OK && val != NULL && strcmp(val, "true") == 0;
    switch (f->op) {
    case HV__OP_EXISTS: {
        int present = rc == HV_OK && val != NULL && val[0] != '\0';
        return f->nvalues > 0 ? !present : present;
    }
    case HV__OP_EQUALS: return rc == HV_OK && val != NULL && strcmp(val, f->values[0]) == 0;
    case HV__OP_CONTAINS: return rc == HV_OK && val != NULL && strstr(val, f->values[0]) != NULL;
    case HV__OP_IN:
        if (rc != HV_OK || val == NULL) return 0;
        for (i = 0; i < f->nvalues; i++)
            if (strcmp(val, f->values[i]) == 0) return 1;
        return 0;
    }
    return 0;
}

int hv__filter_eval(const hv__chan_registry_t *reg, const hv__filter_t *f,
                    const hv_channel_msg_t *m, const char **rule) {
    size_t i;
    switch (f->kind) {
    case HV__F_ALL:
        for (i = 0; i < f->nkids; i++)
            if (!hv__filter_eval(reg, f->kids[i], m, rule)) return 0;
        return 1;
    case HV__F_ANY:
        for (i = 0; i < f->nkids; i++) {
            const char *ignored = NULL;
            if (hv__filter_eval(reg, f->kids[i], m, &ignored)) return 1;
        }
        *rule = f->name;
        return 0;
    case HV__F_NOT: {
        const char *ignored = NULL;
        if (!hv__filter_eval(reg, f->kids[0], m, &ignored)) return 1;
        *rule = f->name;
        return 0;
    }
    default:
        if (leaf_eval(reg, f, m)) return 1;
        *rule = f->name;
        return 0;
    }
}

/* ------------------------------------------------------------------------- */
/* Built-in steps                                                            */
/* ------------------------------------------------------------------------- */

/* The set step is in channel_set.c. */
void hv__chan_register_builtin_steps(hv_engine_t *e) { hv_channel_register_step(e, &hv__step_set); }
