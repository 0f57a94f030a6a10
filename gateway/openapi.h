/*
 * openapi.h: docs/openapi.json, embedded into the binary at build time
 * (gateway/CMakeLists.txt turns the file into a C array), served at
 * GET /api/v1/openapi.json.
 */
#ifndef MALL_GW_OPENAPI_H
#define MALL_GW_OPENAPI_H

#include <stddef.h>

extern const char mall_gw_openapi_json[]; /* NUL-terminated */
extern const size_t mall_gw_openapi_json_len;

#endif
