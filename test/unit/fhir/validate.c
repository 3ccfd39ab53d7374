/* validate.c — tests of fhir/validate.c, invariants.c and validator.c: one case per rule. */
#include "tests.h"

#include <json-c/json.h>
#include <regex.h>
#include <string.h>

#include "fhir/fhir_int.h"
#include "fhir/fhirpath.h"

/* Validates text; returns the error count and copies the first error issue's expression,
 * code and constraint key (when any) into the out-parameters. */
static int run(const char *text, unsigned flags, char *expr, char *code, char *key) {
    struct json_object *o = json_tokener_parse(text), *oo = NULL;
    assert_non_null(o);
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    int errors = -1;
    assert_int_equal(hv_fhir_validate(v, o, NULL, flags, &oo, &errors), HV_OK);
    assert_string_equal(hv_json_get_str(oo, "resourceType"), "OperationOutcome");
    struct json_object *issues = json_object_object_get(oo, "issue");
    expr[0] = code[0] = key[0] = '\0';
    for (size_t i = 0; i < json_object_array_length(issues); i++) {
        struct json_object *is = json_object_array_get_idx(issues, i);
        if (strcmp(hv_json_get_str(is, "severity"), "error") != 0)
            continue;
        snprintf(expr, 256, "%s",
                 json_object_get_string(
                     json_object_array_get_idx(json_object_object_get(is, "expression"), 0)));
        snprintf(code, 64, "%s", hv_json_get_str(is, "code"));
        struct json_object *d = json_object_object_get(is, "details");
        if (d != NULL)
            snprintf(
                key, 64, "%s",
                hv_json_get_str(json_object_array_get_idx(json_object_object_get(d, "coding"), 0),
                                "code"));
        break;
    }
    json_object_put(oo);
    json_object_put(o);
    hv_fhir_validator_free(v);
    return errors;
}

