/*
 * cart_items.c: the cart RPCs (GetCart, AddItem, SetItemQuantity,
 * RemoveItem, ApplyCoupon, RemoveCoupon, MergeGuestCart, ClearCart).
 *
 * Each validates its request before touching anything, so a rejected request
 * writes nothing; changes the cart through cart_store.c; and answers the cart
 * priced afresh: its lines and coupon from the store, the promotions from the
 * database (cart_promo.c), and the lines' SKUs together with the gift rules'
 * gift SKUs from the catalog in one GetSkus call, fed to cart_price.  Nothing
 * a client sent is ever taken as a price.
 *
 * Stock is checked twice on purpose: a change is refused when the line would
 * hold more than the catalog has now (or 99), and every reply flags the lines
 * whose stock fell since (SOLD_OUT, INSUFFICIENT_STOCK), so a line is never
 * silently dropped or shrunk behind the shopper's back.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cart.h"
#include "json_pb.h"
#include "log.h"

#define GET_SKUS_MAX 200 /* what one GetSkus call takes (catalog.proto) */

/* ---- small things ---- */

static Mall__Money *
money(mall_arena *a, int64_t amount)
{
	Mall__Money *m = (Mall__Money *)mall_pb_new(&mall__money__descriptor, a);
	m->amount = amount;
	m->currency = "KRW";
	return m;
}

static int64_t
times_qty(int64_t unit, int32_t qty)
{
	if (qty <= 0)
		return 0;
	if (unit > INT64_MAX / qty)
		return INT64_MAX;
	if (unit < INT64_MIN / qty)
		return INT64_MIN;
	return unit * qty;
}

