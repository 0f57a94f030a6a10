/*
 * query.h: percent-decoding, query strings and the checks of query parameters.
 *
 * Everything here is pure (no civetweb, no RPC) so that the parsers of outside
 * input can be unit-tested and fuzzed on their own.  Decoded strings are NUL
 * terminated and live in the caller's arena; NUL bytes (%00), malformed escapes
 * and invalid UTF-8 are refused, never passed on.
 */
#ifndef MALL_GW_QUERY_H
#define MALL_GW_QUERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "status.h"

typedef enum mall_gw_decode_err {
	MALL_GW_DECODE_OK = 0,
	MALL_GW_DECODE_ESCAPE,  /* '%' not followed by two hex digits */
	MALL_GW_DECODE_NUL,     /* %00 */
	MALL_GW_DECODE_UTF8,    /* the decoded bytes are not valid UTF-8 */
	MALL_GW_DECODE_CONTROL, /* a control character (< 0x20 or 0x7f) */
} mall_gw_decode_err;

/* mall_gw_percent_decode: decodes src[0..len) into dst (room for len + 1
 * bytes; dst may equal src), '+' as a space when plus_space (query strings),
 * and checks the result: no NUL, valid UTF-8, and, when no_control, no control
 * characters.  *out_len gets the decoded length.  dst is always terminated. */
mall_gw_decode_err mall_gw_percent_decode(const char *src, size_t len, bool plus_space,
                                          bool no_control, char *dst, size_t *out_len);

/* mall_gw_decode_err_text: "malformed percent-encoding" and the like. */
const char *mall_gw_decode_err_text(mall_gw_decode_err e);

/* One decoded query parameter. */
typedef struct mall_gw_param {
	const char *name;
	const char *value; /* "" for "name" or "name=" */
} mall_gw_param;

#define MALL_GW_MAX_PARAMS 32

/* mall_gw_query_parse: splits a raw query string (application/x-www-form-
 * urlencoded: '&'-separated name=value pairs, '+' is a space) into decoded
 * pairs in a, in order.  qs may be NULL (no parameters).  Empty pairs ("a&&b")
 * are skipped.  A bad pair is a field error naming the parameter (or "query"
 * when its name cannot be decoded); more than MALL_GW_MAX_PARAMS pairs is a
 * field error on "query".  Returns MALL_OK or MALL_INVALID_ARGUMENT (st then
 * holds every field error found); either way *out and *n are the pairs that
 * could be decoded, so that their checks can add their errors as well. */
mall_code mall_gw_query_parse(const char *qs, mall_arena *a, mall_gw_param **out, size_t *n,
                              mall_status *st);

/* What a query parameter of a route accepts. */
typedef enum mall_gw_param_type {
	MALL_GW_PARAM_STRING, /* min..max characters (code points) */
	MALL_GW_PARAM_INT,    /* a decimal integer in min..max */
	MALL_GW_PARAM_ENUM,   /* one of values, exactly */
} mall_gw_param_type;

typedef struct mall_gw_param_spec {
	const char *name; /* lowerCamelCase, as the JSON field it binds to */
	mall_gw_param_type type;
	int64_t min, max;
	const char *const *values; /* ENUM: NULL-terminated */
	const char *doc;           /* one line for the OpenAPI document's reader */
} mall_gw_param_spec;

/* mall_gw_params_check: checks params against spec: unknown names, repeated
 * names, and values of the wrong form or out of range are field errors (all of
 * them, not only the first).  An empty value counts as absent (HTML forms send
 * "q=").  Returns MALL_OK or MALL_INVALID_ARGUMENT with st's fields set. */
mall_code mall_gw_params_check(const mall_gw_param *params, size_t n,
                               const mall_gw_param_spec *spec, size_t nspec, mall_status *st);


#endif
