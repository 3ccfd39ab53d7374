/*
 * module.c — the fhir module: its settings and its commands,
 *
 *   holovitals fhir validate [--profile URL|FILE] FILE...
 *   holovitals fhir convert --to json|xml [--compact] FILE
 *
 * Both read FHIR JSON or XML (told apart by the first non-blank character: '<' is
 * XML). `validate` prints an OperationOutcome per file (FHIR R4
 * operationoutcome.html; with several files each is preceded by a line
 * "==> FILE <=="), and exits 1 when any file has an error. A file that cannot be
 * read or parsed yields an OperationOutcome with one fatal issue naming the line and
 * column. `convert` writes the resource in the other format on standard output.
 * A FILE of "-" is standard input.
 */
#include "config.h"

#include <dirent.h>
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fhir/fhir_int.h"
#include "fhir/rest_int.h"

static const hv_setting_t fhir_settings[] = {
    {"fhir.max_resource_bytes", NULL, HV_SET_SIZE, "64MiB", NULL,
     "Largest FHIR resource (JSON or XML) the readers accept."},
    {"fhir.max_depth", NULL, HV_SET_INT, "128", NULL,
     "Deepest nesting of objects/elements the readers accept."},
    {"fhir.max_issues", NULL, HV_SET_INT, "1000", NULL,
     "Most issues one validation lists in its OperationOutcome (the rest are counted)."},
    {"fhir.profile_path", NULL, HV_SET_STRING, "", NULL,
     "Files or directories of profile StructureDefinitions (a StructureDefinition, a Bundle "
     "or a JSON array of them per file), separated by ':', that `fhir validate --profile URL` "
     "looks the URL up in."},
    {"fhir.validation", NULL, HV_SET_ENUM, "reject", "off|warn|reject",
     "Validation of resources written through /fhir: off, warn (accept, report on Prefer: "
     "return=OperationOutcome) or reject (422 with the OperationOutcome)."},
    {"fhir.base_url", NULL, HV_SET_STRING, "", NULL,
     "The server's base URL in Location headers and Bundles; empty derives it from the Host header."},
    {"fhir.max_bundle_entries", NULL, HV_SET_INT, "10000", NULL,
     "Most entries a batch or transaction Bundle may hold (more is 413)."},
    {"fhir.history_count", NULL, HV_SET_INT, "50", NULL, "Default page size of _history."},
    {"fhir.search_combined", NULL, HV_SET_BOOL, "true", NULL,
     "Answer a token criterion together with a date or quantity criterion of the same resource (Observation "
     "code + date, code + value-quantity) from the combined index rows (one range scan) instead of intersecting "
     "the two criteria's matches."},
    {"fhir.search_has_total", NULL, HV_SET_ENUM, "none", "none|accurate",
     "Bundle.total of a search holding a _has when the query gives no _total: none leaves it out, so the page "
     "stops at its matches (candidates in row-id order, each checked until the page is full); accurate checks "
     "every candidate to count them. _total=accurate|estimate and _summary=count always count."},
    {"fhir.search_token_rid", NULL, HV_SET_BOOL, "true", NULL,
     "Read the page of a single token criterion (Observation?code=X, status, identifier) from the token index in "
     "row-id order (sp_tok_sr: only the page's entries) instead of scanning resources in row-id order."},
    {"fhir.search_string_rid", NULL, HV_SET_BOOL, "true", NULL,
     "Read the page of a single string criterion (Patient?name=X, family, given, address; starts-with or :exact) "
     "from the string index's row ids (sp_str_rc) instead of looking up each match's row in resources."},
    {"fhir.search_has_rows", NULL, HV_SET_BOOL, "true", NULL,
     "Answer a _has whose condition is a plain token (Patient?_has:Observation:patient:code=X) from the reference "
     "x token index rows (sp_reftok: one seek per candidate, one range to count) instead of the reference index "
     "and a token index probe per referencing resource."},
    {"fhir.history_max", NULL, HV_SET_INT, "1000", NULL, "Largest _count of _history."},
    {"fhir.synchronous", NULL, HV_SET_ENUM, "FULL", "FULL|NORMAL|OFF",
     "Durability of the FHIR store's commits (see hv_db_set_synchronous)."},
    {"fhir.commit_pipeline", NULL, HV_SET_BOOL, "false", NULL,
     "SQLite with fhir.synchronous FULL: commit each batch without fsync and run the next batch while "
     "a thread fdatasyncs the WAL; answers still wait for their batch to be on disk (engine/storage.c). "
     "Off by default: its gain is not steady (faster in some sessions' pairs, slower in others', "
     "docs/performance.md), and another connection may read a batch before its sync (docs/fhir-store.md)."},
    {"fhir.checkpoint_pages", NULL, HV_SET_INT, "1000", NULL,
     "With fhir.commit_pipeline: checkpoint the WAL (between batches, with full syncs) once it holds this "
     "many pages. With fhir.checkpoint_thread: the checkpoint thread runs once per this many pages committed."},
    {"fhir.checkpoint_thread", NULL, HV_SET_BOOL, "true", NULL,
     "SQLite without fhir.commit_pipeline: checkpoint the WAL on a thread with its own connection instead of "
     "inside the storage thread's commits; the storage thread waits for it only when the WAL reaches 8 x "
     "fhir.checkpoint_pages pages (engine/db_sqlite.c)."},
    {"fhir.cache_size", NULL, HV_SET_SIZE, "64MiB", NULL,
     "Page cache of the FHIR store's SQLite writer connection (PRAGMA cache_size): the search index's "
     "B-trees are written at random places, and a cache that holds them saves a read per page."},
    {"fhir.import_commit", NULL, HV_SET_INT, "5000", NULL,
     "Most resources `holovitals import` commits at once when --batch is not given: a commit holds at "
     "least a fifth of this and a quarter of what the import committed before it, up to this (Bundles are "
     "not split). Larger commits write fewer WAL pages per resource (the search index's (type, id) B-trees "
     "take a random leaf per resource and commit) and fewer fsyncs; the open commit's prepared Bundles are "
     "held in memory, and a killed import loses at most the commit in progress."},
    {"fhir.storage_queue", NULL, HV_SET_INT, "8192", NULL,
     "Most FHIR store jobs waiting for the storage thread (more answers 503)."},
    {"fhir.storage_batch", NULL, HV_SET_INT, "256", NULL, "Most FHIR store jobs one commit groups."},
    {"fhir.export_max_running", NULL, HV_SET_INT, "2", NULL,
     "Most Bulk Data exports running at once (each takes a thread of the pool and a read connection; more "
     "answers 429)."},
    {"fhir.export_retention", NULL, HV_SET_DURATION, "24h", NULL,
     "How long a finished Bulk Data export (its manifest and NDJSON files) is kept after it ended."},
    {"fhir.read_cache", NULL, HV_SET_ENUM, "auto", "auto|on|off",
     "The read cache: reads of recently read resources answered on the loop thread without a storage "
     "job (fhir/read_cache.c). auto enables it on SQLite only, since on PostgreSQL another engine may "
     "write the same database and this one would not see it; on enables it on both (one engine per "
     "database)."},
    {"fhir.read_cache_size", NULL, HV_SET_SIZE, "32MiB", NULL,
     "Most bytes of resource JSON the read cache holds (one slot per 4 KiB; a resource over 1/16 of it "
     "is not cached)."},
    {NULL, NULL, 0, NULL, NULL, NULL},
};