/* Unix ms as RFC 3339 in UTC (whole seconds), "" for none. */
static char *
rfc3339(mall_arena *a, int64_t ms)
{
	if (ms <= 0)
		return "";
	time_t s = (time_t)(ms / 1000);
	struct tm tm;
	char buf[32];
	if (gmtime_r(&s, &tm) == NULL || strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		return "";
	return mall_arena_strdup(a, buf);
}

/* "중량: 1kg, 포장: 선물용": the SKU's option values, "" without any. */
static char *
option_text(mall_arena *a, const Mall__Catalog__Sku *sku)
{
	if (sku == NULL || sku->n_option_values == 0)
		return "";
	size_t len = 1;
	for (size_t i = 0; i < sku->n_option_values; i++)
		len += strlen(sku->option_values[i]->option) +
		       strlen(sku->option_values[i]->value) + 4;
	char *s = mall_arena_alloc(a, len);
	size_t n = 0;
	for (size_t i = 0; i < sku->n_option_values; i++)
		n += (size_t)snprintf(s + n, len - n, "%s%s: %s", i ? ", " : "",
		                      sku->option_values[i]->option, sku->option_values[i]->value);
	return s;
}

static int64_t
member_of(const Mall__Cart__CartRef *ref)
{
	return cart_ref_is_guest(ref) ? 0 : ref->member_id;
}

static void
check_quantity(mall_status *st, int32_t q)
{
	if (q < 1 || q > CART_QTY_MAX)
		mall_status_field(st, "quantity", "must be 1..%d, not %d", CART_QTY_MAX, (int)q);
}

static const char *
sku_name(const Mall__Catalog__SkuView *v)
{
	return v->sku && v->sku->code ? v->sku->code : "?";
}

static int64_t
sku_available(const Mall__Catalog__SkuView *v)
{
	return v->sku && v->sku->available > 0 ? v->sku->available : 0;
}

/* The most a line of v may hold: 99, or less when the stock is less. */
static int32_t
line_max(const Mall__Catalog__SkuView *v)
{
	int64_t avail = sku_available(v);
	return avail < CART_QTY_MAX ? (int32_t)avail : CART_QTY_MAX;
}

/* A SKU that cannot be bought now: the product was withdrawn. */
static mall_code
unavailable(mall_status *st, int64_t sku_id, const Mall__Catalog__SkuView *v)
{
	if (v == NULL)
		return mall_status_reason(st, MALL_FAILED_PRECONDITION, "unavailable",
		                          "sku %" PRId64 " is no longer sold", sku_id);
	return mall_status_reason(st, MALL_FAILED_PRECONDITION, "unavailable",
	                          "sku %s (%s) cannot be bought now", sku_name(v),
	                          v->product_name ? v->product_name : "");
}

/* The refusal of a line quantity above max (line_max(v)), with what can be
 * had in total ("available") and what the line holds now ("inCart"). */
static mall_code
over_stock(mall_status *st, const Mall__Catalog__SkuView *v, int32_t max, int32_t in_cart)
{
	const char *code = sku_name(v);
	if (max <= 0)
		mall_status_reason(st, MALL_FAILED_PRECONDITION, "out_of_stock",
		                   "sku %s is sold out", code);
	else if (max == CART_QTY_MAX && sku_available(v) >= CART_QTY_MAX)
		mall_status_reason(st, MALL_FAILED_PRECONDITION, "quantity_limit",
		                   "at most %d of sku %s fit in a cart; your cart has %d",
		                   CART_QTY_MAX, code, (int)in_cart);
	else if (in_cart > 0)
		mall_status_reason(st, MALL_FAILED_PRECONDITION, "out_of_stock",
		                   "only %d left of sku %s; your cart has %d", (int)max, code,
		                   (int)in_cart);
	else
		mall_status_reason(st, MALL_FAILED_PRECONDITION, "out_of_stock",
		                   "only %d left of sku %s", (int)max, code);
	mall_status_detail(st, "available", max);
	mall_status_detail(st, "inCart", in_cart);
	return st->code;
}

/* ---- the catalog ---- */

mall_code
cart_skus_fetch(mall_rpc_ctx *ctx, const int64_t *ids, size_t n, Mall__Catalog__SkuView **out,
                mall_status *st)
{
	for (size_t i = 0; i < n; i++)
		out[i] = NULL;
	if (n == 0)
		return MALL_OK;
	if (n > GET_SKUS_MAX)
		return mall_status_set(
		    st, MALL_INTERNAL,
		    "could not look up %zu skus: one catalog call takes at most %d", n,
		    GET_SKUS_MAX);
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	Mall__Catalog__GetSkusRequest req = MALL__CATALOG__GET_SKUS_REQUEST__INIT;
	req.n_ids = n;
	req.ids = (int64_t *)ids; /* only read */
	const char *trace = mall_rpc_ctx_trace_id(ctx);
	mall_rpc_call_opts opts = {.trace_id = trace && *trace ? trace : NULL};
	ProtobufCMessage *reply = NULL;
	mall_status cst;
	mall_status_clear(&cst);
	if (mall_rpc_call(cart_env_get()->catalog, &mall__catalog__catalog__descriptor, "GetSkus",
	                  &req.base, &reply, a, &opts, &cst) != MALL_OK) {
		/* the catalog's field errors are about our request, not the caller's */
		mall_code code = cst.code == MALL_UNAVAILABLE || cst.code == MALL_DEADLINE_EXCEEDED
		                     ? cst.code
		                     : MALL_INTERNAL;
		return mall_status_set(st, code, "could not look up skus in the catalog: %s",
		                       cst.message);
	}
	const Mall__Catalog__GetSkusReply *r = (const void *)reply;
	for (size_t k = 0; k < r->n_skus; k++) {
		Mall__Catalog__SkuView *v = r->skus[k];
		if (v == NULL || v->sku == NULL)
			continue;
		for (size_t i = 0; i < n; i++)
			if (ids[i] == v->sku->id)
				out[i] = v;
	}
	return MALL_OK;
}

/* ---- pricing a cart ---- */

typedef struct sku_set {
	int64_t *ids;
	Mall__Catalog__SkuView **views;
	size_t n, cap;
} sku_set;

static void
sku_set_add(sku_set *s, int64_t id)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->ids[i] == id)
			return;
	if (s->n < s->cap)
		s->ids[s->n++] = id;
}

static Mall__Catalog__SkuView *
sku_set_view(const sku_set *s, int64_t id)
{
	for (size_t i = 0; i < s->n; i++)
		if (s->ids[i] == id)
			return s->views[i];
	return NULL;
}

