/*
 * member_check.c: the member service's own check (passwords); the shared
 * ones (text, email, phone, postal code, ids) are lib/check.h's.
 *
 * Every check adds a field error under the field's JSON name and lets the
 * caller go on, so one answer names every bad field.  Values are stored as
 * given (apart from the normalized email and phone numbers): nothing here
 * escapes or rewrites text, the database only ever sees parameters.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "json_pb.h"
#include "member.h"

void
member_check_password(mall_status *st, const char *field, const char *v)
{
	size_t len = strlen(v);
	if (len == 0)
		mall_status_field(st, field, "is required");
	else if (!mall_utf8_valid(v, len))
		mall_status_field(st, field, "must be valid UTF-8");
	else if (mall_utf8_chars(v, len) < MEMBER_PASSWORD_MIN ||
	         mall_utf8_chars(v, len) > MEMBER_PASSWORD_MAX)
		mall_status_field(st, field, "must be %d to %d characters", MEMBER_PASSWORD_MIN,
		                  MEMBER_PASSWORD_MAX);
}