static void limits(hv_engine_t *e, hv_fhir_parse_opts_t *o, size_t *max_issues) {
    hv_config_t *cfg = e != NULL ? hv_engine_config(e) : NULL;
    memset(o, 0, sizeof(*o));
    *max_issues = 1000;
    if (cfg != NULL && hv_config_find(cfg, "fhir.max_resource_bytes") != NULL) {
        o->max_bytes = (size_t)hv_config_size(cfg, "fhir.max_resource_bytes");
        o->max_depth = (int)hv_config_int(cfg, "fhir.max_depth");
        *max_issues = (size_t)hv_config_int(cfg, "fhir.max_issues");
    }
}

/* Reads a whole file ("-": standard input), refusing more than max bytes. */
static int read_file(const char *path, size_t max, char **out, size_t *len, hv_error_t *err) {
    int rc = hv_file_read(path, max, out, len, err);
    if (rc == HV_ETOOBIG) hv_error_set(err, rc, path, "the file is larger than fhir.max_resource_bytes");
    return rc;
}

static int is_xml(const char *t, size_t n) {
    size_t i = 0;
    if (n >= 3 && (unsigned char)t[0] == 0xEF && (unsigned char)t[1] == 0xBB &&
        (unsigned char)t[2] == 0xBF)
        i = 3; /* a UTF-8 byte order mark */
    while (i < n && (t[i] == ' ' || t[i] == '\t' || t[i] == '\r' || t[i] == '\n'))
        i++;
    return i < n && t[i] == '<';
}

