/*
 * storage.c — the storage thread: durable writes off the loop thread, with group
 * commit.
 *
 * The loop thread submits jobs; one storage thread per hv_storage_t runs them
 * against its own connection. The thread takes every job waiting (up to
 * max_batch) and runs them in one transaction:
 *
 *   BEGIN
 *     SAVEPOINT hv_job; job 1                            (job 1 succeeded)
 *     RELEASE hv_job; SAVEPOINT hv_job; job 2; ROLLBACK TO hv_job  (job 2 failed: undone alone)
 *     RELEASE hv_job; SAVEPOINT hv_job; job 3
 *     …
 *   COMMIT                                               (one fsync for the batch)
 *
 * so one fsync covers many jobs, and the more jobs arrive while a commit is on
 * disk, the bigger the next batch: throughput grows with load while a lone job
 * still commits at once (no timer, no added latency). If BEGIN, a savepoint
 * command or COMMIT fails, the transaction is rolled back and every job of the
 * batch that had not failed on its own gets that error.
 *
 * Re-runnable jobs (hv_storage_submit_rerun) skip their savepoint: a savepoint
 * costs more than the small write it guards — SQLite copies every page the job
 * changes into the sub-journal (on the FHIR store, where temp_store=FILE, with
 * two pwrite calls per page: ~15 pages per created resource), PostgreSQL a
 * round trip. The leading run of re-runnable jobs in a batch runs bare:
 *
 *   BEGIN; job 1; job 2; …; job k; SAVEPOINT hv_job; job k+1 (not re-runnable); …
 *
 * and when one of those bare jobs fails, nothing can undo it alone, so the whole
 * transaction is rolled back and the batch runs again from its first job in the
 * safe form above (a savepoint per job): the failing job is undone alone as
 * always, the others are stored. A re-runnable job therefore may run twice; its
 * first run's database effects are gone when it runs again, and it must leave
 * nothing outside the database that a second run would get wrong. No job's done
 * callback runs before the batch's final COMMIT.
 *
 * Deferred writes (hv_storage_submit_deferring, hv_storage_set_flush): a re-runnable job
 * that runs bare may leave part of its writes to the storage's flush callback, which
 * writes what a run of such jobs left in one go (the FHIR store: their search-index
 * rows, one INSERT per table for all of them). The flush runs before the first job of
 * the batch that is not such a job — it may read what they write — and before COMMIT:
 *
 *   BEGIN; job 1; job 2 (both deferring); flush; job 3; job 4 (deferring); flush; COMMIT
 *
 * A deferring job that must read them itself (a search over the index) writes them first
 * with hv_storage_flush_deferred. A failing flush counts as a failing bare job: the
 * transaction is rolled back, what was deferred is discarded (the callback with discard
 * set), and the batch runs again in the safe form, where nothing is deferred and each job
 * writes everything itself, so a job that fails is still undone alone.
 *
 * Results go back to the loop thread through one uv_async_t; its callback calls
 * each job's done callback in submission order. Jobs live in a queue of at most
 * max_queue slots, indexed by four running counters:
 *
 *   delivered <= finished <= taken <= submitted <= submitted + staged
 *   [delivered, finished)  committed or failed, done callback not yet called
 *   [finished, taken)      in the storage thread's current batch
 *   [taken, submitted)     waiting
 *   [submitted, +staged)   submitted during this turn of the loop, handed over at its
 *                          end (hand_over): the storage thread does not see them yet
 *
 * except that a storage thread with nothing to do gets the turn's jobs as they are
 * submitted ("streaming", until the turn's hand_over) and runs them in one batch that
 * stays open, taking each as it comes, until the turn ends; then it commits. The
 * turn's jobs still make one commit, and the thread runs them while the loop is still
 * parsing the turn's other requests instead of waiting for the turn to end.
 *
 * submitted, staged and delivered move on the loop thread, taken and finished on the
 * storage thread, all under the mutex; a slot's fields are written by one side
 * before the counter that hands it to the other moves, so the mutex orders them.
 * The async handle is referenced only while some job is outstanding, so a loop
 * with nothing else to do returns from uv_run once every done callback has run.
 *
 * The slots come in chunks of CHUNK_SLOTS: job n is slot n % CHUNK_SLOTS of chunk
 * n / CHUNK_SLOTS, found in a ring of chunk pointers (chunk c at c % nchunks). The
 * loop thread allocates a chunk when the first job lands in it (submit, under the
 * mutex, before the counter that hands the job over moves) and frees it once every
 * job in it is delivered, keeping one spare for the next, so a storage holds only the
 * chunks its outstanding jobs occupy: a few kilobytes at rest instead of max_queue
 * slots (2.6 MB for channels.store_queue's 65,536), whatever the allocator and however
 * many jobs have passed. Chunks never move: the storage thread reads the slots it was
 * handed without the mutex. nchunks exceeds max_queue / CHUNK_SLOTS + 1, so a chunk
 * pointer's place is reused only after its last chunk was delivered. A chunk that
 * cannot be allocated makes the submission HV_EBUSY, as a full queue does.
 *
 * Pipelined commits (hv_storage_pipeline, SQLite with synchronous FULL only): the
 * storage thread commits each batch without fsync (synchronous=OFF) and goes on with
 * the next batch at once, while a sync thread makes the committed batches durable
 * with one fdatasync of the -wal file; only then does it move finished, so no done
 * callback runs before its batch is on disk. One fdatasync covers every batch
 * committed before it started. The storage thread checkpoints between batches, with
 * full syncs, whenever the WAL has grown past checkpoint_pages frames; why this is as
 * durable as FULL is written down in engine/db_sqlite.c. A batch does not start while
 * fewer jobs wait than the fdatasync in flight covers (hold_back). The counters gain
 * one more step:
 *
 *   delivered <= finished <= committed <= taken <= submitted
 *   [finished, committed)  committed (or failed), waiting for the WAL's fdatasync
 *
 * If an fdatasync fails, whether the batches are on disk is unknown (Linux may have
 * dropped the dirty pages), so like PostgreSQL's data_sync_retry=off the storage stops
 * trusting the file: those batches' jobs and every later job fail with HV_EIO.
 */
