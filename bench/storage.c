/*
 * storage.c — throughput of durable writes through the storage thread.
 *
 * Inserts N rows of a 1 KiB text payload, one job each, through hv_storage,
 * keeping K jobs outstanding (as K concurrent clients waiting for their ACK
 * would), and prints jobs per second, transactions, the average batch and the
 * average COMMIT time. Every job is durable when its done callback runs
 * (synchronous=FULL unless --sync says otherwise).
 *
 *   bench/bin/storage [--dir DIR | --db URL] [--jobs N] [--inflight K] [--batch B]
 *                 [--sync FULL|NORMAL|OFF] [--bytes SIZE] [--pipeline PAGES]
 *
 * --pipeline turns on pipelined commits (hv_storage_pipeline, SQLite FULL only) with
 * checkpoints every PAGES WAL pages; 0 (the default) leaves them off.
 *
 * DIR defaults to a fresh directory under /var/tmp (a real disk: tmpfs would
 * make fsync free and the figure meaningless), removed afterwards.
 */
#include "config.h"
#include "engine/engine.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct bench {
    hv_storage_t *storage;
    long total, submitted, completed, failed;
    long inflight;
    size_t bytes;
    char *payload;
} bench_t;

static int insert_job(hv_db_t *db, void *arg) {
    bench_t *b = arg;
    hv_db_stmt_t *st = NULL;
    int rc = hv_db_prepare(db, "INSERT INTO msg(body) VALUES ($1)", &st);
    if (rc == HV_OK) rc = hv_db_bind_text(st, 1, b->payload, b->bytes);
    if (rc == HV_OK) rc = hv_db_step(st);
    hv_db_done(st);
    return rc;
}

static void on_done(int status, void *arg);

static void fill(bench_t *b) {
    while (b->submitted < b->total && b->submitted - b->completed < b->inflight) {
        if (hv_storage_submit(b->storage, insert_job, on_done, b) != HV_OK) break;
        b->submitted++;
    }
}

static void on_done(int status, void *arg) {
    bench_t *b = arg;
    b->completed++;
    if (status != HV_OK) b->failed++;
    fill(b);
}

static int remove_tree(const char *dir) {
    char cmd[1100];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd);
}

int main(int argc, char **argv) {
    const char *url = NULL, *dir = NULL, *sync = "FULL";
    char tmpdir[] = "/var/tmp/hvbench.XXXXXX";
    long batch = 512, pipeline = 0;
    bench_t b;
    uv_loop_t loop;
    hv_db_t *db = NULL;
    hv_error_t err;
    hv_storage_stats_t st;
    uint64_t t0, t1;
    double secs;
    int i, made_dir = 0;
    memset(&b, 0, sizeof(b));
    b.total = 20000;
    b.inflight = 256;
    b.bytes = 1024;
    for (i = 1; i < argc; i += 2) { /* --option value pairs */
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) goto usage;
        if (strcmp(a, "--dir") == 0) dir = v;
        else if (strcmp(a, "--db") == 0) url = v;
        else if (strcmp(a, "--jobs") == 0) b.total = atol(v);
        else if (strcmp(a, "--inflight") == 0) b.inflight = atol(v);
        else if (strcmp(a, "--batch") == 0) batch = atol(v);
        else if (strcmp(a, "--sync") == 0) sync = v;
        else if (strcmp(a, "--bytes") == 0) b.bytes = (size_t)atol(v);
        else if (strcmp(a, "--pipeline") == 0) pipeline = atol(v);
        else goto usage;
    }
    if (b.total <= 0 || b.inflight <= 0 || batch <= 0) goto usage;
    if (url == NULL && dir == NULL) {
        if (mkdtemp(tmpdir) == NULL) {
            perror("mkdtemp");
            return 1;
        }
        dir = tmpdir;
        made_dir = 1;
    }
    b.payload = hv_malloc(b.bytes + 1);
    memset(b.payload, 'x', b.bytes);
    if (hv_db_open(url, dir, "bench_storage", &db, &err) != HV_OK) {
        fprintf(stderr, "open: %s\n", err.message);
        return 1;
    }
    if (hv_db_set_synchronous(db, sync) != HV_OK ||
        hv_db_exec(db, "DROP TABLE IF EXISTS msg") != HV_OK ||
        hv_db_exec(db, hv_db_kind(db) == HV_DB_PG
                           ? "CREATE TABLE msg(id BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)"
                           : "CREATE TABLE msg(id INTEGER PRIMARY KEY, body TEXT NOT NULL)") != HV_OK) {
        fprintf(stderr, "setup: %s\n", hv_db_errmsg(db));
        return 1;
    }
    uv_loop_init(&loop);
    if (hv_storage_new(&loop, db, (size_t)b.inflight, (size_t)batch, &b.storage) != HV_OK) {
        fprintf(stderr, "hv_storage_new failed\n");
        return 1;
    }
    if (pipeline > 0 && hv_storage_pipeline(b.storage, (int)pipeline) != HV_OK) {
        fprintf(stderr, "hv_storage_pipeline failed (SQLite with --sync FULL only)\n");
        return 1;
    }
    t0 = hv_mono_ns();
    fill(&b);
    uv_run(&loop, UV_RUN_DEFAULT);
    t1 = hv_mono_ns();
    hv_storage_stats(b.storage, &st);
    hv_storage_free(b.storage);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
    secs = (double)(t1 - t0) / 1e9;
    printf("backend=%s sync=%s payload=%zuB jobs=%ld inflight=%ld max_batch=%ld pipeline=%ld\n",
           url != NULL ? "postgresql" : "sqlite", sync, b.bytes, b.completed, b.inflight, batch, pipeline);
    if (pipeline > 0)
        printf("wal_syncs=%llu  avg_sync_ms=%.3f  checkpoints=%llu\n", (unsigned long long)st.syncs,
               st.syncs ? (double)st.sync_ns / (double)st.syncs / 1e6 : 0.0,
               (unsigned long long)st.checkpoints);
    printf("jobs/s=%.0f  seconds=%.3f  failed=%ld  transactions=%llu  avg_batch=%.1f  "
           "largest_batch=%llu  avg_commit_ms=%.3f  avg_txn_ms=%.3f\n",
           (double)b.completed / secs, secs, b.failed, (unsigned long long)st.batches,
           st.batches ? (double)st.jobs / (double)st.batches : 0.0,
           (unsigned long long)st.largest_batch,
           st.batches ? (double)st.commit_ns / (double)st.batches / 1e6 : 0.0,
           st.batches ? (double)st.batch_ns / (double)st.batches / 1e6 : 0.0);
    hv_free(b.payload);
    if (made_dir) remove_tree(tmpdir);
    return b.failed != 0;
usage:
    fprintf(stderr, "usage: bench/bin/storage [--dir DIR | --db URL] [--jobs N] [--inflight K] "
                    "[--batch B] [--sync FULL|NORMAL|OFF] [--bytes N] [--pipeline PAGES]\n");
    return 2;
}