/* Parses JSON or XML; strict content checks unless lenient. */
static int parse_any(const char *text, size_t len, const hv_fhir_parse_opts_t *base, int lenient,
                     struct json_object **out, hv_error_t *err) {
    hv_fhir_parse_opts_t o = *base;
    if (lenient)
        o.flags |= HV_FHIR_PARSE_LENIENT;
    if (is_xml(text, len))
        return hv_fhir_xml_parse(text, len, &o, out, err);
    if (len >= 3 && (unsigned char)text[0] == 0xEF && (unsigned char)text[1] == 0xBB &&
        (unsigned char)text[2] == 0xBF) {
        text += 3;
        len -= 3;
    }
    return hv_fhir_json_parse(text, len, &o, out, err);
}

/* An OperationOutcome with one fatal issue describing err. */
static struct json_object *fatal_outcome(const hv_error_t *err) {
    struct json_object *oo = json_object_new_object(), *issues = json_object_new_array(),
                       *is = json_object_new_object();
    char msg[1024];
    if (err->line > 0)
        snprintf(msg, sizeof(msg), "line %d, column %d: %s", err->line, err->column, err->message);
    else
        snprintf(msg, sizeof(msg), "%s", err->message);
    hv_json_set_str(oo, "resourceType", "OperationOutcome");
    hv_json_set_str(is, "severity", "fatal");
    hv_json_set_str(is, "code",
                    err->code == HV_EIO       ? "exception"
                    : err->code == HV_ETOOBIG ? "too-costly"
                    : err->code == HV_EPROTO  ? "structure"
                                              : "invalid");
    hv_json_set_str(is, "diagnostics", msg);
    if (err->location[0] != '\0') {
        struct json_object *ex = json_object_new_array();
        json_object_array_add(ex, json_object_new_string(err->location));
        hv_json_set(is, "expression", ex);
    }
    json_object_array_add(issues, is);
    hv_json_set(oo, "issue", issues);
    return oo;
}

static int print_json(struct json_object *o) {
    hv_buf_t b;
    hv_buf_init(&b, 0);
    int rc = hv_fhir_json_write(o, HV_FHIR_WRITE_PRETTY, &b);
    if (rc == HV_OK) {
        fwrite(b.data, 1, b.len, stdout);
        fputc('\n', stdout);
    }
    hv_buf_release(&b);
    return rc;
}

/* Adds every StructureDefinition in j (one, a Bundle's entries, or an array) to v; counts them
 * and keeps the url of the first in first_url. */
static int add_profiles(hv_fhir_validator_t *v, struct json_object *j, char *first_url, size_t ulen,
                        int *count, hv_error_t *err) {
    const char *rt = hv_json_get_str(j, "resourceType");
    struct json_object *entries = NULL;
    int rc = HV_OK;
    if (json_object_is_type(j, json_type_array)) {
        for (size_t i = 0; rc == HV_OK && i < json_object_array_length(j); i++)
            rc = add_profiles(v, json_object_array_get_idx(j, i), first_url, ulen, count, err);
        return rc;
    }
    if (rt != NULL && strcmp(rt, "Bundle") == 0 &&
        json_object_object_get_ex(j, "entry", &entries) &&
        json_object_is_type(entries, json_type_array)) {
        for (size_t i = 0; rc == HV_OK && i < json_object_array_length(entries); i++) {
            struct json_object *res =
                json_object_object_get(json_object_array_get_idx(entries, i), "resource");
            if (res != NULL)
                rc = add_profiles(v, res, first_url, ulen, count, err);
        }
        return rc;
    }
    if (rt == NULL || strcmp(rt, "StructureDefinition") != 0)
        return HV_OK; /* not a profile: skipped */
    rc = hv_fhir_validator_add_profile(v, j, err);
    if (rc == HV_OK && (*count)++ == 0)
        snprintf(first_url, ulen, "%s", hv_json_get_str(j, "url"));
    return rc;
}

