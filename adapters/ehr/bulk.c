/*
 * bulk.c — a sync through Bulk Data Access (FHIR Bulk Data Access IG 2.0.0,
 * "Export"): kick-off, status polling, NDJSON download streamed to disk, import.
 *
 *   kick-off  GET [base]/Group/[group_id]/$export (or [base]/Patient/$export, or
 *             [base]/$export, by the connection and its vendor's bulk level)
 *             ?_type=<resource_types>[&_since=<last run>] with Prefer: respond-async
 *             → 202 and Content-Location, the status URL (kept in the checkpoint)
 *   polling   GET status URL → 202 (wait Retry-After, else ehr.bulk_poll) or 200
 *             with the manifest {output: [{type, url}], error: [...]} (kept in the
 *             checkpoint); 4xx/5xx after the retries fail the run
 *   download  each output file to <data>/ehr-bulk/<run>/<n>.ndjson through curl's
 *             write callback (never whole in memory, ehr.max_download_bytes cap)
 *   import    in chunks of 1,000 lines growing to ehr.bulk_chunk_max (chunk_lines), through
 *             the same writer as search pages (write.c), the next chunks read, parsed and
 *             prepared line by line in the libuv thread pool while one is written (a
 *             prepared chunk holds each resource's stored text and index rows, not its
 *             tree); the checkpoint holds (file, lines written, whether a line
 *             was unreadable), so a run resumed
 *             after a crash skips what was imported and downloads again only the
 *             file it was in; a line that is not JSON (a truncated file) is a
 *             failed resource with its file and line number
 *   deleted   the manifest's "deleted" files (an export with _since: NDJSON of
 *             transaction Bundles with DELETE entries, IG 2.0.0 export.html) are
 *             downloaded after the outputs and read at the end: the resources they
 *             name that the connection synced are deleted locally (reconcile.c)
 *   end       the files are removed and the export is deleted on the server (DELETE
 *             on the status URL, as the IG asks of clients); a system-level export
 *             (no Group, no _since) holds every resource of the run's types, so a run
 *             with every file imported reconciles as a full search sync does: what it
 *             did not see is gone from the EHR (reconcile.c)
 */
#include "config.h"
#include "adapters/ehr/ehr_int.h"
#include "fhir/rest_int.h"
#include "fhir/search_int.h"
#include "fhir/store_int.h"

#include <errno.h>
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BULK_CHUNK 1000 /* lines per chunk at a run's start: a search page's size */
#define LINE_MAX_BYTES ((size_t)16 << 20)
#define HV__EHR_BULK_MAX_GONE 100000 /* deletions read from one export's "deleted" files */

static void file_path(hv__ehr_run_t *r, size_t idx, char *out, size_t outlen) {
    snprintf(out, outlen, "%s/ehr-bulk/%s/%zu.ndjson", hv_engine_data_dir(r->m->e), r->id, idx);
}

static void cleanup_files(hv__ehr_run_t *r) {
    char dir[4096], p[4200];
    size_t i, n = r->bulk_outputs ? json_object_array_length(r->bulk_outputs) : 0;
    for (i = 0; i < n; i++) {
        file_path(r, i, p, sizeof(p));
        unlink(p);
    }
    snprintf(dir, sizeof(dir), "%s/ehr-bulk/%s", hv_engine_data_dir(r->m->e), r->id);
    rmdir(dir);
}

static void on_deleted(void *ud, hv__ehr_resp_t *resp) {
    (void)ud;
    (void)resp;
}

/* DELETE on the export's status URL, once the run is done with it (IG 2.0.0 export.html,
 * "Bulk Data Delete Request"): a finished export's files may go, a running one is cancelled.
 * Its answer changes nothing here: a server that refuses keeps its files until it expires
 * them. */
static void delete_export(hv__ehr_run_t *r) {
    hv__ehr_req_t q;
    if (r->bulk_status_url == NULL)
        return;
    memset(&q, 0, sizeof(q));
    q.method = "DELETE";
    q.url = r->bulk_status_url;
    q.bearer = r->c->token;
    q.no_verify_tls = !r->c->verify_tls;
    (void)hv__ehr_call(r->m->http, &q, on_deleted, NULL);
}

static void dl_discard(hv__ehr_run_t *r);

/* A failed run is not resumed: the files it downloaded, the one downloaded ahead too (removed
 * when its download ends, dl_discard), go with it, and so does the export on the server —
 * still running when its status failed, or with files no run will download. */
static void bulk_fail(hv__ehr_run_t *r) {
    r->page_failed = 1;
    hv__ehr_bulk_release(r);
    dl_discard(r);
    cleanup_files(r);
    delete_export(r);
    hv__ehr_run_finish(r);
}

static int is_deleted_file(hv__ehr_run_t *r, size_t idx) {
    json_object *o = json_object_array_get_idx(r->bulk_outputs, idx), *d = NULL;
    return o != NULL && json_object_object_get_ex(o, "deleted", &d) && json_object_get_boolean(d);
}

/* What one line of a "deleted" file names, collected (read_deleted). */
typedef struct gone_acc {
    hv__ehr_gone_t *g;
    size_t n, cap;
} gone_acc_t;

static int gone_entry(void *ud, const char *type, const char *id, int deleted) {
    gone_acc_t *a = ud;
    if (!deleted) return HV_OK; /* only DELETE entries name deletions */
    if (a->n == a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 64;
        hv__ehr_gone_t *g = nc > HV__EHR_BULK_MAX_GONE ? NULL : hv_realloc(a->g, nc * sizeof(*g));
        if (g == NULL) return HV_ENOMEM;
        a->g = g;
        a->cap = nc;
    }
    snprintf(a->g[a->n].type, sizeof(a->g[a->n].type), "%s", type);
    snprintf(a->g[a->n].id, sizeof(a->g[a->n].id), "%s", id);
    a->n++;
    return HV_OK;
}

