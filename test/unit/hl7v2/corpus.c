/*
 * corpus.c — every file of the reference HL7 v2 corpus ($HV_SRCDIR/../shared/reference/hl7v2:
 * fhir-converter, reportstream-*, edge-cases) through the batch splitter, the parser
 * and the serializer: each message must parse, read its MSH-9 and MSH-10, serialize
 * back byte for byte, survive a parse of its own serialization with the same segments,
 * and yield an ACK whose MSA-2 is its MSH-10. Files that are broken on purpose must
 * fail, each with the error listed here.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tests.h"

/* Files that must be refused, by name, with the reason. */
static const struct {
    const char *name;
    const char *why;
} expected_bad[] = {
    {"sample_bad_batch.hl7", "a batch without MSH: segments outside any message"},
    {"sample_bad_batch1.hl7", "BHS inside an open batch"},
    {"sample_bad_file.hl7", "a file without MSH: segments outside any message"},
    {"sample_bad_file1.hl7", "BHS inside an open batch"},
    {"sample_bad_file2.hl7", "a second FHS"},
    {"sample_bad_file3.hl7", "a file without MSH"},
    {"sample_unix.hl7", "MSH-2 '^~\\\\&' repeats the escape character"},
    {"sample_win.hl7", "MSH-2 '^~\\\\&' repeats the escape character"},
    {"uuencoded.txt", "a uuencoded payload, not an HL7 message"},
    {"uuencoded_escaped.txt", "the same payload escaped, not an HL7 message"},
};

typedef struct stats {
    int files, messages, bad_seen, failures;
    size_t bytes;
} stats_t;

static int is_expected_bad(const char *name) {
    size_t i;
    for (i = 0; i < HV_ARRAY_LEN(expected_bad); i++)
        if (strcmp(expected_bad[i].name, name) == 0) return 1;
    return 0;
}

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (f == NULL) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (buf != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf == NULL) return NULL;
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

/*
 * hapi's messages.txt holds messages separated by C and C++ comments; remove those
 * lines (comment text is not HL7). Returns the new length.
 */
static size_t strip_comments(char *p, size_t n) {
    size_t i = 0, o = 0;
    int in_block = 0;
    while (i < n) {
        size_t e = i;
        while (e < n && p[e] != '\n' && p[e] != '\r') e++;
        while (e < n && (p[e] == '\n' || p[e] == '\r')) e++;
        if (in_block) {
            if (memmem(p + i, e - i, "*/", 2) != NULL) in_block = 0;
        } else if (e - i >= 2 && p[i] == '/' && p[i + 1] == '/') {
        } else if (e - i >= 2 && p[i] == '/' && p[i + 1] == '*') {
            if (memmem(p + i, e - i, "*/", 2) == NULL) in_block = 1;
        } else {
            memmove(p + o, p + i, e - i);
            o += e - i;
        }
        i = e;
    }
    return o;
}

static void check_message(const char *path, const char *p, size_t n, stats_t *st) {
    hv_arena_t *a = hv_arena_new(0);
    hv_hl7v2_msg_t m, m2;
    hv_error_t err;
    hv_buf_t out, ack;
    hv_hl7v2_span_t s9, s10, ctl;
    hv_hl7v2_ack_opts_t ao;
    char code[3];
    size_t i;
    int rc;

    hv_buf_init(&out, 0);
    hv_buf_init(&ack, 0);
    hv_error_clear(&err);
    rc = hv_hl7v2_parse(a, p, n, NULL, &m, &err, NULL);
    if (rc != HV_OK) {
        print_error("%s: message %d: %s %s line %d col %d\n", path, st->messages + 1, err.message,
                    err.location, err.line, err.column);
        st->failures++;
        goto out;
    }
    st->messages++;
    st->bytes += n;
    if (hv_hl7v2_get(&m, "MSH-9.1", &s9) != HV_OK || s9.len != 3 ||
        hv_hl7v2_get(&m, "MSH-10", &s10) != HV_OK) {
        print_error("%s: MSH-9.1 or MSH-10 unreadable\n", path);
        st->failures++;
        goto out;
    }
    if (hv_hl7v2_serialize(&m, &out) != HV_OK || out.len != n || memcmp(out.data, p, n) != 0) {
        print_error("%s: serialization differs from the input\n", path);
        st->failures++;
        goto out;
    }
    if (hv_hl7v2_parse(a, out.data, out.len, NULL, &m2, &err, NULL) != HV_OK ||
        m2.nsegs != m.nsegs) {
        print_error("%s: reparse differs\n", path);
        st->failures++;
        goto out;
    }
    for (i = 0; i < m.nsegs; i++) {
        if (m.segs[i].len != m2.segs[i].len || memcmp(m.segs[i].p, m2.segs[i].p, m.segs[i].len)) {
            print_error("%s: segment %zu differs after reparse\n", path, i + 1);
            st->failures++;
            goto out;
        }
    }
    memset(&ao, 0, sizeof(ao));
    ao.code = HV_HL7V2_ACK_ACCEPT;
    if (hv_hl7v2_ack_build(&m, &ao, &ack) != HV_OK ||
        hv_hl7v2_ack_read(ack.data, ack.len, code, &ctl) != HV_OK || ctl.len != s10.len ||
        memcmp(ctl.p, s10.p, s10.len) != 0 ||
        strcmp(code, hv_hl7v2_ack_is_enhanced(&m) ? "CA" : "AA") != 0) {
        print_error("%s: ACK does not echo MSH-10\n", path);
        st->failures++;
        goto out;
    }
out:
    hv_buf_release(&out);
    hv_buf_release(&ack);
    hv_arena_free(a);
}

