/*
 * test_cart_pricing.c: the cart's pricing rules (services/cart/cart_pricing.c):
 * line availability, subtotal, the shipping fee and its threshold, every
 * coupon verdict and discount, gifts with purchase, and the overflow guards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "cart.h"

#define AV MALL__CART__AVAILABILITY__AVAILABLE
#define INSUFFICIENT MALL__CART__AVAILABILITY__INSUFFICIENT_STOCK
#define SOLD_OUT MALL__CART__AVAILABILITY__SOLD_OUT
#define UNAVAILABLE MALL__CART__AVAILABILITY__UNAVAILABLE

#define NOW 1800000000LL /* 2027-01-15 */

static cart_price_line
line(int64_t sku, int32_t qty, int64_t price)
{
	return (cart_price_line){.sku_id = sku,
	                         .quantity = qty,
	                         .unit_price = price,
	                         .available = 100,
	                         .known = true,
	                         .purchasable = true};
}

static cart_coupon
fixed_coupon(int64_t amount)
{
	return (cart_coupon){.code = "SAVE",
	                     .name = "save",
	                     .kind = CART_COUPON_FIXED,
	                     .amount = amount,
	                     .active = true};
}

static cart_coupon
percent_coupon(int32_t percent, int64_t cap)
{
	return (cart_coupon){.code = "PCT",
	                     .name = "pct",
	                     .kind = CART_COUPON_PERCENTAGE,
	                     .percent = percent,
	                     .max_discount = cap,
	                     .active = true};
}

static cart_gift_rule
gift(int64_t id, int64_t min_subtotal, int64_t trigger, int64_t gift_sku, int32_t qty,
     int64_t stock)
{
	return (cart_gift_rule){.id = id,
	                        .name = "gift",
	                        .min_subtotal = min_subtotal,
	                        .trigger_sku_id = trigger,
	                        .gift_sku_id = gift_sku,
	                        .gift_quantity = qty,
	                        .gift_available = stock,
	                        .gift_purchasable = true};
}

/* A quote's arrays, big enough for every test. */
typedef struct priced {
	Mall__Cart__Availability av[8];
	bool gifts[8];
	cart_quote q;
} priced;

static const cart_quote *
price(priced *p, const cart_price_line *lines, size_t n, cart_policy policy,
      const cart_coupon *coupon, const cart_gift_rule *rules, size_t nrules)
{
	memset(p, 0, sizeof(*p));
	cart_price_input in = {.lines = lines,
	                       .nlines = n,
	                       .policy = policy,
	                       .rules = rules,
	                       .nrules = nrules,
	                       .coupon = coupon,
	                       .member_id = 7,
	                       .now_s = NOW};
	p->q.availability = p->av;
	p->q.gift_applies = p->gifts;
	cart_price(&in, &p->q);
	return &p->q;
}

static const cart_policy standard = {.fee = 3000, .free_threshold = 30000};

static void
test_free_shipping_boundary(void **state)
{
	(void)state;
	priced p;
	cart_price_line below[] = {line(1, 1, 29999)};
	const cart_quote *q = price(&p, below, 1, standard, NULL, NULL, 0);
	assert_int_equal(q->subtotal, 29999);
	assert_int_equal(q->shipping_fee, 3000);
	assert_int_equal(q->to_free_shipping, 1);
	assert_int_equal(q->total, 32999);
	assert_true(q->orderable);
	assert_int_equal(q->item_count, 1);

	cart_price_line at[] = {line(1, 2, 15000)};
	q = price(&p, at, 1, standard, NULL, NULL, 0);
	assert_int_equal(q->subtotal, 30000);
	assert_int_equal(q->shipping_fee, 0);
	assert_int_equal(q->to_free_shipping, 0);
	assert_int_equal(q->total, 30000);
	assert_int_equal(q->item_count, 2);
}