/* Reads the downloaded "deleted" files into gone (*n of them); *had: there were such files.
 * Each line is a transaction Bundle (Bulk Data Access IG 2.0.0 export.html) whose entries'
 * request is DELETE Type/id: read with the history parser (page.c), which takes the type and
 * id of a DELETE entry from its request.url, relative or under a base. */
static void read_deleted(hv__ehr_run_t *r, hv__ehr_gone_t **gone, size_t *n, int *had) {
    size_t i, nout = r->bulk_outputs ? json_object_array_length(r->bulk_outputs) : 0;
    char path[4200], *line = NULL;
    size_t lcap = 0;
    gone_acc_t acc;
    int full = 0;
    memset(&acc, 0, sizeof(acc));
    *had = 0;
    for (i = 0; i < nout && !full; i++) {
        FILE *fp;
        ssize_t got;
        int64_t lno = 0;
        if (!is_deleted_file(r, i)) continue;
        *had = 1;
        file_path(r, i, path, sizeof(path));
        if ((fp = fopen(path, "rb")) == NULL) {
            hv__ehr_run_error(r, "bulk", "deleted file %zu is missing: %s", i, strerror(errno));
            r->page_failed = 1;
            continue;
        }
        while (!full && (got = getline(&line, &lcap, fp)) >= 0) {
            size_t len = (size_t)got;
            hv_error_t err;
            char *next = NULL;
            int rc;
            lno++;
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
            if (len == 0) continue;
            hv_error_clear(&err);
            rc = hv_ehr_history_parse(line, len, LINE_MAX_BYTES, gone_entry, &acc, &next, &err);
            hv_free(next);
            if (rc == HV_ENOMEM) {
                hv__ehr_run_error(r, "bulk", "more than %d deletions in the export: the rest are left to a full sync",
                                  HV__EHR_BULK_MAX_GONE);
                full = 1;
            } else if (rc != HV_OK) {
                hv__ehr_run_error(r, "bulk", "deleted file %zu line %lld is not a Bundle of DELETE entries: %.200s", i,
                                  (long long)lno, err.message);
            }
        }
        fclose(fp);
    }
    hv_free(line);
    *gone = acc.g;
    *n = acc.n;
}

static void bulk_done(hv__ehr_run_t *r) {
    hv__ehr_gone_t *gone = NULL;
    size_t ngone = 0;
    int had_deleted = 0;
    hv__ehr_bulk_release(r);
    read_deleted(r, &gone, &ngone, &had_deleted);
    cleanup_files(r);
    delete_export(r);
    if (had_deleted) {
        /* The EHR named what it deleted since the last run: those the connection synced are
         * deleted here (reconcile.c), even after a failed file — each deletion stands alone. */
        hv__ehr_reconcile_gone(r, gone, ngone);
        return;
    }
    hv_free(gone);
    if (!r->page_failed && !r->reconciled && !r->unreadable && r->since_ms == 0 && r->c->group_id == NULL &&
        strcmp(r->c->vendor->bulk_level, "system") == 0)
        hv__ehr_reconcile(r);
    else if (!r->page_failed && !r->reconciled && !r->unreadable && r->since_ms == 0)
        hv__ehr_reconcile_scoped(r); /* a Group or Patient-level export: its Patients' compartments */
    else
        hv__ehr_run_finish(r);
}

/* ---- search indexes deferred ----
 *
 * Into an empty SQLite store, a Bulk sync defers search indexes as `holovitals import` does
 * (fhir/import.c): before its first chunk is written, one job of the fhir storage thread
 * drops every index of the search tables (hv__import_defer_indexes_job; their definitions
 * kept in import_deferred in the same transaction), so each index row the sync writes is
 * two B-tree inserts fewer into indexes that rows reach in random order (the value indexes
 * and the (type, id, code) ones, the ids being random UUIDs); when the run ends,
 * however it ends (hv__ehr_run_finish), one job builds them again, sorted, by CREATE INDEX.
 * Meanwhile the store answers the same: a search that would have read a dropped index scans
 * its table or reads another index, its INDEXED BY hints left out
 * (hv__search_values_deferred: counted on the storage thread before the drop, so no later
 * job names a dropped index; taken back on the loop thread once the build is committed,
 * or the drop did not happen). A write that replaces a stored resource's rows (a REST
 * update or delete, a second version of one id in the export) would scan each search table
 * without the (type, id, code) indexes: the first such write builds those (fhir/search_index.c,
 * hv__search_index_put_pre), the value indexes staying deferred. A kill, or an engine stopped mid-run, leaves the dropped ones
 * in import_deferred: the store's next opening builds them (hv__store_tune) before the run
 * resumes, and the resumed run finds the store not empty. ehr.defer_indexes=off keeps them.
 * PostgreSQL: not deferred. At 100,000 resources the build took 5–9 s of the storage
 * thread (value indexes only, session 17), during which the store's other jobs wait.
 *
 * The full-text catch-up (fhir/search_special.c) waits too: the engine's tick leaves the
 * storage thread to the run while a deferral is under way, and catches up after its end, as
 * it does after an import (which leaves it to the next `serve`). Interleaved with the
 * chunks, it took about a fifth of the run's storage thread (255 k instructions a version
 * against the store job's 143 k, docs/performance.md, session 21, s21b-sync), the thread
 * that paces the run; run at the end inside the run, it cost as much and only moved the
 * run's end (s21b-sync, not kept). The full text is no less complete for it at any moment:
 * a _text or _content search catches up first, as always (fhir/search_run.c), hence during
 * the deferral over every version the run wrote so far (unbounded, as the scans of the
 * dropped indexes are). A kill leaves the mark behind, and a build that fails leaves the
 * deferral counted (the tick waiting), until the next start. */

