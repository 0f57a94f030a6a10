/*
 * status.c: status values and the code -> name/HTTP mapping (the one table).
 */
#include "status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const struct {
	const char *name;
	const char *slug;
	int http;
} codes[] = {
	[MALL_OK] = {"OK", "ok", 200},
	[MALL_CANCELLED] = {"CANCELLED", "cancelled", 499},
	[MALL_UNKNOWN] = {"UNKNOWN", "unknown", 500},
	[MALL_INVALID_ARGUMENT] = {"INVALID_ARGUMENT", "invalid_argument", 400},
	[MALL_DEADLINE_EXCEEDED] = {"DEADLINE_EXCEEDED", "deadline_exceeded", 504},
	[MALL_NOT_FOUND] = {"NOT_FOUND", "not_found", 404},
	[MALL_ALREADY_EXISTS] = {"ALREADY_EXISTS", "already_exists", 409},
	[MALL_PERMISSION_DENIED] = {"PERMISSION_DENIED", "permission_denied", 403},
	[MALL_RESOURCE_EXHAUSTED] = {"RESOURCE_EXHAUSTED", "resource_exhausted", 429},
	[MALL_FAILED_PRECONDITION] = {"FAILED_PRECONDITION", "failed_precondition", 409},
	[MALL_ABORTED] = {"ABORTED", "aborted", 409},
	[MALL_OUT_OF_RANGE] = {"OUT_OF_RANGE", "out_of_range", 400},
	[MALL_UNIMPLEMENTED] = {"UNIMPLEMENTED", "unimplemented", 501},
	[MALL_INTERNAL] = {"INTERNAL", "internal", 500},
	[MALL_UNAVAILABLE] = {"UNAVAILABLE", "unavailable", 503},
	[MALL_DATA_LOSS] = {"DATA_LOSS", "data_loss", 500},
	[MALL_UNAUTHENTICATED] = {"UNAUTHENTICATED", "unauthenticated", 401},
};

static int
valid(mall_code c)
{
	return (int)c >= 0 && c <= MALL_CODE_MAX;
}

void
mall_status_clear(mall_status *st)
{
	st->code = MALL_OK;
	st->message[0] = '\0';
	st->reason[0] = '\0';
	st->nfields = 0;
	st->ndetails = 0;
}

mall_code
mall_status_set(mall_status *st, mall_code code, const char *fmt, ...)
{
	va_list ap;
	st->code = code;
	st->reason[0] = '\0';
	st->ndetails = 0;
	va_start(ap, fmt);
	vsnprintf(st->message, sizeof(st->message), fmt, ap);
	va_end(ap);
	return code;
}

mall_code
mall_status_reason(mall_status *st, mall_code code, const char *reason, const char *fmt, ...)
{
	va_list ap;
	st->code = code;
	st->ndetails = 0;
	snprintf(st->reason, sizeof(st->reason), "%s", reason);
	va_start(ap, fmt);
	vsnprintf(st->message, sizeof(st->message), fmt, ap);
	va_end(ap);
	return code;
}

void
mall_status_detail(mall_status *st, const char *key, int64_t value)
{
	if (st->ndetails >= MALL_STATUS_MAX_DETAILS)
		return;
	mall_detail *d = &st->details[st->ndetails++];
	snprintf(d->key, sizeof(d->key), "%s", key);
	d->value = value;
}

mall_code
mall_status_field(mall_status *st, const char *field, const char *fmt, ...)
{
	if (st->code != MALL_INVALID_ARGUMENT) {
		st->code = MALL_INVALID_ARGUMENT;
		snprintf(st->message, sizeof(st->message), "invalid request");
	}
	if (st->nfields >= MALL_STATUS_MAX_FIELDS)
		return MALL_INVALID_ARGUMENT;
	mall_field_error *f = &st->fields[st->nfields++];
	snprintf(f->field, sizeof(f->field), "%s", field);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(f->message, sizeof(f->message), fmt, ap);
	va_end(ap);
	return MALL_INVALID_ARGUMENT;
}

const char *
mall_code_name(mall_code code)
{
	return valid(code) ? codes[code].name : "UNKNOWN";
}

const char *
mall_code_slug(mall_code code)
{
	return valid(code) ? codes[code].slug : "unknown";
}

int
mall_code_http(mall_code code)
{
	return valid(code) ? codes[code].http : 500;
}

int
mall_code_parse(const char *name)
{
	for (int i = 0; i <= MALL_CODE_MAX; i++)
		if (strcasecmp(name, codes[i].name) == 0)
			return i;
	return -1;
}