static void fhir_validate_reports_each_rule_at_its_path(void **state) {
    (void)state;
    static const struct {
        const char *name, *text, *expr, *code, *key;
    } cases[] = {
        {"unknown element", "{\"resourceType\":\"Patient\",\"name\":[{\"nick\":\"x\"}]}",
         "Patient.name[0].nick", "structure", ""},
        {"wrong JSON type", "{\"resourceType\":\"Patient\",\"active\":1}", "Patient.active",
         "structure", ""},
        {"array expected", "{\"resourceType\":\"Patient\",\"name\":{\"family\":\"x\"}}",
         "Patient.name", "structure", ""},
        {"empty array", "{\"resourceType\":\"Patient\",\"name\":[]}", "Patient.name", "structure",
         ""},
        {"missing required", "{\"resourceType\":\"Observation\",\"code\":{\"text\":\"x\"}}",
         "Observation.status", "required", ""},
        {"missing required in backbone",
         "{\"resourceType\":\"Patient\",\"link\":[{\"type\":\"seealso\"}]}",
         "Patient.link[0].other", "required", ""},
        {"missing required choice",
         "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
         "\"component\":[{\"code\":{\"text\":\"c\"},\"interpretation\":[{\"text\":\"i\"}]}],"
         "\"effectivePeriod\":{\"start\":\"2020\"}}",
         "", "", ""},
        {"max exceeded",
         "{\"resourceType\":\"Patient\",\"photo\":[{\"url\":\"a\"}],\"deceasedBoolean\":true,"
         "\"contact\":[{\"organization\":{\"reference\":\"Organization/"
         "1\"},\"name\":{\"text\":\"x\"}}]}",
         "", "", ""},
        {"date format", "{\"resourceType\":\"Patient\",\"birthDate\":\"1970-13-01\"}",
         "Patient.birthDate", "value", ""},
        {"id format", "{\"resourceType\":\"Patient\",\"id\":\"a b\"}", "Patient.id", "value", ""},
        {"decimal format",
         "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
         "\"valueQuantity\":{\"value\":\"1.0\"}}",
         "Observation.valueQuantity.value", "structure", ""},
        {"integer range", "{\"resourceType\":\"Patient\",\"multipleBirthInteger\":3000000000}",
         "Patient.multipleBirthInteger", "value", ""},
        {"empty string", "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\"}]}",
         "Patient.name[0].family", "value", ""},
        {"required code", "{\"resourceType\":\"Patient\",\"gender\":\"woman\"}", "Patient.gender",
         "code-invalid", ""},
        {"required CodeableConcept",
         "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
         "\"component\":[{\"code\":{\"text\":\"c\"}}]}",
         "", "", ""},
        {"invariant qty-3",
         "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"},"
         "\"valueQuantity\":{\"value\":1,\"code\":\"mg\"}}",
         "Observation.valueQuantity", "invariant", "qty-3"},
        {"invariant per-1",
         "{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"x\",\"period\":{\"start\":\"2020-"
         "01-02\","
         "\"end\":\"2020-01-01\"}}]}",
         "Patient.name[0].period", "invariant", "per-1"},
        {"invariant pat-1 on a backbone",
         "{\"resourceType\":\"Patient\",\"contact\":[{\"gender\":\"male\"}]}", "Patient.contact[0]",
         "invariant", "pat-1"},
        {"invariant dom-2 on the resource",
         "{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Patient\","
         "\"contained\":[{\"resourceType\":\"Patient\",\"active\":true}],\"active\":true}]}",
         "Patient", "invariant", "dom-2"},
        {"invariant ext-1", "{\"resourceType\":\"Patient\",\"extension\":[{\"url\":\"http://x\"}]}",
         "Patient.extension[0]", "invariant", "ext-1"},
        {"ele-1 on an id-only element", "{\"resourceType\":\"Patient\",\"name\":[{\"id\":\"a\"}]}",
         "Patient.name[0]", "invariant", "ele-1"},
        {"ele-1 on a primitive with only an id",
         "{\"resourceType\":\"Patient\",\"_birthDate\":{\"id\":\"a\"}}", "Patient.birthDate",
         "invariant", "ele-1"},
        {"a primitive given only by its extension twin holds ele-1",
         "{\"resourceType\":\"Patient\",\"_birthDate\":{\"extension\":[{\"url\":\"http://x\","
         "\"valueString\":\"unknown\"}]}}",
         "", "", ""},
        {"a required primitive given only by its extension twin is present",
         "{\"resourceType\":\"Observation\",\"_status\":{\"extension\":[{\"url\":"
         "\"http://hl7.org/fhir/StructureDefinition/data-absent-reason\",\"valueCode\":"
         "\"unknown\"}]},\"code\":{\"text\":\"x\"}}",
         "", "", ""},
        {"values beside their extension twins, in arrays too, are valid",
         "{\"resourceType\":\"Patient\",\"birthDate\":\"2000-01-01\",\"_birthDate\":{"
         "\"extension\":[{\"url\":\"http://x\",\"valueString\":\"y\"}]},\"name\":[{"
         "\"given\":[\"a\",null],\"_given\":[null,{\"extension\":[{\"url\":\"http://x\","
         "\"valueString\":\"y\"}]}]}]}",
         "", "", ""},
        {"an unknown element in an array twin",
         "{\"resourceType\":\"Patient\",\"name\":[{\"given\":[\"a\"],\"_given\":[{"
         "\"nick\":1}]}]}",
         "Patient.name[0].given[0].nick", "structure", ""},
        {"a required primitive missing with its twin is reported",
         "{\"resourceType\":\"Observation\",\"code\":{\"text\":\"x\"}}",
         "Observation.status", "required", ""},
        {"txt-2 empty narrative",
         "{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\",\"div\":"
         "\"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\"> </div>\"}}",
         "Patient.text.div", "invariant", "txt-2"},
        {"txt-1 script in narrative",
         "{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\",\"div\":"
         "\"<div xmlns=\\\"http://www.w3.org/1999/xhtml\\\">x<script>a()</script></div>\"}}",
         "Patient.text.div", "invariant", "txt-1"},
        {"invariant dom-3 unreferenced contained",
         "{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Organization\",\"id\":"
         "\"o\","
         "\"name\":\"x\"}]}",
         "Patient", "invariant", "dom-3"},
        {"dom-3 holds when referenced",
         "{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Organization\",\"id\":"
         "\"o\","
         "\"name\":\"x\"}],\"managingOrganization\":{\"reference\":\"#o\"}}",
         "", "", ""},
        {"invariant ref-1 inside a Bundle entry",
         "{\"resourceType\":\"Bundle\",\"type\":\"collection\",\"entry\":[{\"resource\":{"
         "\"resourceType\":"
         "\"Patient\",\"managingOrganization\":{\"reference\":\"#nope\"}}}]}",
         "Bundle.entry[0].resource.managingOrganization", "invariant", "ref-1"},
        {"reference to a type the element does not allow",
         "{\"resourceType\":\"Patient\",\"generalPractitioner\":[{\"reference\":\"Observation/"
         "1\"}]}",
         "Patient.generalPractitioner[0]", "invalid", ""},
        {"absolute and versioned references of allowed types",
         "{\"resourceType\":\"Patient\",\"generalPractitioner\":[{\"reference\":"
         "\"http://x.org/fhir/Practitioner/1/_history/2\"},{\"reference\":\"urn:uuid:1\"}],"
         "\"link\":[{\"other\":{\"reference\":\"RelatedPerson/r\"},\"type\":\"seealso\"}]}",
         "", "", ""},
        {"contained unknown type",
         "{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Nope\"}]}",
         "Patient.contained[0]", "structure", ""},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        char expr[256], code[64], key[64];
        int errors = run(cases[i].text, 0, expr, code, key);
        if (cases[i].expr[0] == '\0') {
            /* Cases that must validate. */
            if (errors != 0)
                print_error("case '%s': unexpected error at %s (%s %s)\n", cases[i].name, expr,
                            code, key);
            assert_int_equal(errors, 0);
            continue;
        }
        if (errors == 0 || strcmp(expr, cases[i].expr) != 0 || strcmp(code, cases[i].code) != 0 ||
            strcmp(key, cases[i].key) != 0)
            print_error("case '%s': %d errors, first at '%s' code '%s' key '%s'\n", cases[i].name,
                        errors, expr, code, key);
        assert_true(errors > 0);
        assert_string_equal(expr, cases[i].expr);
        assert_string_equal(code, cases[i].code);
        assert_string_equal(key, cases[i].key);
    }
}

