/* model.c — tests of fhir/model.c: lookups over the generated FHIR R4 model. */
#include "tests.h"

#include <string.h>

#include "fhir/fhir_int.h"

static const hv_fhir_type_t *T(const char *name) {
    const hv_fhir_type_t *t = hv_fhir_type_find(name, strlen(name));
    assert_non_null(t);
    return t;
}

static void fhir_model_finds_types_by_name_and_kind(void **state) {
    (void)state;
    static const struct {
        const char *name;
        hv_fhir_kind_t kind;
    } cases[] = {
        {"Patient", HV_FHIR_KIND_RESOURCE},       {"DomainResource", HV_FHIR_KIND_RESOURCE},
        {"HumanName", HV_FHIR_KIND_COMPLEX},      {"BackboneElement", HV_FHIR_KIND_COMPLEX},
        {"dateTime", HV_FHIR_KIND_PRIMITIVE},     {"code", HV_FHIR_KIND_PRIMITIVE},
        {"System.String", HV_FHIR_KIND_SYSTEM},   {"System.Decimal", HV_FHIR_KIND_SYSTEM},
        {"SimpleQuantity", HV_FHIR_KIND_COMPLEX}, {"FHIR.Observation", HV_FHIR_KIND_RESOURCE},
    };
    for (size_t i = 0; i < HV_ARRAY_LEN(cases); i++)
        assert_int_equal(hv_fhir_type_kind(T(cases[i].name)), cases[i].kind);
    assert_null(hv_fhir_type_find("Patien", 6));
    assert_null(hv_fhir_type_find("patient", 7));
    assert_string_equal(hv_fhir_type_name(T("FHIR.Patient")), "Patient");
    assert_ptr_equal(hv_fhir_type_by_url("http://hl7.org/fhir/StructureDefinition/Patient"),
                     T("Patient"));
    assert_ptr_equal(hv_fhir_resource_type("Patient"), T("Patient"));
    assert_null(hv_fhir_resource_type("DomainResource"));
    assert_null(hv_fhir_resource_type("HumanName"));
    assert_true(hv_fhir_type_count() > 200);
}

/* hv_fhir_resource_type (its own table, hashed a word at a time) names exactly the concrete
 * resource types, each by its exact name, as the model's index does. */
static void fhir_model_resource_type_is_the_indexs(void **state) {
    static const char *const not_types[] = {"", "P", "Patien", "patient", "PatientX", "Patient ",
                                            "FHIR.Patient", "Observatio", "ObservationDefinitionX",
                                            "Resource", "DomainResource", "HumanName", "string",
                                            "System.String", "MedicationKnowledgeAdministrationGuidelines"};
    size_t concrete = 0;
    (void)state;
    for (size_t i = 0; i < hv_fhir_type_count(); i++) {
        const hv_fhir_type_t *t = hv_fhir_type_at(i);
        const char *n = hv_fhir_type_name(t);
        const hv_fhir_type_t *want = hv_fhir_type_find(n, strlen(n));
        int is = want == t && hv_fhir_type_kind(t) == HV_FHIR_KIND_RESOURCE && !hv_fhir_type_is_abstract(t);
        if (is) {
            assert_ptr_equal(hv_fhir_resource_type(n), t);
            concrete++;
        } else if (hv_fhir_resource_type(n) != NULL) {
            /* Another type of the same name, found by the index first: the same answer. */
            assert_ptr_equal(hv_fhir_resource_type(n), want);
        }
    }
    assert_true(concrete >= 140);
    for (size_t i = 0; i < HV_ARRAY_LEN(not_types); i++)
        assert_null(hv_fhir_resource_type(not_types[i]));
    assert_null(hv_fhir_resource_type(NULL));
}

static void fhir_model_walks_the_base_chain(void **state) {
    (void)state;
    const hv_fhir_type_t *p = T("Patient");
    assert_ptr_equal(hv_fhir_type_base(p), T("DomainResource"));
    assert_ptr_equal(hv_fhir_type_base(hv_fhir_type_base(p)), T("Resource"));
    assert_null(hv_fhir_type_base(T("Resource")));
    assert_true(hv_fhir_type_is(p, T("Resource")));
    assert_true(hv_fhir_type_is(p, p));
    assert_false(hv_fhir_type_is(T("Resource"), p));
    assert_true(hv_fhir_type_is(T("code"), T("string")));
    assert_true(hv_fhir_type_is(T("Age"), T("Quantity")));
    assert_false(hv_fhir_type_is(T("Bundle"), T("DomainResource")));
    assert_ptr_equal(hv_fhir_type_system(T("dateTime")), T("System.DateTime"));
    assert_ptr_equal(hv_fhir_type_system(T("instant")), T("System.DateTime"));
    assert_ptr_equal(hv_fhir_type_system(T("code")), T("System.String"));
    assert_ptr_equal(hv_fhir_type_system(T("positiveInt")), T("System.Integer"));
    assert_null(hv_fhir_type_system(T("HumanName")));
    assert_non_null(hv_fhir_type_regex(T("date")));
    assert_int_equal(hv_fhir_type_max_length(T("string")), 1048576);
}