/* fetch: the catalog's views of the SKUs ids[0..n) (n <= GET_SKUS_MAX). */
static mall_code
sku_set_fetch(mall_rpc_ctx *ctx, sku_set *s, mall_status *st)
{
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	s->views = mall_arena_alloc(a, sizeof(*s->views) * (s->n ? s->n : 1));
	return cart_skus_fetch(ctx, s->ids, s->n, s->views, st);
}

static void
sku_set_init(sku_set *s, mall_arena *a, size_t want)
{
	s->cap = want < GET_SKUS_MAX ? want : GET_SKUS_MAX;
	s->ids = mall_arena_alloc(a, sizeof(*s->ids) * (s->cap ? s->cap : 1));
	s->views = NULL;
	s->n = 0;
}

typedef struct priced {
	Mall__Cart__Cart *cart;
	const cart_coupon *coupon;   /* the cart's coupon as stored; NULL: none, or
	                              * no coupon has its code */
	cart_coupon_verdict verdict; /* OK without a coupon */
} priced;

static Mall__Cart__CartItem *
item_of(mall_arena *a, const cart_line *l, const cart_price_line *pl,
        const Mall__Catalog__SkuView *v, Mall__Cart__Availability av)
{
	Mall__Cart__CartItem *it =
	    (Mall__Cart__CartItem *)mall_pb_new(&mall__cart__cart_item__descriptor, a);
	it->id = l->sku_id;
	it->sku_id = l->sku_id;
	if (v != NULL) {
		it->sku_code = v->sku->code;
		it->product_id = v->sku->product_id;
		it->product_slug = v->product_slug;
		it->name = v->product_name;
		it->option_text = option_text(a, v->sku);
		if (v->thumbnail != NULL && v->thumbnail->url != NULL)
			it->image_url = v->thumbnail->url;
	}
	it->unit_price = money(a, pl->unit_price);
	it->quantity = l->quantity;
	it->line_total = money(a, times_qty(pl->unit_price, l->quantity));
	it->availability = av;
	it->available_quantity = pl->available;
	it->added_at = rfc3339(a, l->added_ms);
	return it;
}

static Mall__Cart__Gift *
gift_of(mall_arena *a, const cart_gift_rule *r, const Mall__Catalog__SkuView *v)
{
	Mall__Cart__Gift *g = (Mall__Cart__Gift *)mall_pb_new(&mall__cart__gift__descriptor, a);
	g->sku_id = r->gift_sku_id;
	if (v != NULL) {
		g->sku_code = v->sku->code;
		g->name = v->product_name;
		g->option_text = option_text(a, v->sku);
	}
	g->quantity = r->gift_quantity;
	g->rule_id = r->id;
	g->rule_name = (char *)(r->name ? r->name : "");
	return g;
}