/* Appends ".name[index]" to the expected path the way the walk's path does: a step that
 * would take it past 511 bytes is left out, and later, shorter steps still go in. */
static void expect_step(char *buf, const char *name, long index) {
    char step[64];
    size_t len = strlen(buf);
    if (index >= 0)
        snprintf(step, sizeof(step), "%s%s[%ld]", len > 0 ? "." : "", name, index);
    else
        snprintf(step, sizeof(step), "%s%s", len > 0 ? "." : "", name);
    if (len + strlen(step) <= 511)
        memcpy(buf + len, step, strlen(step) + 1);
}

/* The error expressions of an OperationOutcome, joined by '|'. */
static void error_exprs(struct json_object *oo, char *out, size_t cap) {
    struct json_object *issues = json_object_object_get(oo, "issue");
    size_t n = 0;
    out[0] = '\0';
    for (size_t i = 0; i < json_object_array_length(issues); i++) {
        struct json_object *is = json_object_array_get_idx(issues, i);
        if (strcmp(hv_json_get_str(is, "severity"), "error") != 0)
            continue;
        n += (size_t)snprintf(
            out + n, cap - n, "%s%s", n > 0 ? "|" : "",
            json_object_get_string(
                json_object_array_get_idx(json_object_object_get(is, "expression"), 0)));
    }
}

/*
 * The path is rendered only when an issue is raised (the walk keeps its steps on the stack):
 * an error deep in arrays, choices and twins reports every step with its index, in the
 * validator's OperationOutcome and in the parser's structural check, and a path longer than
 * the 511-byte buffer keeps the steps that fit, as when each step was pushed on entry.
 */