static void fhir_model_resolves_children_and_backbones(void **state) {
    (void)state;
    const hv_fhir_type_t *chosen = NULL;
    const hv_fhir_elem_t *root = hv_fhir_type_root(T("Patient"));
    assert_string_equal(hv_fhir_elem_path(root), "Patient");
    const hv_fhir_elem_t *contact = hv_fhir_elem_child(root, "contact", 7, &chosen);
    assert_non_null(contact);
    assert_ptr_equal(chosen, T("BackboneElement"));
    assert_true(hv_fhir_elem_is_backbone(contact));
    assert_true(hv_fhir_elem_is_array(contact));
    const hv_fhir_elem_t *owner = hv_fhir_elem_owner(contact, chosen);
    assert_ptr_equal(owner, contact);
    const hv_fhir_elem_t *nm = hv_fhir_elem_child(owner, "name", 4, &chosen);
    assert_string_equal(hv_fhir_elem_path(nm), "Patient.contact.name");
    assert_ptr_equal(chosen, T("HumanName"));
    assert_false(hv_fhir_elem_is_array(nm));
    assert_ptr_equal(hv_fhir_elem_owner(nm, chosen), hv_fhir_type_root(T("HumanName")));
    const hv_fhir_elem_t *given =
        hv_fhir_elem_child(hv_fhir_elem_owner(nm, chosen), "given", 5, &chosen);
    assert_string_equal(hv_fhir_elem_path(given), "HumanName.given");
    assert_true(hv_fhir_elem_is_array(given));
    assert_ptr_equal(chosen, T("string"));
    /* Inherited elements are in the snapshot. */
    assert_non_null(hv_fhir_elem_child(root, "meta", 4, NULL));
    assert_non_null(hv_fhir_elem_child(root, "id", 2, NULL));
    assert_null(hv_fhir_elem_child(root, "nonsense", 8, NULL));
    assert_null(hv_fhir_elem_child(root, "contac", 6, NULL));
    /* The name must match completely, not as a prefix. */
    assert_null(hv_fhir_elem_child(root, "contacts", 8, NULL));
}

/* Every entry of the four hash indexes is found by its own key: each type by its name and
 * URL, each element by its path, each JSON property name under its owner, whatever their
 * length relative to the hash's 8-byte words. */
static void fhir_model_finds_every_indexed_key(void **state) {
    (void)state;
    for (size_t i = 0; i < hv_fhir_type_count(); i++) {
        const hv_fhir_type_t *t = hv_fhir_type_at(i);
        const char *name = hv_fhir_type_name(t);
        assert_ptr_equal(hv_fhir_type_find(name, strlen(name)), t);
        assert_ptr_equal(hv_fhir_type_by_url(hv_fhir_type_url(t)), t);
    }
    for (size_t i = 0; i < hv_fhir_elem_count(); i++) {
        const hv_fhir_elem_t *e = hv_fhir_elem_at(i);
        const hv_fhir_elem_t *f = hv_fhir_elem_find(hv_fhir_elem_path(e));
        assert_non_null(f); /* a path can name two elements (a profile's and its base's) */
        assert_string_equal(hv_fhir_elem_path(f), hv_fhir_elem_path(e));
    }
    for (uint32_t i = 0; i < hv__fhir_childkeys_count; i++) {
        const hv__fhir_childkey_row_t *k = &hv__fhir_childkeys[i];
        const char *name = HV__S(k->name);
        const hv_fhir_type_t *chosen = NULL;
        assert_ptr_equal(hv_fhir_elem_child(hv_fhir_elem_at((size_t)k->owner), name, strlen(name),
                                            &chosen),
                         hv_fhir_elem_at((size_t)k->elem));
        assert_ptr_equal(chosen, hv_fhir_type_at(k->type));
    }
}