typedef struct defer_job {
    hv__ehr_run_t *r;
    void (*next)(hv__ehr_run_t *r);
    int deferred;  /* the job dropped them */
    int counted;   /* the job counted a deferral (hv__search_values_deferred); storage thread */
    uint64_t t0;   /* hv_now_ms at submission, for the log */
} defer_job_t;

static int defer_run(hv_db_t *db, void *arg) {
    defer_job_t *j = arg;
    /* Counted once even when the job runs again (its batch rolled back and rerun). */
    if (!j->counted) {
        hv__search_values_deferred(1);
        j->counted = 1;
    }
    return hv__import_defer_indexes_job(db, &j->deferred);
}

static void import_chunk(hv__ehr_run_t *r);
static void download_ahead(hv__ehr_run_t *r);

static void defer_done(int status, void *arg) {
    defer_job_t *j = arg;
    hv__ehr_run_t *r = j->r;
    hv_logrec_t *lr;
    if (j->counted && !(status == HV_OK && j->deferred)) hv__search_values_deferred(-1);
    if (r->m->stopping) { /* resumed at the next start; the store's opening builds what was dropped */
        hv_free(j);
        return;
    }
    r->deferred = status == HV_OK && j->deferred;
    lr = r->deferred ? hv_log_begin(HV_LOG_INFO, "ehr.sync.indexes_deferred") : NULL;
    if (lr) {
        hv_log_str(lr, "run", r->id);
        hv_log_int(lr, "ms", (int64_t)(hv_now_ms() - j->t0));
        hv_log_end(lr);
    }
    if (status != HV_OK) /* the sync goes on with the indexes */
        hv_log(HV_LOG_WARN, "ehr.sync.indexes_deferred", "run %s: could not defer the search indexes: %s", r->id,
               hv_strerror(status));
    hv_free(j);
    import_chunk(r);
}

/* Submits the job deciding the deferral, once per run, before its first chunk is written;
 * returns 1 when it did (defer_done goes on), 0 when the run goes on at once. */
static int defer_indexes(hv__ehr_run_t *r) {
    hv__fhir_t *f = hv_engine_module_state(r->m->e, "fhir");
    defer_job_t *j;
    if (r->defer_tried) return 0;
    r->defer_tried = 1;
    if (!r->m->defer_indexes || r->fetched > 0 || f == NULL || f->storage == NULL) return 0;
    if ((j = hv_calloc(1, sizeof(*j))) == NULL) return 0;
    j->r = r;
    j->t0 = hv_now_ms();
    if (hv_storage_submit(f->storage, defer_run, defer_done, j) != HV_OK) {
        hv_free(j);
        return 0;
    }
    return 1;
}

static int restore_run(hv_db_t *db, void *arg) {
    (void)arg;
    return hv__import_restore_indexes_job(db);
}

static void restore_done(int status, void *arg) {
    defer_job_t *j = arg;
    hv__ehr_run_t *r = j->r;
    void (*next)(hv__ehr_run_t *r) = j->next;
    uint64_t t0 = j->t0;
    hv_logrec_t *lr;
    hv_free(j);
    if (status == HV_OK) hv__search_values_deferred(-1); /* committed: the hints name them again */
    if (r->m->stopping) return; /* resumed at the next start, after the store's opening built them */
    if (status == HV_OK) {
        lr = hv_log_begin(HV_LOG_INFO, "ehr.sync.indexes_built");
        if (lr) {
            hv_log_str(lr, "run", r->id);
            hv_log_int(lr, "ms", (int64_t)(hv_now_ms() - t0));
            hv_log_end(lr);
        }
    } else {
        /* Left in import_deferred: the store answers the same, and its next opening builds them. */
        hv__ehr_run_error(r, "store", "building the search indexes this sync deferred failed: %s (they are built "
                          "when the engine starts again)", hv_strerror(status));
    }
    r->deferred = 0;
    next(r);
}

void hv__ehr_bulk_restore(hv__ehr_run_t *r, void (*next)(hv__ehr_run_t *r)) {
    hv__fhir_t *f = hv_engine_module_state(r->m->e, "fhir");
    defer_job_t *j = hv_calloc(1, sizeof(*j));
    if (j != NULL && f != NULL && f->storage != NULL) {
        j->r = r;
        j->next = next;
        j->t0 = hv_now_ms();
        if (hv_storage_submit(f->storage, restore_run, restore_done, j) == HV_OK) return;
    }
    hv_free(j);
    hv__ehr_run_error(r, "store", "the search indexes this sync deferred could not be built now: they are built "
                      "when the engine starts again");
    r->deferred = 0;
    next(r);
}

/* ---- import ---- */

/* A chunk of an output file, read and prepared (write.c step 1) ahead of its write. What it
 * found — its lines, unreadable lines, a truncated end — is applied to the run only when it
 * is written, so that a checkpoint never counts a chunk that is not in the store (a resumed
 * run reads it again). */
struct hv__ehr_chunk {
    hv__ehr_batch_t *b; /* its resources; NULL: the file had no more lines */
    int64_t lines;      /* lines it took from the file */
    int unreadable;     /* a line was not a JSON resource */
    int truncated;      /* the file's last line stops mid-resource */
    struct hv__ehr_chunk *next;
};

/* The output file being imported and its chunks, read, parsed and prepared ahead in the libuv
 * thread pool (uv_queue_work), one chunk at a time in file order, up to FEED_AHEAD chunks
 * ahead of the one being written: the loop thread only hands prepared chunks to the stores.
 *
 * Ownership. While a chunk is being read (busy), the pool thread alone touches fp, read,
 * skip and prep (copies of what preparing needs of the run: write.c hv__ehr_prep_t, with a
 * validator of its own); the loop thread touches them only when the feed is idle. The
 * ready list and the flags are the loop thread's. A run freed while its feed is busy leaves
 * it orphaned (r NULL): the work's completion, which uv_run always delivers, frees it. */
#define FEED_AHEAD 3
#define FEED_AHEAD_LINES 3000 /* and no more lines than this ready, once one chunk is */