static void fhir_validate_reports_a_deep_error_at_its_full_path(void **state) {
    (void)state;
    char got[8192];
    hv_fhir_validator_t *v = hv_fhir_validator_new();

    /* Nested arrays, a choice type and an array twin, with an error at the bottom. */
    const char *deep =
        "{\"resourceType\":\"Patient\",\"contact\":[{\"gender\":\"male\"},{\"name\":{\"given\":"
        "[\"a\",\"b\"],\"_given\":[null,{\"extension\":[{\"url\":"
        "\"http://x\",\"valueString\":\"y\"},{\"url\":\"http://x\",\"extension\":[{\"url\":"
        "\"http://y\",\"valueCodeableConcept\":{\"coding\":[{\"code\":\"c\"},{\"code\":\"d\","
        "\"nick\":1}]}}]}]}]}}]}";
    const char *want = "Patient.contact[1].name.given[1].extension[1].extension[0]."
                       "valueCodeableConcept.coding[1].nick";
    struct json_object *o = json_tokener_parse(deep), *oo = NULL;
    assert_non_null(o);
    int errors = 0;
    assert_int_equal(hv_fhir_validate(v, o, NULL, 0, &oo, &errors), HV_OK);
    error_exprs(oo, got, sizeof(got));
    /* pat-1 on the first contact, then the unknown element deep in the second. */
    assert_int_equal(errors, 2);
    assert_string_equal(got, "Patient.contact[0]|"
                             "Patient.contact[1].name.given[1].extension[1].extension[0]."
                             "valueCodeableConcept.coding[1].nick");
    json_object_put(oo);
    hv_error_t err;
    hv_error_clear(&err);
    assert_int_equal(hv_fhir_check_structure(o, 0, &err), HV_EINVAL);
    assert_string_equal(err.location, want);
    assert_string_equal(err.message, "Unknown element 'nick'");
    json_object_put(o);

    /* 45 nested extensions: ".extension[0]" 45 times is past the buffer. The innermost
     * holds a Period that breaks per-1 (its step, ".valuePeriod", no longer fits) and an
     * unknown element (".nick" still fits). */
    char text[8192], expect_nick[600] = "Patient", expect_period[600];
    size_t n = (size_t)snprintf(text, sizeof(text), "{\"resourceType\":\"Patient\"");
    for (int i = 0; i < 45; i++) {
        n += (size_t)snprintf(text + n, sizeof(text) - n,
                              ",\"extension\":[{\"url\":\"http://x/%d\"", i);
        expect_step(expect_nick, "extension", 0);
    }
    n += (size_t)snprintf(text + n, sizeof(text) - n,
                          ",\"valuePeriod\":{\"start\":\"2020-01-02\",\"end\":\"2020-01-01\"},"
                          "\"nick\":true");
    for (int i = 0; i < 45; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, "}]");
    snprintf(text + n, sizeof(text) - n, "}");
    memcpy(expect_period, expect_nick, sizeof(expect_period));
    expect_step(expect_period, "valuePeriod", -1);
    expect_step(expect_nick, "nick", -1);
    assert_int_equal(strlen(expect_period), 501);
    assert_int_equal(strlen(expect_nick), 506);
    /* json_tokener_parse stops at 32 levels; this document has 92. */
    struct json_tokener *tok = json_tokener_new_ex(200);
    assert_non_null(tok);
    o = json_tokener_parse_ex(tok, text, (int)strlen(text));
    json_tokener_free(tok);
    assert_non_null(o);
    assert_int_equal(hv_fhir_validate(v, o, NULL, 0, &oo, &errors), HV_OK);
    error_exprs(oo, got, sizeof(got));
    char want_all[1300];
    snprintf(want_all, sizeof(want_all), "%s|%s", expect_period, expect_nick);
    assert_int_equal(errors, 2);
    assert_string_equal(got, want_all);
    json_object_put(oo);
    hv_error_clear(&err);
    assert_int_equal(hv_fhir_check_structure(o, 0, &err), HV_EINVAL);
    /* hv_error_t keeps the first 255 bytes of the location. */
    assert_int_equal(strlen(err.location), 255);
    assert_memory_equal(err.location, expect_nick, 255);
    json_object_put(o);
    hv_fhir_validator_free(v);
}

static void fhir_validate_flags_skip_checks(void **state) {
    (void)state;
    char expr[256], code[64], key[64];
    const char *bad_code = "{\"resourceType\":\"Patient\",\"gender\":\"woman\"}";
    assert_int_equal(run(bad_code, HV_FHIR_VALIDATE_NO_BINDINGS, expr, code, key), 0);
    const char *bad_inv = "{\"resourceType\":\"Patient\",\"contact\":[{\"gender\":\"male\"}]}";
    assert_int_equal(run(bad_inv, HV_FHIR_VALIDATE_NO_INVARIANTS, expr, code, key), 0);
    const char *bad_fmt = "{\"resourceType\":\"Patient\",\"birthDate\":\"tomorrow\"}";
    assert_int_equal(run(bad_fmt, HV_FHIR_VALIDATE_NO_FORMATS, expr, code, key), 0);
    assert_int_equal(run(bad_fmt, 0, expr, code, key), 1);
}

static void fhir_validate_caps_issues(void **state) {
    (void)state;
    char text[8192];
    size_t n = (size_t)snprintf(text, sizeof(text), "{\"resourceType\":\"Patient\"");
    for (int i = 0; i < 50; i++)
        n += (size_t)snprintf(text + n, sizeof(text) - n, ",\"x%d\":1", i);
    snprintf(text + n, sizeof(text) - n, "}");
    struct json_object *o = json_tokener_parse(text), *oo = NULL;
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    hv_fhir_validator_set_max_issues(v, 10);
    int errors = 0;
    assert_int_equal(hv_fhir_validate(v, o, NULL, 0, &oo, &errors), HV_OK);
    assert_int_equal(errors, 50);
    assert_int_equal(json_object_array_length(json_object_object_get(oo, "issue")), 11);
    json_object_put(oo);
    json_object_put(o);
    hv_fhir_validator_free(v);
}

