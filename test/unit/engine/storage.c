/*
 * storage.c — tests of engine/storage.c (the storage thread and group commit),
 * on SQLite and, with HV_TEST_PG_URL, on PostgreSQL.
 *
 * Each test ends with every handle closed and uv_loop_close() == 0.
 */
#include "dbtest.h"
#include "engine/db_int.h"
#include "engine/engine_int.h"

#include <stdio.h>
#include <string.h>

#define NJOBS 100

typedef struct ctx ctx_t;

typedef struct job {
    ctx_t *ctx;
    int id;
    int fail;       /* the job returns HV_EINVAL after writing its row */
    int gate;       /* the job posts ctx->running, then waits for ctx->gate */
    int status;     /* from the done callback */
    int done_calls;
    int done_seq;   /* order in which done ran */
    int runs;       /* times the job ran (storage thread) */
    int later;      /* the job inserts through hv_db_step_later */
} job_t;

struct ctx {
    uv_loop_t loop;
    uv_thread_t loop_thread;
    uv_sem_t gate;
    uv_sem_t running;
    hv_storage_t *storage;
    hv_db_t *db; /* the storage's connection (storage thread only, but for its name) */
    job_t jobs[NJOBS];
    int seq;
    int off_loop;    /* done callbacks that ran on another thread */
    int resubmit_rc; /* what a submit from within a done callback returned */
    int try_resubmit;
    uv_sem_t ran;           /* posted by ran_job */
    int first_ran_mid_turn; /* stream_one_turn: the first job ran before the turn ended */
    int ran_mid_turn;       /* stream_one_turn: later jobs that ran before it ended */
    int batches_mid_turn;   /* stream_one_turn: batches committed before it ended */
    int pending[NJOBS];     /* storage thread: the ids deferring jobs left to defer_flush */
    int npending;
    int flushes, discards;  /* defer_flush calls */
    int64_t seen_deferred;  /* deferred_count_job: rows of table deferred it saw */
    int later_deferred;     /* insert_deferred goes through hv_db_step_later */
};

static int insert_job(hv_db_t *db, void *arg) {
    job_t *j = arg;
    hv_db_stmt_t *st = NULL;
    char body[1024];
    int rc;
    if (j->gate) {
        uv_sem_post(&j->ctx->running);
        uv_sem_wait(&j->ctx->gate);
    }
    j->runs++;
    memset(body, 'a' + j->id % 26, sizeof(body));
    rc = hv_db_prepare(db, "INSERT INTO jobs(id, body) VALUES ($1, $2)", &st);
    if (rc == HV_OK) rc = hv_db_bind_int64(st, 1, j->id);
    if (rc == HV_OK) rc = hv_db_bind_text(st, 2, body, sizeof(body));
    if (rc == HV_OK) rc = j->later ? hv_db_step_later(st) : hv_db_step(st);
    hv_db_done(st);
    if (rc == HV_OK && j->fail) rc = HV_EINVAL;
    return rc;
}

static int noop_job(hv_db_t *db, void *arg) { return HV_OK; }

static void on_done(int status, void *arg) {
    job_t *j = arg;
    uv_thread_t self = uv_thread_self();
    if (!uv_thread_equal(&self, &j->ctx->loop_thread)) j->ctx->off_loop++;
    j->status = status;
    j->done_calls++;
    j->done_seq = j->ctx->seq++;
    if (j->ctx->try_resubmit)
        j->ctx->resubmit_rc = hv_storage_submit(j->ctx->storage, noop_job, NULL, NULL);
}

/* When set, ctx_start sets this durability on the database before the storage takes it. */
static const char *start_sync;
/* When positive, ctx_start turns pipelined commits on with this checkpoint threshold (SQLite;
 * on PostgreSQL it checks that they are refused and runs without). */
static int start_pipeline;

static void ctx_start(ctx_t *c, void **state, size_t max_queue, size_t max_batch,
                      const char *extra_ddl) {
    hv_db_t *db = dbtest_open((const dbtest_backend_t *)*state);
    int i;
    if (start_sync != NULL) assert_int_equal(hv_db_set_synchronous(db, start_sync), HV_OK);
    memset(c, 0, sizeof(*c));
    assert_int_equal(uv_loop_init(&c->loop), 0);
    assert_int_equal(uv_sem_init(&c->gate, 0), 0);
    assert_int_equal(uv_sem_init(&c->running, 0), 0);
    assert_int_equal(uv_sem_init(&c->ran, 0), 0);
    c->loop_thread = uv_thread_self();
    assert_int_equal(hv_db_exec(db, "CREATE TABLE jobs(id INTEGER PRIMARY KEY, body TEXT NOT NULL)"),
                     HV_OK);
    if (extra_ddl != NULL) assert_int_equal(hv_db_exec(db, extra_ddl), HV_OK);
    for (i = 0; i < NJOBS; i++) {
        c->jobs[i].ctx = c;
        c->jobs[i].id = i;
        c->jobs[i].status = 1; /* not a status: proves done ran */
    }
    assert_int_equal(hv_storage_new(&c->loop, db, max_queue, max_batch, &c->storage), HV_OK);
    c->db = db;
    if (start_pipeline > 0)
        assert_int_equal(hv_storage_pipeline(c->storage, start_pipeline),
                         hv_db_kind(db) == HV_DB_SQLITE ? HV_OK : HV_ENOTSUP);
}

/* Frees the storage, lets its close callback run, and checks the loop is empty. */
static void ctx_finish(ctx_t *c) {
    hv_storage_free(c->storage);
    c->storage = NULL;
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    uv_sem_destroy(&c->gate);
    uv_sem_destroy(&c->running);
    uv_sem_destroy(&c->ran);
}

/*
 * Jobs submitted during a turn of the loop reach the storage thread at the turn's end
 * (engine/storage.c hand_over): a test that waits for a job outside the loop first
 * lets the loop turn once.
 */
static void hand_over_now(ctx_t *c) { uv_run(&c->loop, UV_RUN_NOWAIT); }

/*
 * Submits job j as a blocker and waits until the storage thread is running it:
 * it is then alone in its batch, and every job submitted before the gate opens
 * waits for the next batch. This makes batch composition deterministic.
 */
static void submit_blocker(ctx_t *c, job_t *j) {
    j->gate = 1;
    assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, j), HV_OK);
    hand_over_now(c);
    uv_sem_wait(&c->running);
}

/* Reads the ids committed in table jobs, through a job so that it runs on the storage thread. */
typedef struct count_req {
    int64_t count;
    int64_t sum;
} count_req_t;

static int count_job(hv_db_t *db, void *arg) {
    count_req_t *r = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT COUNT(*), COALESCE(SUM(id), 0) FROM jobs", &st);
    if (rc == HV_OK) rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        r->count = hv_db_column_int64(st, 0);
        r->sum = hv_db_column_int64(st, 1);
        rc = HV_OK;
    }
    hv_db_done(st);
    return rc;
}

