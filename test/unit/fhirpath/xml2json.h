/* xml2json.h — test-only FHIR XML → JSON reader (see xml2json.c). */
#ifndef HV_TEST_FHIRPATH_XML2JSON_H
#define HV_TEST_FHIRPATH_XML2JSON_H
struct json_object;
/* Reads a FHIR XML resource file into its JSON form; NULL on error. Owned by the caller. */
struct json_object *test_fhir_xml_to_json(const char *path);
#endif