/* Loads the profiles of one JSON file (XML profiles: one StructureDefinition). */
static int load_profile_file(hv_engine_t *e, hv_fhir_validator_t *v, const char *path,
                             char *first_url, size_t ulen, int *count, hv_error_t *err) {
    hv_fhir_parse_opts_t o;
    size_t max_issues;
    char *text = NULL;
    size_t len = 0;
    struct json_object *j = NULL;
    int rc;
    limits(e, &o, &max_issues);
    rc = read_file(path, o.max_bytes > 0 ? o.max_bytes : HV_FHIR_DEFAULT_MAX_BYTES, &text, &len,
                   err);
    if (rc == HV_OK)
        rc = is_xml(text, len) ? parse_any(text, len, &o, 1, &j, err)
                               : hv_json_parse(text, len, path, &j, err);
    if (rc == HV_OK)
        rc = add_profiles(v, j, first_url, ulen, count, err);
    json_object_put(j);
    hv_free(text);
    return rc;
}

/* Loads every file of fhir.profile_path (files, or directories of *.json / *.xml). */
static int load_profile_path(hv_engine_t *e, hv_fhir_validator_t *v, hv_error_t *err) {
    hv_config_t *cfg = e != NULL ? hv_engine_config(e) : NULL;
    const char *pp = cfg != NULL && hv_config_find(cfg, "fhir.profile_path") != NULL
                         ? hv_config_str(cfg, "fhir.profile_path")
                         : "";
    char first[1024];
    int count = 0, rc = HV_OK;
    while (rc == HV_OK && *pp != '\0') {
        size_t n = strcspn(pp, ":");
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%.*s", (int)n, pp);
        pp += n + (pp[n] == ':');
        if (path[0] == '\0')
            continue;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            DIR *d = opendir(path);
            struct dirent *de;
            while (rc == HV_OK && d != NULL && (de = readdir(d)) != NULL) {
                size_t nl = strlen(de->d_name);
                char file[4400];
                if (nl < 5 || (strcmp(de->d_name + nl - 5, ".json") != 0 &&
                               strcmp(de->d_name + nl - 4, ".xml") != 0))
                    continue;
                snprintf(file, sizeof(file), "%s/%s", path, de->d_name);
                rc = load_profile_file(e, v, file, first, sizeof(first), &count, err);
            }
            if (d != NULL)
                closedir(d);
        } else {
            rc = load_profile_file(e, v, path, first, sizeof(first), &count, err);
        }
    }
    return rc;
}

/*
 * --profile ARG: a canonical URL is looked up among the profiles of fhir.profile_path; anything
 * else is a file holding the profile (or several, of which the first is used).
 */
static int load_profile(hv_engine_t *e, hv_fhir_validator_t *v, const char *arg, char *url,
                        size_t ulen) {
    hv_error_t err;
    int count = 0, rc;
    hv_error_clear(&err);
    if (strncmp(arg, "http://", 7) == 0 || strncmp(arg, "https://", 8) == 0 ||
        strncmp(arg, "urn:", 4) == 0) {
        snprintf(url, ulen, "%s", arg);
        rc = load_profile_path(e, v, &err);
    } else {
        rc = load_profile_file(e, v, arg, url, ulen, &count, &err);
        if (rc == HV_OK && count == 0) {
            hv_error_set(&err, HV_EINVAL, NULL, "no StructureDefinition in the file");
            rc = HV_EINVAL;
        }
    }
    if (rc != HV_OK) {
        char msg[1200];
        hv_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "holovitals fhir validate: profile %s: %s\n", arg, msg);
    }
    return rc;
}

