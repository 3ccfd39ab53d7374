/* main.c — the command line (placeholder until the CLI lands in the next commit). */
#include "config.h"
#include "engine/engine.h"

#include <stdio.h>

int hv_main(int argc, char **argv, const hv_module_t *const *modules) {
    (void)argc; (void)argv; (void)modules;
    fprintf(stderr, "holovitals: not built yet\n");
    return HV_EXIT_FAILURE;
}