struct hv__ehr_feed {
    uv_work_t req;
    hv__ehr_run_t *r;        /* NULL: orphaned */
    FILE *fp;
    size_t file;             /* the output file's index (messages) */
    int64_t skip;            /* lines to pass over first: already imported (a resumed run) */
    int64_t read;            /* lines of the file read */
    hv__ehr_prep_t prep;
    hv__ehr_chunk_t *made;   /* the chunk the work made; NULL when out of memory */
    hv__ehr_chunk_t *head, *tail; /* ready, in file order */
    size_t nready;
    size_t chunk;            /* lines per chunk */
    int busy, eof, broken;   /* a chunk is being read; the end was read; out of memory */
};

/* Lines in the next chunk: a quarter of what the run has fetched, between BULK_CHUNK and
 * ehr.bulk_chunk_max (default 2,500; 1,000 keeps chunks at 1,000). Why it grows: a chunk is
 * one store job, one commit, and a commit writes every page it changed to the WAL once; the
 * search tables' (type, id …) indexes take a random leaf per resource (the ids are the EHR's
 * UUIDs), so a chunk of 1,000 into a store of 100,000 rewrites a leaf per resource in each.
 * A larger chunk changes a shared leaf once: at 100,000 resources a Bulk sync with chunks
 * growing to 2,500 ran 1.25x as fast on 0.87x the CPU (docs/performance.md, "EHR sync,
 * session 14"). It was a setting off by default while a prepared resource held its json-c
 * tree (2,500 peaked at 1.2 GiB resident against 0.7 at 1,000); chunks now hold text and rows
 * (write.c text_only, chunk_read), and 2,500 peaks below what 1,000 did ("session 15").
 * A run starts with small chunks, because the first chunk's write waits for its whole
 * preparation. HOLOVITALS_EHR_BULK_CHUNK (tests) overrides the bounds: "N" fixes chunks at N
 * lines, which lets a test have many chunks in flight with few resources; "A-B" grows them
 * from A to B (1–100,000 each). Called on the loop thread. */
static size_t chunk_lines(const hv__ehr_run_t *r) {
    static long test_lo = -1, test_hi; /* HOLOVITALS_EHR_BULK_CHUNK's bounds; test_lo 0: unset */
    uint64_t done = r->fetched > 0 ? (uint64_t)r->fetched : 0;
    if (test_lo < 0) {
        const char *v = getenv("HOLOVITALS_EHR_BULK_CHUNK");
        char *end = NULL;
        long a = v != NULL ? strtol(v, &end, 10) : 0, b = a;
        if (v != NULL && *end == '-') b = strtol(end + 1, &end, 10);
        test_lo = v != NULL && *end == '\0' && a >= 1 && b >= a && b <= 100000 ? a : 0;
        test_hi = b;
    }
    if (test_lo > 0) return (size_t)hv_batch_grown(done, (uint64_t)test_lo, (uint64_t)test_hi);
    return (size_t)hv_batch_grown(done, BULK_CHUNK, (uint64_t)r->m->bulk_chunk_max);
}

static void chunk_free(hv__ehr_chunk_t *k) {
    if (k == NULL) return;
    hv__ehr_batch_free(k->b);
    hv_free(k);
}

static void feed_free(hv__ehr_feed_t *fd) {
    hv__ehr_chunk_t *k;
    while ((k = fd->head) != NULL) {
        fd->head = k->next;
        chunk_free(k);
    }
    chunk_free(fd->made);
    if (fd->fp) fclose(fd->fp);
    hv__ehr_prep_clear(&fd->prep);
    hv_free(fd);
}

/* Lets go of a feed: freed now, or when its work ends (feed_done). */
static void feed_release(hv__ehr_feed_t *fd) {
    if (fd == NULL) return;
    if (fd->busy) fd->r = NULL;
    else feed_free(fd);
}

void hv__ehr_bulk_release(hv__ehr_run_t *r) {
    hv__ehr_feed_t *fd = r->bulk_feed;
    if (fd == NULL) return;
    r->bulk_feed = NULL;
    r->bulk_waiting = 0;
    feed_release(fd);
}

/* Reads up to fd->chunk resources from the feed's file and prepares them, each as soon as it
 * is parsed: with the feed's text_only preparation one json-c tree is alive at a time, not
 * a chunk's (a chunk of 2,500 ExplanationOfBenefit lines parsed whole was ~250 MB of trees).
 * NULL when out of memory. A line that is not JSON is a failed resource of the chunk, with its
 * file and line number. Runs in the thread pool: it touches only the feed's own fields (above). */
static hv__ehr_chunk_t *chunk_read(hv__ehr_feed_t *fd) {
    hv__ehr_chunk_t *k = hv_calloc(1, sizeof(*k));
    char *line = NULL;
    size_t cap = 0, n = 0;
    ssize_t got;
    if (k == NULL) goto fail;
    while (n < fd->chunk && (got = getline(&line, &cap, fd->fp)) >= 0) {
        json_object *res = NULL;
        size_t len = (size_t)got;
        int complete = len > 0 && line[len - 1] == '\n';
        k->lines++;
        fd->read++;
        /* A chunk that took a line has a batch, even of no resource: no batch means the end. */
        if (k->b == NULL && (k->b = hv__ehr_batch_new(&fd->prep, fd->chunk)) == NULL) goto fail;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) len--;
        if (len == 0) continue;
        if (len <= LINE_MAX_BYTES && hv_json_parse(line, len, "ndjson", &res, NULL) == HV_OK &&
            json_object_is_type(res, json_type_object)) {
            hv__ehr_batch_add(&fd->prep, k->b, res);
            n++;
            continue;
        }
        json_object_put(res);
        k->unreadable = 1; /* a resource of unknown id: no reconciliation (it might be any) */
        if (!complete) {
            /* The last line stops mid-resource: the file was cut short, so the run is not complete. */
            k->truncated = 1;
            hv__ehr_batch_fail(k->b, "bulk", "output file %zu is truncated: line %lld ends mid-resource", fd->file,
                               (long long)fd->read);
        } else {
            hv__ehr_batch_fail(k->b, "bulk", "output file %zu line %lld is not a JSON resource", fd->file,
                               (long long)fd->read);
        }
    }
    hv_free(line);
    return k;
