/*
 * engine_int.h — internals shared between the files of engine/. Not for modules.
 */
#ifndef HV_ENGINE_INT_H
#define HV_ENGINE_INT_H

#include "engine/engine.h"

#endif