static void count_rows(ctx_t *c, count_req_t *r) {
    memset(r, 0, sizeof(*r));
    r->count = -1;
    assert_int_equal(hv_storage_submit(c->storage, count_job, NULL, r), HV_OK);
    uv_run(&c->loop, UV_RUN_DEFAULT);
}

static void storage_group_commit_batches_jobs(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    hv_storage_stats_t stats;
    count_req_t r;
    int i;
    ctx_start(c, state, 256, 32, NULL);
    /* The first job holds the thread until every job is queued, so the other 99
     * must be committed in batches of 32, 32, 32 and 3. */
    submit_blocker(c, &c->jobs[0]);
    for (i = 1; i < NJOBS; i++)
        assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[i]), HV_OK);
    assert_int_equal(hv_storage_queued(c->storage), NJOBS);
    uv_sem_post(&c->gate);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    for (i = 0; i < NJOBS; i++) {
        assert_int_equal(c->jobs[i].status, HV_OK);
        assert_int_equal(c->jobs[i].done_calls, 1);
    }
    assert_int_equal(hv_storage_queued(c->storage), 0);
    hv_storage_stats(c->storage, &stats);
    assert_int_equal(stats.jobs, NJOBS);
    assert_int_equal(stats.batches, 5);
    assert_int_equal(stats.largest_batch, 32);
    assert_int_equal(stats.jobs_failed, 0);
    count_rows(c, &r);
    assert_int_equal(r.count, NJOBS);
    assert_int_equal(r.sum, NJOBS * (NJOBS - 1) / 2);
    ctx_finish(c);
    test_free(c);
}

/*
 * The jobs submitted during one turn of the loop reach the storage thread together at
 * the turn's end and commit as one batch, even with the thread idle: woken at the first
 * submission, it would commit that job alone while the loop submitted the rest.
 */
static void storage_jobs_of_one_loop_turn_commit_in_one_batch(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    hv_storage_stats_t stats;
    count_req_t r;
    int i, n = 10;
    ctx_start(c, state, 64, 64, NULL);
    for (i = 0; i < n; i++)
        assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[i]), HV_OK);
    assert_int_equal(hv_storage_queued(c->storage), n);
    /* Time for an eagerly woken thread to take them; a staged job is not in its reach. */
    uv_sleep(50);
    hv_storage_stats(c->storage, &stats);
    assert_int_equal(stats.jobs, 0);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    hv_storage_stats(c->storage, &stats);
    assert_int_equal(stats.batches, 1);
    assert_int_equal(stats.largest_batch, n);
    for (i = 0; i < n; i++) assert_int_equal(c->jobs[i].status, HV_OK);
    count_rows(c, &r);
    assert_int_equal(r.count, n);
    ctx_finish(c);
    test_free(c);
}

/* Waits for sem up to ms milliseconds; 0 once taken, -1 when it was not posted in time
 * (a bound for a test that would otherwise hang, not a timing assertion). */
static int sem_wait_bounded(uv_sem_t *sem, int ms) {
    for (; ms > 0; ms--) {
        if (uv_sem_trywait(sem) == 0) return 0;
        uv_sleep(1);
    }
    return uv_sem_trywait(sem) == 0 ? 0 : -1;
}

/* Waits up to 10 s until the storage thread waits for work (it has just started, or has
 * delivered its last batch): then the next job submitted is streamed to it. */
static void wait_parked(ctx_t *c) {
    for (int i = 0; i < 10000 && !hv__storage_parked(c->storage); i++) uv_sleep(1);
    assert_int_equal(hv__storage_parked(c->storage), 1);
}

/* Waits up to 10 s until the storage thread has finished n batches (a bound for a test
 * that would otherwise hang, not a timing assertion). */
static void wait_batches(ctx_t *c, uint64_t n) {
    hv_storage_stats_t stats;
    for (int i = 0; i < 10000; i++) {
        hv_storage_stats(c->storage, &stats);
        if (stats.batches >= n) return;
        uv_sleep(1);
    }
}

/* As insert_job, then posts ctx->ran: the loop thread can see that it has run. */
static int ran_job(hv_db_t *db, void *arg) {
    job_t *j = arg;
    int rc = insert_job(db, arg);
    uv_sem_post(&j->ctx->ran);
    return rc;
}

/*
 * One turn of the loop (a timer callback) against an idle storage thread: the first job
 * starts before the turn ends, and the jobs submitted after it run while the turn still
 * lasts, but nothing commits until the turn has ended, and then all of them commit
 * together (engine/storage.c, streaming).
 */
static void stream_one_turn(uv_timer_t *t) {
    ctx_t *c = t->data;
    hv_storage_stats_t stats;
    int i;
    c->jobs[0].gate = 1;
    assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[0]), HV_OK);
    c->first_ran_mid_turn = sem_wait_bounded(&c->running, 10000) == 0;
    for (i = 1; i < 10; i++)
        assert_int_equal(hv_storage_submit(c->storage, ran_job, on_done, &c->jobs[i]), HV_OK);
    uv_sem_post(&c->gate); /* job 0 takes it whenever it runs */
    for (i = 1; i < 10 && c->first_ran_mid_turn; i++)
        if (sem_wait_bounded(&c->ran, 10000) == 0) c->ran_mid_turn++;
    /* Every job has run: a batch that did not wait for the turn's end would commit now. */
    uv_sleep(20);
    hv_storage_stats(c->storage, &stats);
    c->batches_mid_turn = (int)stats.batches;
    uv_close((uv_handle_t *)t, NULL);
}

static void storage_idle_thread_runs_a_turns_jobs_before_it_ends_and_commits_them_once(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    hv_storage_stats_t stats;
    uv_timer_t timer;
    count_req_t r;
    int i;
    ctx_start(c, state, 64, 64, NULL);
    /* The thread just started: wait until it waits for work. */
    wait_parked(c);
    assert_int_equal(uv_timer_init(&c->loop, &timer), 0);
    timer.data = c;
    assert_int_equal(uv_timer_start(&timer, stream_one_turn, 0, 0), 0);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->first_ran_mid_turn, 1);
    assert_int_equal(c->ran_mid_turn, 9);
    assert_int_equal(c->batches_mid_turn, 0);
    hv_storage_stats(c->storage, &stats);
    assert_int_equal(stats.batches, 1);
    assert_int_equal(stats.largest_batch, 10);
    for (i = 0; i < 10; i++) {
        assert_int_equal(c->jobs[i].status, HV_OK);
        assert_int_equal(c->jobs[i].done_calls, 1);
    }
    count_rows(c, &r);
    assert_int_equal(r.count, 10);
    ctx_finish(c);
    test_free(c);
}