fail:
    hv_free(line);
    chunk_free(k);
    return NULL;
}

/* Thread pool: passes over the lines a resumed run imported already, then reads a chunk. */
static void feed_work(uv_work_t *req) {
    hv__ehr_feed_t *fd = req->data;
    char *line = NULL;
    size_t cap = 0;
    for (; fd->skip > 0; fd->skip--) {
        if (getline(&line, &cap, fd->fp) < 0) break;
        fd->read++;
    }
    fd->skip = 0;
    hv_free(line);
    fd->made = chunk_read(fd);
}

static void feed_more(hv__ehr_feed_t *fd);
static void feed_next(hv__ehr_run_t *r);

/* Loop thread: the work's chunk joins the ready list; the import goes on if it waited for it. */
static void feed_done(uv_work_t *req, int status) {
    hv__ehr_feed_t *fd = req->data;
    hv__ehr_chunk_t *k = fd->made;
    hv__ehr_run_t *r = fd->r;
    (void)status; /* the work is never cancelled (uv_cancel is not called) */
    fd->busy = 0;
    fd->made = NULL;
    if (r == NULL) {
        chunk_free(k);
        feed_free(fd);
        return;
    }
    if (k == NULL) {
        fd->broken = 1;
    } else {
        if (k->b == NULL) fd->eof = 1;
        if (fd->tail) fd->tail->next = k;
        else fd->head = k;
        fd->tail = k;
        fd->nready++;
    }
    if (r->m->stopping) return; /* resumed from the checkpoint at the next start */
    feed_more(fd);
    if (fd->eof) feed_next(r);
    if (r->bulk_waiting && fd == r->bulk_feed) {
        r->bulk_waiting = 0;
        import_chunk(r);
    }
}

/* Starts reading the next chunk unless one is being read, the end or FEED_AHEAD chunks (or
 * FEED_AHEAD_LINES lines) are ready. The preparation follows the run's current rows_lazy (write.c). */
static void feed_more(hv__ehr_feed_t *fd) {
    hv__ehr_run_t *r = fd->r;
    if (fd->busy || fd->eof || fd->broken || fd->nready >= FEED_AHEAD || r->m->stopping) return;
    /* Lines ahead are bounded too when chunks grow (chunk_lines): prepared resources are held
     * until written (chunks of 5,000 three deep peaked at 1.8 GiB at 100,000 while they held
     * their trees). Chunks of 1,000 stay FEED_AHEAD deep. */
    if (fd->nready > 0 && fd->nready * fd->chunk >= FEED_AHEAD_LINES) return;
    fd->prep.rows_lazy = r->rows_lazy;
    fd->chunk = chunk_lines(r);
    fd->req.data = fd;
    if (uv_queue_work(hv_engine_loop(r->m->e), &fd->req, feed_work, feed_done) != 0) {
        fd->broken = 1;
        return;
    }
    fd->busy = 1;
}

/* Opens output file idx, its first skip lines to be passed over. */
static hv__ehr_feed_t *feed_open(hv__ehr_run_t *r, size_t idx, int64_t skip) {
    char path[4200];
    hv__ehr_feed_t *fd = hv_calloc(1, sizeof(*fd));
    if (fd == NULL) return NULL;
    fd->r = r;
    fd->file = idx;
    fd->skip = skip;
    if (hv__ehr_prep_init(&fd->prep, r, 1) != HV_OK) {
        hv_free(fd);
        return NULL;
    }
    /* The chunks ready and the one written hold text, not trees (write.c). */
    fd->prep.text_only = 1;
    file_path(r, idx, path, sizeof(path));
    if ((fd->fp = fopen(path, "rb")) == NULL) {
        hv__ehr_run_error(r, "bulk", "output file %zu is missing: %s", idx, strerror(errno));
        feed_free(fd);
        return NULL;
    }
    return fd;
}

enum { W_IDLE = 0, W_CALLING, W_FLIGHT, W_DONE_EARLY };

static void chunk_written(hv__ehr_run_t *r, int status) {
    (void)status;
    if (r->bulk_writing == W_CALLING) {
        /* Ended inside hv__ehr_batch_write (a failure before any job): import_chunk goes on. */
        r->bulk_writing = W_DONE_EARLY;
        return;
    }
    r->bulk_writing = W_IDLE;
    hv__ehr_run_checkpoint(r, import_chunk);
}

/* Writes the feed's next chunk (one store job, write.c), or waits for it; at the file's end
 * moves to the next file. Called with no chunk's write in flight. */
