/*
 * fuzz_terminology_csv.c — libFuzzer target for the delimited-text reader of the
 * terminology loaders (terminology/csv.c).
 *
 * The first byte chooses the dialect (even: RFC 4180 CSV with quotes, odd: RF2 tab-
 * separated without quoting); the rest is the file. Invariants:
 *   - reading ends with HV_ENOTFOUND (end), or an error with a message;
 *   - when the whole text reads, writing the rows back (CSV: every field quoted, quotes
 *     doubled; TSV: tabs and newlines) and reading that gives the same rows.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "terminology/terminology_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_ROWS 2000

/* Reads every row into out as "field\x1ffield\x1e" records; returns the status. */
static int read_all(const char *text, size_t len, char sep, int quoting, hv_buf_t *rows,
                    hv_buf_t *again) {
    hv__csv_t *c = NULL;
    hv_error_t err;
    char **f;
    size_t n, i, nrows = 0;
    int rc = hv__csv_open_mem(text, len, sep, quoting, &c);
    if (rc != HV_OK) return rc;
    hv_error_clear(&err);
    while (nrows++ < MAX_ROWS && (rc = hv__csv_next(c, &f, &n, &err)) == HV_OK) {
        for (i = 0; i < n; i++) {
            hv_buf_puts(rows, f[i]);
            hv_buf_putc(rows, 0x1f);
            if (again != NULL) {
                if (quoting) {
                    const char *p;
                    hv_buf_putc(again, '"');
                    for (p = f[i]; *p != '\0'; p++) {
                        if (*p == '"') hv_buf_putc(again, '"');
                        hv_buf_putc(again, *p);
                    }
                    hv_buf_putc(again, '"');
                } else {
                    hv_buf_puts(again, f[i]);
                }
                if (i + 1 < n) hv_buf_putc(again, sep);
            }
        }
        hv_buf_putc(rows, 0x1e);
        if (again != NULL) hv_buf_putc(again, '\n');
    }
    if (rc != HV_OK && rc != HV_ENOTFOUND && err.message[0] == '\0') abort();
    hv__csv_close(c);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    hv_buf_t rows, again, rows2;
    int quoting, rc;
    char sep;
    if (size < 1) return 0;
    quoting = (data[0] & 1) == 0;
    sep = quoting ? ',' : '\t';
    hv_buf_init(&rows, 0);
    hv_buf_init(&again, 0);
    hv_buf_init(&rows2, 0);
    rc = read_all((const char *)data + 1, size - 1, sep, quoting, &rows, &again);
    if (rc == HV_ENOTFOUND && again.len > 0) {
        /* Bytes the reader drops outside quotes (CR) and NULs do not survive a write-back in
         * the same place, so compare the rows read, not the texts. */
        if (read_all(again.data, again.len, sep, quoting, &rows2, NULL) != HV_ENOTFOUND) abort();
        if (rows.len != rows2.len || memcmp(rows.data, rows2.data, rows.len) != 0) abort();
    }
    hv_buf_release(&rows);
    hv_buf_release(&again);
    hv_buf_release(&rows2);
    return 0;
}