static void fhir_validate_primitive_formats_table(void **state) {
    (void)state;
    static const struct {
        const char *type, *value;
        int ok;
    } cases[] = {
        {"date", "2020", 1},
        {"date", "2020-02", 1},
        {"date", "2020-02-30", 1},
        {"date", "2020-2-1", 0},
        {"dateTime", "2020-01-01T10:00:00Z", 1},
        {"dateTime", "2020-01-01T10:00:00", 0},
        {"dateTime", "2020-01-01T10:00:00.123+14:00", 1},
        {"instant", "2020-01-01", 0},
        {"time", "23:59:60", 1},
        {"time", "24:00:00", 0},
        {"id", "abc-1.2", 1},
        {"id", "a_b", 0},
        {"code", "a b", 1},
        {"code", " a", 0},
        {"code", "a  b", 0},
        {"uri", "urn:x", 1},
        {"uri", "a b", 0},
        {"oid", "urn:oid:1.2.3", 1},
        {"oid", "urn:oid:1.02", 0},
        {"uuid", "urn:uuid:0b2a6e1c-1e0d-4c2a-9b1f-7c2e1d0a9b3c", 1},
        {"base64Binary", "aGVsbG8=", 1},
        {"base64Binary", "aGVsbG8", 0},
        {"base64Binary", "aGV sbG8=", 1},
        {"string", "x", 1},
        {"string", "", 0},
        {"string", "a\x01", 0},
        {"markdown", "# t\n", 1},
        {"positiveInt", "0", 0},
        {"positiveInt", "1", 1},
        {"unsignedInt", "0", 1},
        {"decimal", "1.50", 1},
        {"decimal", "01", 0},
        {"decimal", "-0.5e10", 1},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        const hv_fhir_type_t *t = hv_fhir_type_find(cases[i].type, strlen(cases[i].type));
        assert_non_null(t);
        extern int hv__fhir_format_ok(const hv_fhir_type_t *ft, const char *s, size_t n);
        int ok = hv__fhir_format_ok(t, cases[i].value, strlen(cases[i].value));
        if (ok != cases[i].ok)
            print_error("%s '%s': %d\n", cases[i].type, cases[i].value, ok);
        assert_int_equal(ok, cases[i].ok);
    }
}

/* The hand-written checks of the hot types agree with the definitions' regexes (POSIX ERE)
 * on mutations of valid values. */
static void fhir_validate_hand_formats_match_the_regexes(void **state) {
    (void)state;
    extern int hv__fhir_format_ok(const hv_fhir_type_t *t, const char *s, size_t n);
    static const char *const types[] = {"date",        "dateTime",    "instant",  "time",
                                        "code",        "id",          "uri",      "canonical",
                                        "decimal",     "integer",     "unsignedInt",
                                        "positiveInt"};
    static const char *const seeds[] = {"2020-01-02T10:11:12.345+14:00",
                                        "2020-01-02",
                                        "0001",
                                        "2020-12-31T23:59:60Z",
                                        "10:11:12.5",
                                        "2020-01-02T10:11:12-13:59",
                                        "a b c",
                                        "abc-1.2",
                                        "urn:x:y",
                                        "-10.05e+3",
                                        "0.5E-7",
                                        "1234"};
    static const char alpha[] = "0123456789-:TZ+. \t\nxeE";
    unsigned seed = 12345;
    for (size_t ti = 0; ti < HV_ARRAY_LEN(types); ti++) {
        const hv_fhir_type_t *t = hv_fhir_type_find(types[ti], strlen(types[ti]));
        regex_t rx;
        assert_int_equal(regcomp(&rx, HV__S(t->posix), REG_EXTENDED | REG_NOSUB), 0);
        for (int it = 0; it < 20000; it++) {
            char buf[80];
            seed = seed * 1103515245u + 12345u;
            snprintf(buf, sizeof(buf), "%s", seeds[(seed >> 16) % HV_ARRAY_LEN(seeds)]);
            size_t n = strlen(buf);
            for (int m = 0; m < 3; m++) {
                seed = seed * 1103515245u + 12345u;
                size_t pos = (seed >> 8) % (n + 1);
                char ch = alpha[(seed >> 20) % (sizeof(alpha) - 1)];
                if ((seed >> 28) % 3 == 0 && pos < n) {
                    buf[pos] = ch;
                } else if ((seed >> 28) % 3 == 1 && pos < n) {
                    memmove(buf + pos, buf + pos + 1, n - pos);
                    n--;
                } else if (n < 70) {
                    memmove(buf + pos + 1, buf + pos, n - pos + 1);
                    buf[pos] = ch;
                    n++;
                }
                buf[n] = '\0';
            }
            int hand = hv__fhir_format_ok(t, buf, n);
            int posix = regexec(&rx, buf, 0, NULL, 0) == 0;
            if (hand != posix)
                print_error("%s '%s': hand %d, regex %d\n", types[ti], buf, hand, posix);
            assert_int_equal(hand, posix);
        }
        regfree(&rx);
    }
}