static void import_chunk(hv__ehr_run_t *r) {
    hv__ehr_feed_t *fd;
    hv__ehr_chunk_t *k;
    hv__ehr_batch_t *b;
    if (r->m->stopping) return;
    if (r->bulk_feed == NULL) {
        /* A file's start: its feed opened ahead (feed_next), or now. */
        hv_logrec_t *lr;
        int opened_ahead = r->bulk_next != NULL && r->bulk_next->file == r->bulk_file && r->bulk_line == 0;
        if (opened_ahead) {
            r->bulk_feed = r->bulk_next;
            r->bulk_next = NULL;
        } else {
            feed_release(r->bulk_next); /* one that is not this file's */
            r->bulk_next = NULL;
            if ((r->bulk_feed = feed_open(r, r->bulk_file, r->bulk_line)) == NULL) {
                bulk_fail(r);
                return;
            }
        }
        if ((lr = hv_log_begin(HV_LOG_DEBUG, "ehr.bulk.file")) != NULL) {
            hv_log_str(lr, "run", r->id);
            hv_log_int(lr, "file", (int64_t)r->bulk_file);
            hv_log_int(lr, "downloaded_ahead", r->bulk_got_ahead);
            hv_log_int(lr, "opened_ahead", opened_ahead);
            hv_log_int(lr, "chunks_ready", (int64_t)r->bulk_feed->nready);
            hv_log_end(lr);
        }
        r->bulk_got_ahead = 0;
        download_ahead(r);
    }
    fd = r->bulk_feed;
    if ((k = fd->head) == NULL) {
        if (fd->broken) {
            hv__ehr_run_error(r, "bulk", "output file %zu could not be read: out of memory", r->bulk_file);
            bulk_fail(r);
            return;
        }
        feed_more(fd);
        r->bulk_waiting = 1; /* feed_done goes on */
        return;
    }
    /* The first chunk waits for the deferral's decision; the feed reads on meanwhile. */
    if (k->b != NULL && defer_indexes(r)) return;
    fd->head = k->next;
    if (fd->head == NULL) fd->tail = NULL;
    fd->nready--;
    if (k->b == NULL) {
        chunk_free(k);
        hv__ehr_bulk_release(r);
        r->bulk_file++;
        r->bulk_line = 0;
        hv__ehr_run_checkpoint(r, hv__ehr_bulk_step);
        return;
    }
    r->bulk_line += k->lines;
    if (k->unreadable) r->unreadable = 1;
    if (k->truncated) r->page_failed = 1;
    b = k->b;
    hv_free(k);
    /* While the stores write it, the next chunks are read, parsed and prepared in the pool. */
    feed_more(fd);
    r->bulk_writing = W_CALLING;
    hv__ehr_batch_write(r, b, chunk_written);
    if (r->bulk_writing == W_DONE_EARLY) {
        r->bulk_writing = W_IDLE;
        hv__ehr_run_checkpoint(r, import_chunk);
        return;
    }
    r->bulk_writing = W_FLIGHT;
}

/* ---- download ---- */

/* The output file r->bulk_file is on disk: imported (or, a "deleted" file, left for the end). */
static void downloaded(hv__ehr_run_t *r) {
    r->bulk_line = 0;
    if (is_deleted_file(r, r->bulk_file)) {
        /* Read at the end, once every output is in (bulk_done). */
        r->bulk_file++;
        hv__ehr_run_checkpoint(r, hv__ehr_bulk_step);
        return;
    }
    import_chunk(r);
}

static void on_download(void *ud, hv__ehr_resp_t *resp) {
    hv__ehr_run_t *r = ud;
    if (resp->status == HV_ECLOSED) return;
    if (resp->status != HV_OK || resp->code != 200) {
        hv__ehr_run_error(r, "bulk", "output file %zu was not downloaded: %s", r->bulk_file,
                          resp->status != HV_OK ? resp->error : "HTTP error");
        bulk_fail(r);
        return;
    }
    downloaded(r);
}

/* Asks for output file idx into its file under the run's directory (HV_ENOTFOUND: the
 * manifest gives it no url). */
static int call_download(hv__ehr_run_t *r, size_t idx, int retry, hv__ehr_call_cb cb, void *ud) {
    json_object *o = json_object_array_get_idx(r->bulk_outputs, idx);
    const char *url = o ? hv_json_get_str(o, "url") : NULL;
    char dir[4096], path[4200];
    hv__ehr_req_t q;
    if (url == NULL) return HV_ENOTFOUND;
    snprintf(dir, sizeof(dir), "%s/ehr-bulk", hv_engine_data_dir(r->m->e));
    mkdir(dir, 0700);
    snprintf(dir, sizeof(dir), "%s/ehr-bulk/%s", hv_engine_data_dir(r->m->e), r->id);
    mkdir(dir, 0700);
    file_path(r, idx, path, sizeof(path));
    memset(&q, 0, sizeof(q));
    q.url = url;
    q.accept = "application/fhir+ndjson";
    q.bearer = r->c->token;
    q.sink_path = path;
    q.retry = retry;
    q.no_verify_tls = !r->c->verify_tls;
    q.rate_slot = &r->c->rate_slot;
    q.rate_interval_ms = r->c->rate > 0 ? (uint64_t)(1000.0 / r->c->rate) : 0;
    return hv__ehr_call(r->m->http, &q, cb, ud);
}

/* ---- the next output file, downloaded ahead ----
 *
 * While output file i is imported, file i + 1 is downloaded (one file ahead), so that the
 * import goes on to the next file without waiting for its download, the stores idle
 * meanwhile (docs/performance.md, "EHR sync, session 20"; feed_next opens its feed ahead
 * too). The run's checkpoint (bulk_file, bulk_line) still names the file being imported and
 * counts its written chunks only, so a run killed or stopped meanwhile downloads and reads
 * the next file again when it gets there. A failed download ahead is no error: the file is
 * downloaded again, the ordinary way (with its retry), when its turn comes. */

enum { DL_FLIGHT = 0, DL_DONE, DL_FAILED };

typedef struct hv__ehr_dl {
    hv__ehr_run_t *r; /* NULL once the run let go of it: freed when its call ends */
    size_t file;      /* the output file's index */
    int state;        /* DL_* */
    int waiting;      /* the run reached the file while it was in flight */
    char *discard;    /* the file to remove when its call ends (its run failed), or NULL */
} hv__ehr_dl_t;

static void dl_drop(hv__ehr_run_t *r) {
    hv__ehr_dl_t *dl = r->bulk_dl;
    if (dl == NULL) return;
    r->bulk_dl = NULL;
    if (dl->state == DL_FLIGHT) dl->r = NULL;
    else hv_free(dl);
}

/* Lets go of the download ahead, its file removed once its call ends (one in flight is
 * still being written: cleanup_files removes the others). */