static void check_file(const char *path, const char *name, stats_t *st) {
    size_t n = 0, cnt = 0, i;
    char *p = read_all(path, &n);
    hv_arena_t *a;
    hv_hl7v2_span_t *spans = NULL;
    hv_error_t err;
    int rc, before = st->failures;
    if (p == NULL) {
        print_error("%s: cannot read\n", path);
        st->failures++;
        return;
    }
    if (strcmp(name, "messages.txt") == 0) n = strip_comments(p, n);
    st->files++;
    a = hv_arena_new(0);
    hv_error_clear(&err);
    rc = hv_hl7v2_batch_split(a, p, n, 100000, &spans, &cnt, &err);
    if (rc == HV_OK && cnt == 0) rc = HV_EPROTO;
    if (rc == HV_OK) {
        for (i = 0; i < cnt; i++) check_message(path, spans[i].p, spans[i].len, st);
    }
    if (is_expected_bad(name)) {
        /* A broken file must be refused by the splitter or the parser. */
        if (rc == HV_OK && st->failures == before) {
            print_error("%s: accepted, but is broken on purpose\n", path);
            st->failures++;
        } else {
            st->failures = before;
            st->bad_seen++;
        }
    } else if (rc != HV_OK) {
        print_error("%s: split failed: %s\n", path, err.message);
        st->failures++;
    }
    hv_arena_free(a);
    free(p);
}

static void walk(const char *dir, stats_t *st) {
    DIR *d = opendir(dir);
    struct dirent *e;
    if (d == NULL) return;
    while ((e = readdir(d)) != NULL) {
        char path[4096];
        struct stat sb;
        size_t l = strlen(e->d_name);
        if (e->d_name[0] == '.') continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            walk(path, st);
        } else if ((l > 4 && strcmp(e->d_name + l - 4, ".hl7") == 0) ||
                   (l > 4 && strcmp(e->d_name + l - 4, ".txt") == 0 &&
                    strcmp(e->d_name, "guide.txt") != 0 && strcmp(e->d_name, "header.txt") != 0)) {
            check_file(path, e->d_name, st);
        }
    }
    closedir(d);
}

static void hl7v2_corpus_every_reference_message_round_trips(void **state) {
    const char *src = getenv("HV_SRCDIR"), *ref = getenv("HV_REFERENCE_DIR");
    static const char *subdirs[] = {"fhir-converter", "reportstream-mapping-inventory",
                                    "reportstream-messages", "edge-cases"};
    char dir[4096];
    stats_t st;
    size_t i;
    (void)state;
    memset(&st, 0, sizeof(st));
    if (src == NULL && ref == NULL) fail_msg("HV_SRCDIR is not set: cannot find the reference corpus");
    for (i = 0; i < HV_ARRAY_LEN(subdirs); i++) {
        struct stat sb;
        /* HV_REFERENCE_DIR overrides the CI layout (a worktree has no shared/ beside it). */
        if (ref != NULL) snprintf(dir, sizeof(dir), "%s/hl7v2/%s", ref, subdirs[i]);
        else snprintf(dir, sizeof(dir), "%s/../shared/reference/hl7v2/%s", src, subdirs[i]);
        if (stat(dir, &sb) != 0) fail_msg("reference folder missing: %s", dir);
        walk(dir, &st);
    }
    print_message("corpus: %d files, %d messages, %zu bytes, %d refused as expected\n", st.files,
                  st.messages, st.bytes, st.bad_seen);
    assert_int_equal(st.failures, 0);
    assert_int_equal(st.bad_seen, (int)HV_ARRAY_LEN(expected_bad));
    /* 139 FHIR-Converter samples alone; the whole corpus has well over 240 files. */
    assert_true(st.files >= 240);
    assert_true(st.messages >= st.files - st.bad_seen);
}

int run_corpus_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hl7v2_corpus_every_reference_message_round_trips),
    };
    return cmocka_run_group_tests_name("hl7v2_corpus", tests, NULL, NULL);
}