/*
 * A job submitted while the storage thread runs a batch of an earlier turn is not
 * streamed: it waits for the end of its own turn and commits in the next batch, so a
 * batch never holds jobs of two turns.
 */
static void storage_busy_thread_gets_a_turns_jobs_at_its_end(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    hv_storage_stats_t stats;
    int i;
    ctx_start(c, state, 64, 64, NULL);
    submit_blocker(c, &c->jobs[0]);
    for (i = 1; i < 5; i++)
        assert_int_equal(hv_storage_submit(c->storage, ran_job, on_done, &c->jobs[i]), HV_OK);
    uv_sem_post(&c->gate);
    /* The blocker's batch ends: had they been streamed, it would have taken them. The loop
     * does not run meanwhile, so the turn that submitted them has not ended. */
    wait_batches(c, 1);
    hv_storage_stats(c->storage, &stats);
    assert_int_equal(stats.batches, 1);
    assert_int_equal(stats.jobs, 1);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    hv_storage_stats(c->storage, &stats);
    assert_int_equal(stats.batches, 2);
    assert_int_equal(stats.largest_batch, 4);
    for (i = 1; i < 5; i++) assert_int_equal(uv_sem_trywait(&c->ran), 0);
    ctx_finish(c);
    test_free(c);
}

/* A job submitted by a timer callback, before the loop polls, is handed over without
 * waiting for I/O: the loop has nothing else to wake it, so a blocking poll would hang. */
static void submit_from_timer(uv_timer_t *t) {
    ctx_t *c = t->data;
    assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[0]), HV_OK);
    uv_close((uv_handle_t *)t, NULL);
}

static void storage_job_submitted_by_a_timer_runs_without_io(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    uv_timer_t timer;
    ctx_start(c, state, 64, 64, NULL);
    assert_int_equal(uv_timer_init(&c->loop, &timer), 0);
    timer.data = c;
    assert_int_equal(uv_timer_start(&timer, submit_from_timer, 0, 0), 0);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->jobs[0].done_calls, 1);
    assert_int_equal(c->jobs[0].status, HV_OK);
    ctx_finish(c);
    test_free(c);
}

/* later: the jobs' inserts are queued (hv_db_step_later), so on PostgreSQL the duplicate is
 * refused when the storage flushes the queue after the job: it must still fail that job, not
 * the next one. */
static void failing_jobs_roll_back_alone(void **state, int later) {
    ctx_t *c = test_malloc(sizeof(*c));
    hv_storage_stats_t stats;
    count_req_t r;
    int i, n = 10;
    ctx_start(c, state, 64, 64, NULL);
    for (i = 0; i < n; i++) c->jobs[i].later = later;
    c->jobs[4].fail = 1; /* writes its row, then fails: the row must go */
    c->jobs[7].id = 5;   /* a duplicate primary key: the database refuses it */
    submit_blocker(c, &c->jobs[0]);
    for (i = 1; i < n; i++)
        assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[i]), HV_OK);
    uv_sem_post(&c->gate);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    for (i = 0; i < n; i++) {
        int want = i == 4 ? HV_EINVAL : i == 7 ? HV_ECONFLICT : HV_OK;
        if (c->jobs[i].status != want) fail_msg("job %d: status %d, want %d", i, c->jobs[i].status, want);
    }
    hv_storage_stats(c->storage, &stats);
    assert_int_equal(stats.jobs_failed, 2);
    assert_int_equal(stats.commits_failed, 0);
    assert_int_equal(stats.batches, 2); /* the failures shared their batch with 7 others */
    count_rows(c, &r);
    assert_int_equal(r.count, n - 2);
    assert_int_equal(r.sum, 45 - 4 - 7);
    ctx_finish(c);
    test_free(c);
}

static void storage_failing_job_rolls_back_alone(void **state) { failing_jobs_roll_back_alone(state, 0); }

static void storage_queued_failure_fails_its_own_job(void **state) { failing_jobs_roll_back_alone(state, 1); }

/*
 * Re-runnable jobs run without savepoints; when one of them fails, the batch's
 * transaction is rolled back and the whole batch runs again with a savepoint per
 * job: the failing jobs are undone alone, the others are stored once.
 */
static void storage_rerun_job_failure_reruns_batch_with_savepoints(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    hv_storage_stats_t stats;
    count_req_t r;
    int i, n = 10;
    ctx_start(c, state, 64, 64, NULL);
    c->jobs[4].fail = 1; /* writes its row, then fails: the row must go */
    c->jobs[7].id = 5;   /* a duplicate primary key: the database refuses it */
    submit_blocker(c, &c->jobs[0]);
    for (i = 1; i < n; i++)
        assert_int_equal(hv_storage_submit_rerun(c->storage, insert_job, on_done, &c->jobs[i]), HV_OK);
    uv_sem_post(&c->gate);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    for (i = 0; i < n; i++) {
        int want = i == 4 ? HV_EINVAL : i == 7 ? HV_ECONFLICT : HV_OK;
        /* Jobs 1-4 ran bare until job 4 failed, then everything ran again. */
        int runs = i >= 1 && i <= 4 ? 2 : 1;
        if (c->jobs[i].status != want) fail_msg("job %d: status %d, want %d", i, c->jobs[i].status, want);
        if (c->jobs[i].runs != runs) fail_msg("job %d: ran %d times, want %d", i, c->jobs[i].runs, runs);
        assert_int_equal(c->jobs[i].done_calls, 1);
    }
    hv_storage_stats(c->storage, &stats);
    assert_int_equal(stats.jobs_failed, 2);
    assert_int_equal(stats.commits_failed, 0);
    assert_int_equal(stats.batches, 2);
    count_rows(c, &r);
    assert_int_equal(r.count, n - 2);
    assert_int_equal(r.sum, 45 - 4 - 7);
    ctx_finish(c);
    test_free(c);
}

/* From the first job that may not run twice on, jobs have savepoints again: a
 * re-runnable job failing after it is undone alone, and nothing runs twice. */
static void storage_plain_job_guards_the_rest_of_its_batch(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    count_req_t r;
    int i, n = 10;
    ctx_start(c, state, 64, 64, NULL);
    c->jobs[6].fail = 1;
    submit_blocker(c, &c->jobs[0]);
    for (i = 1; i < n; i++)
        assert_int_equal(i == 3 ? hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[i])
                                : hv_storage_submit_rerun(c->storage, insert_job, on_done, &c->jobs[i]),
                         HV_OK);
    uv_sem_post(&c->gate);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    for (i = 0; i < n; i++) {
        if (c->jobs[i].status != (i == 6 ? HV_EINVAL : HV_OK))
            fail_msg("job %d: status %d", i, c->jobs[i].status);
        if (c->jobs[i].runs != 1) fail_msg("job %d: ran %d times", i, c->jobs[i].runs);
    }
    count_rows(c, &r);
    assert_int_equal(r.count, n - 1);
    assert_int_equal(r.sum, 45 - 6);
    ctx_finish(c);
    test_free(c);
}

