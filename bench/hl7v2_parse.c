/*
 * hl7v2_parse.c — HL7 v2 parser throughput (bench/bin/hl7v2_parse).
 *
 *   bench/bin/hl7v2_parse [--seconds 2] DIR|FILE...
 *
 * Loads every message of the files given (batches split; files that do not parse
 * are skipped) and, for about --seconds each, measures:
 *   split   hv_hl7v2_parse alone: delimiters, segments, escape check, charset;
 *   walk    parse plus visiting every field, repetition, component and subcomponent
 *           (what a parser that builds a full tree does, and what a mapping reads);
 *   json    parse plus hv_hl7v2_to_json (every value unescaped into a JSON tree).
 * Prints messages/s and MB/s for each. The npm parsers run on the same files with
 * bench/hl7v2_npm/run.sh.
 */
#include "config.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "adapters/hl7v2/hl7v2.h"

static struct {
    char **p;
    size_t *n;
    size_t count, bytes;
} corpus;

static void add_file(const char *path) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    hv_arena_t *a;
    hv_hl7v2_span_t *spans;
    size_t cnt, i;
    if (f == NULL) return;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = malloc((size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
    fclose(f);
    a = hv_arena_new(0);
    if (hv_hl7v2_batch_split(a, buf, (size_t)n, 100000, &spans, &cnt, NULL) == HV_OK) {
        for (i = 0; i < cnt; i++) {
            hv_hl7v2_msg_t m;
            if (hv_hl7v2_parse(a, spans[i].p, spans[i].len, NULL, &m, NULL, NULL) != HV_OK) continue;
            corpus.p = realloc(corpus.p, (corpus.count + 1) * sizeof(char *));
            corpus.n = realloc(corpus.n, (corpus.count + 1) * sizeof(size_t));
            corpus.p[corpus.count] = malloc(spans[i].len);
            memcpy(corpus.p[corpus.count], spans[i].p, spans[i].len);
            corpus.n[corpus.count++] = spans[i].len;
            corpus.bytes += spans[i].len;
        }
    }
    hv_arena_free(a);
    free(buf);
}

static void add_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d != NULL && (e = readdir(d)) != NULL) {
            char p[4096];
            if (e->d_name[0] == '.') continue;
            snprintf(p, sizeof(p), "%s/%s", path, e->d_name);
            add_path(p);
        }
        if (d) closedir(d);
    } else {
        size_t l = strlen(path);
        if (l > 4 && (strcmp(path + l - 4, ".hl7") == 0 || strcmp(path + l - 4, ".txt") == 0))
            add_file(path);
    }
}

static volatile size_t sink;

/*
 * Visits every field, repetition, component and subcomponent of every segment in
 * one byte-by-byte pass with a delimiter table: each item's (start, length) is
 * produced, as a full-tree parser would, without building the tree.
 */
static void walk(const hv_hl7v2_msg_t *m) {
    unsigned char cls[256];
    size_t i;
    memset(cls, 0, sizeof(cls));
    cls[(unsigned char)m->delims.field] = 1;
    if (m->delims.rep) cls[(unsigned char)m->delims.rep] = 2;
    cls[(unsigned char)m->delims.comp] = 3;
    if (m->delims.sub) cls[(unsigned char)m->delims.sub] = 4;
    for (i = 0; i < m->nsegs; i++) {
        const unsigned char *p = (const unsigned char *)m->segs[i].p + 3;
        const unsigned char *end = (const unsigned char *)m->segs[i].p + m->segs[i].len;
        const unsigned char *start = p;
        size_t items = 0;
        for (; p < end; p++) {
            if (cls[*p]) {
                sink += (size_t)(p - start) ^ cls[*p];
                start = p + 1;
                items++;
            }
        }
        sink += items + (size_t)(p - start);
    }
}

static void run(const char *name, int mode, double seconds) {
    hv_arena_t *a = hv_arena_new(64 * 1024);
    hv_buf_t out;
    uint64_t t0 = hv_mono_ns(), t;
    size_t msgs = 0, bytes = 0, i;
    hv_buf_init(&out, 0);
    do {
        for (i = 0; i < corpus.count; i++) {
            hv_hl7v2_msg_t m;
            if (hv_hl7v2_parse(a, corpus.p[i], corpus.n[i], NULL, &m, NULL, NULL) != HV_OK) abort();
            if (mode == 1) walk(&m);
            if (mode == 2) {
                hv_buf_reset(&out);
                hv_hl7v2_to_json(&m, &out);
            }
            sink += m.nsegs;
            hv_arena_reset(a);
            msgs++;
            bytes += corpus.n[i];
        }
        t = hv_mono_ns() - t0;
    } while ((double)t / 1e9 < seconds);
    printf("%-6s %10.0f msgs/s %9.1f MB/s\n", name, (double)msgs / ((double)t / 1e9),
           (double)bytes / 1e6 / ((double)t / 1e9));
    hv_buf_release(&out);
    hv_arena_free(a);
}

int main(int argc, char **argv) {
    double seconds = 2;
    int i;
    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) seconds = atof(argv[++i]);
        else add_path(argv[i]);
    }
    if (corpus.count == 0) {
        fprintf(stderr, "usage: hl7v2_parse [--seconds S] DIR|FILE...\n");
        return 2;
    }
    printf("corpus: %zu messages, %zu bytes (mean %zu)\n", corpus.count, corpus.bytes,
           corpus.bytes / corpus.count);
    run("split", 0, seconds);
    run("walk", 1, seconds);
    run("json", 2, seconds);
    return 0;
}