static void
test_threshold_zero_never_free(void **state)
{
	(void)state;
	priced p;
	cart_price_line big[] = {line(1, 99, 1000000)};
	const cart_quote *q =
	    price(&p, big, 1, (cart_policy){.fee = 2500, .free_threshold = 0}, NULL, NULL, 0);
	assert_int_equal(q->subtotal, 99000000);
	assert_int_equal(q->shipping_fee, 2500);
	assert_int_equal(q->to_free_shipping, 0);
	assert_int_equal(q->total, 99002500);
}

static void
test_empty_cart(void **state)
{
	(void)state;
	cart_quote q;
	memset(&q, 0, sizeof(q));
	cart_coupon c = fixed_coupon(5000);
	cart_gift_rule r = gift(1, 0, 5, 9, 1, 10);
	bool applies = true;
	q.gift_applies = &applies;
	cart_price_input in = {
	    .policy = standard, .coupon = &c, .rules = &r, .nrules = 1, .now_s = NOW};
	cart_price(&in, &q); /* no lines: no availability array needed */
	assert_int_equal(q.subtotal, 0);
	assert_int_equal(q.discount, 0);
	assert_int_equal(q.shipping_fee, 0);
	assert_int_equal(q.total, 0);
	assert_int_equal(q.item_count, 0);
	assert_false(q.orderable);
	assert_int_equal(q.to_free_shipping, 30000);
	assert_false(applies);
}

static void
test_lines_not_available(void **state)
{
	(void)state;
	priced p;
	cart_price_line lines[] = {line(1, 2, 10000), line(2, 1, 50000), line(3, 3, 7000),
	                           line(4, 5, 1000), line(5, 1, 2000)};
	lines[1].available = 0;       /* sold out */
	lines[2].available = 2;       /* 3 wanted */
	lines[3].purchasable = false; /* withdrawn */
	lines[4].known = false;       /* gone from the catalog */
	const cart_quote *q = price(&p, lines, 5, standard, NULL, NULL, 0);
	assert_int_equal(p.av[0], AV);
	assert_int_equal(p.av[1], SOLD_OUT);
	assert_int_equal(p.av[2], INSUFFICIENT);
	assert_int_equal(p.av[3], UNAVAILABLE);
	assert_int_equal(p.av[4], UNAVAILABLE);
	assert_int_equal(q->subtotal, 20000);
	assert_int_equal(q->item_count, 12);
	assert_false(q->orderable);
	assert_int_equal(q->shipping_fee, 3000);
	assert_int_equal(q->to_free_shipping, 10000);
	assert_int_equal(q->total, 23000);

	/* exactly the stock is enough */
	cart_price_line exact[] = {line(1, 3, 100)};
	exact[0].available = 3;
	price(&p, exact, 1, standard, NULL, NULL, 0);
	assert_int_equal(p.av[0], AV);

	/* nothing available: nothing ships, nothing to pay */
	cart_price_line gone[] = {line(1, 1, 40000)};
	gone[0].available = 0;
	q = price(&p, gone, 1, standard, NULL, NULL, 0);
	assert_int_equal(p.av[0], SOLD_OUT);
	assert_int_equal(q->subtotal, 0);
	assert_int_equal(q->shipping_fee, 0);
	assert_int_equal(q->total, 0);
	assert_int_equal(q->item_count, 1);
	assert_false(q->orderable);
}

static void
test_fixed_coupon(void **state)
{
	(void)state;
	priced p;
	cart_coupon c = fixed_coupon(5000);
	cart_price_line lines[] = {line(1, 1, 20000)};
	const cart_quote *q = price(&p, lines, 1, standard, &c, NULL, 0);
	assert_int_equal(q->coupon_verdict, CART_COUPON_OK);
	assert_int_equal(q->discount, 5000);
	assert_int_equal(q->total, 20000 - 5000 + 3000);

	/* larger than the subtotal: takes the subtotal, the fee stays */
	c.amount = 50000;
	q = price(&p, lines, 1, standard, &c, NULL, 0);
	assert_int_equal(q->discount, 20000);
	assert_int_equal(q->shipping_fee, 3000);
	assert_int_equal(q->total, 3000);
	assert_int_equal(cart_coupon_discount(&c, 0), 0);
	assert_int_equal(cart_coupon_discount(&c, -5), 0);

	/* the threshold looks at the subtotal before the coupon */
	cart_price_line at[] = {line(1, 1, 30000)};
	c.amount = 10000;
	q = price(&p, at, 1, standard, &c, NULL, 0);
	assert_int_equal(q->shipping_fee, 0);
	assert_int_equal(q->total, 20000);
}