/* Inserts id into table deferred (the deferred write of defer_job). */
static int insert_deferred(ctx_t *c, hv_db_t *db, int64_t id) {
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "INSERT INTO deferred(id) VALUES ($1)", &st);
    if (rc == HV_OK) rc = hv_db_bind_int64(st, 1, id);
    if (rc == HV_OK) rc = c->later_deferred ? hv_db_step_later(st) : hv_db_step(st);
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

/* A deferring job: its row of table deferred goes to defer_flush when the storage lets it
 * (hv_storage_deferring), else it writes it itself; then it runs insert_job. */
static int defer_job(hv_db_t *db, void *arg) {
    job_t *j = arg;
    if (hv_storage_deferring()) {
        j->ctx->pending[j->ctx->npending++] = j->id;
    } else {
        int rc = insert_deferred(j->ctx, db, j->id);
        if (rc != HV_OK) {
            j->runs++;
            return rc;
        }
    }
    return insert_job(db, arg);
}

static int defer_flush(hv_db_t *db, int discard, void *ud) {
    ctx_t *c = ud;
    int rc = HV_OK;
    if (discard) c->discards++;
    else c->flushes++;
    for (int i = 0; i < c->npending && !discard && rc == HV_OK; i++) rc = insert_deferred(c, db, c->pending[i]);
    c->npending = 0;
    return rc;
}

/* A plain job that counts the rows of table deferred it can see. */
static int deferred_count_job(hv_db_t *db, void *arg) {
    job_t *j = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT COUNT(*) FROM deferred", &st);
    j->runs++;
    if (rc == HV_OK) rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        j->ctx->seen_deferred = hv_db_column_int64(st, 0);
        rc = HV_OK;
    }
    hv_db_done(st);
    return rc;
}

/* The ids in table deferred, as a bit set (ids < 63), read on the storage thread. */
static int deferred_ids_job(hv_db_t *db, void *arg) {
    int64_t *bits = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "SELECT id FROM deferred", &st);
    *bits = 0;
    while (rc == HV_OK && (rc = hv_db_step(st)) == HV_DB_ROW) {
        *bits |= (int64_t)1 << hv_db_column_int64(st, 0);
        rc = HV_OK;
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static int64_t deferred_ids(ctx_t *c) {
    int64_t bits = -1;
    assert_int_equal(hv_storage_submit(c->storage, deferred_ids_job, NULL, &bits), HV_OK);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    return bits;
}

#define DEFER_DDL "CREATE TABLE deferred(id BIGINT PRIMARY KEY)"

/*
 * Deferring jobs of one batch leave their writes to the flush, which writes them before
 * the first other job (it sees them) and before COMMIT. When one of them fails, the
 * batch runs again in savepoints with nothing deferred: the failing job leaves no row
 * of either kind, the others are stored once, and nothing of the first run's deferred
 * writes is flushed later (the next batch's deferring jobs run once).
 */
static void storage_deferred_writes_of_a_failing_job_go_with_it(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    count_req_t r;
    int i, n = 10;
    ctx_start(c, state, 64, 64, DEFER_DDL);
    hv_storage_set_flush(c->storage, defer_flush, c);
    c->jobs[7].fail = 1; /* writes both rows, then fails: both must go */
    submit_blocker(c, &c->jobs[0]);
    for (i = 1; i < n; i++)
        assert_int_equal(i == 4 ? hv_storage_submit_rerun(c->storage, deferred_count_job, on_done, &c->jobs[i])
                                : hv_storage_submit_deferring(c->storage, defer_job, on_done, &c->jobs[i]),
                         HV_OK);
    uv_sem_post(&c->gate);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    for (i = 0; i < n; i++) {
        int want = i == 7 ? HV_EINVAL : HV_OK;
        int runs = i >= 1 && i <= 7 ? 2 : 1; /* jobs 1-7 ran bare until job 7 failed */
        if (c->jobs[i].status != want) fail_msg("job %d: status %d, want %d", i, c->jobs[i].status, want);
        if (c->jobs[i].runs != runs) fail_msg("job %d: ran %d times, want %d", i, c->jobs[i].runs, runs);
    }
    /* Job 4 saw jobs 1-3's deferred rows in both runs: flushed before it, written by them. */
    assert_int_equal(c->seen_deferred, 3);
    assert_int_equal(c->flushes, 1);
    assert_int_equal(c->discards, 1);
    assert_int_equal(deferred_ids(c), 0x37e & ~((int64_t)1 << 4)); /* 1-9 but 4 and 7 */
    count_rows(c, &r);
    assert_int_equal(r.count, n - 2); /* 0-9 but 4 (writes no jobs row) and 7 */
    assert_int_equal(r.sum, 45 - 4 - 7);
    /* A later batch of deferring jobs: flushed once, each job run once. */
    submit_blocker(c, &c->jobs[10]);
    for (i = 11; i < 14; i++)
        assert_int_equal(hv_storage_submit_deferring(c->storage, defer_job, on_done, &c->jobs[i]), HV_OK);
    uv_sem_post(&c->gate);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    for (i = 11; i < 14; i++) {
        assert_int_equal(c->jobs[i].status, HV_OK);
        assert_int_equal(c->jobs[i].runs, 1);
    }
    assert_int_equal(c->flushes, 2);
    assert_int_equal(deferred_ids(c), (0x37e & ~((int64_t)1 << 4)) | 0x3800);
    ctx_finish(c);
    test_free(c);
}

/*
 * A flush that fails fails like a bare job: the batch runs again with nothing deferred,
 * where the job whose deferred write the database refuses fails alone and leaves no row;
 * the others are stored. later: the flush's inserts are queued (hv_db_step_later), so on
 * PostgreSQL the refusal comes from the storage's flush of the queue, not from the insert.
 */
static void failing_flush_reruns_batch(void **state, int later) {
    ctx_t *c = test_malloc(sizeof(*c));
    count_req_t r;
    int i, n = 8;
    ctx_start(c, state, 64, 64, DEFER_DDL "; INSERT INTO deferred(id) VALUES (5)");
    c->later_deferred = later;
    hv_storage_set_flush(c->storage, defer_flush, c);
    submit_blocker(c, &c->jobs[0]);
    for (i = 1; i < n; i++)
        assert_int_equal(hv_storage_submit_deferring(c->storage, defer_job, on_done, &c->jobs[i]), HV_OK);
    uv_sem_post(&c->gate);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    for (i = 0; i < n; i++) {
        int want = i == 5 ? HV_ECONFLICT : HV_OK;
        int runs = i == 0 ? 1 : 2;
        if (c->jobs[i].status != want) fail_msg("job %d: status %d, want %d", i, c->jobs[i].status, want);
        if (c->jobs[i].runs != runs) fail_msg("job %d: ran %d times, want %d", i, c->jobs[i].runs, runs);
        assert_int_equal(c->jobs[i].done_calls, 1);
    }
    assert_int_equal(c->flushes, 1);
    assert_int_equal(deferred_ids(c), 0xfe); /* 1-7: 5 was there before */
    count_rows(c, &r);
    assert_int_equal(r.count, n - 1);
    assert_int_equal(r.sum, 28 - 5);
    ctx_finish(c);
    test_free(c);
}

static void storage_failing_flush_reruns_batch_with_nothing_deferred(void **state) {
    failing_flush_reruns_batch(state, 0);
}

static void storage_failing_queued_flush_reruns_batch_with_nothing_deferred(void **state) {
    failing_flush_reruns_batch(state, 1);
}

static void storage_done_runs_on_loop_thread_in_order(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    int i;
    ctx_start(c, state, 128, 7, NULL);
    for (i = 0; i < NJOBS; i++) {
        c->jobs[i].fail = (i % 13) == 0;
        assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[i]), HV_OK);
    }
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(c->off_loop, 0);
    for (i = 0; i < NJOBS; i++) {
        assert_int_equal(c->jobs[i].done_calls, 1);
        assert_int_equal(c->jobs[i].done_seq, i);
    }
    ctx_finish(c);
    test_free(c);
}