#include "config.h"
#include "engine/engine_int.h"
#include "engine/db_int.h"

#include <string.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* Names the calling thread (top -H, perf, /proc/PID/task/TID/comm): diagnostics only. */
static void name_thread(const char *name) {
#ifdef __linux__
    (void)prctl(PR_SET_NAME, name, 0, 0, 0);
#else
    (void)name;
#endif
}

/* Slots per chunk (a power of two: 256 slots are 10 KB). */
#define CHUNK_SLOTS 256

typedef struct slot {
    hv_storage_job_cb job;
    hv_storage_done_cb done;
    void *arg;
    int status;
    int lazy; /* hv_storage_submit_lazy: need not be durable when done runs */
    int rerun; /* hv_storage_submit_rerun: may run twice, runs without a savepoint */
    int defer; /* hv_storage_submit_deferring: also may leave writes to the flush */
} slot_t;

struct hv_storage {
    uv_loop_t *loop;
    hv_db_t *db;
    uv_async_t async;
    uv_check_t check; /* hands the staged jobs over after the loop's I/O callbacks */
    uv_idle_t idle;   /* keeps the loop from blocking in poll while jobs are staged */
    int handles_open; /* loop thread: async, check and idle not yet closed */
    uv_thread_t thread;
    uv_mutex_t lock;
    uv_cond_t cond; /* signalled when there is work or when the thread must stop */
    slot_t **chunks; /* nchunks places, NULL where no outstanding job's chunk is */
    size_t nchunks;  /* a power of two, > cap / CHUNK_SLOTS + 1 */
    slot_t *spare;   /* loop thread: a delivered chunk kept for the next one */
    size_t cap, max_batch;
    uint64_t submitted, taken, finished, delivered;
    uint64_t staged; /* under lock, moved by the loop thread: jobs after submitted, not handed over */
    int stop;      /* under lock: the thread exits once nothing is waiting */
    int closing;   /* loop thread: hv_storage_free has begun */
    int referenced; /* loop thread: the async handle holds the loop open */
    int relaxed;    /* storage thread: synchronous is NORMAL for a batch of lazy jobs */
    int parked;     /* under lock: the storage thread waits, and no job waits for it */
    int streaming;  /* under lock: this loop turn's jobs go to the storage thread as submitted */
    size_t wants_more; /* under lock: the storage thread waits for streamed jobs to join its
                        * batch, which holds this many jobs (0: it does not wait for them) */
    hv_storage_stats_t stats; /* under lock */
    /* Pipelined commits (hv_storage_pipeline); wal is NULL when off. */
    hv__db_wal_t *wal;
    uv_thread_t sync_thread;
    uv_cond_t sync_cond;  /* signalled when committed moves or on stop */
    uint64_t committed;   /* under lock: jobs whose batch has committed, synced or not */
    int sync_stop;        /* under lock: the sync thread exits */
    int sync_failed;      /* under lock: an fdatasync failed; every job from then on fails */
    int ckpt_pages;       /* checkpoint once the WAL holds this many frames */
    hv_storage_flush_cb flush; /* hv_storage_set_flush, or NULL */
    void *flush_ud;
};

/* Storage thread: the storage whose job runs and may leave writes to its flush, else NULL. */
static _Thread_local hv_storage_t *deferring;

int hv_storage_deferring(void) { return deferring != NULL; }

int hv_storage_flush_deferred(hv_db_t *db) {
    return deferring != NULL ? deferring->flush(db, 0, deferring->flush_ud) : HV_OK;
}

/* Runs one transaction-control command. On SQLite the statement cache makes it a
 * step of an already prepared statement; on PostgreSQL it is one simple-query round trip. */
