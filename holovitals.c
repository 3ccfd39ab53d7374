/*
 * holovitals.c — the entry point: hands the command line and the module table
 * (modules.c) to the engine.
 */
#include "config.h"
#include "engine/engine.h"

extern const hv_module_t *const hv_modules[];

int main(int argc, char **argv) { return hv_main(argc, argv, hv_modules); }