static int cmd_validate(hv_engine_t *e, int argc, char **argv) {
    hv_fhir_parse_opts_t o;
    size_t max_issues;
    const char *profile = NULL, *profile_url = NULL;
    char urlbuf[1024];
    int first = 0, any_error = 0, rc_exit = HV_EXIT_OK;
    hv_fhir_validator_t *v = NULL;

    while (first < argc && strncmp(argv[first], "--", 2) == 0) {
        if (strcmp(argv[first], "--profile") == 0 && first + 1 < argc) {
            profile = argv[first + 1];
            first += 2;
        } else if (strcmp(argv[first], "--") == 0) {
            first++;
            break;
        } else {
            fprintf(stderr, "usage: holovitals fhir validate [--profile URL|FILE] FILE...\n");
            return HV_EXIT_USAGE;
        }
    }
    if (first >= argc) {
        fprintf(stderr, "usage: holovitals fhir validate [--profile URL|FILE] FILE...\n");
        return HV_EXIT_USAGE;
    }
    limits(e, &o, &max_issues);
    v = hv_fhir_validator_new();
    if (v == NULL)
        return HV_EXIT_FAILURE;
    hv_fhir_validator_set_max_issues(v, max_issues);
    if (profile != NULL) {
        if (load_profile(e, v, profile, urlbuf, sizeof(urlbuf)) != HV_OK) {
            hv_fhir_validator_free(v);
            return HV_EXIT_FAILURE;
        }
        profile_url = urlbuf;
    }
    for (int i = first; i < argc; i++) {
        char *text = NULL;
        size_t len = 0;
        struct json_object *res = NULL, *oo = NULL;
        hv_error_t err;
        int errors = 0, rc;
        hv_error_clear(&err);
        rc = read_file(argv[i], o.max_bytes > 0 ? o.max_bytes : HV_FHIR_DEFAULT_MAX_BYTES, &text,
                       &len, &err);
        if (rc == HV_OK)
            rc = parse_any(text, len, &o, 1, &res, &err);
        if (rc == HV_OK) {
            rc = hv_fhir_validate(v, res, profile_url, 0, &oo, &errors);
            if (rc == HV_ENOTFOUND) {
                hv_error_set(&err, rc, NULL, "unknown profile %s", profile_url);
                oo = fatal_outcome(&err);
                errors = 1;
            } else if (rc != HV_OK) {
                hv_error_set(&err, rc, NULL, "validation failed: %s", hv_strerror(rc));
                oo = fatal_outcome(&err);
                errors = 1;
            }
        } else {
            oo = fatal_outcome(&err);
            errors = 1;
        }
        if (argc - first > 1)
            printf("==> %s <==\n", argv[i]);
        print_json(oo);
        if (errors > 0)
            any_error = 1;
        json_object_put(oo);
        json_object_put(res);
        hv_free(text);
    }
    hv_fhir_validator_free(v);
    if (any_error)
        rc_exit = HV_EXIT_FAILURE;
    return rc_exit;
}