static int tx(hv_db_t *db, const char *sql) {
    hv_db_stmt_t *st = NULL;
    int rc;
    if (hv_db_kind(db) != HV_DB_SQLITE) return hv_db_exec(db, sql);
    rc = hv_db_prepare(db, sql, &st);
    if (rc == HV_OK) rc = hv_db_step(st);
    hv_db_done(st);
    return rc;
}

/*
 * Opens the savepoint of the next job, releasing the previous job's first (the
 * last one is released by COMMIT). On PostgreSQL both commands travel in one
 * round trip, which is most of a job's cost on a fast network.
 */
static int next_savepoint(hv_db_t *db, int first) {
    int rc;
    if (first) return tx(db, "SAVEPOINT hv_job");
    if (hv_db_kind(db) != HV_DB_SQLITE)
        return hv_db_exec(db, "RELEASE SAVEPOINT hv_job; SAVEPOINT hv_job");
    rc = tx(db, "RELEASE SAVEPOINT hv_job");
    if (rc == HV_OK) rc = tx(db, "SAVEPOINT hv_job");
    return rc;
}

static void log_batch_failure(hv_storage_t *s, const char *what, int rc, size_t jobs) {
    hv_logrec_t *r = hv_log_begin(HV_LOG_WARN, "storage.batch_failed");
    if (r == NULL) return;
    hv_log_str(r, "step", what);
    hv_log_str(r, "status", hv_strerror(rc));
    hv_log_int(r, "jobs", (int64_t)jobs);
    /* Database messages name constraints and tables; values stay out (see db_pg.c). */
    hv_log_str(r, "error", hv_db_errmsg(s->db));
    hv_log_end(r);
}

/* The place in the chunk ring of job n's chunk. */
static inline slot_t **chunk_place(const hv_storage_t *s, uint64_t n) {
    return &s->chunks[(size_t)(n / CHUNK_SLOTS) & (s->nchunks - 1)];
}

/* Job n's slot. Its chunk exists from the job's submission until its delivery. */
static inline slot_t *slot_at(const hv_storage_t *s, uint64_t n) {
    return &(*chunk_place(s, n))[n % CHUNK_SLOTS];
}

/*
 * A batch of lazy jobs only (hv_storage_submit_lazy) commits with synchronous NORMAL
 * when the database is FULL; the next batch with a durable job sets FULL again before
 * its BEGIN (SQLite refuses the pragma inside a transaction). In WAL mode that durable
 * commit's fsync of the log covers the lazy commits' frames before it. A failure to
 * switch leaves the mode as it was (durable: only slower).
 */
static void relax(hv_storage_t *s, uint64_t begin, uint64_t end) {
    const char *mode = hv__db_synchronous(s->db);
    uint64_t i;
    int lazy = 1;
    if (s->wal != NULL || strcmp(mode, "FULL") != 0) return; /* pipelined: OFF throughout */
    for (i = begin; i < end && lazy; i++) lazy = slot_at(s, i)->lazy;
    if (lazy == s->relaxed) return;
    if (lazy) {
        /* hv_db_set_synchronous would record NORMAL as the mode: call the backend. */
        if (s->db->ops->set_synchronous(s->db, "NORMAL") == HV_OK) s->relaxed = 1;
    } else if (s->db->ops->set_synchronous(s->db, "FULL") == HV_OK) {
        s->relaxed = 0;
    }
}

/*
 * One transaction on the storage thread. It holds the jobs [begin, end); those before
 * next have run. A batch can grow while it is open (batch_run with a larger end): the
 * jobs the loop thread streams to it during one turn (submit) join it until the turn
 * ends, and it commits once, after the last of them.
 */
typedef struct batch {
    uint64_t begin, end, next;
    size_t failed;      /* jobs that failed on their own (rolled back to their savepoint) */
    int guarded;        /* from here on every job runs in its own savepoint */
    int first_savepoint;
    int broken;         /* BEGIN or a savepoint command failed: the transaction is lost */
    int rerun;          /* a bare job failed: rolled back, the caller runs it again safe */
    int pending;        /* a deferring job ran since the last flush */
    int begun;          /* BEGIN succeeded */
    const char *what;   /* the step that broke it (log) */
} batch_t;

/* Opens a batch of [begin, end) with BEGIN. Unless safe is set, the leading
 * re-runnable jobs will run without savepoints. */
static void batch_open(hv_storage_t *s, batch_t *b, uint64_t begin, uint64_t end, int safe) {
    int rc;
    memset(b, 0, sizeof(*b));
    b->begin = b->next = begin;
    b->end = end;
    b->guarded = safe;
    b->first_savepoint = 1;
    b->what = "begin";
    relax(s, begin, end);
    rc = hv_db_begin(s->db);
    if (rc != HV_OK) b->broken = rc;
    else b->begun = 1;
}

/* After the rollback of a bare batch: the writes its jobs left to the flush are dropped. */
static void discard(hv_storage_t *s, batch_t *b) {
    if (b->pending) s->flush(s->db, 1, s->flush_ud);
    b->pending = 0;
}