static void storage_submit_is_busy_when_full(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    hv_storage_stats_t stats;
    int i;
    ctx_start(c, state, 4, 4, NULL);
    submit_blocker(c, &c->jobs[0]);
    for (i = 1; i < 4; i++)
        assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[i]), HV_OK);
    /* Full until done callbacks have run, whatever the thread has done meanwhile. */
    assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[4]), HV_EBUSY);
    uv_sem_post(&c->gate);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(c->jobs[4].done_calls, 0); /* refused: never called */
    for (i = 0; i < 4; i++) assert_int_equal(c->jobs[i].status, HV_OK);
    assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[4]), HV_OK);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(c->jobs[4].status, HV_OK);
    hv_storage_stats(c->storage, &stats);
    assert_int_equal(stats.busy, 1);
    ctx_finish(c);
    test_free(c);
}

/* A job that only counts; its done callback records the order done callbacks ran in. */
typedef struct seq_job {
    int *next_seq;
    int done_seq;
} seq_job_t;

static void on_seq_done(int status, void *arg) {
    seq_job_t *j = arg;
    assert_int_equal(status, HV_OK);
    j->done_seq = (*j->next_seq)++;
}

/*
 * The queue's slots come in chunks of 256 allocated as jobs arrive and freed as they are
 * delivered (engine/storage.c). A limit that is not a multiple of the chunk is still
 * exact (600 outstanding jobs, the 601st refused), and rounds that pass far more jobs
 * than the limit, reusing every chunk place several times, keep every done callback in
 * submission order.
 */
static void storage_queue_limit_and_order_hold_across_chunks(void **state) {
    enum { LIMIT = 600, ROUNDS = 5 };
    ctx_t *c = test_malloc(sizeof(*c));
    seq_job_t *jobs = test_calloc(LIMIT, sizeof(*jobs));
    hv_storage_stats_t stats;
    int next_seq, extra = 0, i, r;
    ctx_start(c, state, LIMIT, 64, NULL);
    for (r = 0; r < ROUNDS; r++) {
        next_seq = 0;
        for (i = 0; i < LIMIT; i++) {
            jobs[i].next_seq = &next_seq;
            jobs[i].done_seq = -1;
            assert_int_equal(hv_storage_submit(c->storage, noop_job, on_seq_done, &jobs[i]), HV_OK);
        }
        /* Done callbacks run only on this loop, which has not turned: all LIMIT are outstanding. */
        assert_int_equal(hv_storage_submit(c->storage, noop_job, NULL, &extra), HV_EBUSY);
        uv_run(&c->loop, UV_RUN_DEFAULT);
        for (i = 0; i < LIMIT; i++) assert_int_equal(jobs[i].done_seq, i);
    }
    hv_storage_stats(c->storage, &stats);
    assert_int_equal(stats.jobs, (uint64_t)LIMIT * ROUNDS);
    assert_int_equal(stats.busy, ROUNDS);
    ctx_finish(c);
    test_free(jobs);
    test_free(c);
}


static int orphan_job(hv_db_t *db, void *arg) {
    return hv_db_exec(db, "INSERT INTO child(parent) VALUES (424242)");
}

static void storage_commit_failure_fails_whole_batch(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    hv_storage_stats_t stats;
    count_req_t r;
    job_t orphan;
    int i;
    ctx_start(c, state, 64, 64,
              "CREATE TABLE parent(id INTEGER PRIMARY KEY);"
              "CREATE TABLE child(parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED)");
    submit_blocker(c, &c->jobs[0]);
    /* Jobs 1-3 and the orphan share the next batch; its COMMIT fails. */
    memset(&orphan, 0, sizeof(orphan));
    orphan.ctx = c;
    orphan.status = 1;
    for (i = 1; i < 4; i++)
        assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[i]), HV_OK);
    assert_int_equal(hv_storage_submit(c->storage, orphan_job, on_done, &orphan), HV_OK);
    uv_sem_post(&c->gate);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(c->jobs[0].status, HV_OK);
    for (i = 1; i < 4; i++) assert_int_not_equal(c->jobs[i].status, HV_OK);
    assert_int_not_equal(orphan.status, HV_OK);
    hv_storage_stats(c->storage, &stats);
    assert_int_equal(stats.commits_failed, 1);
    assert_int_equal(stats.jobs_failed, 4);
    /* Nothing of the failed batch was stored, and the thread goes on working. */
    c->jobs[10].status = 1;
    assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[10]), HV_OK);
    uv_run(&c->loop, UV_RUN_DEFAULT);
    assert_int_equal(c->jobs[10].status, HV_OK);
    count_rows(c, &r);
    assert_int_equal(r.count, 2);
    assert_int_equal(r.sum, 10);
    ctx_finish(c);
    test_free(c);
}