static void dl_discard(hv__ehr_run_t *r) {
    hv__ehr_dl_t *dl = r->bulk_dl;
    char path[4200];
    if (dl != NULL && dl->state == DL_FLIGHT) {
        file_path(r, dl->file, path, sizeof(path));
        dl->discard = hv_strdup(path); /* out of memory: left behind, as before */
    }
    dl_drop(r);
}

void hv__ehr_bulk_drop_ahead(hv__ehr_run_t *r) {
    dl_drop(r);
    feed_release(r->bulk_next);
    r->bulk_next = NULL;
}

/* Once the file being imported is read to its end and the next one is downloaded, the next
 * one's feed is opened: its first chunks are read and prepared while this file's last ones
 * are written (on main the import waited for the first chunk's whole preparation at each
 * file, 0.1-0.7 s, the stores idle). Still one pool work at a time: this file's feed has no
 * more to read. import_chunk takes it over when the run gets to the file. */
static void feed_next(hv__ehr_run_t *r) {
    hv__ehr_feed_t *fd = r->bulk_feed;
    hv__ehr_dl_t *dl = r->bulk_dl;
    if (r->bulk_next != NULL || fd == NULL || !fd->eof || dl == NULL || dl->state != DL_DONE ||
        dl->file != r->bulk_file + 1 || is_deleted_file(r, dl->file) || r->m->stopping)
        return;
    if ((r->bulk_next = feed_open(r, dl->file, 0)) != NULL) feed_more(r->bulk_next);
}

static void download(hv__ehr_run_t *r, int status);

static void on_ahead(void *ud, hv__ehr_resp_t *resp) {
    hv__ehr_dl_t *dl = ud;
    hv__ehr_run_t *r = dl->r;
    if (r == NULL) {
        if (dl->discard != NULL) {
            char *slash = strrchr(dl->discard, '/');
            unlink(dl->discard);
            *slash = '\0';
            rmdir(dl->discard); /* the run's directory, empty once its last file is gone */
        }
        hv_free(dl->discard);
        hv_free(dl);
        return;
    }
    dl->state = resp->status == HV_OK && resp->code == 200 ? DL_DONE : DL_FAILED;
    if (resp->status == HV_ECLOSED) return; /* stopping */
    if (!dl->waiting) {
        feed_next(r); /* not its turn yet */
        return;
    }
    dl->waiting = 0;
    download(r, HV_OK); /* finds it done, or asks for it again */
}

/* Starts downloading the output file after r->bulk_file, unless that is done already. */
static void download_ahead(hv__ehr_run_t *r) {
    size_t next = r->bulk_file + 1;
    hv__ehr_dl_t *dl;
    if (r->bulk_dl != NULL && r->bulk_dl->file == next) return;
    dl_drop(r);
    if (r->bulk_outputs == NULL || next >= json_object_array_length(r->bulk_outputs)) return;
    if ((dl = hv_calloc(1, sizeof(*dl))) == NULL) return; /* downloaded when its turn comes */
    dl->r = r;
    dl->file = next;
    dl->state = DL_FLIGHT;
    if (call_download(r, next, 0, on_ahead, dl) != HV_OK) {
        hv_free(dl);
        return;
    }
    r->bulk_dl = dl;
}

static void download(hv__ehr_run_t *r, int status) {
    hv__ehr_dl_t *dl = r->bulk_dl;
    if (status == HV_ECLOSED) return;
    if (status != HV_OK) {
        bulk_fail(r);
        return;
    }
    if (dl != NULL && dl->file == r->bulk_file && dl->state == DL_FLIGHT) {
        dl->waiting = 1; /* on_ahead goes on */
        r->bulk_got_ahead = 1;
        return;
    }
    if (dl != NULL && dl->file == r->bulk_file && dl->state == DL_DONE) {
        dl_drop(r);
        r->bulk_got_ahead = 1;
        downloaded(r);
        return;
    }
    dl_drop(r);
    r->bulk_got_ahead = 0;
    if (call_download(r, r->bulk_file, 1, on_download, r) == HV_ENOTFOUND) {
        hv__ehr_run_error(r, "bulk", "output %zu of the manifest has no url", r->bulk_file);
        r->bulk_file++;
        hv__ehr_bulk_step(r);
    }
}

/* ---- kick-off and polling ---- */

static void poll_status(hv__ehr_run_t *r, int status);