/* Writes what the bare jobs before b->next left to the flush. Its failure is theirs: as
 * when a bare job fails, the transaction is rolled back and b->rerun set, so that each
 * job runs again in its own savepoint and writes everything itself. */
static int batch_flush(hv_storage_t *s, batch_t *b) {
    int rc;
    if (!b->pending) return HV_OK;
    b->pending = 0;
    rc = s->flush(s->db, 0, s->flush_ud);
    if (rc == HV_OK) rc = hv_db_flush(s->db); /* what it queued (hv_db_step_later) */
    if (rc == HV_OK) return HV_OK;
    hv_db_rollback(s->db);
    for (uint64_t j = b->begin; j < b->next; j++) slot_at(s, j)->status = HV_OK;
    b->rerun = 1;
    return rc;
}

/* Runs the batch's jobs that have not run yet, filling their status. When a bare
 * (re-runnable) job fails, rolls the transaction back and sets b->rerun: nothing else is
 * reported, the caller opens the batch again with safe set. */
static void batch_run(hv_storage_t *s, batch_t *b) {
    hv_db_t *db = s->db;
    int rc;
    for (; b->next < b->end && b->broken == HV_OK && !b->rerun; b->next++) {
        slot_t *sl = slot_at(s, b->next);
        int defer = !b->guarded && sl->defer && s->flush != NULL;
        /* Only jobs that may defer run while deferred writes wait: any other job may read
         * what they will write. */
        if (!defer && batch_flush(s, b) != HV_OK) break;
        /* From the first job that may not run twice on, every job has its savepoint. */
        if (!b->guarded && !sl->rerun) b->guarded = 1;
        if (b->guarded) {
            b->what = "savepoint";
            rc = next_savepoint(db, b->first_savepoint);
            b->first_savepoint = 0;
            if (rc != HV_OK) {
                b->broken = rc;
                break;
            }
        }
        deferring = defer ? s : NULL;
        sl->status = sl->job(db, sl->arg);
        deferring = NULL;
        if (sl->status >= 0) {
            /* What the job queued (hv_db_step_later) is its own: a failure fails it here. */
            int flushed = hv_db_flush(db);
            if (flushed != HV_OK) sl->status = flushed;
        }
        b->pending |= defer;
        if (sl->status > 0) sl->status = HV_OK;
        if (sl->status == HV_OK) continue;
        if (!b->guarded) {
            /* A bare job failed: only the whole transaction can undo it. */
            hv_db_rollback(db);
            discard(s, b);
            for (uint64_t j = b->begin; j <= b->next; j++) slot_at(s, j)->status = HV_OK;
            b->rerun = 1;
            break;
        }
        b->failed++;
        /* The savepoint stays after ROLLBACK TO; the next job releases it. */
        b->what = "rollback to savepoint";
        rc = tx(db, "ROLLBACK TO SAVEPOINT hv_job");
        if (rc != HV_OK) {
            b->broken = rc;
            break;
        }
    }
}

/* Commits the batch, whose jobs have all run. Returns the number of jobs that failed;
 * *tx_failed is set when the transaction itself failed: then nothing of the batch was
 * stored and every job that had not failed on its own, or had not run, gets that error. */
static size_t batch_close(hv_storage_t *s, batch_t *b, uint64_t *commit_ns, int *tx_failed) {
    size_t failed = 0;
    uint64_t i, t0;
    int rc;
    *commit_ns = 0;
    *tx_failed = 0;
    if (b->broken == HV_OK) {
        b->what = "commit";
        t0 = hv_mono_ns();
        rc = hv_db_commit(s->db);
        *commit_ns = hv_mono_ns() - t0;
        if (rc == HV_OK) return b->failed;
        b->broken = rc;
    }
    log_batch_failure(s, b->what, b->broken, (size_t)(b->end - b->begin));
    if (b->begun) hv_db_rollback(s->db);
    discard(s, b);
    *tx_failed = 1;
    for (i = b->begin; i < b->end; i++) {
        slot_t *sl = slot_at(s, i);
        if (sl->status == HV_OK) sl->status = b->broken;
        failed++;
    }
    return failed;
}

static int pipeline_failed(hv_storage_t *s, uint64_t begin, uint64_t end);

/*
 * Pipelined, under the lock: 1 while the jobs waiting are fewer than those whose
 * fdatasync is still running (and fewer than max_batch). Starting a batch then would
 * split the clients into ever smaller batches — every commit writes the B-tree pages
 * its jobs share again, and every batch costs an fdatasync — so the thread waits for
 * more jobs or for the sync (which signals cond), and a batch runs during a sync only
 * when it is at least as large as the batch being synced.
 */
static int hold_back(const hv_storage_t *s) {
    uint64_t syncing, waiting;
    if (s->wal == NULL || s->committed == s->finished) return 0;
    syncing = s->committed - s->finished;
    waiting = s->submitted - s->taken;
    return waiting < syncing && waiting < s->max_batch;
}

