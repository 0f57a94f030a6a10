/*
 * check.c: the checks of what clients send that several services share.
 *
 * Every check adds a field error under the field's JSON name and lets the
 * caller go on, so one answer names every bad field.  Values are stored as
 * given (apart from the normalized email and phone numbers): nothing here
 * escapes or rewrites text, the database only ever sees parameters.
 */
#include "check.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "json_pb.h"

/* Whether valid UTF-8 s holds a C0 or C1 control character or DEL. */
static bool
has_control(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; p[i]; i++) {
		if (p[i] < 0x20 || p[i] == 0x7F)
			return true;
		if (p[i] == 0xC2 && p[i + 1] >= 0x80 && p[i + 1] <= 0x9F)
			return true;
	}
	return false;
}

void
mall_check_text(mall_status *st, const char *field, const char *v, size_t min, size_t max)
{
	size_t len = strlen(v);
	if (min > 0 && len == 0) {
		mall_status_field(st, field, "is required");
		return;
	}
	if (!mall_utf8_valid(v, len)) {
		mall_status_field(st, field, "must be valid UTF-8");
		return;
	}
	size_t n = mall_utf8_chars(v, strlen(v));
	if (n < min || n > max) {
		if (min > 0)
			mall_status_field(st, field, "must be %zu to %zu characters", min, max);
		else
			mall_status_field(st, field, "must be at most %zu characters", max);
		return;
	}
	if (has_control(v)) {
		mall_status_field(st, field, "must not contain control characters");
		return;
	}
	if (min > 0 && strspn(v, " ") == len)
		mall_status_field(st, field, "must not be blank");
}


/* The characters RFC 5322 allows unquoted in a local part (besides '.'). */
static bool
local_char(unsigned char c)
{
	return isalnum(c) || (c != '\0' && strchr("!#$%&'*+/=?^_`{|}~-", c) != NULL);
}

/* A host name of two or more labels, each 1..63 letters, digits or '-' not at
 * either end; the last label starts with a letter. */
static bool
domain_ok(const char *d, size_t len)
{
	if (len == 0 || len > 253)
		return false;
	size_t labels = 0, start = 0;
	for (size_t i = 0; i <= len; i++) {
		if (i < len && d[i] != '.') {
			if (!isalnum((unsigned char)d[i]) && d[i] != '-')
				return false;
			continue;
		}
		size_t n = i - start;
		if (n == 0 || n > 63 || d[start] == '-' || d[i - 1] == '-')
			return false;
		labels++;
		if (i == len && !isalpha((unsigned char)d[start]))
			return false;
		start = i + 1;
	}
	return labels >= 2;
}

char *
mall_check_email(mall_status *st, mall_arena *a, const char *field, const char *v)
{
	size_t len = strlen(v);
	if (len == 0) {
		mall_status_field(st, field, "is required");
		return NULL;
	}
	if (len > MALL_CHECK_EMAIL_MAX) {
		mall_status_field(st, field, "must be at most %d characters", MALL_CHECK_EMAIL_MAX);
		return NULL;
	}
	const char *at = strchr(v, '@');
	bool ok = at != NULL && strchr(at + 1, '@') == NULL;
	size_t local = ok ? (size_t)(at - v) : 0;
	ok = ok && local >= 1 && local <= 64 && v[0] != '.' && v[local - 1] != '.';
	for (size_t i = 0; ok && i < local; i++)
		ok = local_char((unsigned char)v[i]) || (v[i] == '.' && v[i + 1] != '.');
	ok = ok && domain_ok(at + 1, len - local - 1);
	if (!ok) {
		mall_status_field(st, field, "must be an email address such as name@example.com");
		return NULL;
	}
	char *out = mall_arena_strdup(a, v);
	for (char *p = out; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return out;
}

char *
mall_check_phone(mall_status *st, mall_arena *a, const char *field, const char *v)
{
	size_t len = strlen(v);
	if (len == 0) {
		mall_status_field(st, field, "is required");
		return NULL;
	}
	/* 01X, then 3 or 4 digits, then 4 digits: either all three groups
	 * separated by single hyphens or none at all */
	char digits[12];
	size_t nd = 0, hyphens = 0, groups[3] = {0, 0, 0};
	bool ok = len <= 13;
	for (size_t i = 0; ok && i < len; i++) {
		if (v[i] >= '0' && v[i] <= '9' && nd < 11) {
			digits[nd++] = v[i];
			groups[hyphens]++;
		} else if (v[i] == '-' && hyphens < 2 && i > 0 && v[i - 1] != '-') {
			hyphens++;
		} else {
			ok = false;
		}
	}
	ok = ok && (nd == 10 || nd == 11) && digits[0] == '0' && digits[1] == '1' &&
	     strchr("016789", digits[2]) != NULL;
	if (ok && hyphens == 2)
		ok = groups[0] == 3 && (groups[1] == 3 || groups[1] == 4) && groups[2] == 4;
	else if (ok)
		ok = hyphens == 0;
	if (!ok) {
		mall_status_field(st, field,
		                  "must be a Korean mobile number such as 010-1234-5678");
		return NULL;
	}
	size_t mid = nd - 7; /* 3 or 4 */
	return mall_arena_printf(a, "%.3s-%.*s-%.4s", digits, (int)mid, digits + 3,
	                         digits + 3 + mid);
}

void
mall_check_postal_code(mall_status *st, const char *field, const char *v)
{
	bool ok = strlen(v) == 5;
	for (size_t i = 0; ok && i < 5; i++)
		ok = v[i] >= '0' && v[i] <= '9';
	if (v[0] == '\0')
		mall_status_field(st, field, "is required");
	else if (!ok)
		mall_status_field(st, field, "must be 5 digits");
}

void
mall_check_id(mall_status *st, const char *field, int64_t id)
{
	if (id <= 0)
		mall_status_field(st, field, "must be a positive id");
}