static void storage_free_drains_queue_and_closes(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    int i, n = 20;
    ctx_start(c, state, 64, 8, NULL);
    for (i = 0; i < n; i++)
        assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[i]), HV_OK);
    /* Free without running the loop: it runs every queued job and calls every done,
     * in order, before it returns; submitting from a done callback is refused. */
    c->try_resubmit = 1;
    c->resubmit_rc = 0;
    hv_storage_free(c->storage);
    for (i = 0; i < n; i++) {
        assert_int_equal(c->jobs[i].done_calls, 1);
        assert_int_equal(c->jobs[i].status, HV_OK);
        assert_int_equal(c->jobs[i].done_seq, i);
    }
    assert_int_equal(c->resubmit_rc, HV_ECLOSED);
    assert_int_equal(c->off_loop, 0);
    c->storage = NULL;
    /* The close callback releases the memory; then the loop is empty. */
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&c->loop), 0);
    uv_sem_destroy(&c->gate);
    uv_sem_destroy(&c->running);
    uv_sem_destroy(&c->ran);
    test_free(c);
}

static void storage_idle_loop_returns_and_closes(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    ctx_start(c, state, 8, 8, NULL);
    /* With nothing outstanding the storage does not hold the loop open. */
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(hv_storage_submit(c->storage, NULL, on_done, NULL), HV_EINVAL);
    ctx_finish(c);
    test_free(c);
}

/* Reads the durability the current transaction commits with: 1 durable, 0 relaxed. */
static int sync_job(hv_db_t *db, void *arg) {
    int *out = arg;
    hv_db_stmt_t *st = NULL;
    int sqlite = hv_db_kind(db) == HV_DB_SQLITE;
    int rc = hv_db_prepare(db, sqlite ? "PRAGMA synchronous" : "SHOW synchronous_commit", &st);
    if (rc == HV_OK) rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        if (sqlite) {
            *out = hv_db_column_int64(st, 0) == 2; /* FULL */
        } else {
            size_t n = 0;
            const char *v = hv_db_column_text(st, 0, &n);
            *out = v != NULL && strncmp(v, "on", n) == 0 && n == 2;
        }
        rc = HV_OK;
    }
    hv_db_done(st);
    return rc;
}

static void storage_lazy_batch_commits_relaxed_then_durable_again(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    int lazy_seen = -1, mixed_seen = -1, durable_seen = -1, lazy2_seen = -1;
    count_req_t r;
    start_sync = "FULL";
    ctx_start(c, state, 64, 64, NULL);
    start_sync = NULL;
    /* A batch of lazy jobs only: relaxed. */
    submit_blocker(c, &c->jobs[0]);
    assert_int_equal(hv_storage_submit_lazy(c->storage, insert_job, on_done, &c->jobs[1]), HV_OK);
    assert_int_equal(hv_storage_submit_lazy(c->storage, sync_job, NULL, &lazy_seen), HV_OK);
    uv_sem_post(&c->gate);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    /* A batch with one durable job among lazy ones: durable. */
    c->jobs[2].gate = 1;
    assert_int_equal(hv_storage_submit_lazy(c->storage, insert_job, on_done, &c->jobs[2]), HV_OK);
    hand_over_now(c);
    uv_sem_wait(&c->running);
    assert_int_equal(hv_storage_submit_lazy(c->storage, sync_job, NULL, &mixed_seen), HV_OK);
    assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[3]), HV_OK);
    uv_sem_post(&c->gate);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    /* Then a durable job alone, and a lazy one alone again. */
    assert_int_equal(hv_storage_submit(c->storage, sync_job, NULL, &durable_seen), HV_OK);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(hv_storage_submit_lazy(c->storage, sync_job, NULL, &lazy2_seen), HV_OK);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(lazy_seen, 0);
    assert_int_equal(mixed_seen, 1);
    assert_int_equal(durable_seen, 1);
    assert_int_equal(lazy2_seen, 0);
    assert_int_equal(c->jobs[1].status, HV_OK);
    assert_int_equal(c->jobs[3].status, HV_OK);
    count_rows(c, &r);
    assert_int_equal(r.count, 4);
    ctx_finish(c);
    test_free(c);
}

/* One loop turn against an idle storage thread: a lazy job (streamed, so its batch is
 * relaxed and running), then a durable one submitted while it runs. */
static int streamed_durable_seen = -1;

static void stream_lazy_then_durable(uv_timer_t *t) {
    ctx_t *c = t->data;
    c->jobs[0].gate = 1;
    assert_int_equal(hv_storage_submit_lazy(c->storage, insert_job, on_done, &c->jobs[0]), HV_OK);
    c->first_ran_mid_turn = sem_wait_bounded(&c->running, 10000) == 0;
    assert_int_equal(hv_storage_submit(c->storage, sync_job, NULL, &streamed_durable_seen), HV_OK);
    uv_sem_post(&c->gate);
    /* The turn goes on: time for the relaxed batch to take the durable job if it would. */
    uv_sleep(50);
    uv_close((uv_handle_t *)t, NULL);
}

/* A relaxed batch (lazy jobs only, synchronous NORMAL) takes no streamed job: a durable
 * job of the same turn commits in the next batch, with FULL. */
static void storage_relaxed_streamed_batch_takes_no_durable_job(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    hv_storage_stats_t stats;
    uv_timer_t timer;
    start_sync = "FULL";
    ctx_start(c, state, 64, 64, NULL);
    start_sync = NULL;
    streamed_durable_seen = -1;
    wait_parked(c);
    assert_int_equal(uv_timer_init(&c->loop, &timer), 0);
    timer.data = c;
    assert_int_equal(uv_timer_start(&timer, stream_lazy_then_durable, 0, 0), 0);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c->first_ran_mid_turn, 1);
    assert_int_equal(c->jobs[0].status, HV_OK);
    assert_int_equal(streamed_durable_seen, 1);
    hv_storage_stats(c->storage, &stats);
    assert_int_equal(stats.batches, 2);
    ctx_finish(c);
    test_free(c);
}

static void storage_lazy_changes_nothing_when_not_full(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    int seen = -1;
    /* The default durability (never set): lazy jobs commit as every other job. */
    ctx_start(c, state, 8, 8, NULL);
    assert_int_equal(hv_storage_submit_lazy(c->storage, sync_job, NULL, &seen), HV_OK);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    assert_int_not_equal(seen, -1);
    {
        int seen2 = -1;
        assert_int_equal(hv_storage_submit(c->storage, sync_job, NULL, &seen2), HV_OK);
        assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
        assert_int_equal(seen, seen2);
    }
    ctx_finish(c);
    test_free(c);
}

/* ---- pipelined commits (hv_storage_pipeline) ---------------------------------- */

/* The existing behaviours hold with pipelined commits too. */
static void storage_pipelined_group_commit_batches_jobs(void **state) {
    start_pipeline = 1000;
    storage_group_commit_batches_jobs(state);
    start_pipeline = 0;
}

static void storage_pipelined_failing_job_rolls_back_alone(void **state) {
    start_pipeline = 1000;
    storage_failing_job_rolls_back_alone(state);
    start_pipeline = 0;
}

static void storage_pipelined_rerun_failure_keeps_each_outcome(void **state) {
    start_pipeline = 1000;
    storage_rerun_job_failure_reruns_batch_with_savepoints(state);
    start_pipeline = 0;
}