static void
test_percentage_coupon(void **state)
{
	(void)state;
	cart_coupon c = percent_coupon(15, 0);
	assert_int_equal(cart_coupon_discount(&c, 10001), 1500); /* 1500.15 floored */
	assert_int_equal(cart_coupon_discount(&c, 99), 14);      /* 14.85 floored */
	assert_int_equal(cart_coupon_discount(&c, 1), 0);
	c.max_discount = 5000;
	assert_int_equal(cart_coupon_discount(&c, 30000), 4500);
	assert_int_equal(cart_coupon_discount(&c, 40000), 5000); /* 6000 capped */
	c.percent = 100;
	c.max_discount = 0;
	assert_int_equal(cart_coupon_discount(&c, 12345), 12345);
	c.percent = 150; /* out of range: never more than the subtotal */
	assert_int_equal(cart_coupon_discount(&c, 12345), 12345);

	priced p;
	c = percent_coupon(10, 2000);
	cart_price_line lines[] = {line(1, 3, 9999)};
	const cart_quote *q = price(&p, lines, 1, standard, &c, NULL, 0);
	assert_int_equal(q->subtotal, 29997);
	assert_int_equal(q->discount, 2000); /* 2999 capped */
	assert_int_equal(q->total, 29997 - 2000 + 3000);
}

static void
test_coupon_verdicts(void **state)
{
	(void)state;
	cart_coupon c = fixed_coupon(1000);
	assert_int_equal(cart_coupon_check(&c, 100, 0, NOW), CART_COUPON_OK);

	c.active = false;
	assert_int_equal(cart_coupon_check(&c, 100, 7, NOW), CART_COUPON_INACTIVE);
	c.active = true;

	c.member_only = true;
	assert_int_equal(cart_coupon_check(&c, 100, 0, NOW), CART_COUPON_MEMBERS_ONLY);
	assert_int_equal(cart_coupon_check(&c, 100, 7, NOW), CART_COUPON_OK);
	c.member_only = false;

	c.starts_s = NOW + 1;
	assert_int_equal(cart_coupon_check(&c, 100, 7, NOW), CART_COUPON_NOT_STARTED);
	c.starts_s = NOW;
	assert_int_equal(cart_coupon_check(&c, 100, 7, NOW), CART_COUPON_OK);
	c.starts_s = 0;

	c.ends_s = NOW;
	assert_int_equal(cart_coupon_check(&c, 100, 7, NOW), CART_COUPON_EXPIRED);
	assert_int_equal(cart_coupon_check(&c, 100, 7, NOW - 1), CART_COUPON_OK);
	c.ends_s = 0;

	c.total_limit = 10;
	c.used_total = 10;
	assert_int_equal(cart_coupon_check(&c, 100, 7, NOW), CART_COUPON_EXHAUSTED);
	c.used_total = 9;
	assert_int_equal(cart_coupon_check(&c, 100, 7, NOW), CART_COUPON_OK);

	c.per_member_limit = 2;
	c.used_by_member = 2;
	assert_int_equal(cart_coupon_check(&c, 100, 7, NOW), CART_COUPON_MEMBER_LIMIT);
	c.used_by_member = 1;
	assert_int_equal(cart_coupon_check(&c, 100, 7, NOW), CART_COUPON_OK);
	/* a per-member limit cannot be held for a guest: members only */
	c.used_by_member = 0;
	assert_int_equal(cart_coupon_check(&c, 100, 0, NOW), CART_COUPON_MEMBERS_ONLY);

	c.min_subtotal = 30000;
	assert_int_equal(cart_coupon_check(&c, 29999, 7, NOW), CART_COUPON_MIN_SPEND);
	assert_int_equal(cart_coupon_check(&c, 30000, 7, NOW), CART_COUPON_OK);

	/* the order of the checks: inactive first, minimum spend last */
	cart_coupon all = fixed_coupon(1000);
	all.active = false;
	all.member_only = true;
	all.ends_s = NOW;
	all.min_subtotal = 50000;
	assert_int_equal(cart_coupon_check(&all, 0, 0, NOW), CART_COUPON_INACTIVE);
	all.active = true;
	assert_int_equal(cart_coupon_check(&all, 0, 0, NOW), CART_COUPON_MEMBERS_ONLY);
	assert_int_equal(cart_coupon_check(&all, 0, 7, NOW), CART_COUPON_EXPIRED);
	all.ends_s = 0;
	assert_int_equal(cart_coupon_check(&all, 0, 7, NOW), CART_COUPON_MIN_SPEND);

	/* a coupon that does not apply stays on the cart and takes nothing */
	priced p;
	cart_price_line lines[] = {line(1, 1, 29999)};
	const cart_quote *q = price(&p, lines, 1, standard, &c, NULL, 0);
	assert_int_equal(q->coupon_verdict, CART_COUPON_MIN_SPEND);
	assert_int_equal(q->discount, 0);
	assert_int_equal(q->total, 32999);
}

