/*
 * json_same_tree.h — strict equality of two json-c trees, for the tests and the fuzz target
 * that hold fhir/json_read.c's reader to json-c's tokener.
 */
#ifndef HV_TEST_JSON_SAME_TREE_H
#define HV_TEST_JSON_SAME_TREE_H

#include <json-c/json.h>

/* 1 when a and b are equal node for node: the same json-c types, object keys in the same
 * order, strings of the same bytes and length, integers of the same value, doubles of the
 * same bits and the same serialization (the text they keep); else 0. */
int hv_test_json_same_tree(struct json_object *a, struct json_object *b);

#endif