int (*hv__storage_sync_hook)(void);

static void storage_thread(void *arg) {
    hv_storage_t *s = arg;
    name_thread("hv-storage");
    uv_mutex_lock(&s->lock);
    for (;;) {
        uint64_t begin, end, t0, commit_ns;
        size_t failed;
        int tx_failed;
        batch_t b;
        while (!s->stop && (s->taken == s->submitted || hold_back(s))) {
            /* With nothing to do, the loop thread streams its next jobs here (submit). */
            s->parked = s->taken == s->submitted;
            uv_cond_wait(&s->cond, &s->lock);
        }
        s->parked = 0;
        if (s->taken == s->submitted) break; /* stopping and nothing waits */
        begin = s->taken;
        end = s->submitted;
        if (end - begin > s->max_batch) end = begin + s->max_batch;
        s->taken = end;
        uv_mutex_unlock(&s->lock);

        t0 = hv_mono_ns();
        if (s->wal != NULL && pipeline_failed(s, begin, end)) {
            failed = (size_t)(end - begin);
            commit_ns = 0;
            tx_failed = 0;
        } else {
            batch_open(s, &b, begin, end, 0);
            batch_run(s, &b);
            /*
             * While the loop thread streams the jobs of its current turn, they join this
             * batch, which commits once the turn has ended (hand_over): the thread works
             * while the loop parses the turn's requests, and the turn's jobs still share
             * one commit. A relaxed batch (lazy jobs only) takes no more: a durable job
             * must not commit with synchronous NORMAL.
             */
            uv_mutex_lock(&s->lock);
            while (s->streaming && b.broken == HV_OK && !b.rerun && !s->relaxed &&
                   b.end - b.begin < s->max_batch) {
                if (s->taken == s->submitted) {
                    s->wants_more = (size_t)(b.end - b.begin);
                    uv_cond_wait(&s->cond, &s->lock);
                    s->wants_more = 0;
                    continue;
                }
                end = s->submitted;
                if (end - begin > s->max_batch) end = begin + s->max_batch;
                s->taken = b.end = end;
                uv_mutex_unlock(&s->lock);
                batch_run(s, &b);
                uv_mutex_lock(&s->lock);
            }
            uv_mutex_unlock(&s->lock);
            end = b.end;
            if (b.broken == HV_OK && !b.rerun) batch_flush(s, &b);
            if (b.rerun) {
                batch_open(s, &b, begin, end, 1);
                batch_run(s, &b);
            }
            failed = batch_close(s, &b, &commit_ns, &tx_failed);
        }

        uv_mutex_lock(&s->lock);
        if (s->wal != NULL) {
            /* The sync thread moves finished once the WAL is on disk. */
            s->committed = end;
            uv_cond_signal(&s->sync_cond);
        } else {
            s->finished = end;
        }
        s->stats.batches++;
        s->stats.jobs += end - begin;
        s->stats.jobs_failed += failed;
        if (end - begin > s->stats.largest_batch) s->stats.largest_batch = end - begin;
        s->stats.commit_ns += commit_ns;
        s->stats.batch_ns += hv_mono_ns() - t0;
        s->stats.commits_failed += (uint64_t)tx_failed;
        uv_mutex_unlock(&s->lock);
        if (s->wal == NULL) {
            uv_async_send(&s->async);
        } else if (hv__db_wal_frames(s->wal) >= s->ckpt_pages) {
            /* Between batches, as SQLite's automatic checkpoint would, but with full syncs. */
            int ck = hv__db_wal_checkpoint(s->db);
            if (ck != HV_OK) log_batch_failure(s, "checkpoint", ck, 0);
            uv_mutex_lock(&s->lock);
            s->stats.checkpoints += ck == HV_OK;
            uv_mutex_unlock(&s->lock);
        }
        uv_mutex_lock(&s->lock);
    }
    uv_mutex_unlock(&s->lock);
    hv_log_thread_exit();
}

/* Storage thread: when an earlier fdatasync failed, fails the batch's jobs without
 * running them and returns 1. */
static int pipeline_failed(hv_storage_t *s, uint64_t begin, uint64_t end) {
    int broken;
    uv_mutex_lock(&s->lock);
    broken = s->sync_failed;
    uv_mutex_unlock(&s->lock);
    if (!broken) return 0;
    for (uint64_t i = begin; i < end; i++) slot_at(s, i)->status = HV_EIO;
    return 1;
}

/*
 * The sync thread: makes [finished, committed) durable with one fdatasync of the WAL,
 * then hands those jobs to the loop thread. Batches that commit during the fdatasync
 * wait for the next one, which then covers all of them.
 */
