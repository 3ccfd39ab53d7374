/*
 * lease.c — one engine at a time runs a connection's sync.
 *
 * Several engines may share one database (PostgreSQL): each loads the
 * connections at start and schedules them. A run first takes the connection's
 * lease, a compare-and-set on its row in the connections table:
 *
 *   UPDATE connections SET lease_holder = me, lease_until = now + ehr.lease_ttl
 *    WHERE id = C AND (lease_until IS NULL OR lease_until < now OR lease_holder = me)
 *
 * one row changed → this engine holds it. A scheduled run also claims its slot
 * in the same statement (AND next_run_at > 0 AND next_run_at <= now, setting the
 * next start), so of several engines that see the same due time exactly one
 * starts it and the others read the new next start. PostgreSQL's row lock
 * serializes concurrent claims (READ COMMITTED re-checks the WHERE clause on the
 * updated row); SQLite has one writer. The run renews the lease at every
 * checkpoint and gives it back when it ends (store.c, run_job); an engine that
 * died holding it loses it after ehr.lease_ttl. "me" is the engine's id, kept in
 * <data>/ehr-engine.id so that an engine restarted after a crash resumes its
 * own runs at once.
 */
#include "config.h"
#include "adapters/ehr/ehr_int.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

typedef struct lease_job {
    hv__ehr_t *m;
    char conn[HV__EHR_ID_MAX];
    char holder[HV__EHR_HOLDER_MAX];
    int scheduled;
    int64_t now, until, next;
    /* out */
    int ok;
    int64_t db_next, db_since;
    char db_holder[HV__EHR_HOLDER_MAX];
    hv__ehr_lease_cb cb;
    void *ud;
} lease_job_t;

int hv__ehr_engine_id(hv__ehr_t *m) {
    char path[4096];
    unsigned char rnd[8];
    int fd;
    ssize_t n;
    snprintf(path, sizeof(path), "%s/ehr-engine.id", hv_engine_data_dir(m->e));
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        n = read(fd, m->holder, sizeof(m->holder) - 1);
        close(fd);
        if (n == 16) {
            m->holder[16] = '\0';
            return HV_OK;
        }
    }
    hv_random_secure(rnd, sizeof(rnd));
    hv_hex(rnd, sizeof(rnd), m->holder);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return HV_OK; /* a fresh id per process: still correct, resumes wait for ehr.lease_ttl */
    n = write(fd, m->holder, 16);
    close(fd);
    (void)n;
    return HV_OK;
}

static int claim_job(hv_db_t *db, void *arg) {
    lease_job_t *j = arg;
    hv_db_stmt_t *st = NULL;
    int rc;
    if (j->scheduled)
        rc = hv_db_prepare(db,
                           "UPDATE connections SET lease_holder = $1, lease_until = $2, next_run_at = $3 WHERE id = $4"
                           " AND next_run_at > 0 AND next_run_at <= $5"
                           " AND (lease_until IS NULL OR lease_until < $5 OR lease_holder = $1)",
                           &st);
    else
        rc = hv_db_prepare(db,
                           "UPDATE connections SET lease_holder = $1, lease_until = $2 WHERE id = $3"
                           " AND (lease_until IS NULL OR lease_until < $4 OR lease_holder = $1)",
                           &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, j->holder, strlen(j->holder));
    hv_db_bind_int64(st, 2, j->until);
    if (j->scheduled) {
        hv_db_bind_int64(st, 3, j->next);
        hv_db_bind_text(st, 4, j->conn, strlen(j->conn));
        hv_db_bind_int64(st, 5, j->now);
    } else {
        hv_db_bind_text(st, 3, j->conn, strlen(j->conn));
        hv_db_bind_int64(st, 4, j->now);
    }
    rc = hv_db_step(st);
    if (rc >= 0) j->ok = hv_db_changes(db) == 1;
    hv_db_done(st);
    if (rc < 0) return rc;
    /* What the row says now: the next start and the incremental position another engine may have moved. */
    rc = hv_db_prepare(db, "SELECT next_run_at, since_ms, lease_holder FROM connections WHERE id = $1", &st);
    if (rc != HV_OK) return rc;
    hv_db_bind_text(st, 1, j->conn, strlen(j->conn));
    rc = hv_db_step(st);
    if (rc == HV_DB_ROW) {
        size_t n = 0;
        const char *h = hv_db_column_text(st, 2, &n);
        j->db_next = hv_db_column_int64(st, 0);
        j->db_since = hv_db_column_int64(st, 1);
        snprintf(j->db_holder, sizeof(j->db_holder), "%.*s", (int)n, h ? h : "");
    }
    hv_db_done(st);
    return rc < 0 ? rc : HV_OK;
}

static void claim_done(int status, void *arg) {
    lease_job_t *j = arg;
    hv__ehr_conn_t *c = hv__ehr_conn_find(j->m, j->conn);
    int ok = status == HV_OK && j->ok;
    if (c != NULL && status == HV_OK) {
        if (j->db_since > c->since_ms) c->since_ms = j->db_since;
        if (!ok && j->scheduled) c->next_run_at = j->db_next;
    }
    if (status != HV_OK)
        hv_log(HV_LOG_ERROR, "ehr.lease_failed", "taking the lease of %s failed: %s", j->conn, hv_strerror(status));
    j->cb(j->m, c, ok, j->db_holder, j->ud);
    hv_free(j);
}

int hv__ehr_lease_claim(hv__ehr_t *m, hv__ehr_conn_t *c, int scheduled, hv__ehr_lease_cb cb, void *ud) {
    lease_job_t *j = hv_calloc(1, sizeof(*j));
    int rc;
    if (j == NULL) return HV_ENOMEM;
    j->m = m;
    snprintf(j->conn, sizeof(j->conn), "%s", c->id);
    snprintf(j->holder, sizeof(j->holder), "%s", m->holder);
    j->scheduled = scheduled;
    j->now = (int64_t)hv_now_ms();
    j->until = j->now + (int64_t)m->lease_ttl_ms;
    j->next = (int64_t)hv_ehr_schedule_next(&c->schedule, (uint64_t)j->now);
    j->cb = cb;
    j->ud = ud;
    rc = hv_storage_submit(m->storage, claim_job, claim_done, j);
    if (rc != HV_OK) hv_free(j);
    return rc;
}