static void
test_coupon_reasons_and_messages(void **state)
{
	(void)state;
	cart_coupon c = fixed_coupon(1000);
	c.min_subtotal = 30000;
	c.per_member_limit = 1;
	c.starts_s = 1798761600; /* 2027-01-01 00:00 UTC */
	c.ends_s = 1798761600;
	char buf[160];
	assert_string_equal(cart_coupon_reason(CART_COUPON_OK), "");
	assert_string_equal(cart_coupon_reason(CART_COUPON_INACTIVE), "coupon_inactive");
	assert_string_equal(cart_coupon_reason(CART_COUPON_MEMBERS_ONLY), "coupon_members_only");
	assert_string_equal(cart_coupon_reason(CART_COUPON_NOT_STARTED), "coupon_not_started");
	assert_string_equal(cart_coupon_reason(CART_COUPON_EXPIRED), "coupon_expired");
	assert_string_equal(cart_coupon_reason(CART_COUPON_EXHAUSTED), "coupon_exhausted");
	assert_string_equal(cart_coupon_reason(CART_COUPON_MEMBER_LIMIT), "coupon_member_limit");
	assert_string_equal(cart_coupon_reason(CART_COUPON_MIN_SPEND), "coupon_min_spend");

	assert_string_equal(cart_coupon_message(CART_COUPON_MIN_SPEND, &c, buf, sizeof(buf)),
	                    "this coupon needs a subtotal of at least 30,000 won");
	c.min_subtotal = 1234567890;
	assert_string_equal(cart_coupon_message(CART_COUPON_MIN_SPEND, &c, buf, sizeof(buf)),
	                    "this coupon needs a subtotal of at least 1,234,567,890 won");
	c.min_subtotal = 500;
	assert_string_equal(cart_coupon_message(CART_COUPON_MIN_SPEND, &c, buf, sizeof(buf)),
	                    "this coupon needs a subtotal of at least 500 won");
	assert_string_equal(cart_coupon_message(CART_COUPON_NOT_STARTED, &c, buf, sizeof(buf)),
	                    "this coupon can be used from 2027-01-01 09:00 KST");
	assert_string_equal(cart_coupon_message(CART_COUPON_EXPIRED, &c, buf, sizeof(buf)),
	                    "this coupon expired at 2027-01-01 09:00 KST");
	assert_string_equal(cart_coupon_message(CART_COUPON_OK, &c, buf, sizeof(buf)), "");
	for (int v = CART_COUPON_INACTIVE; v <= CART_COUPON_MIN_SPEND; v++)
		assert_true(
		    strlen(cart_coupon_message((cart_coupon_verdict)v, &c, buf, sizeof(buf))) > 10);
	/* a small buffer is cut, never overrun */
	char small[8];
	cart_coupon_message(CART_COUPON_MIN_SPEND, &c, small, sizeof(small));
	assert_int_equal(strlen(small), 7);
}