/* The sync hook: holds the fdatasync while hold is set, and fails it with sync_rc. */
static uv_sem_t sync_entered, sync_gate;
static int sync_hold, sync_rc;

static int sync_hook(void) {
    if (__atomic_load_n(&sync_hold, __ATOMIC_SEQ_CST)) {
        uv_sem_post(&sync_entered);
        uv_sem_wait(&sync_gate);
    }
    return sync_rc;
}

static int is_sqlite(void **state) { return ((const dbtest_backend_t *)*state)->url == NULL; }

/*
 * While batch 1's fdatasync is held, batch 2 runs (the pipeline), and batch 1's done
 * callback has not run: an answer waits for its WAL sync. The jobs commit with
 * synchronous OFF (no fsync of their own).
 */
static void storage_pipelined_next_batch_runs_while_answers_wait_for_sync(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    hv_storage_stats_t stats;
    count_req_t r;
    int durable = -1;
    if (!is_sqlite(state)) {
        start_pipeline = 1000;
        ctx_start(c, state, 16, 16, NULL); /* asserts HV_ENOTSUP */
        start_pipeline = 0;
        ctx_finish(c);
        test_free(c);
        return;
    }
    assert_int_equal(uv_sem_init(&sync_entered, 0), 0);
    assert_int_equal(uv_sem_init(&sync_gate, 0), 0);
    start_pipeline = 1000;
    ctx_start(c, state, 16, 16, NULL);
    start_pipeline = 0;
    hv__storage_sync_hook = sync_hook;
    sync_rc = HV_OK;
    __atomic_store_n(&sync_hold, 1, __ATOMIC_SEQ_CST);
    assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[0]), HV_OK);
    hand_over_now(c);
    uv_sem_wait(&sync_entered); /* batch 1 committed; its fdatasync is held */
    submit_blocker(c, &c->jobs[1]); /* batch 2 is running on the storage thread */
    uv_sleep(20);
    uv_run(&c->loop, UV_RUN_NOWAIT);
    assert_int_equal(c->jobs[0].done_calls, 0);
    assert_int_equal(c->jobs[1].done_calls, 0);
    assert_int_equal(hv_storage_submit(c->storage, sync_job, NULL, &durable), HV_OK);
    __atomic_store_n(&sync_hold, 0, __ATOMIC_SEQ_CST);
    uv_sem_post(&c->gate);
    uv_sem_post(&sync_gate);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    hv__storage_sync_hook = NULL;
    assert_int_equal(c->jobs[0].status, HV_OK);
    assert_int_equal(c->jobs[1].status, HV_OK);
    assert_true(c->jobs[0].done_seq < c->jobs[1].done_seq);
    assert_int_equal(durable, 0); /* synchronous OFF inside the pipeline */
    hv_storage_stats(c->storage, &stats);
    assert_true(stats.syncs >= 2);
    count_rows(c, &r);
    assert_int_equal(r.count, 2);
    ctx_finish(c);
    uv_sem_destroy(&sync_entered);
    uv_sem_destroy(&sync_gate);
    test_free(c);
}

/* A failed fdatasync fails the answers it covered, and every later job fails without running. */
static void storage_pipelined_sync_failure_fails_answers(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    int i;
    if (!is_sqlite(state)) {
        test_free(c);
        return; /* pipelining is refused on PostgreSQL: the test above checks it */
    }
    start_pipeline = 1000;
    ctx_start(c, state, 16, 16, NULL);
    start_pipeline = 0;
    hv__storage_sync_hook = sync_hook;
    sync_rc = HV_EIO;
    for (i = 0; i < 3; i++)
        assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[i]), HV_OK);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    for (i = 0; i < 3; i++) assert_int_equal(c->jobs[i].status, HV_EIO);
    sync_rc = HV_OK;
    assert_int_equal(hv_storage_submit(c->storage, insert_job, on_done, &c->jobs[3]), HV_OK);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    hv__storage_sync_hook = NULL;
    assert_int_equal(c->jobs[3].status, HV_EIO);
    assert_int_equal(c->jobs[3].runs, 0);
    ctx_finish(c);
    test_free(c);
}

/*
 * Checkpoints after every commit (threshold 1 page) while batches keep committing:
 * every row is kept, the WAL is restarted (it stays small), and a fresh connection
 * opened after the storage is closed reads every row and a sound database.
 */
static void storage_pipelined_checkpoints_keep_every_row(void **state) {
    const dbtest_backend_t *b = *state;
    ctx_t *c = test_malloc(sizeof(*c));
    hv_storage_stats_t stats;
    hv_db_t *db = NULL, *two = NULL;
    hv_error_t err;
    char name[64];
    count_req_t r;
    int round, i;
    if (!is_sqlite(state)) {
        test_free(c);
        return; /* pipelining is refused on PostgreSQL */
    }
    start_pipeline = 1;
    ctx_start(c, state, 128, 8, NULL);
    start_pipeline = 0;
    for (round = 0; round < 10; round++) {
        for (i = round * 10; i < round * 10 + 10; i++)
            assert_int_equal(hv_storage_submit_rerun(c->storage, insert_job, on_done, &c->jobs[i]), HV_OK);
        assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    }
    for (i = 0; i < NJOBS; i++) assert_int_equal(c->jobs[i].status, HV_OK);
    hv_storage_stats(c->storage, &stats);
    assert_true(stats.checkpoints > 0);
    count_rows(c, &r);
    assert_int_equal(r.count, NJOBS);
    /* A second connection while the writer is open reads every row. */
    two = dbtest_reopen(b, c->db);
    assert_int_equal(dbtest_query_int(two, "SELECT COUNT(*) FROM jobs"), NJOBS);
    hv_db_close(two);
    snprintf(name, sizeof(name), "%s", c->db->name);
    ctx_finish(c);
    /* After the close (FULL again, SQLite's last checkpoint): a sound database, every row. */
    hv_error_clear(&err);
    assert_int_equal(hv_db_open(NULL, b->dir, name, &db, &err), HV_OK);
    assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM jobs"), NJOBS);
    assert_int_equal(dbtest_query_int(db, "SELECT COUNT(*) FROM pragma_integrity_check WHERE integrity_check = 'ok'"), 1);
    hv_db_close(db);
    test_free(c);
}

/* ---- the checkpoint thread (hv_storage_checkpoint_thread) ---- */

/* The pass hook: holds the checkpoint thread's next pass once pass_hold is set. */
static uv_sem_t pass_entered, pass_gate;
static int pass_hold, pass_let_go_by_timer;

static void pass_hook(void) {
    if (__atomic_exchange_n(&pass_hold, 0, __ATOMIC_SEQ_CST)) { /* the passes after it run freely */
        uv_sem_post(&pass_entered);
        uv_sem_wait(&pass_gate);
    }
}