static int cmd_convert(hv_engine_t *e, int argc, char **argv) {
    const char *to = NULL, *file = NULL;
    int compact = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--to") == 0 && i + 1 < argc) {
            to = argv[++i];
        } else if (strcmp(argv[i], "--compact") == 0) {
            compact = 1;
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            to = NULL;
            break;
        } else if (file == NULL) {
            file = argv[i];
        } else {
            to = NULL;
            break;
        }
    }
    if (to == NULL || file == NULL || (strcmp(to, "json") != 0 && strcmp(to, "xml") != 0)) {
        fprintf(stderr, "usage: holovitals fhir convert --to json|xml [--compact] FILE\n");
        return HV_EXIT_USAGE;
    }
    hv_fhir_parse_opts_t o;
    size_t max_issues;
    char *text = NULL;
    size_t len = 0;
    struct json_object *res = NULL;
    hv_error_t err;
    hv_buf_t b;
    int rc;
    hv_error_clear(&err);
    hv_buf_init(&b, 0);
    limits(e, &o, &max_issues);
    rc = read_file(file, o.max_bytes > 0 ? o.max_bytes : HV_FHIR_DEFAULT_MAX_BYTES, &text, &len,
                   &err);
    if (rc == HV_OK)
        rc = parse_any(text, len, &o, 0, &res, &err);
    if (rc == HV_OK) {
        unsigned flags = compact ? 0 : HV_FHIR_WRITE_PRETTY;
        rc = strcmp(to, "xml") == 0 ? hv__fhir_xml_write_err(res, flags, &b, &err)
                                    : hv_fhir_json_write(res, flags, &b);
    }
    if (rc == HV_OK) {
        if (strcmp(to, "xml") == 0)
            fputs("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n", stdout);
        fwrite(b.data, 1, b.len, stdout);
        fputc('\n', stdout);
    } else {
        char msg[1200];
        if (err.message[0] == '\0')
            hv_error_set(&err, rc, NULL, "%s", hv_strerror(rc));
        if (strcmp(err.location, file) == 0)
            err.location[0] = '\0'; /* a file that cannot be read: named once */
        hv_error_format(&err, msg, sizeof(msg));
        fprintf(stderr, "holovitals fhir convert: %s: %s\n", file, msg);
    }
    hv_buf_release(&b);
    json_object_put(res);
    hv_free(text);
    return rc == HV_OK ? HV_EXIT_OK : HV_EXIT_FAILURE;
}

static const hv_command_t fhir_commands[] = {
    {"fhir validate", "fhir validate [--profile URL|FILE] FILE...",
     "validate FHIR R4 resources (JSON or XML) and print an OperationOutcome per file",
     "Checks each FILE against the FHIR R4 base specification: unknown elements, cardinality,\n"
     "primitive formats, required bindings and the invariants of the StructureDefinitions\n"
     "(FHIRPath), and with --profile also against a profile StructureDefinition: a FILE\n"
     "holding it (a StructureDefinition, or a Bundle or JSON array whose first one is used),\n"
     "or its canonical URL, looked up in the files of the setting fhir.profile_path.\n"
     "Prints one OperationOutcome per file; exits 1 if any file has an error or fatal issue.\n"
     "A FILE of '-' is standard input.",
     cmd_validate},
    {"fhir convert", "fhir convert --to json|xml [--compact] FILE",
     "convert a FHIR R4 resource between JSON and XML",
     "Reads FILE (JSON or XML, checked against the model) and writes it in the format\n"
     "asked for on standard output, elements in the specification's order, indented unless\n"
     "--compact. A FILE of '-' is standard input.",
     cmd_convert},
    {"import", "import [--batch N] [--workers N] FILE...",
     "load FHIR Bundles and NDJSON files into the FHIR store",
     "Loads each FILE — a Bundle (transaction, batch or collection; JSON or XML) or NDJSON, one\n"
     "resource per line — into the FHIR store of --data/--db, through the transaction path of\n"
     "POST /fhir, keeping the resources' own ids. NDJSON is cut into Bundles of --batch lines\n"
     "(default 1000); commits group --batch resources when it is given, else they grow with the\n"
     "import up to fhir.import_commit (5000). --workers threads (default: the CPUs) parse and\n"
     "prepare ahead of the writer. Shows a progress bar on a terminal and prints a summary.",
     hv__fhir_cmd_import},
    {"reindex", "reindex [--type T] [--batch N]",
     "rebuild the FHIR search index of the stored resources",
     "Rewrites the search index rows (fhir/search_index.c) of every current resource of the\n"
     "FHIR store of --data/--db (or of type T), N resources per transaction (default 1000),\n"
     "for resources stored before an index migration or a change of the search parameters.\n"
     "Safe to interrupt and run again. The running server offers the same as POST /fhir/$reindex.",
     hv__fhir_cmd_reindex},
    {NULL, NULL, NULL, NULL, NULL},
};

const hv_module_t hv_fhir_module = {
    "fhir", fhir_settings, fhir_commands, hv__fhir_rest_init, NULL, hv__fhir_rest_stop, hv__fhir_rest_free,
};
