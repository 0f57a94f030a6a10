/*
 * check.h: field checks shared by the services (member, order): text,
 * email, Korean mobile phone, postal code, ids.  Each adds a field error to
 * st (status.h) when v is bad and lets the caller go on, so one answer names
 * every bad field.
 */
#ifndef MALL_CHECK_H
#define MALL_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "status.h"

#define MALL_CHECK_EMAIL_MAX 254

/* mall_check_email: a plain address (ASCII local part and domain with a dot,
 * at most 254 characters); returns it lower-cased in a, or NULL if bad. */
char *mall_check_email(mall_status *st, mall_arena *a, const char *field, const char *v);
/* mall_check_text: valid UTF-8 of min..max characters (required when min >
 * 0, then not only blanks), without control characters. */
void mall_check_text(mall_status *st, const char *field, const char *v, size_t min, size_t max);
/* mall_check_phone: a Korean mobile number 01X-NNN(N)-NNNN, hyphens
 * optional; returns it normalized with hyphens in a, or NULL if bad. */
char *mall_check_phone(mall_status *st, mall_arena *a, const char *field, const char *v);
/* mall_check_postal_code: exactly 5 digits. */
void mall_check_postal_code(mall_status *st, const char *field, const char *v);
/* mall_check_id: a positive id. */
void mall_check_id(mall_status *st, const char *field, int64_t id);

#endif