/* price_cart: the cart c of member_id (0: a guest) priced now. */
static mall_code
price_cart(mall_rpc_ctx *ctx, mall_db_conn *conn, int64_t member_id, const cart_contents *c,
           priced *out, mall_status *st)
{
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	cart_promotions p;
	memset(&p, 0, sizeof(p));
	if (cart_promotions_load(conn, a, c->coupon_code, member_id, &p, st) != MALL_OK)
		return st->code;

	/* a gift comes only with something to buy: an empty cart asks the
	 * catalog nothing (and so still answers while the catalog is down) */
	sku_set skus;
	sku_set_init(&skus, a, c->n > 0 ? c->n + p.nrules : 0);
	for (size_t i = 0; i < c->n; i++)
		sku_set_add(&skus, c->lines[i].sku_id);
	if (c->n > 0)
		for (size_t k = 0; k < p.nrules; k++)
			sku_set_add(&skus, p.rules[k].gift_sku_id);
	if (sku_set_fetch(ctx, &skus, st) != MALL_OK)
		return st->code;

	cart_price_line *lines = mall_arena_alloc(a, sizeof(*lines) * (c->n ? c->n : 1));
	for (size_t i = 0; i < c->n; i++) {
		const Mall__Catalog__SkuView *v = sku_set_view(&skus, c->lines[i].sku_id);
		lines[i] = (cart_price_line){
		    .sku_id = c->lines[i].sku_id,
		    .quantity = c->lines[i].quantity,
		    .unit_price = v && v->sku->price ? v->sku->price->amount : 0,
		    .available = v ? sku_available(v) : 0,
		    .known = v != NULL,
		    .purchasable = v != NULL && v->purchasable,
		};
	}
	for (size_t k = 0; k < p.nrules; k++) {
		const Mall__Catalog__SkuView *v = sku_set_view(&skus, p.rules[k].gift_sku_id);
		p.rules[k].gift_available = v ? sku_available(v) : 0;
		p.rules[k].gift_purchasable = v != NULL && v->purchasable;
	}
	cart_price_input in = {
	    .lines = lines,
	    .nlines = c->n,
	    .policy = p.policy,
	    .rules = p.rules,
	    .nrules = p.nrules,
	    .coupon = p.coupon,
	    .member_id = member_id,
	    .now_s = p.now_s,
	};
	cart_quote q;
	memset(&q, 0, sizeof(q));
	q.availability = mall_arena_alloc(a, sizeof(*q.availability) * (c->n ? c->n : 1));
	q.gift_applies = mall_arena_alloc(a, sizeof(*q.gift_applies) * (p.nrules ? p.nrules : 1));
	cart_price(&in, &q);

	Mall__Cart__Cart *cart = (Mall__Cart__Cart *)mall_pb_new(&mall__cart__cart__descriptor, a);
	cart->items = mall_arena_alloc(a, sizeof(*cart->items) * (c->n ? c->n : 1));
	for (size_t i = 0; i < c->n; i++)
		cart->items[i] =
		    item_of(a, &c->lines[i], &lines[i], sku_set_view(&skus, c->lines[i].sku_id),
		            q.availability[i]);
	cart->n_items = c->n;
	cart->gifts = mall_arena_alloc(a, sizeof(*cart->gifts) * (p.nrules ? p.nrules : 1));
	for (size_t k = 0; k < p.nrules; k++)
		if (q.gift_applies[k])
			cart->gifts[cart->n_gifts++] =
			    gift_of(a, &p.rules[k], sku_set_view(&skus, p.rules[k].gift_sku_id));
	cart->subtotal = money(a, q.subtotal);
	cart->discount = money(a, q.discount);
	cart->shipping_fee = money(a, q.shipping_fee);
	cart->total = money(a, q.total);
	cart->amount_to_free_shipping = money(a, q.to_free_shipping);
	cart->free_shipping_threshold = money(a, p.policy.free_threshold);
	cart->item_count = q.item_count;
	cart->orderable = q.orderable;
	if (c->coupon_code != NULL) {
		Mall__Cart__AppliedCoupon *ac = (Mall__Cart__AppliedCoupon *)mall_pb_new(
		    &mall__cart__applied_coupon__descriptor, a);
		ac->code = (char *)c->coupon_code;
		if (p.coupon != NULL) {
			ac->name = (char *)(p.coupon->name ? p.coupon->name : "");
			ac->applicable = q.coupon_verdict == CART_COUPON_OK;
			ac->reason = (char *)cart_coupon_reason(q.coupon_verdict);
			char buf[256];
			ac->message = mall_arena_strdup(
			    a, cart_coupon_message(q.coupon_verdict, p.coupon, buf, sizeof(buf)));
			ac->min_subtotal = money(a, p.coupon->min_subtotal);
		} else {
			/* deleted, or never existed: it takes nothing off */
			ac->applicable = false;
			ac->reason = (char *)cart_coupon_reason(CART_COUPON_INACTIVE);
			ac->message = (char *)"this coupon is no longer offered";
		}
		ac->discount = money(a, ac->applicable ? q.discount : 0);
		cart->coupon = ac;
	}
	out->cart = cart;
	out->coupon = p.coupon;
	out->verdict = p.coupon != NULL ? q.coupon_verdict : CART_COUPON_OK;
	return MALL_OK;
}

/* reply_cart: loads ref's cart (lock: inside a change's transaction) and
 * answers it priced. */
