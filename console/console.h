/*
 * console.h — the admin console: the static web application under console/www,
 * served by the engine at /console (console/module.c).
 */
#ifndef HV_CONSOLE_H
#define HV_CONSOLE_H

#include "engine/engine.h"

extern const hv_module_t hv_console_module;

#endif