static void sync_thread(void *arg) {
    hv_storage_t *s = arg;
    name_thread("hv-walsync");
    uv_mutex_lock(&s->lock);
    for (;;) {
        uint64_t target, t0;
        int rc;
        while (s->committed == s->finished && !s->sync_stop) uv_cond_wait(&s->sync_cond, &s->lock);
        if (s->committed == s->finished) break; /* stopping and everything is synced */
        target = s->committed;
        rc = s->sync_failed ? HV_EIO : HV_OK;
        uv_mutex_unlock(&s->lock);
        t0 = hv_mono_ns();
        if (rc == HV_OK) {
            if (hv__storage_sync_hook != NULL) rc = hv__storage_sync_hook();
            if (rc == HV_OK) rc = hv__db_wal_sync(s->wal);
            if (rc != HV_OK)
                hv_log(HV_LOG_ERROR, "storage.wal_sync_failed",
                       "fdatasync of the WAL failed: this write and every later one fail");
        }
        uv_mutex_lock(&s->lock);
        if (rc != HV_OK) {
            s->sync_failed = 1;
            for (uint64_t i = s->finished; i < target; i++)
                if (slot_at(s, i)->status == HV_OK) slot_at(s, i)->status = HV_EIO;
        }
        s->finished = target;
        uv_cond_signal(&s->cond); /* the storage thread may be holding back (hold_back) */
        s->stats.syncs++;
        s->stats.sync_ns += hv_mono_ns() - t0;
        uv_mutex_unlock(&s->lock);
        uv_async_send(&s->async);
        uv_mutex_lock(&s->lock);
    }
    uv_mutex_unlock(&s->lock);
    hv_log_thread_exit();
}

int hv_storage_pipeline(hv_storage_t *s, int checkpoint_pages) {
    const char *mode;
    int rc;
    if (s == NULL || checkpoint_pages <= 0) return HV_EINVAL;
    if (hv_db_kind(s->db) != HV_DB_SQLITE) return HV_ENOTSUP;
    mode = hv__db_synchronous(s->db);
    if (mode[0] != '\0' && strcmp(mode, "FULL") != 0) return HV_ENOTSUP;
    uv_mutex_lock(&s->lock);
    rc = s->wal != NULL || s->submitted != 0 ? HV_EINVAL : HV_OK;
    uv_mutex_unlock(&s->lock);
    if (rc != HV_OK) return rc;
    /* The storage thread waits for a job and holds no statement: the connection is free. */
    if (uv_cond_init(&s->sync_cond) != 0) return HV_EIO;
    rc = hv__db_wal_start(s->db, &s->wal);
    if (rc != HV_OK) goto fail;
    s->ckpt_pages = checkpoint_pages;
    if (uv_thread_create(&s->sync_thread, sync_thread, s) != 0) {
        rc = HV_EIO;
        goto fail;
    }
    return HV_OK;
fail:
    if (s->wal != NULL) hv__db_wal_stop(s->db);
    s->wal = NULL;
    uv_cond_destroy(&s->sync_cond);
    return rc;
}

int hv_storage_checkpoint_thread(hv_storage_t *s, int checkpoint_pages) {
    int rc;
    if (s == NULL || checkpoint_pages <= 0) return HV_EINVAL;
    if (hv_db_kind(s->db) != HV_DB_SQLITE || s->wal != NULL) return HV_ENOTSUP;
    uv_mutex_lock(&s->lock);
    rc = s->submitted != 0 ? HV_EINVAL : HV_OK;
    uv_mutex_unlock(&s->lock);
    /* The storage thread waits for a job and holds no statement: the connection is free.
     * The bound: 8 × 1,000 pages is 32 MiB of WAL at 4 KiB pages, under journal_size_limit. */
    return rc != HV_OK ? rc : hv__db_ckpt_start(s->db, checkpoint_pages, 8 * checkpoint_pages);
}

/* Loop thread: calls the done callbacks of every finished job, in order. The
 * counters are re-read each time, so a done callback may submit, or even free
 * the storage (which delivers the rest itself). */
static void deliver(hv_storage_t *s) {
    for (;;) {
        slot_t sl, *done_chunk = NULL;
        uv_mutex_lock(&s->lock);
        if (s->delivered == s->finished) {
            uv_mutex_unlock(&s->lock);
            break;
        }
        sl = *slot_at(s, s->delivered);
        s->delivered++;
        if (s->delivered % CHUNK_SLOTS == 0) {
            /* The chunk's last job: nobody reads the chunk any more. */
            slot_t **place = chunk_place(s, s->delivered - 1);
            done_chunk = *place;
            *place = NULL;
        }
        uv_mutex_unlock(&s->lock);
        if (done_chunk != NULL) {
            if (s->spare == NULL) s->spare = done_chunk;
            else hv_free(done_chunk);
        }
        if (sl.done != NULL) sl.done(sl.status, sl.arg);
    }
    /* Staged jobs are outstanding too: the turn's hand-over is still to come. (submitted
     * and staged move on this thread only.) */
    if (s->referenced && s->delivered == s->submitted + s->staged && !s->closing) {
        uv_unref((uv_handle_t *)&s->async);
        s->referenced = 0;
    }
}

static void on_async(uv_async_t *h) { deliver(h->data); }

