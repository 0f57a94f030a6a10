/*
 * status.h: the one error type of mall, from lib to the gateway.
 *
 * Codes are gRPC's canonical codes (proto/mall/rpc.proto, enum Code).  A status
 * is a plain value with fixed-size buffers: no allocation, no owner to track.
 * Messages follow PostgreSQL's style: lower case, no final period, what could
 * not be done and why, naming the object.
 */
#ifndef MALL_STATUS_H
#define MALL_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum mall_code {
	MALL_OK = 0,
	MALL_CANCELLED = 1,
	MALL_UNKNOWN = 2,
	MALL_INVALID_ARGUMENT = 3,
	MALL_DEADLINE_EXCEEDED = 4,
	MALL_NOT_FOUND = 5,
	MALL_ALREADY_EXISTS = 6,
	MALL_PERMISSION_DENIED = 7,
	MALL_RESOURCE_EXHAUSTED = 8,
	MALL_FAILED_PRECONDITION = 9,
	MALL_ABORTED = 10,
	MALL_OUT_OF_RANGE = 11,
	MALL_UNIMPLEMENTED = 12,
	MALL_INTERNAL = 13,
	MALL_UNAVAILABLE = 14,
	MALL_DATA_LOSS = 15,
	MALL_UNAUTHENTICATED = 16,
} mall_code;

#define MALL_CODE_MAX MALL_UNAUTHENTICATED
#define MALL_STATUS_MAX_FIELDS 16
#define MALL_STATUS_MAX_DETAILS 4

typedef struct mall_field_error {
	char field[64];    /* lowerCamelCase JSON name; dotted for nested fields */
	char message[192];
} mall_field_error;

/* A named number a client can act on ("available": 3 items left). */
typedef struct mall_detail {
	char key[32];      /* lowerCamelCase */
	int64_t value;
} mall_detail;

typedef struct mall_status {
	mall_code code;
	char message[256];
	/* a machine-readable cause finer than the code ("out_of_stock"); the
	 * gateway answers it as the error's "code" in place of the code's slug */
	char reason[48];
	int nfields;
	mall_field_error fields[MALL_STATUS_MAX_FIELDS];
	int ndetails;
	mall_detail details[MALL_STATUS_MAX_DETAILS];
} mall_status;

/* mall_status_clear: st becomes OK with no message, reason, field errors or
 * details. */
void mall_status_clear(mall_status *st);
/* mall_status_set: sets code and a printf-formatted message, and forgets any
 * reason and details; returns code. */
mall_code mall_status_set(mall_status *st, mall_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* mall_status_reason: as mall_status_set, with a reason slug ([a-z0-9_],
 * e.g. "out_of_stock"); returns code. */
mall_code mall_status_reason(mall_status *st, mall_code code, const char *reason,
                             const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* mall_status_detail: adds a named number to st (after the code is set);
 * extra details beyond the maximum are dropped. */
void mall_status_detail(mall_status *st, const char *key, int64_t value);
/* mall_status_field: adds a field error and makes st INVALID_ARGUMENT (with the
 * message "invalid request" unless one is set); extra fields beyond the
 * maximum are dropped.  Returns MALL_INVALID_ARGUMENT. */
mall_code mall_status_field(mall_status *st, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline bool mall_status_ok(const mall_status *st) { return st->code == MALL_OK; }

/* mall_code_name: "INVALID_ARGUMENT"; mall_code_slug: "invalid_argument". */
const char *mall_code_name(mall_code code);
const char *mall_code_slug(mall_code code);
/* mall_code_http: the HTTP status the gateway answers for a code. */
int mall_code_http(mall_code code);
/* mall_code_parse: the code named by name or slug (either case); -1 if none. */
int mall_code_parse(const char *name);

#endif