static void on_status(void *ud, hv__ehr_resp_t *resp) {
    hv__ehr_run_t *r = ud;
    json_object *man = NULL, *out = NULL, *errs = NULL;
    if (resp->status == HV_ECLOSED) return;
    if (resp->status == HV_OK && resp->code == 202) {
        int64_t ra = resp->retry_after[0] ? hv_ehr_retry_after_ms(resp->retry_after, hv_now_ms()) : -1;
        hv__ehr_req_t q;
        if (ra < 0) ra = (int64_t)r->m->bulk_poll_ms;
        if ((uint64_t)ra > r->m->max_retry_after_ms) ra = (int64_t)r->m->max_retry_after_ms;
        /* A long export: the polls keep the connection's lease (lease.c) from running out. */
        if (r->leased && hv_now_ms() - r->lease_saved_ms > r->m->lease_ttl_ms / 3)
            (void)hv__ehr_run_save(r, "running", NULL, NULL);
        memset(&q, 0, sizeof(q));
        q.url = r->bulk_status_url;
        q.bearer = r->c->token;
        q.retry = 1;
        q.no_verify_tls = !r->c->verify_tls;
        q.delay_ms = (uint64_t)ra;
        if (hv__ehr_call(r->m->http, &q, on_status, r) != HV_OK) return;
        return;
    }
    if (resp->status == HV_OK && resp->code == 401 && !r->auth_retried) {
        r->auth_retried = 1;
        hv__ehr_token_drop(r->c);
        hv__ehr_token_get(r, poll_status);
        return;
    }
    if (resp->status != HV_OK || resp->code != 200 ||
        hv_json_parse(resp->body.data, resp->body.len, "manifest", &man, NULL) != HV_OK ||
        !json_object_object_get_ex(man, "output", &out) || !json_object_is_type(out, json_type_array)) {
        hv__ehr_run_error(r, "bulk", "the export status answered %s%ld without a manifest",
                          resp->status != HV_OK ? resp->error : "HTTP ", resp->status != HV_OK ? 0L : resp->code);
        json_object_put(man);
        bulk_fail(r);
        return;
    }
    r->auth_retried = 0;
    if (json_object_object_get_ex(man, "error", &errs) && json_object_is_type(errs, json_type_array) &&
        json_object_array_length(errs) > 0)
        hv__ehr_run_error(r, "bulk", "the server reported %zu error file(s) with its export",
                          json_object_array_length(errs));
    json_object_put(r->bulk_outputs);
    r->bulk_outputs = json_object_get(out);
    {
        /* The manifest's "deleted" files (an export with _since) go after the outputs, marked:
         * they are downloaded like them and read at the end (bulk_done). */
        json_object *del = NULL, *d;
        size_t i;
        if (json_object_object_get_ex(man, "deleted", &del) && json_object_is_type(del, json_type_array))
            for (i = 0; i < json_object_array_length(del); i++) {
                const char *url = hv_json_get_str(json_object_array_get_idx(del, i), "url");
                if (url == NULL || (d = json_object_new_object()) == NULL) continue;
                hv_json_set_str(d, "type", "Bundle");
                hv_json_set_str(d, "url", url);
                hv_json_set(d, "deleted", json_object_new_boolean(1));
                json_object_array_add(r->bulk_outputs, d);
            }
    }
    json_object_put(man);
    r->bulk_file = 0;
    r->bulk_line = 0;
    hv__ehr_run_checkpoint(r, hv__ehr_bulk_step);
}

static void poll_status(hv__ehr_run_t *r, int status) {
    hv__ehr_req_t q;
    if (status == HV_ECLOSED) return;
    if (status != HV_OK) {
        bulk_fail(r);
        return;
    }
    memset(&q, 0, sizeof(q));
    q.url = r->bulk_status_url;
    q.bearer = r->c->token;
    q.retry = 1;
    q.no_verify_tls = !r->c->verify_tls;
    (void)hv__ehr_call(r->m->http, &q, on_status, r);
}

static void on_kickoff(void *ud, hv__ehr_resp_t *resp) {
    hv__ehr_run_t *r = ud;
    if (resp->status == HV_ECLOSED) return;
    if (resp->status != HV_OK || resp->code != 202 || resp->content_location[0] == '\0') {
        hv__ehr_run_error(r, "bulk", "the export kick-off answered %s%ld (expected 202 with Content-Location)",
                          resp->status != HV_OK ? resp->error : "HTTP ", resp->status != HV_OK ? 0L : resp->code);
        bulk_fail(r);
        return;
    }
    r->bulk_status_url = hv_strdup(resp->content_location);
    if (r->bulk_status_url == NULL) {
        bulk_fail(r);
        return;
    }
    hv__ehr_run_checkpoint(r, hv__ehr_bulk_step);
}

static void kickoff(hv__ehr_run_t *r, int status) {
    hv__ehr_conn_t *c = r->c;
    hv_buf_t u;
    hv__ehr_req_t q;
    size_t i;
    if (status == HV_ECLOSED) return;
    if (status != HV_OK) {
        bulk_fail(r);
        return;
    }
    if (c->group_id == NULL && strcmp(c->vendor->bulk_level, "group") == 0) {
        hv__ehr_run_error(r, "bulk", "%s exports per Group: set the connection's group_id", c->vendor->display);
        bulk_fail(r);
        return;
    }
    hv_buf_init(&u, 8192);
    if (c->group_id != NULL) hv_buf_printf(&u, "%s/Group/%s/$export?_type=", c->base_url, c->group_id);
    else if (strcmp(c->vendor->bulk_level, "patient") == 0) hv_buf_printf(&u, "%s/Patient/$export?_type=", c->base_url);
    else hv_buf_printf(&u, "%s/$export?_type=", c->base_url);
    for (i = 0; i < json_object_array_length(c->types); i++)
        hv_buf_printf(&u, "%s%s", i ? "," : "", json_object_get_string(json_object_array_get_idx(c->types, i)));
    if (c->since_ms > 0 && r->since_ms > 0) {
        char ts[40];
        hv_time_rfc3339((uint64_t)r->since_ms, ts, sizeof(ts));
        hv_buf_printf(&u, "&_since=%s", ts);
    }
    memset(&q, 0, sizeof(q));
    q.url = u.data;
    q.bearer = c->token;
    q.prefer = "respond-async";
    q.retry = 1;
    q.no_verify_tls = !c->verify_tls;
    q.rate_slot = &c->rate_slot;
    q.rate_interval_ms = c->rate > 0 ? (uint64_t)(1000.0 / c->rate) : 0;
    if (u.data == NULL || hv__ehr_call(r->m->http, &q, on_kickoff, r) != HV_OK) {
        hv_buf_release(&u);
        return;
    }
    hv_buf_release(&u);
}

void hv__ehr_bulk_step(hv__ehr_run_t *r) {
    if (r->m->stopping) return;
    if (r->bulk_status_url == NULL) {
        hv__ehr_token_get(r, kickoff);
        return;
    }
    if (r->bulk_outputs == NULL) {
        hv__ehr_token_get(r, poll_status);
        return;
    }
    if (r->bulk_file >= json_object_array_length(r->bulk_outputs)) {
        bulk_done(r);
        return;
    }
    if (r->bulk_line > 0 || r->bulk_feed != NULL) {
        import_chunk(r);
        return;
    }
    hv__ehr_token_get(r, download);
}