static void
test_gift_by_min_subtotal(void **state)
{
	(void)state;
	priced p;
	cart_gift_rule r = gift(1, 50000, 0, 900, 1, 10);
	cart_price_line lines[] = {line(1, 1, 49999), line(2, 1, 10000)};
	lines[1].available = 0; /* sold out: does not count toward the minimum */
	price(&p, lines, 2, standard, NULL, &r, 1);
	assert_false(p.gifts[0]);
	lines[0].unit_price = 50000;
	price(&p, lines, 2, standard, NULL, &r, 1);
	assert_true(p.gifts[0]);
	/* the coupon does not take the cart back below the minimum */
	cart_coupon c = fixed_coupon(10000);
	const cart_quote *q = price(&p, lines, 2, standard, &c, &r, 1);
	assert_true(p.gifts[0]);
	assert_int_equal(q->subtotal, 50000); /* the gift is free and adds nothing */
	assert_int_equal(q->item_count, 2);
	/* and off again */
	lines[0].quantity = 1;
	lines[0].unit_price = 40000;
	price(&p, lines, 2, standard, NULL, &r, 1);
	assert_false(p.gifts[0]);

	/* the window: from starts_s, until before ends_s */
	lines[0].unit_price = 60000;
	r.starts_s = NOW + 1;
	price(&p, lines, 2, standard, NULL, &r, 1);
	assert_false(p.gifts[0]);
	r.starts_s = NOW;
	r.ends_s = NOW;
	price(&p, lines, 2, standard, NULL, &r, 1);
	assert_false(p.gifts[0]);
	r.ends_s = NOW + 1;
	price(&p, lines, 2, standard, NULL, &r, 1);
	assert_true(p.gifts[0]);
	r.gift_purchasable = false;
	price(&p, lines, 2, standard, NULL, &r, 1);
	assert_false(p.gifts[0]);
}

static void
test_gift_by_trigger_sku(void **state)
{
	(void)state;
	priced p;
	cart_gift_rule r = gift(2, 0, 11, 900, 2, 10);
	cart_price_line other[] = {line(1, 1, 100000)};
	price(&p, other, 1, standard, NULL, &r, 1);
	assert_false(p.gifts[0]);
	cart_price_line with[] = {line(1, 1, 100000), line(11, 1, 5000)};
	price(&p, with, 2, standard, NULL, &r, 1);
	assert_true(p.gifts[0]);
	/* a trigger line that cannot be bought as it is does not count */
	with[1].available = 0;
	price(&p, with, 2, standard, NULL, &r, 1);
	assert_false(p.gifts[0]);
	/* both conditions when both are set */
	with[1].available = 100;
	r.min_subtotal = 200000;
	price(&p, with, 2, standard, NULL, &r, 1);
	assert_false(p.gifts[0]);
}

static void
test_gift_out_of_stock(void **state)
{
	(void)state;
	priced p;
	cart_gift_rule r = gift(1, 10000, 0, 900, 3, 2);
	cart_price_line lines[] = {line(1, 1, 10000)};
	price(&p, lines, 1, standard, NULL, &r, 1);
	assert_false(p.gifts[0]);
	r.gift_available = 3;
	price(&p, lines, 1, standard, NULL, &r, 1);
	assert_true(p.gifts[0]);
	r.gift_available = 0;
	price(&p, lines, 1, standard, NULL, &r, 1);
	assert_false(p.gifts[0]);
}

