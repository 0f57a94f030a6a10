/*
 * order_check.c: validation of what clients send to the order service, and
 * the text forms of its enums in the tables.
 *
 * Every check adds a field error under the field's JSON name and lets the
 * caller go on, so one answer names every bad field.  Text, email, phone and
 * postal code are lib/check.h's, as in the member service, so an address
 * copied from the address book always passes here.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "json_pb.h"
#include "order.h"

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

void
order_check_number(mall_status *st, const char *number)
{
	if (*number == '\0')
		mall_status_field(st, "number", "is required");
	else if (!order_number_ok(number))
		mall_status_field(st, "number", "must be an order number such as 20261126-000123");
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