static mall_code
reply_cart(mall_rpc_ctx *ctx, const Mall__Cart__CartRef *ref, bool lock, ProtobufCMessage **reply,
           mall_status *st)
{
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	cart_contents c;
	priced pr;
	if (cart_store_load(conn, a, ref, lock, &c, st) != MALL_OK ||
	    price_cart(ctx, conn, member_of(ref), &c, &pr, st) != MALL_OK)
		return st->code;
	*reply = &pr.cart->base;
	return MALL_OK;
}

/* ---- the RPCs ---- */

mall_code
cart_get(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply, mall_status *st)
{
	const Mall__Cart__GetCartRequest *req = (const void *)req_;
	cart_ref_check(st, req->cart);
	if (st->code != MALL_OK)
		return st->code;
	return reply_cart(ctx, req->cart, false, reply, st);
}

mall_code
cart_add_item(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
              mall_status *st)
{
	const Mall__Cart__AddItemRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	cart_ref_check(st, req->cart);
	if (req->sku_id <= 0)
		mall_status_field(st, "skuId", "must be a sku id (positive)");
	check_quantity(st, req->quantity);
	if (st->code != MALL_OK)
		return st->code;

	Mall__Catalog__SkuView *v;
	if (cart_skus_fetch(ctx, &req->sku_id, 1, &v, st) != MALL_OK)
		return st->code;
	if (v == NULL)
		return mall_status_set(st, MALL_NOT_FOUND, "sku %" PRId64 " not found",
		                       req->sku_id);
	if (!v->purchasable)
		return unavailable(st, req->sku_id, v);
	int32_t max = line_max(v), in_cart = 0;
	if (cart_store_add(conn, a, req->cart, mall_rpc_ctx_idempotency_key(ctx), req->sku_id,
	                   req->quantity, max, &in_cart, st) != MALL_OK) {
		if (st->code == MALL_FAILED_PRECONDITION && strcmp(st->reason, "cart_full") != 0)
			return over_stock(st, v, max, in_cart);
		return st->code;
	}
	return reply_cart(ctx, req->cart, true, reply, st);
}

/* The line of sku in c, NULL without one. */
static const cart_line *
find_line(const cart_contents *c, int64_t sku)
{
	for (size_t i = 0; i < c->n; i++)
		if (c->lines[i].sku_id == sku)
			return &c->lines[i];
	return NULL;
}

static mall_code
item_not_found(mall_status *st, const Mall__Cart__CartRef *ref, int64_t item_id)
{
	if (cart_ref_is_guest(ref))
		return mall_status_set(st, MALL_NOT_FOUND,
		                       "item %" PRId64 " not found in guest cart %s", item_id,
		                       ref->guest_id);
	return mall_status_set(st, MALL_NOT_FOUND,
	                       "item %" PRId64 " not found in member %" PRId64 "'s cart", item_id,
	                       ref->member_id);
}

mall_code
cart_set_item_quantity(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                       mall_status *st)
{
	const Mall__Cart__SetItemQuantityRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	cart_ref_check(st, req->cart);
	if (req->item_id <= 0)
		mall_status_field(st, "itemId", "must be an item id (positive)");
	check_quantity(st, req->quantity);
	if (st->code != MALL_OK)
		return st->code;

	cart_contents c;
	if (cart_store_load(conn, a, req->cart, true, &c, st) != MALL_OK)
		return st->code;
	const cart_line *line = find_line(&c, req->item_id);
	if (line == NULL)
		return item_not_found(st, req->cart, req->item_id);
	Mall__Catalog__SkuView *v;
	if (cart_skus_fetch(ctx, &req->item_id, 1, &v, st) != MALL_OK)
		return st->code;
	if (v == NULL || !v->purchasable)
		return unavailable(st, req->item_id, v);
	int32_t max = line_max(v);
	if (req->quantity > max)
		return over_stock(st, v, max, line->quantity);
	if (cart_store_set(conn, a, req->cart, mall_rpc_ctx_idempotency_key(ctx), req->item_id,
	                   req->quantity, st) != MALL_OK)
		return st->code;
	return reply_cart(ctx, req->cart, true, reply, st);
}