/* Writes a 64 KiB row: more pages in one commit than the test's limit of 8. */
static int big_job(hv_db_t *db, void *arg) {
    job_t *j = arg;
    hv_db_stmt_t *st = NULL;
    size_t n = 65536;
    char *body = test_malloc(n);
    int rc;
    __atomic_add_fetch(&j->runs, 1, __ATOMIC_SEQ_CST);
    memset(body, 'a' + j->id % 26, n);
    rc = hv_db_prepare(db, "INSERT INTO jobs(id, body) VALUES ($1, $2)", &st);
    if (rc == HV_OK) rc = hv_db_bind_int64(st, 1, j->id);
    if (rc == HV_OK) rc = hv_db_bind_text(st, 2, body, n);
    if (rc == HV_OK) rc = hv_db_step(st);
    hv_db_done(st);
    test_free(body);
    return rc < 0 ? rc : HV_OK;
}

/* Lets the held pass go if the test is stuck behind it (the behaviour under test is broken). */
static void let_pass_go(uv_timer_t *t) {
    (void)t;
    pass_let_go_by_timer = 1;
    uv_sem_post(&pass_gate);
}

/*
 * A commit that takes the WAL to the checkpoint thread's limit is answered while the pass
 * that must copy it is still held: the writer waits for that pass before it begins its
 * next transaction, not inside the COMMIT (engine/db_sqlite.c ckpt_settle). The next batch
 * runs only once that pass has ended. Before, the done callback waited for the pass.
 */
static void storage_checkpoint_thread_answers_a_commit_before_its_pass_ends(void **state) {
    ctx_t *c = test_malloc(sizeof(*c));
    uv_timer_t timer;
    count_req_t r;
    if (!is_sqlite(state)) {
        test_free(c);
        return; /* the checkpoint thread is SQLite's */
    }
    ctx_start(c, state, 16, 16, NULL);
    assert_int_equal(hv_storage_checkpoint_thread(c->storage, 1), HV_OK); /* a pass per page, the limit at 8 */
    assert_int_equal(uv_sem_init(&pass_entered, 0), 0);
    assert_int_equal(uv_sem_init(&pass_gate, 0), 0);
    pass_let_go_by_timer = 0;
    hv__db_ckpt_pass_hook = pass_hook;
    __atomic_store_n(&pass_hold, 1, __ATOMIC_SEQ_CST);
    assert_int_equal(hv_storage_submit(c->storage, big_job, on_done, &c->jobs[0]), HV_OK);
    hand_over_now(c);
    uv_sem_wait(&pass_entered); /* job 0 committed past the limit; the pass it asked for is held */
    assert_int_equal(uv_timer_init(&c->loop, &timer), 0);
    assert_int_equal(uv_timer_start(&timer, let_pass_go, 10000, 0), 0);
    while (c->jobs[0].done_calls == 0) uv_run(&c->loop, UV_RUN_ONCE);
    assert_int_equal(c->jobs[0].status, HV_OK);
    assert_int_equal(pass_let_go_by_timer, 0); /* answered while its pass was held */
    uv_timer_stop(&timer);
    /* The next batch waits for the pass before it begins. */
    assert_int_equal(hv_storage_submit(c->storage, big_job, on_done, &c->jobs[1]), HV_OK);
    hand_over_now(c);
    uv_sleep(50);
    uv_run(&c->loop, UV_RUN_NOWAIT);
    assert_int_equal(__atomic_load_n(&c->jobs[1].runs, __ATOMIC_SEQ_CST), 0);
    assert_int_equal(c->jobs[1].done_calls, 0);
    uv_sem_post(&pass_gate);
    uv_close((uv_handle_t *)&timer, NULL);
    assert_int_equal(uv_run(&c->loop, UV_RUN_DEFAULT), 0);
    hv__db_ckpt_pass_hook = NULL;
    assert_int_equal(c->jobs[1].status, HV_OK);
    assert_int_equal(c->jobs[1].runs, 1);
    count_rows(c, &r);
    assert_int_equal(r.count, 2);
    ctx_finish(c);
    uv_sem_destroy(&pass_entered);
    uv_sem_destroy(&pass_gate);
    test_free(c);
}

int run_storage_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(storage_group_commit_batches_jobs),
        cmocka_unit_test(storage_jobs_of_one_loop_turn_commit_in_one_batch),
        cmocka_unit_test(storage_job_submitted_by_a_timer_runs_without_io),
        cmocka_unit_test(storage_idle_thread_runs_a_turns_jobs_before_it_ends_and_commits_them_once),
        cmocka_unit_test(storage_busy_thread_gets_a_turns_jobs_at_its_end),
        cmocka_unit_test(storage_failing_job_rolls_back_alone),
        cmocka_unit_test(storage_queued_failure_fails_its_own_job),
        cmocka_unit_test(storage_rerun_job_failure_reruns_batch_with_savepoints),
        cmocka_unit_test(storage_plain_job_guards_the_rest_of_its_batch),
        cmocka_unit_test(storage_deferred_writes_of_a_failing_job_go_with_it),
        cmocka_unit_test(storage_failing_flush_reruns_batch_with_nothing_deferred),
        cmocka_unit_test(storage_failing_queued_flush_reruns_batch_with_nothing_deferred),
        cmocka_unit_test(storage_done_runs_on_loop_thread_in_order),
        cmocka_unit_test(storage_submit_is_busy_when_full),
        cmocka_unit_test(storage_queue_limit_and_order_hold_across_chunks),
        cmocka_unit_test(storage_commit_failure_fails_whole_batch),
        cmocka_unit_test(storage_free_drains_queue_and_closes),
        cmocka_unit_test(storage_idle_loop_returns_and_closes),
        cmocka_unit_test(storage_lazy_batch_commits_relaxed_then_durable_again),
        cmocka_unit_test(storage_lazy_changes_nothing_when_not_full),
        cmocka_unit_test(storage_relaxed_streamed_batch_takes_no_durable_job),
        cmocka_unit_test(storage_pipelined_group_commit_batches_jobs),
        cmocka_unit_test(storage_pipelined_failing_job_rolls_back_alone),
        cmocka_unit_test(storage_pipelined_rerun_failure_keeps_each_outcome),
        cmocka_unit_test(storage_pipelined_next_batch_runs_while_answers_wait_for_sync),
        cmocka_unit_test(storage_pipelined_sync_failure_fails_answers),
        cmocka_unit_test(storage_pipelined_checkpoints_keep_every_row),
        cmocka_unit_test(storage_checkpoint_thread_answers_a_commit_before_its_pass_ends),
    };
    return dbtest_run_group("engine/storage", tests, HV_ARRAY_LEN(tests));
}
