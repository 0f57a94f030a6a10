/*
 * cart_pricing.c: the pricing rules of a cart, pure functions of their
 * inputs (no database, no clock, no allocation), so the unit tests can pin
 * every rule down.
 *
 * Money is int64 won.  Inputs come from the catalog and the promotion tables
 * and are trusted to be sane (quantities 1..99, prices up to 10^10), but no
 * sum or product here can overflow: they saturate at INT64_MAX, and a
 * negative price or quantity makes its line UNAVAILABLE rather than give
 * money away.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cart.h"

/* Korea keeps no daylight saving time: KST is UTC+9 all year. */
#define KST_OFFSET_S (9 * 3600)

static int64_t
sat_add(int64_t a, int64_t b)
{
	if (b > 0 && a > INT64_MAX - b)
		return INT64_MAX;
	if (b < 0 && a < INT64_MIN - b)
		return INT64_MIN;
	return a + b;
}

/* a * b for a, b >= 0, saturated at INT64_MAX. */
static int64_t
sat_mul(int64_t a, int64_t b)
{
	if (a <= 0 || b <= 0)
		return 0;
	if (a > INT64_MAX / b)
		return INT64_MAX;
	return a * b;
}

/* ---- coupons ---- */

const char *
cart_coupon_reason(cart_coupon_verdict v)
{
	switch (v) {
	case CART_COUPON_OK:
		return "";
	case CART_COUPON_INACTIVE:
		return "coupon_inactive";
	case CART_COUPON_MEMBERS_ONLY:
		return "coupon_members_only";
	case CART_COUPON_NOT_STARTED:
		return "coupon_not_started";
	case CART_COUPON_EXPIRED:
		return "coupon_expired";
	case CART_COUPON_EXHAUSTED:
		return "coupon_exhausted";
	case CART_COUPON_MEMBER_LIMIT:
		return "coupon_member_limit";
	case CART_COUPON_MIN_SPEND:
		return "coupon_min_spend";
	}
	return "";
}

/* won: v with thousands separators ("30,000") into buf. */
static const char *
won(int64_t v, char *buf, size_t cap)
{
	char digits[24];
	uint64_t m = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
	snprintf(digits, sizeof(digits), "%llu", (unsigned long long)m);
	size_t n = strlen(digits), o = 0;
	char out[40];
	if (v < 0)
		out[o++] = '-';
	for (size_t i = 0; i < n; i++) {
		if (i > 0 && (n - i) % 3 == 0)
			out[o++] = ',';
		out[o++] = digits[i];
	}
	out[o] = '\0';
	snprintf(buf, cap, "%s", out);
	return buf;
}

/* kst: Unix seconds as "2026-11-26 09:00 KST" into buf. */
static const char *
kst(int64_t s, char *buf, size_t cap)
{
	time_t t = (time_t)sat_add(s, KST_OFFSET_S);
	struct tm tm;
	if (gmtime_r(&t, &tm) == NULL || strftime(buf, cap, "%Y-%m-%d %H:%M KST", &tm) == 0)
		snprintf(buf, cap, "%lld", (long long)s);
	return buf;
}

const char *
cart_coupon_message(cart_coupon_verdict v, const cart_coupon *c, char *buf, size_t cap)
{
	char tmp[40];
	if (cap == 0)
		return buf;
	switch (v) {
	case CART_COUPON_OK:
		buf[0] = '\0';
		break;
	case CART_COUPON_INACTIVE:
		snprintf(buf, cap, "this coupon is no longer offered");
		break;
	case CART_COUPON_MEMBERS_ONLY:
		snprintf(buf, cap, "this coupon is for members only: log in to use it");
		break;
	case CART_COUPON_NOT_STARTED:
		snprintf(buf, cap, "this coupon can be used from %s",
		         kst(c->starts_s, tmp, sizeof(tmp)));
		break;
	case CART_COUPON_EXPIRED:
		snprintf(buf, cap, "this coupon expired at %s", kst(c->ends_s, tmp, sizeof(tmp)));
		break;
	case CART_COUPON_EXHAUSTED:
		snprintf(buf, cap, "this coupon has run out");
		break;
	case CART_COUPON_MEMBER_LIMIT:
		if (c->per_member_limit == 1)
			snprintf(buf, cap,
			         "you have used this coupon already: it can be used once");
		else
			snprintf(buf, cap, "you have used this coupon the %d times it can be used",
			         (int)c->per_member_limit);
		break;
	case CART_COUPON_MIN_SPEND:
		snprintf(buf, cap, "this coupon needs a subtotal of at least %s won",
		         won(c->min_subtotal, tmp, sizeof(tmp)));
		break;
	default:
		snprintf(buf, cap, "this coupon cannot be used");
		break;
	}
	return buf;
}

cart_coupon_verdict
cart_coupon_check(const cart_coupon *c, int64_t subtotal, int64_t member_id, int64_t now_s)
{
	if (!c->active)
		return CART_COUPON_INACTIVE;
	/* a per-member limit cannot be held for a guest, whom nothing identifies */
	if ((c->member_only || c->per_member_limit > 0) && member_id <= 0)
		return CART_COUPON_MEMBERS_ONLY;
	if (c->starts_s != 0 && now_s < c->starts_s)
		return CART_COUPON_NOT_STARTED;
	if (c->ends_s != 0 && now_s >= c->ends_s)
		return CART_COUPON_EXPIRED;
	if (c->total_limit > 0 && c->used_total >= c->total_limit)
		return CART_COUPON_EXHAUSTED;
	/* a guest has no count of its own (used_by_member is 0): only members
	 * meet the per-member limit */
	if (c->per_member_limit > 0 && member_id > 0 && c->used_by_member >= c->per_member_limit)
		return CART_COUPON_MEMBER_LIMIT;
	if (c->min_subtotal > 0 && subtotal < c->min_subtotal)
		return CART_COUPON_MIN_SPEND;
	return CART_COUPON_OK;
}