mall_code
cart_remove_item(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                 mall_status *st)
{
	const Mall__Cart__RemoveItemRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	cart_ref_check(st, req->cart);
	if (req->item_id <= 0)
		mall_status_field(st, "itemId", "must be an item id (positive)");
	if (st->code != MALL_OK)
		return st->code;
	if (cart_store_remove(conn, a, req->cart, mall_rpc_ctx_idempotency_key(ctx), req->item_id,
	                      st) != MALL_OK)
		return st->code;
	return reply_cart(ctx, req->cart, true, reply, st);
}

mall_code
cart_apply_coupon(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                  mall_status *st)
{
	const Mall__Cart__ApplyCouponRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	cart_ref_check(st, req->cart);
	char *code = cart_coupon_code_normalize(st, a, "code", req->code);
	if (st->code != MALL_OK)
		return st->code;

	/* the cart as it would be with the coupon: priced once, answered as is */
	cart_contents c;
	priced pr;
	if (cart_store_load(conn, a, req->cart, true, &c, st) != MALL_OK)
		return st->code;
	c.coupon_code = code;
	if (price_cart(ctx, conn, member_of(req->cart), &c, &pr, st) != MALL_OK)
		return st->code;
	if (pr.coupon == NULL || !pr.coupon->active)
		return mall_status_set(st, MALL_NOT_FOUND, "coupon \"%s\" not found", code);
	if (pr.verdict != CART_COUPON_OK) {
		char msg[200];
		cart_coupon_message(pr.verdict, pr.coupon, msg, sizeof(msg));
		mall_status_reason(st, MALL_FAILED_PRECONDITION, cart_coupon_reason(pr.verdict),
		                   "%s", msg);
		if (pr.verdict == CART_COUPON_MIN_SPEND)
			mall_status_detail(st, "minSubtotal", pr.coupon->min_subtotal);
		return st->code;
	}
	if (cart_store_set_coupon(conn, a, req->cart, mall_rpc_ctx_idempotency_key(ctx), code,
	                          st) != MALL_OK)
		return st->code;
	*reply = &pr.cart->base;
	return MALL_OK;
}

mall_code
cart_remove_coupon(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                   mall_status *st)
{
	const Mall__Cart__RemoveCouponRequest *req = (const void *)req_;
	cart_ref_check(st, req->cart);
	if (st->code != MALL_OK)
		return st->code;
	if (cart_store_set_coupon(mall_rpc_ctx_worker(ctx), mall_rpc_ctx_arena(ctx), req->cart,
	                          mall_rpc_ctx_idempotency_key(ctx), NULL, st) != MALL_OK)
		return st->code;
	return reply_cart(ctx, req->cart, true, reply, st);
}

mall_code
cart_clear(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
           mall_status *st)
{
	const Mall__Cart__ClearCartRequest *req = (const void *)req_;
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	cart_ref_check(st, req->cart);
	if (req->n_lines > CART_LINES_MAX)
		mall_status_field(st, "lines", "must be at most %d", CART_LINES_MAX);
	for (size_t i = 0; i < req->n_lines && i < CART_LINES_MAX; i++)
		if (req->lines[i]->sku_id <= 0 || req->lines[i]->quantity <= 0) {
			mall_status_field(st, "lines", "need a skuId and a quantity, both positive");
			break;
		}
	if (strlen(req->coupon_code) > 64)
		mall_status_field(st, "couponCode", "must be a coupon code");
	if (st->code != MALL_OK)
		return st->code;
	if (cart_store_clear(conn, mall_rpc_ctx_arena(ctx), req->cart,
	                     mall_rpc_ctx_idempotency_key(ctx), req->lines, req->n_lines,
	                     *req->coupon_code ? req->coupon_code : NULL, st) != MALL_OK)
		return st->code;
	if (req->n_lines > 0) /* what the shopper added since stays */
		return reply_cart(ctx, req->cart, true, reply, st);
	/* what is left is nothing: priced without reading it back */
	cart_contents empty;
	memset(&empty, 0, sizeof(empty));
	priced pr;
	if (price_cart(ctx, conn, member_of(req->cart), &empty, &pr, st) != MALL_OK)
		return st->code;
	*reply = &pr.cart->base;
	return MALL_OK;
}