/* The keys of the issues of an outcome at severity sev, as " key1 key2 " (for strstr). */
static void issue_keys(struct json_object *oo, const char *sev, char *out, size_t cap) {
    struct json_object *issues = json_object_object_get(oo, "issue");
    size_t n = (size_t)snprintf(out, cap, " ");
    for (size_t i = 0; i < json_object_array_length(issues); i++) {
        struct json_object *is = json_object_array_get_idx(issues, i), *d = NULL;
        if (strcmp(hv_json_get_str(is, "severity"), sev) != 0 ||
            !json_object_object_get_ex(is, "details", &d))
            continue;
        n += (size_t)snprintf(out + n, cap - n, "%s ",
                              hv_json_get_str(json_object_array_get_idx(json_object_object_get(d, "coding"), 0),
                                              "code"));
    }
}

/* HV_FHIR_VALIDATE_OUTCOME_ON_ERROR: no outcome for a resource without errors (warnings
 * or not), and for one with errors the same outcome, byte for byte, as without the flag. */
static void fhir_validate_outcome_on_error_only_lists_a_failing_resource(void **state) {
    (void)state;
    static const struct {
        const char *text;
    } texts[] = {
        {"{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\",\"div\":\"<div "
         "xmlns=\\\"http://www.w3.org/1999/xhtml\\\">x</div>\"}}"},
        {"{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"x\"}]}"}, /* dom-6: a warning */
        {"{\"resourceType\":\"Patient\",\"gender\":\"woman\",\"birthDate\":\"tomorrow\"}"},
        {"{\"resourceType\":\"Patient\",\"contact\":[{\"gender\":\"male\"}],\"x\":1}"},
        {"{\"resourceType\":\"Observation\",\"code\":{\"text\":\"x\"}}"},
    };
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    assert_non_null(v);
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct json_object *o = json_tokener_parse(texts[i].text), *full = NULL, *quick = NULL;
        int efull = -1, equick = -1;
        assert_non_null(o);
        assert_int_equal(hv_fhir_validate(v, o, NULL, 0, &full, &efull), HV_OK);
        assert_int_equal(hv_fhir_validate(v, o, NULL, HV_FHIR_VALIDATE_OUTCOME_ON_ERROR, &quick, &equick), HV_OK);
        assert_int_equal(equick, efull);
        if (efull == 0) {
            assert_null(quick);
        } else {
            assert_non_null(quick);
            assert_string_equal(json_object_to_json_string_ext(quick, JSON_C_TO_STRING_PLAIN),
                                json_object_to_json_string_ext(full, JSON_C_TO_STRING_PLAIN));
        }
        json_object_put(full);
        json_object_put(quick);
        json_object_put(o);
    }
    hv_fhir_validator_free(v);
}

/* dom-2, dom-4, dom-5 and dom-6 are decided from the resource's shape where it can
 * (invariants.c shortcut()): the issues must be those their FHIRPath expressions give. */