int64_t
cart_coupon_discount(const cart_coupon *c, int64_t subtotal)
{
	if (subtotal <= 0)
		return 0;
	int64_t d = 0;
	if (c->kind == CART_COUPON_FIXED) {
		d = c->amount;
	} else if (c->kind == CART_COUPON_PERCENTAGE) {
		int64_t p = c->percent < 0 ? 0 : c->percent > 100 ? 100 : c->percent;
		/* floor(subtotal * p / 100) without forming the product */
		d = subtotal / 100 * p + subtotal % 100 * p / 100;
		if (c->max_discount > 0 && d > c->max_discount)
			d = c->max_discount;
	}
	if (d < 0)
		return 0;
	return d > subtotal ? subtotal : d;
}

/* ---- the cart ---- */

static Mall__Cart__Availability
line_availability(const cart_price_line *l)
{
	if (!l->known || !l->purchasable || l->quantity <= 0 || l->unit_price < 0)
		return MALL__CART__AVAILABILITY__UNAVAILABLE;
	if (l->available <= 0)
		return MALL__CART__AVAILABILITY__SOLD_OUT;
	if (l->available < l->quantity)
		return MALL__CART__AVAILABILITY__INSUFFICIENT_STOCK;
	return MALL__CART__AVAILABILITY__AVAILABLE;
}

static bool
in_window(int64_t starts_s, int64_t ends_s, int64_t now_s)
{
	return (starts_s == 0 || starts_s <= now_s) && (ends_s == 0 || now_s < ends_s);
}

/* The quantity of sku in the AVAILABLE lines (the paid ones). */
static int64_t
paid_quantity(const cart_price_input *in, const Mall__Cart__Availability *av, int64_t sku)
{
	int64_t q = 0;
	for (size_t i = 0; i < in->nlines; i++)
		if (in->lines[i].sku_id == sku && av[i] == MALL__CART__AVAILABILITY__AVAILABLE)
			q = sat_add(q, in->lines[i].quantity);
	return q;
}

/* Whether rule k applies, given the rules before it (their verdicts in
 * applies[0..k)). */
static bool
gift_applies(const cart_price_input *in, const Mall__Cart__Availability *av, int64_t subtotal,
             bool any_available, const bool *applies, size_t k)
{
	const cart_gift_rule *r = &in->rules[k];
	/* a gift comes with a purchase: never with nothing to buy */
	if (!any_available || r->gift_quantity <= 0 || r->gift_sku_id <= 0 || !r->gift_purchasable)
		return false;
	if (!in_window(r->starts_s, r->ends_s, in->now_s))
		return false;
	if (r->min_subtotal > 0 && subtotal < r->min_subtotal)
		return false;
	if (r->trigger_sku_id > 0 && paid_quantity(in, av, r->trigger_sku_id) == 0)
		return false;
	int64_t taken = paid_quantity(in, av, r->gift_sku_id);
	for (size_t j = 0; j < k; j++)
		if (applies[j] && in->rules[j].gift_sku_id == r->gift_sku_id)
			taken = sat_add(taken, in->rules[j].gift_quantity);
	/* available - taken >= quantity, without overflowing at either end */
	if (r->gift_available < r->gift_quantity)
		return false;
	return taken <= r->gift_available - r->gift_quantity;
}

void
cart_price(const cart_price_input *in, cart_quote *out)
{
	int64_t subtotal = 0, items = 0;
	bool any_available = false, all_available = true;
	Mall__Cart__Availability *av = out->availability; /* NULL only without lines */
	for (size_t i = 0; i < in->nlines; i++) {
		const cart_price_line *l = &in->lines[i];
		av[i] = line_availability(l);
		if (l->quantity > 0)
			items = sat_add(items, l->quantity);
		if (av[i] == MALL__CART__AVAILABILITY__AVAILABLE) {
			any_available = true;
			subtotal = sat_add(subtotal, sat_mul(l->unit_price, l->quantity));
		} else {
			all_available = false;
		}
	}
	out->subtotal = subtotal;
	out->item_count = items > INT32_MAX ? INT32_MAX : (int32_t)items;
	out->orderable = in->nlines > 0 && all_available;

	int64_t fee = in->policy.fee < 0 ? 0 : in->policy.fee;
	int64_t threshold = in->policy.free_threshold < 0 ? 0 : in->policy.free_threshold;
	bool waived = threshold > 0 && subtotal >= threshold;
	out->shipping_fee = any_available && !waived ? fee : 0;
	out->to_free_shipping = threshold > 0 && !waived ? threshold - subtotal : 0;

	out->coupon_verdict = CART_COUPON_OK;
	out->discount = 0;
	if (in->coupon != NULL) {
		out->coupon_verdict =
		    cart_coupon_check(in->coupon, subtotal, in->member_id, in->now_s);
		if (out->coupon_verdict == CART_COUPON_OK)
			out->discount = cart_coupon_discount(in->coupon, subtotal);
	}
	out->total = sat_add(subtotal - out->discount, out->shipping_fee);

	if (out->gift_applies == NULL)
		return;
	for (size_t k = 0; k < in->nrules; k++)
		out->gift_applies[k] =
		    gift_applies(in, av, subtotal, any_available, out->gift_applies, k);
}
