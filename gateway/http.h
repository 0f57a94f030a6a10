/*
 * http.h: the pure parts of the gateway's HTTP handling: the error body, the
 * request-body decision taken before routing, request ids and reason phrases.
 * No civetweb here, so each is unit-tested on its own (server.c does the I/O).
 */
#ifndef MALL_GW_HTTP_H
#define MALL_GW_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "status.h"

#define MALL_GW_JSON "application/json; charset=utf-8"

/* mall_gw_error_json: the error body every error response carries,
 *   {"error":{"code":"<slug>","message":"...","fields":{"pageSize":"..."},
 *             "details":{"available":3}}}
 * with "fields" only when fields is not NULL and has field errors (the first
 * error of a field wins; a JSON object has each key once), and "details" only
 * when it has details.  Allocated in a; *len gets its length. */
char *mall_gw_error_json(mall_arena *a, const char *slug, const char *message,
                         const mall_status *fields, size_t *len);

/* mall_gw_public_message: the message an HTTP client is shown for st.  Client
 * errors (4xx) keep the service's message; server errors get a fixed text
 * naming service ("catalog is unavailable"), because their messages name
 * internal addresses and queries (those go to the log, with the trace id).
 * Returns st->message or buf. */
const char *mall_gw_public_message(const mall_status *st, const char *service, char *buf,
                                   size_t cap);

/* What to do with a request body, decided from the headers before routing. */
typedef enum mall_gw_body {
	MALL_GW_BODY_NONE,      /* no body */
	MALL_GW_BODY_LENGTH,    /* Content-Length within the limit: read when needed */
	MALL_GW_BODY_CHUNKED,   /* chunked: read in pieces, 413 once past the limit */
	MALL_GW_BODY_TOO_LARGE, /* Content-Length above the limit: 413, do not read */
	MALL_GW_BODY_BAD,       /* both Content-Length and Transfer-Encoding, or an
	                         * unsupported Transfer-Encoding: 400 */
} mall_gw_body;

/* mall_gw_body_check: content_length as civetweb parsed it (-1: none),
 * transfer_encoding the header (NULL: none), limit the route's limit. */
mall_gw_body mall_gw_body_check(long long content_length, const char *transfer_encoding,
                                int64_t limit);

/* mall_gw_request_id_valid: whether a client's X-Request-Id may be used as the
 * trace id: 1 to 64 characters of [A-Za-z0-9._-]. */
bool mall_gw_request_id_valid(const char *s);

/* mall_gw_reason: the reason phrase of an HTTP status ("Not Found"). */
const char *mall_gw_reason(int status);

/* mall_gw_media_is_json: whether a Content-Type header names JSON
 * ("application/json", any case, parameters allowed). */
bool mall_gw_media_is_json(const char *content_type);

/* mall_gw_method_label: method as a metrics label: the common methods as they
 * are, any other "OTHER" (a client must not grow the label set). */
const char *mall_gw_method_label(const char *method);

#endif
