/*
 * load_snomed.c — loads SNOMED CT from an RF2 snapshot (SNOMED CT Release File
 * Specifications, §§ 4.2.1 Concept, 4.2.2 Description, 4.2.3 Relationship): a folder
 * holding (at any depth up to 4) the tab-separated, UTF-8 files
 *
 *   sct2_Concept_Snapshot_*.txt       id effectiveTime active moduleId definitionStatusId
 *   sct2_Description_Snapshot*.txt    id effectiveTime active moduleId conceptId
 *                                     languageCode typeId term caseSignificanceId
 *   sct2_Relationship_Snapshot_*.txt  id effectiveTime active moduleId sourceId
 *                                     destinationId relationshipGroup typeId
 *                                     characteristicTypeId modifierId
 *
 * each with its header row. The display is the active fully specified name (typeId
 * 900000000000003001); every active description is searchable; active |is a|
 * relationships (typeId 116680003) give the parents used by $subsumes. The version
 * is the release date in the concept file's name (…_INT_20240101.txt) unless given.
 */
#include "config.h"

#include <dirent.h>
#include <string.h>
#include <sys/stat.h>

#include "terminology/terminology_int.h"

#define FSN_TYPE "900000000000003001"
#define IS_A_TYPE "116680003"
#define MAX_DEPTH 4

/* Finds the first regular file under dir whose name starts with prefix (and is not a
 * "StatedRelationship" file). */
static int find_file(const char *dir, const char *prefix, int depth, char *out, size_t outlen) {
    DIR *d = opendir(dir);
    struct dirent *e;
    int found = 0;
    if (d == NULL) return 0;
    while (!found && (e = readdir(d)) != NULL) {
        char path[4096];
        struct stat st;
        if (e->d_name[0] == '.') continue;
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, e->d_name) >= sizeof path) continue;
        if (stat(path, &st) != 0) continue;
        if (S_ISDIR(st.st_mode)) {
            if (depth < MAX_DEPTH) found = find_file(path, prefix, depth + 1, out, outlen);
        } else if (S_ISREG(st.st_mode) && strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            snprintf(out, outlen, "%s", path);
            found = 1;
        }
    }
    closedir(d);
    return found;
}

/* Opens an RF2 file and checks its header's first columns. */
static int open_rf2(const char *path, const char *const *cols, size_t ncols, hv__csv_t **out,
                    hv_error_t *err) {
    hv__csv_t *c = NULL;
    char **f;
    size_t n, i;
    int rc = hv__csv_open(path, '\t', 0, &c, err);
    if (rc != HV_OK) return rc;
    rc = hv__csv_next(c, &f, &n, err);
    if (rc == HV_OK && n < ncols) rc = HV_EPROTO;
    for (i = 0; rc == HV_OK && i < ncols; i++)
        if (strcmp(f[i], cols[i]) != 0) rc = HV_EPROTO;
    if (rc != HV_OK) {
        hv__csv_close(c);
        if (rc == HV_EPROTO || rc == HV_ENOTFOUND) {
            hv_error_set(err, HV_EPROTO, path, "not an RF2 file: the header must start with %s",
                         cols[0]);
            rc = HV_EPROTO;
        }
        return rc;
    }
    *out = c;
    return HV_OK;
}

static int row_error(hv_error_t *err, const char *path, hv__csv_t *c, const char *what) {
    hv_error_set(err, HV_EPROTO, path, "line %ld: %s", hv__csv_line(c), what);
    return HV_EPROTO;
}