static void fhir_validate_dom_shortcuts_agree_with_fhirpath(void **state) {
    (void)state;
    static const struct {
        const char *text;
    } texts[] = {
        {"{\"resourceType\":\"Patient\"}"},
        {"{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\",\"div\":\"<div "
         "xmlns=\\\"http://www.w3.org/1999/xhtml\\\">x</div>\"}}"},
        {"{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\"}}"},
        {"{\"resourceType\":\"Patient\",\"text\":null}"},
        {"{\"resourceType\":\"Patient\",\"text\":{\"status\":\"generated\",\"div\":null}}"},
        {"{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Organization\",\"id\":\"o\","
         "\"contained\":[{\"resourceType\":\"Organization\",\"id\":\"p\"}]}],"
         "\"managingOrganization\":{\"reference\":\"#o\"}}"},
        {"{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Organization\",\"id\":\"o\","
         "\"meta\":{\"versionId\":\"1\",\"security\":[{\"code\":\"R\"}]}}],"
         "\"managingOrganization\":{\"reference\":\"#o\"}}"},
        {"{\"resourceType\":\"Patient\",\"contained\":[{\"resourceType\":\"Organization\",\"id\":\"o\","
         "\"meta\":{\"lastUpdated\":\"2020-01-01T00:00:00Z\"}}],\"managingOrganization\":{\"reference\":\"#o\"}}"},
        {"{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"text\":\"x\"}}"},
    };
    static const struct {
        const char *key, *expr, *sev;
    } rules[] = {
        {"dom-2", "contained.contained.empty()", "error"},
        {"dom-4", "contained.meta.versionId.empty() and contained.meta.lastUpdated.empty()", "error"},
        {"dom-5", "contained.meta.security.empty()", "error"},
        {"dom-6", "text.`div`.exists()", "warning"},
    };
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    hv_arena_t *arena = hv_arena_new(0);
    assert_non_null(v);
    assert_non_null(arena);
    for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++) {
        struct json_object *o = json_tokener_parse(texts[i].text), *oo = NULL;
        char keys[1024], want[16];
        int errors = 0;
        assert_non_null(o);
        assert_int_equal(hv_fhir_validate(v, o, NULL, 0, &oo, &errors), HV_OK);
        for (size_t k = 0; k < sizeof(rules) / sizeof(rules[0]); k++) {
            hv_fhirpath_t *fp = NULL;
            hv_fhirpath_result_t *res = NULL;
            hv_fhirpath_item_t it;
            hv_error_t err;
            int holds;
            hv_error_clear(&err);
            assert_int_equal(hv_fhirpath_compile(rules[k].expr, 0, NULL, &fp, &err), HV_OK);
            assert_int_equal(hv_fhirpath_eval(fp, o, NULL, arena, &res, &err), HV_OK);
            assert_int_equal(hv_fhirpath_result_count(res), 1);
            assert_int_equal(hv_fhirpath_result_item(res, 0, &it), HV_OK);
            holds = strcmp(it.text, "true") == 0;
            issue_keys(oo, rules[k].sev, keys, sizeof(keys));
            snprintf(want, sizeof(want), " %s ", rules[k].key);
            if ((strstr(keys, want) == NULL) != holds)
                print_error("%s on %s: FHIRPath %s, issues [%s]\n", rules[k].key, texts[i].text,
                            holds ? "holds" : "fails", keys);
            assert_int_equal(strstr(keys, want) == NULL, holds);
            hv_fhirpath_free(fp);
            hv_arena_reset(arena);
        }
        json_object_put(oo);
        json_object_put(o);
    }
    hv_arena_free(arena);
    hv_fhir_validator_free(v);
}

/* The data-type and Observation constraints the walk decides from the focus object's shape
 * (invariants.c shortcut(): ref-1, qty-3, per-1, obs-6, obs-7) report an issue exactly when
 * their FHIRPath expression, evaluated on the same focus, is false. */