static void fhir_model_resolves_choice_properties(void **state) {
    (void)state;
    const hv_fhir_type_t *chosen = NULL;
    const hv_fhir_elem_t *root = hv_fhir_type_root(T("Observation"));
    const hv_fhir_elem_t *v = hv_fhir_elem_child(root, "valueQuantity", 13, &chosen);
    assert_non_null(v);
    assert_string_equal(hv_fhir_elem_path(v), "Observation.value[x]");
    assert_true(hv_fhir_elem_is_choice(v));
    assert_ptr_equal(chosen, T("Quantity"));
    assert_ptr_equal(hv_fhir_elem_child(root, "valueDateTime", 13, &chosen), v);
    assert_ptr_equal(chosen, T("dateTime"));
    assert_null(hv_fhir_elem_child(root, "valueHumanName", 14, NULL));
    assert_null(hv_fhir_elem_child(root, "value", 5, NULL));
    assert_int_equal(hv_fhir_elem_type_count(v), 11);
    assert_ptr_equal(hv_fhir_elem_choice_type(v, "Boolean", 7), T("boolean"));
    assert_null(hv_fhir_elem_choice_type(v, "Money", 5));
    /* Extension.value[x] allows every type of the open list. */
    const hv_fhir_elem_t *ev =
        hv_fhir_elem_child(hv_fhir_type_root(T("Extension")), "valueHumanName", 14, &chosen);
    assert_non_null(ev);
    assert_ptr_equal(chosen, T("HumanName"));
}

static void fhir_model_follows_content_references(void **state) {
    (void)state;
    const hv_fhir_type_t *chosen = NULL;
    const hv_fhir_elem_t *item = hv_fhir_elem_find("Questionnaire.item");
    assert_non_null(item);
    const hv_fhir_elem_t *sub = hv_fhir_elem_child(item, "item", 4, &chosen);
    assert_non_null(sub);
    assert_ptr_equal(hv_fhir_elem_content_ref(sub), item);
    assert_ptr_equal(hv_fhir_elem_owner(sub, chosen), item);
    assert_ptr_equal(chosen, T("BackboneElement"));
}

static void fhir_model_reports_cardinality_and_order(void **state) {
    (void)state;
    const hv_fhir_elem_t *status = hv_fhir_elem_find("Observation.status");
    assert_int_equal(hv_fhir_elem_min(status), 1);
    assert_int_equal(hv_fhir_elem_max(status), 1);
    const hv_fhir_elem_t *ident = hv_fhir_elem_find("Observation.identifier");
    assert_int_equal(hv_fhir_elem_min(ident), 0);
    assert_int_equal(hv_fhir_elem_max(ident), HV_FHIR_UNBOUNDED);
    const hv_fhir_elem_t *root = hv_fhir_type_root(T("Patient"));
    static const char *const first[] = {
        "id",         "meta",      "implicitRules", "language",
        "text",       "contained", "extension",     "modifierExtension",
        "identifier", "active",    "name"};
    for (size_t i = 0; i < HV_ARRAY_LEN(first); i++)
        assert_string_equal(hv_fhir_elem_name(hv_fhir_elem_child_at(root, i)), first[i]);
    assert_int_equal(hv_fhir_elem_index(hv_fhir_elem_find("Patient.active")), 9);
    assert_true(hv_fhir_elem_is_xml_attr(hv_fhir_elem_find("Extension.url")));
    assert_true(hv_fhir_elem_is_xhtml(hv_fhir_elem_find("Narrative.div")));
    assert_true(hv_fhir_elem_is_modifier(hv_fhir_elem_find("Patient.active")));
    assert_true(hv_fhir_elem_is_summary(hv_fhir_elem_find("Patient.name")));
    const hv_fhir_elem_t *gp = hv_fhir_elem_find("Patient.generalPractitioner");
    assert_ptr_equal(hv_fhir_elem_type_at(gp, 0), T("Reference"));
    assert_int_equal(hv_fhir_elem_target_count(gp, 0), 3);
    assert_ptr_equal(hv_fhir_elem_target_at(gp, 0, 0), T("Organization"));
}