/* Frees the chunks, the spare and the chunk ring of a storage no thread uses. */
static void free_chunks(hv_storage_t *s) {
    if (s->chunks != NULL)
        for (size_t i = 0; i < s->nchunks; i++) hv_free(s->chunks[i]);
    hv_free(s->chunks);
    hv_free(s->spare);
}

/* The last of the three handles to close frees the storage. */
static void on_close(uv_handle_t *h) {
    hv_storage_t *s = h->data;
    if (--s->handles_open > 0) return;
    uv_cond_destroy(&s->cond);
    uv_mutex_destroy(&s->lock);
    free_chunks(s);
    hv_free(s);
}

int hv_storage_new(uv_loop_t *loop, hv_db_t *db, size_t max_queue, size_t max_batch,
                   hv_storage_t **out) {
    hv_storage_t *s = NULL;
    int rc = HV_ENOMEM, have_lock = 0, have_cond = 0;
    if (loop == NULL || db == NULL || max_queue == 0 || max_batch == 0) return HV_EINVAL;
    if (max_batch > max_queue) max_batch = max_queue;
    s = hv_calloc(1, sizeof(*s));
    if (s == NULL) goto out;
    s->nchunks = 2;
    while (s->nchunks <= max_queue / CHUNK_SLOTS + 1) s->nchunks *= 2;
    s->chunks = hv_calloc(s->nchunks, sizeof(*s->chunks));
    if (s->chunks == NULL) goto out;
    s->loop = loop;
    s->db = db;
    s->cap = max_queue;
    s->max_batch = max_batch;
    rc = HV_EIO;
    if (uv_mutex_init(&s->lock) != 0) goto out;
    have_lock = 1;
    if (uv_cond_init(&s->cond) != 0) goto out;
    have_cond = 1;
    if (uv_async_init(loop, &s->async, on_async) != 0) goto out;
    s->async.data = s;
    uv_unref((uv_handle_t *)&s->async);
    /* Neither holds the loop open: the async handle does while a job is outstanding. */
    uv_check_init(loop, &s->check);
    s->check.data = s;
    uv_unref((uv_handle_t *)&s->check);
    uv_idle_init(loop, &s->idle);
    s->idle.data = s;
    uv_unref((uv_handle_t *)&s->idle);
    s->handles_open = 3;
    if (uv_thread_create(&s->thread, storage_thread, s) != 0) {
        /* From here the handles own the memory: the last close callback frees it. */
        uv_close((uv_handle_t *)&s->async, on_close);
        uv_close((uv_handle_t *)&s->check, on_close);
        uv_close((uv_handle_t *)&s->idle, on_close);
        return HV_EIO;
    }
    *out = s;
    return HV_OK;
out:
    if (have_cond) uv_cond_destroy(&s->cond);
    if (have_lock) uv_mutex_destroy(&s->lock);
    if (s != NULL) free_chunks(s);
    hv_free(s);
    return rc;
}

/*
 * Loop thread: hands the staged jobs to the storage thread (they become "waiting") and
 * ends this turn's streaming. Jobs submitted during one turn of the loop are handed over
 * together at its end (the check phase, after every I/O callback of the turn), so that
 * the requests read from many connections in one turn make one batch: woken at the first
 * of them, the storage thread would commit it alone (a commit's WAL pages and fsync for
 * one job) while the loop parsed the others, and batches would alternate between one job
 * and the rest. The idle handle keeps the loop's poll from blocking while jobs are staged
 * or streamed (a job submitted by a timer callback, before the poll, is handed over right
 * after it).
 *
 * The exception is an idle storage thread (submit): it gets the turn's jobs as they are
 * submitted and runs them in one open batch, which commits after this hand-over. So the
 * thread works while the loop parses, and the turn still makes one commit.
 */
static void hand_over(hv_storage_t *s) {
    uv_mutex_lock(&s->lock);
    if (s->staged == 0 && !s->streaming) {
        uv_mutex_unlock(&s->lock);
        return;
    }
    s->submitted += s->staged;
    s->staged = 0;
    s->streaming = 0;
    uv_cond_signal(&s->cond);
    uv_mutex_unlock(&s->lock);
    uv_check_stop(&s->check);
    uv_idle_stop(&s->idle);
}

static void on_check(uv_check_t *h) { hand_over(h->data); }

static void on_idle(uv_idle_t *h) { (void)h; }

/* Streamed jobs that wake a storage thread waiting for more of them (submit). */
#define STREAM_WAKE 8