static void
test_gift_stock_shared(void **state)
{
	(void)state;
	priced p;
	/* the shopper buys 4 of SKU 900, which is also the gift: 5 in stock */
	cart_gift_rule rules[] = {gift(1, 10000, 0, 900, 1, 5), gift(2, 0, 1, 900, 1, 5),
	                          gift(3, 10000, 0, 901, 1, 1)};
	cart_price_line lines[] = {line(1, 1, 10000), line(900, 4, 1000)};
	lines[1].available = 5;
	price(&p, lines, 2, standard, NULL, rules, 3);
	assert_true(p.gifts[0]);  /* 5 - 4 paid = 1 left */
	assert_false(p.gifts[1]); /* 5 - 4 paid - 1 given = 0 left */
	assert_true(p.gifts[2]);  /* another SKU */

	/* a paid line that is short of stock is not bought: the gift may be */
	lines[1].quantity = 6;
	price(&p, lines, 2, standard, NULL, rules, 3);
	assert_int_equal(p.av[1], INSUFFICIENT);
	assert_true(p.gifts[0]);
	assert_true(p.gifts[1]);
}

static void
test_overflow_guard(void **state)
{
	(void)state;
	priced p;
	cart_price_line lines[8];
	for (int i = 0; i < 8; i++) {
		lines[i] = line(i + 1, 99, 10000000000LL); /* 10^10 won each */
		lines[i].available = INT64_MAX;
	}
	const cart_quote *q = price(&p, lines, 8, standard, NULL, NULL, 0);
	assert_int_equal(q->subtotal, 8LL * 99 * 10000000000LL);
	assert_int_equal(q->total, q->subtotal);
	cart_coupon c = percent_coupon(33, 0);
	assert_int_equal(cart_coupon_discount(&c, INT64_MAX), INT64_MAX / 100 * 33 + 7 * 33 / 100);

	lines[0].unit_price = INT64_MAX / 2;
	q = price(&p, lines, 8, standard, NULL, NULL, 0);
	assert_int_equal(q->subtotal, INT64_MAX); /* saturated, not wrapped */
	assert_int_equal(q->shipping_fee, 0);
	assert_int_equal(q->total, INT64_MAX);
	assert_true(q->subtotal > 0);
	q = price(&p, lines, 8, (cart_policy){.fee = 3000, .free_threshold = 0}, NULL, NULL, 0);
	assert_int_equal(q->total, INT64_MAX);

	/* a negative price gives nothing away */
	cart_price_line bad[] = {line(1, 1, -5000), line(2, 1, 1000)};
	q = price(&p, bad, 2, standard, NULL, NULL, 0);
	assert_int_equal(p.av[0], UNAVAILABLE);
	assert_int_equal(q->subtotal, 1000);
	assert_false(q->orderable);

	/* gift stock at the extremes */
	cart_gift_rule r = gift(1, 1, 0, 900, 10, INT64_MAX);
	cart_price_line huge[] = {line(900, 99, 1), line(900, 99, 1)};
	huge[0].available = huge[1].available = INT64_MAX;
	price(&p, huge, 2, standard, NULL, &r, 1);
	assert_true(p.gifts[0]);
	r.gift_available = INT64_MIN + 1;
	price(&p, huge, 2, standard, NULL, &r, 1);
	assert_false(p.gifts[0]);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_free_shipping_boundary),
	    cmocka_unit_test(test_threshold_zero_never_free),
	    cmocka_unit_test(test_empty_cart),
	    cmocka_unit_test(test_lines_not_available),
	    cmocka_unit_test(test_fixed_coupon),
	    cmocka_unit_test(test_percentage_coupon),
	    cmocka_unit_test(test_coupon_verdicts),
	    cmocka_unit_test(test_coupon_reasons_and_messages),
	    cmocka_unit_test(test_gift_by_min_subtotal),
	    cmocka_unit_test(test_gift_by_trigger_sku),
	    cmocka_unit_test(test_gift_out_of_stock),
	    cmocka_unit_test(test_gift_stock_shared),
	    cmocka_unit_test(test_overflow_guard),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