static int is_sctid(const char *s) {
    size_t n = strlen(s), i;
    if (n < 6 || n > 18) return 0;
    for (i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

int hv__load_snomed(hv_db_t *db, const char *path, const char *version, FILE *progress,
                    hv_error_t *err) {
    static const char *const ccols[] = {"id", "effectiveTime", "active", "moduleId"};
    static const char *const dcols[] = {"id", "effectiveTime", "active", "moduleId", "conceptId",
                                        "languageCode", "typeId", "term"};
    static const char *const rcols[] = {"id", "effectiveTime", "active", "moduleId", "sourceId",
                                        "destinationId", "relationshipGroup", "typeId"};
    char cpath[4096], dpath[4096], rpath[4096], ver[32] = "unknown";
    hv__csv_t *c = NULL;
    hv__load_t l;
    char **f;
    size_t n;
    int rc, began = 0;
    hv_db_stmt_t *st = NULL;

    if (!find_file(path, "sct2_Concept_Snapshot", 0, cpath, sizeof cpath) ||
        !find_file(path, "sct2_Description_Snapshot", 0, dpath, sizeof dpath) ||
        !find_file(path, "sct2_Relationship_Snapshot", 0, rpath, sizeof rpath)) {
        hv_error_set(err, HV_ENOTFOUND, path,
                     "not an RF2 snapshot: the folder must hold sct2_Concept_Snapshot, "
                     "sct2_Description_Snapshot and sct2_Relationship_Snapshot files");
        return HV_ENOTFOUND;
    }
    {
        const char *u = strrchr(cpath, '_');
        if (u != NULL && strlen(u + 1) >= 8) snprintf(ver, sizeof ver, "%.8s", u + 1);
    }
    rc = open_rf2(cpath, ccols, HV_ARRAY_LEN(ccols), &c, err);
    if (rc != HV_OK) return rc;
    rc = hv__load_begin(&l, db, HV_TERMINOLOGY_SNOMED, cpath, progress, err);
    if (rc != HV_OK) goto out;
    began = 1;
    /* Concepts first, displayed by their id until their FSN is read. */
    while ((rc = hv__csv_next(c, &f, &n, err)) == HV_OK) {
        if (n == 1 && f[0][0] == '\0') continue;
        if (n < 5 || !is_sctid(f[0]) || (strcmp(f[2], "0") != 0 && strcmp(f[2], "1") != 0)) {
            rc = row_error(err, cpath, c, "not a concept row (id, effectiveTime, active 0/1 ...)");
            break;
        }
        rc = hv__load_concept(&l, f[0], f[0], f[2][0] == '1', NULL, NULL, err);
        if (rc != HV_OK) break;
        hv__load_progress(&l, -1);
    }
    if (rc != HV_ENOTFOUND) goto out;
    rc = hv__load_flush(&l, err); /* the FSN updates below need the concept rows */
    if (rc != HV_OK) goto out;
    hv__csv_close(c);
    c = NULL;
    rc = open_rf2(dpath, dcols, HV_ARRAY_LEN(dcols), &c, err);
    if (rc != HV_OK) goto out;
    while ((rc = hv__csv_next(c, &f, &n, err)) == HV_OK) {
        const char *p[3];
        if (n == 1 && f[0][0] == '\0') continue;
        if (n < 9 || !is_sctid(f[4])) {
            rc = row_error(err, dpath, c, "not a description row");
            break;
        }
        if (f[2][0] != '1') continue;
        p[0] = l.system;
        p[1] = f[4];
        p[2] = f[7];
        rc = hv__load_text(&l, f[4], f[7], err);
        if (rc != HV_OK) break;
        if (strcmp(f[6], FSN_TYPE) == 0) {
            rc = hv_db_prepare(db, "UPDATE concept SET display = $3 WHERE system = $1 AND code = $2",
                               &st);
            if (rc == HV_OK) rc = hv_db_bind_text(st, 1, p[0], strlen(p[0]));
            if (rc == HV_OK) rc = hv_db_bind_text(st, 2, p[1], strlen(p[1]));
            if (rc == HV_OK) rc = hv_db_bind_text(st, 3, p[2], strlen(p[2]));
            if (rc == HV_OK) rc = hv_db_step(st);
            if (st != NULL) hv_db_done(st);
            st = NULL;
        }
        if (rc != HV_OK) {
            hv_error_set(err, HV_EDB, dpath, "line %ld: %s", hv__csv_line(c), hv_db_errmsg(db));
            rc = HV_EDB;
            break;
        }
    }
    if (rc != HV_ENOTFOUND) goto out;
    hv__csv_close(c);
    c = NULL;
    rc = open_rf2(rpath, rcols, HV_ARRAY_LEN(rcols), &c, err);
    if (rc != HV_OK) goto out;
    while ((rc = hv__csv_next(c, &f, &n, err)) == HV_OK) {
        if (n == 1 && f[0][0] == '\0') continue;
        if (n < 10 || !is_sctid(f[4]) || !is_sctid(f[5])) {
            rc = row_error(err, rpath, c, "not a relationship row");
            break;
        }
        if (f[2][0] != '1' || strcmp(f[7], IS_A_TYPE) != 0) continue;
        rc = hv__load_parent(&l, f[4], f[5], err);
        if (rc != HV_OK) break;
    }
    if (rc != HV_ENOTFOUND) goto out;
    if (l.concepts == 0) {
        hv_error_set(err, HV_EPROTO, cpath, "the snapshot has no concepts");
        rc = HV_EPROTO;
        goto out;
    }
    rc = hv__load_commit(&l, "snomed", version != NULL ? version : ver, err);
    began = 0;
out:
    if (rc != HV_OK && began) hv__load_abort(&l);
    hv__csv_close(c);
    return rc;
}