static void fhir_model_lists_constraints_and_bindings(void **state) {
    (void)state;
    const hv_fhir_elem_t *root = hv_fhir_type_root(T("Patient"));
    int dom2 = 0;
    for (size_t i = 0; i < hv_fhir_elem_constraint_count(root); i++) {
        const hv_fhir_constraint_t *c = hv_fhir_elem_constraint_at(root, i);
        if (strcmp(hv_fhir_constraint_key(c), "dom-2") == 0) {
            dom2 = 1;
            assert_string_equal(hv_fhir_constraint_expression(c), "contained.contained.empty()");
            assert_int_equal(hv_fhir_constraint_severity(c), HV_FHIR_SEV_ERROR);
        }
    }
    assert_true(dom2);
    const hv_fhir_binding_t *b = hv_fhir_elem_binding(hv_fhir_elem_find("Patient.gender"));
    assert_non_null(b);
    assert_int_equal(hv_fhir_binding_strength(b), HV_FHIR_BIND_REQUIRED);
    assert_string_equal(hv_fhir_binding_valueset(b),
                        "http://hl7.org/fhir/ValueSet/administrative-gender");
    assert_true(hv_fhir_binding_inlined(b));
    assert_int_equal(hv_fhir_binding_code_count(b), 4);
    assert_int_equal(hv_fhir_binding_has(b, NULL, "female"), 1);
    assert_int_equal(hv_fhir_binding_has(b, NULL, "woman"), 0);
    assert_int_equal(hv_fhir_binding_has(b, "http://hl7.org/fhir/administrative-gender", "male"),
                     1);
    const hv_fhir_binding_t *ms = hv_fhir_elem_binding(hv_fhir_elem_find("Attachment.contentType"));
    assert_non_null(ms);
    assert_false(hv_fhir_binding_inlined(ms));
    assert_int_equal(hv_fhir_binding_has(ms, NULL, "text/plain"), HV_ENOTSUP);
}

static void fhir_model_finds_search_parameters(void **state) {
    (void)state;
    const hv_fhir_type_t *p = T("Patient");
    const hv_fhir_search_t *s = hv_fhir_search_find(p, "birthdate");
    assert_non_null(s);
    assert_int_equal(hv_fhir_search_type(s), HV_FHIR_SP_DATE);
    assert_string_equal(hv_fhir_search_expression(s),
                        "Patient.birthDate | Person.birthDate | RelatedPerson.birthDate");
    const hv_fhir_search_t *id = hv_fhir_search_find(p, "_id");
    assert_non_null(id);
    assert_ptr_equal(hv_fhir_search_base_at(id, 0), T("Resource"));
    assert_null(hv_fhir_search_find(p, "nonsense"));
    const hv_fhir_search_t *org = hv_fhir_search_find(p, "organization");
    assert_int_equal(hv_fhir_search_type(org), HV_FHIR_SP_REFERENCE);
    assert_ptr_equal(hv_fhir_search_target_at(org, 0), T("Organization"));
    assert_ptr_equal(hv_fhir_search_by_url(hv_fhir_search_url(s)), s);
    assert_ptr_equal(
        hv_fhir_search_by_url("http://hl7.org/fhir/SearchParameter/individual-birthdate"), s);
    assert_null(hv_fhir_search_by_url("http://hl7.org/fhir/StructureDefinition/Patient"));
    size_t n = hv_fhir_search_own_count(p);
    assert_true(n > 10);
    for (size_t i = 1; i < n; i++)
        assert_true(strcmp(hv_fhir_search_code(hv_fhir_search_own_at(p, i - 1)),
                           hv_fhir_search_code(hv_fhir_search_own_at(p, i))) < 0);
    const hv_fhir_search_t *cvq = hv_fhir_search_find(T("Observation"), "code-value-quantity");
    assert_int_equal(hv_fhir_search_type(cvq), HV_FHIR_SP_COMPOSITE);
    assert_int_equal(hv_fhir_search_component_count(cvq), 2);
    const char *expr = NULL;
    assert_ptr_equal(hv_fhir_search_component_at(cvq, 0, &expr),
                     hv_fhir_search_find(T("Observation"), "code"));
    assert_string_equal(expr, "code");
}

int run_model_tests(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(fhir_model_finds_types_by_name_and_kind),
        cmocka_unit_test(fhir_model_resource_type_is_the_indexs),
        cmocka_unit_test(fhir_model_walks_the_base_chain),
        cmocka_unit_test(fhir_model_resolves_children_and_backbones),
        cmocka_unit_test(fhir_model_finds_every_indexed_key),
        cmocka_unit_test(fhir_model_resolves_choice_properties),
        cmocka_unit_test(fhir_model_follows_content_references),
        cmocka_unit_test(fhir_model_reports_cardinality_and_order),
        cmocka_unit_test(fhir_model_lists_constraints_and_bindings),
        cmocka_unit_test(fhir_model_finds_search_parameters),
    };
    return cmocka_run_group_tests_name("fhir_model", tests, NULL, NULL);
}