/* The quantity a merged line gets: the two added up, at most 99, and at most
 * the stock unless one of the two lines held more already (a merge never
 * shrinks a line; the reply flags what is short).  v NULL: the catalog has no
 * such SKU, only 99 caps it. */
static int32_t
merged_quantity(int32_t existing, int32_t guest, const Mall__Catalog__SkuView *v)
{
	int64_t cap = CART_QTY_MAX;
	if (v != NULL) {
		int64_t c = sku_available(v);
		if (existing > c)
			c = existing;
		if (guest > c)
			c = guest;
		if (c < cap)
			cap = c;
	}
	int64_t want = (int64_t)existing + guest;
	return (int32_t)(want < cap ? want : cap);
}

mall_code
cart_merge_guest(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                 mall_status *st)
{
	const Mall__Cart__MergeGuestCartRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	const char *key = mall_rpc_ctx_idempotency_key(ctx);
	Mall__Cart__CartRef guest = MALL__CART__CART_REF__INIT;
	Mall__Cart__CartRef member = MALL__CART__CART_REF__INIT;
	guest.guest_id = req->guest_id;
	member.member_id = req->member_id;
	if (!cart_ref_is_guest(&guest))
		mall_status_field(st, "guestId", "must be %d lowercase hex digits",
		                  CART_GUEST_ID_LEN);
	if (req->member_id <= 0)
		mall_status_field(st, "memberId", "must be a member id (positive)");
	if (st->code != MALL_OK)
		return st->code;

	/* the mark and the merge commit together: a guest cart merges once */
	const char *params[] = {req->guest_id, mall_arena_printf(a, "%" PRId64, req->member_id)};
	PGresult *res =
	    mall_db_exec(conn, st,
	                 "INSERT INTO merged_guest_cart (guest_id, member_id) VALUES ($1, $2)"
	                 " ON CONFLICT (guest_id) DO NOTHING RETURNING member_id",
	                 2, params);
	if (res == NULL)
		return st->code;
	bool first = PQntuples(res) > 0;
	PQclear(res);
	if (!first) {
		mall_log_info(mall_rpc_ctx_trace_id(ctx),
		              "guest cart %s was merged before: member %" PRId64
		              "'s cart unchanged",
		              req->guest_id, req->member_id);
		return reply_cart(ctx, &member, true, reply, st);
	}

	cart_contents g, m;
	if (cart_store_load(conn, a, &guest, false, &g, st) != MALL_OK ||
	    cart_store_load(conn, a, &member, true, &m, st) != MALL_OK)
		return st->code;
	sku_set skus;
	sku_set_init(&skus, a, g.n);
	for (size_t i = 0; i < g.n; i++)
		sku_set_add(&skus, g.lines[i].sku_id);
	if (sku_set_fetch(ctx, &skus, st) != MALL_OK)
		return st->code;

	/* oldest guest line first: when the member's cart fills up, the newest
	 * guest lines are the ones left out */
	size_t nlines = m.n, dropped = 0;
	for (size_t i = 0; i < g.n; i++) {
		const cart_line *gl = &g.lines[i];
		const cart_line *ml = find_line(&m, gl->sku_id);
		int32_t existing = ml ? ml->quantity : 0;
		if (ml == NULL && nlines >= CART_LINES_MAX) {
			dropped++;
			continue;
		}
		int32_t want =
		    merged_quantity(existing, gl->quantity, sku_set_view(&skus, gl->sku_id));
		if (want <= existing)
			continue;
		int32_t cur;
		if (cart_store_add(conn, a, &member, key, gl->sku_id, want - existing, want, &cur,
		                   st) != MALL_OK)
			return st->code;
		if (ml == NULL)
			nlines++;
	}
	if (dropped > 0)
		mall_log_info(mall_rpc_ctx_trace_id(ctx),
		              "guest cart %s: %zu lines left out of member %" PRId64
		              "'s cart, which holds %d different items at most",
		              req->guest_id, dropped, req->member_id, CART_LINES_MAX);
	if (m.coupon_code == NULL && g.coupon_code != NULL &&
	    cart_store_set_coupon(conn, a, &member, key, g.coupon_code, st) != MALL_OK)
		return st->code;
	return reply_cart(ctx, &member, true, reply, st);
}