static int submit(hv_storage_t *s, hv_storage_job_cb job, hv_storage_done_cb done, void *arg,
                  int lazy, int rerun, int defer) {
    slot_t *sl, **place;
    uint64_t n;
    int full;
    if (job == NULL) return HV_EINVAL;
    if (s->closing) return HV_ECLOSED;
    uv_mutex_lock(&s->lock);
    n = s->submitted + s->staged;
    if (n - s->delivered >= s->cap) {
        s->stats.busy++;
        uv_mutex_unlock(&s->lock);
        return HV_EBUSY;
    }
    place = chunk_place(s, n);
    if (*place == NULL) {
        /* The first job of a chunk: once per CHUNK_SLOTS jobs, mostly the spare. */
        *place = s->spare != NULL ? s->spare : hv_malloc(CHUNK_SLOTS * sizeof(slot_t));
        if (*place == NULL) {
            s->stats.busy++;
            uv_mutex_unlock(&s->lock);
            return HV_EBUSY;
        }
        if (*place == s->spare) s->spare = NULL;
    }
    sl = slot_at(s, n);
    sl->job = job;
    sl->done = done;
    sl->arg = arg;
    sl->status = HV_OK;
    sl->lazy = lazy;
    sl->rerun = rerun;
    sl->defer = defer;
    s->staged++;
    if (s->streaming || s->parked) {
        /* The storage thread is idle, or runs this turn's open batch: no reason to hold
         * the job until the turn ends (hand_over). An idle thread is woken at once. One
         * that ran the streamed jobs and waits for more is woken once as many wait as its
         * batch holds (and at least STREAM_WAKE): a thread faster than the loop (small
         * jobs, such as events) is then woken a few times per turn, not for every job (a
         * futex call and a context switch on each side), and one slower than the loop
         * seldom waits at all. */
        s->submitted += s->staged;
        s->staged = 0;
        s->streaming = 1;
        if (s->parked || (s->wants_more > 0 && s->submitted - s->taken >= STREAM_WAKE &&
                          s->submitted - s->taken >= s->wants_more)) {
            s->parked = 0;
            s->wants_more = 0;
            uv_cond_signal(&s->cond);
        }
    }
    full = s->staged >= s->max_batch;
    uv_mutex_unlock(&s->lock);
    if (!uv_is_active((uv_handle_t *)&s->check)) {
        uv_check_start(&s->check, on_check);
        uv_idle_start(&s->idle, on_idle);
    }
    /* A full batch is waiting: no reason to hold it. */
    if (full) hand_over(s);
    if (!s->referenced) {
        uv_ref((uv_handle_t *)&s->async);
        s->referenced = 1;
    }
    return HV_OK;
}

int hv_storage_submit(hv_storage_t *s, hv_storage_job_cb job, hv_storage_done_cb done, void *arg) {
    return submit(s, job, done, arg, 0, 0, 0);
}

int hv_storage_submit_lazy(hv_storage_t *s, hv_storage_job_cb job, hv_storage_done_cb done,
                           void *arg) {
    return submit(s, job, done, arg, 1, 0, 0);
}

int hv_storage_submit_rerun(hv_storage_t *s, hv_storage_job_cb job, hv_storage_done_cb done, void *arg) {
    return submit(s, job, done, arg, 0, 1, 0);
}

int hv_storage_submit_deferring(hv_storage_t *s, hv_storage_job_cb job, hv_storage_done_cb done, void *arg) {
    return submit(s, job, done, arg, 0, 1, 1);
}

void hv_storage_set_flush(hv_storage_t *s, hv_storage_flush_cb flush, void *ud) {
    s->flush = flush;
    s->flush_ud = ud;
}

int hv__storage_parked(hv_storage_t *s) {
    int parked;
    uv_mutex_lock(&s->lock);
    parked = s->parked;
    uv_mutex_unlock(&s->lock);
    return parked;
}

size_t hv_storage_queued(hv_storage_t *s) {
    size_t n;
    uv_mutex_lock(&s->lock);
    n = (size_t)(s->submitted + s->staged - s->delivered);
    uv_mutex_unlock(&s->lock);
    return n;
}

void hv_storage_stats(hv_storage_t *s, hv_storage_stats_t *out) {
    uv_mutex_lock(&s->lock);
    *out = s->stats;
    uv_mutex_unlock(&s->lock);
}

void hv_storage_free(hv_storage_t *s) {
    if (s == NULL || s->closing) return;
    s->closing = 1;
    hand_over(s);
    uv_mutex_lock(&s->lock);
    s->stop = 1;
    uv_cond_signal(&s->cond);
    uv_mutex_unlock(&s->lock);
    uv_thread_join(&s->thread);
    if (s->wal != NULL) {
        /* The storage thread is gone: committed is final; the sync thread syncs the rest. */
        uv_mutex_lock(&s->lock);
        s->sync_stop = 1;
        uv_cond_broadcast(&s->sync_cond);
        uv_mutex_unlock(&s->lock);
        uv_thread_join(&s->sync_thread);
        hv__db_wal_stop(s->db);
        s->wal = NULL;
        uv_cond_destroy(&s->sync_cond);
    }
    deliver(s);
    hv_db_close(s->db);
    s->db = NULL;
    uv_close((uv_handle_t *)&s->async, on_close);
    uv_close((uv_handle_t *)&s->check, on_close);
    uv_close((uv_handle_t *)&s->idle, on_close);
}