static void fhir_validate_shape_shortcuts_agree_with_fhirpath(void **state) {
    (void)state;
    static const struct {
        const char *key, *focus, *expr, *text;
    } cases[] = {
#define OBS "{\"resourceType\":\"Observation\",\"status\":\"final\",\"code\":{\"coding\":[{\"system\":\"http://loinc.org\",\"code\":\"1\"}]}"
#define REF1 "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))"
        {"ref-1", "Patient.managingOrganization", REF1,
         "{\"resourceType\":\"Patient\",\"managingOrganization\":{\"reference\":\"Organization/1\"}}"},
        {"ref-1", "Patient.managingOrganization", REF1,
         "{\"resourceType\":\"Patient\",\"managingOrganization\":{\"reference\":\"#o\"}}"},
        {"ref-1", "Patient.managingOrganization", REF1,
         "{\"resourceType\":\"Patient\",\"managingOrganization\":{\"display\":\"x\"}}"},
        {"ref-1", "Patient.managingOrganization", REF1,
         "{\"resourceType\":\"Patient\",\"managingOrganization\":{\"_reference\":{\"extension\":[{"
         "\"url\":\"http://x\",\"valueString\":\"y\"}]}}}"},
        {"qty-3", "Observation.value.ofType(Quantity)", "code.empty() or system.exists()",
         OBS ",\"valueQuantity\":{\"value\":1,\"code\":\"mg\"}}"},
        {"qty-3", "Observation.value.ofType(Quantity)", "code.empty() or system.exists()",
         OBS ",\"valueQuantity\":{\"value\":1,\"code\":\"mg\",\"system\":\"http://unitsofmeasure.org\"}}"},
        {"qty-3", "Observation.value.ofType(Quantity)", "code.empty() or system.exists()",
         OBS ",\"valueQuantity\":{\"value\":1}}"},
        {"qty-3", "Observation.value.ofType(Quantity)", "code.empty() or system.exists()",
         OBS ",\"valueQuantity\":{\"value\":1,\"_code\":{\"extension\":[{\"url\":\"http://x\","
         "\"valueString\":\"y\"}]}}}"},
        {"per-1", "Observation.effective.ofType(Period)",
         "start.hasValue().not() or end.hasValue().not() or (start <= end)",
         OBS ",\"effectivePeriod\":{\"start\":\"2020-01-02\"}}"},
        {"per-1", "Observation.effective.ofType(Period)",
         "start.hasValue().not() or end.hasValue().not() or (start <= end)",
         OBS ",\"effectivePeriod\":{\"end\":\"2020-01-02\"}}"},
        {"per-1", "Observation.effective.ofType(Period)",
         "start.hasValue().not() or end.hasValue().not() or (start <= end)",
         OBS ",\"effectivePeriod\":{\"start\":\"2020-01-03\",\"end\":\"2020-01-02\"}}"},
        {"per-1", "Observation.effective.ofType(Period)",
         "start.hasValue().not() or end.hasValue().not() or (start <= end)",
         OBS ",\"effectivePeriod\":{\"start\":\"2020-01-01\",\"end\":\"2020-01-02\"}}"},
        {"obs-6", "Observation", "dataAbsentReason.empty() or value.empty()",
         OBS ",\"valueString\":\"x\"}"},
        {"obs-6", "Observation", "dataAbsentReason.empty() or value.empty()",
         OBS ",\"valueString\":\"x\",\"dataAbsentReason\":{\"text\":\"gone\"}}"},
        {"obs-7", "Observation",
         "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()",
         OBS ",\"valueString\":\"x\"}"},
        {"obs-7", "Observation",
         "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()",
         OBS ",\"valueString\":\"x\",\"component\":[{\"code\":{\"coding\":[{\"system\":"
         "\"http://loinc.org\",\"code\":\"1\"}]},\"valueString\":\"y\"}]}"},
#undef OBS
#undef REF1
    };
    hv_fhir_validator_t *v = hv_fhir_validator_new();
    hv_arena_t *arena = hv_arena_new(0);
    int failed = 0;
    assert_non_null(v);
    assert_non_null(arena);
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++) {
        struct json_object *o = json_tokener_parse(cases[i].text), *oo = NULL;
        char keys[1024], want[16], fails[512];
        hv_fhirpath_t *fp = NULL;
        hv_fhirpath_result_t *res = NULL;
        hv_fhirpath_item_t it;
        hv_error_t err;
        int errors = 0;
        assert_non_null(o);
        assert_int_equal(hv_fhir_validate(v, o, NULL, 0, &oo, &errors), HV_OK);
        /* An empty result holds: only a false one fails the constraint. */
        snprintf(fails, sizeof(fails), "%s.where((%s) = false).exists()", cases[i].focus,
                 cases[i].expr);
        hv_error_clear(&err);
        assert_int_equal(hv_fhirpath_compile(fails, 0, NULL, &fp, &err), HV_OK);
        snprintf(want, sizeof(want), " %s ", cases[i].key);
        if (hv_fhirpath_eval(fp, o, NULL, arena, &res, &err) != HV_OK) {
            /* FHIRPath cannot evaluate it (startsWith() of a value-less `_reference`): the
             * validator says so, as information. */
            issue_keys(oo, "information", keys, sizeof(keys));
            if (strstr(keys, want) == NULL) {
                print_error("%s on %s: FHIRPath fails (%s), issues [%s]\n", cases[i].key,
                            cases[i].text, err.message, keys);
                failed++;
            }
            goto next;
        }
        assert_int_equal(hv_fhirpath_result_item(res, 0, &it), HV_OK);
        issue_keys(oo, "error", keys, sizeof(keys));
        if ((strstr(keys, want) != NULL) != (strcmp(it.text, "true") == 0)) {
            print_error("%s on %s: FHIRPath fails %s, issues [%s]\n", cases[i].key,
                        cases[i].text, it.text, keys);
            failed++;
        }
        failed += strcmp(it.text, "true") != 0 && strcmp(it.text, "false") != 0;
    next:
        hv_fhirpath_free(fp);
        hv_arena_reset(arena);
        json_object_put(oo);
        json_object_put(o);
    }
    assert_int_equal(failed, 0);
    hv_arena_free(arena);
    hv_fhir_validator_free(v);
}

int run_validate_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhir_validate_reports_each_rule_at_its_path),
        cmocka_unit_test(fhir_validate_reports_a_deep_error_at_its_full_path),
        cmocka_unit_test(fhir_validate_flags_skip_checks),
        cmocka_unit_test(fhir_validate_caps_issues),
        cmocka_unit_test(fhir_validate_primitive_formats_table),
        cmocka_unit_test(fhir_validate_hand_formats_match_the_regexes),
        cmocka_unit_test(fhir_validate_outcome_on_error_only_lists_a_failing_resource),
        cmocka_unit_test(fhir_validate_dom_shortcuts_agree_with_fhirpath),
        cmocka_unit_test(fhir_validate_shape_shortcuts_agree_with_fhirpath),
    };
    return cmocka_run_group_tests_name("fhir_validate", tests, NULL, NULL);
}
