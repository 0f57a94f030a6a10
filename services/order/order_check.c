/*
 * order_check.c: validation of what clients send to the order service, and
 * the text forms of its enums in the tables.
 *
 * Every check adds a field error under the field's JSON name and lets the
 * caller go on, so one answer names every bad field.  The text rules are the
 * member service's (services/member/member_check.c), so an address copied
 * from the address book always passes here.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "json_pb.h"
#include "order.h"

#define ORDER_EMAIL_MAX 254

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
order_check_text(mall_status *st, const char *field, const char *v, size_t min, size_t max)
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
order_check_email(mall_status *st, mall_arena *a, const char *field, const char *v)
{
	size_t len = strlen(v);
	if (len == 0) {
		mall_status_field(st, field, "is required");
		return NULL;
	}
	if (len > ORDER_EMAIL_MAX) {
		mall_status_field(st, field, "must be at most %d characters", ORDER_EMAIL_MAX);
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
order_check_phone(mall_status *st, mall_arena *a, const char *field, const char *v)
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
order_check_postal_code(mall_status *st, const char *field, const char *v)
{
	bool ok = strlen(v) == 5;
	for (size_t i = 0; ok && i < 5; i++)
		ok = v[i] >= '0' && v[i] <= '9';
	if (v[0] == '\0')
		mall_status_field(st, field, "is required");
	else if (!ok)
		mall_status_field(st, field, "must be 5 digits");
}

bool
order_number_ok(const char *v)
{
	if (strlen(v) != ORDER_NUMBER_LEN || v[8] != '-')
		return false;
	for (size_t i = 0; i < ORDER_NUMBER_LEN; i++)
		if (i != 8 && (v[i] < '0' || v[i] > '9'))
			return false;
	return true;
}

/* ---- enums as stored ---- */

static const char *const status_names[] = {
    [MALL__ORDER__ORDER_STATUS__PENDING_PAYMENT] = "pending_payment",
    [MALL__ORDER__ORDER_STATUS__AWAITING_DEPOSIT] = "awaiting_deposit",
    [MALL__ORDER__ORDER_STATUS__PAID] = "paid",
    [MALL__ORDER__ORDER_STATUS__PREPARING] = "preparing",
    [MALL__ORDER__ORDER_STATUS__SHIPPED] = "shipped",
    [MALL__ORDER__ORDER_STATUS__DELIVERED] = "delivered",
    [MALL__ORDER__ORDER_STATUS__CANCELLED] = "cancelled",
    [MALL__ORDER__ORDER_STATUS__REFUNDED] = "refunded",
    [MALL__ORDER__ORDER_STATUS__PARTIALLY_REFUNDED] = "partially_refunded",
};

static const char *const method_names[] = {
    [MALL__ORDER__PAYMENT_METHOD__CARD] = "card",
    [MALL__ORDER__PAYMENT_METHOD__VIRTUAL_ACCOUNT] = "virtual_account",
    [MALL__ORDER__PAYMENT_METHOD__EASY_PAY] = "easy_pay",
};

static const char *const channel_names[] = {
    [MALL__ORDER__SALES_CHANNEL__WEB_PC] = "web_pc",
    [MALL__ORDER__SALES_CHANNEL__WEB_MOBILE] = "web_mobile",
    [MALL__ORDER__SALES_CHANNEL__EXTERNAL] = "external",
};

#define NAMES(a) (sizeof(a) / sizeof((a)[0]))

static const char *
name_of(const char *const *names, size_t n, int v)
{
	return v > 0 && (size_t)v < n ? names[v] : NULL;
}

static int
parse(const char *const *names, size_t n, const char *s)
{
	for (size_t i = 1; s != NULL && i < n; i++)
		if (names[i] != NULL && strcmp(names[i], s) == 0)
			return (int)i;
	return 0;
}

const char *
order_status_text(Mall__Order__OrderStatus s)
{
	return name_of(status_names, NAMES(status_names), (int)s);
}

Mall__Order__OrderStatus
order_status_parse(const char *s)
{
	return (Mall__Order__OrderStatus)parse(status_names, NAMES(status_names), s);
}

const char *
order_method_text(Mall__Order__PaymentMethod m)
{
	return name_of(method_names, NAMES(method_names), (int)m);
}

Mall__Order__PaymentMethod
order_method_parse(const char *s)
{
	return (Mall__Order__PaymentMethod)parse(method_names, NAMES(method_names), s);
}

const char *
order_channel_text(Mall__Order__SalesChannel c)
{
	return name_of(channel_names, NAMES(channel_names), (int)c);
}

Mall__Order__SalesChannel
order_channel_parse(const char *s)
{
	return (Mall__Order__SalesChannel)parse(channel_names, NAMES(channel_names), s);
}
