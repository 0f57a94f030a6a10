/*
 * order_place.c: PlaceOrder.
 *
 * Runs in lib/idem.c's transaction for the call's idempotency key (a retry
 * or a concurrent duplicate waits on that key and answers the same order).
 * Steps: validate; the cart's quote (CartService.GetCart: the price, never a
 * client's); the address (the member's address book or the request's); a
 * number; the stock (Catalog.ReserveStock); the coupon (CartService.
 * RedeemCoupon); the rows and the order.placed event.
 *
 * Crash consistency (docs/architecture.md, "Order service"): the catalog and
 * the cart are other databases, so their changes cannot join our
 * transaction.  The number is therefore taken, with an order_attempt row
 * naming it, in a short transaction of its own, committed BEFORE the catalog
 * is called; the order's transaction then holds an advisory lock on the
 * number and deletes the attempt row when it inserts the order.  If the
 * placement fails it releases what it took and forgets the attempt; if it
 * cannot know what happened (a peer timed out) or the process dies, the
 * attempt row survives, and the sweep, which skips attempts whose lock is
 * held, releases the reservation and the coupon use that no order owns.
 * Numbers are never handed out twice: a failed placement leaves a gap.
 */
#include <stdio.h>
#include <string.h>

#include "json_pb.h"
#include "log.h"
#include "order.h"
#include "outbox.h"

#define ALLOCATE_SQL                                                                               \
	"WITH n AS (INSERT INTO order_number_day AS d (day, last) "                                \
	"VALUES ((now() AT TIME ZONE 'Asia/Seoul')::date, 1) "                                     \
	"ON CONFLICT (day) DO UPDATE SET last = d.last + 1 RETURNING day, last) "                  \
	"INSERT INTO order_attempt (number, idempotency_key) "                                     \
	"SELECT to_char(day, 'YYYYMMDD') || '-' || lpad(last::text, 6, '0'), $1 FROM n "           \
	"RETURNING number, " ORDER_RFC3339("(now() + make_interval(secs => $2::float8 / 1000))")
#define LOCK_ATTEMPT_SQL                                                                           \
	"SELECT pg_advisory_xact_lock($1::int4, hashtext($2)), "                                   \
	"EXISTS (SELECT 1 FROM order_attempt WHERE number = $2)"
#define INSERT_ORDER_SQL                                                                           \
	"INSERT INTO orders (number, member_id, guest_id, status, channel, payment_method, "       \
	"currency, subtotal, discount, shipping_fee, total, coupon_code, recipient, phone, "       \
	"postal_code, address1, address2, orderer_name, orderer_phone, orderer_email, "            \
	"delivery_note, order_name, payment_due_at) VALUES ($1, $2, $3, 'pending_payment', $4, "   \
	"$5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22) "    \
	"RETURNING id, " ORDER_RFC3339("placed_at")
#define INSERT_LINE_SQL                                                                            \
	"INSERT INTO order_line (order_id, position, sku_id, sku_code, product_id, name, "         \
	"option_text, unit_price, quantity, line_total, gift) "                                    \
	"VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
#define INSERT_HISTORY_SQL                                                                         \
	"INSERT INTO order_status_history (order_id, from_status, to_status, actor) "              \
	"VALUES ($1, NULL, 'pending_payment', $2)"
#define DELETE_ATTEMPT_SQL "DELETE FROM order_attempt WHERE number = $1"

static bool
hex32(const char *s)
{
	if (strlen(s) != 32)
		return false;
	for (size_t i = 0; i < 32; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static char *
i64(mall_arena *a, int64_t v)
{
	return mall_arena_printf(a, "%lld", (long long)v);
}

/* not_found_field: NOT_FOUND with a field error (mall_status_field would make
 * it INVALID_ARGUMENT). */
static mall_code
not_found_field(mall_status *st, const char *field, const char *msg)
{
	mall_status_set(st, MALL_NOT_FOUND, "%s (%s)", msg, field);
	snprintf(st->fields[0].field, sizeof(st->fields[0].field), "%s", field);
	snprintf(st->fields[0].message, sizeof(st->fields[0].message), "%s", msg);
	st->nfields = 1;
	return st->code;
}

/* The validated request, normalized. */
typedef struct placing {
	int64_t member_id;
	const char *guest_id;
	Mall__Order__ShippingAddress addr;
	const char *orderer_phone;
	const char *orderer_email;
} placing;

static void
check_request(mall_status *st, mall_arena *a, const Mall__Order__PlaceOrderRequest *r, placing *p)
{
	const Mall__Cart__CartRef *ref = r->cart;
	bool member = ref != NULL && ref->member_id > 0;
	bool guest = ref != NULL && ref->guest_id != NULL && *ref->guest_id != '\0';
	if (ref == NULL || member == guest) {
		mall_status_field(st, "cart", "must name a member's cart or a guest's");
	} else if (ref->member_id < 0) {
		mall_status_field(st, "cart.memberId", "must be a positive id");
	} else if (guest && !hex32(ref->guest_id)) {
		mall_status_field(st, "cart.guestId", "must be 32 lower-case hex digits");
	}
	p->member_id = member ? ref->member_id : 0;
	p->guest_id = guest ? ref->guest_id : "";

	if (order_method_text(r->payment_method) == NULL)
		mall_status_field(st, "paymentMethod", "is required");
	if (order_channel_text(r->channel) == NULL)
		mall_status_field(st, "channel", "is required");

	mall__order__shipping_address__init(&p->addr);
	if (r->address_id < 0) {
		mall_status_field(st, "addressId", "must be a positive id");
	} else if (r->address_id > 0 && r->shipping_address != NULL) {
		mall_status_field(st, "addressId", "give either addressId or shippingAddress");
	} else if (r->address_id > 0 && !member) {
		mall_status_field(st, "addressId", "a guest has no address book");
	} else if (r->address_id == 0 && r->shipping_address == NULL) {
		mall_status_field(st, "shippingAddress", "is required (or addressId)");
	} else if (r->shipping_address != NULL) {
		const Mall__Order__ShippingAddress *s = r->shipping_address;
		mall_check_text(st, "shippingAddress.recipient", s->recipient, 1, 50);
		char *phone = mall_check_phone(st, a, "shippingAddress.phone", s->phone);
		mall_check_postal_code(st, "shippingAddress.postalCode", s->postal_code);
		mall_check_text(st, "shippingAddress.address1", s->address1, 1, 200);
		mall_check_text(st, "shippingAddress.address2", s->address2, 0, 200);
		p->addr.recipient = s->recipient;
		p->addr.phone = phone ? phone : "";
		p->addr.postal_code = s->postal_code;
		p->addr.address1 = s->address1;
		p->addr.address2 = s->address2;
	}
	mall_check_text(st, "ordererName", r->orderer_name, 1, 50);
	p->orderer_phone = mall_check_phone(st, a, "ordererPhone", r->orderer_phone);
	p->orderer_email = mall_check_email(st, a, "ordererEmail", r->orderer_email);
	mall_check_text(st, "deliveryNote", r->delivery_note, 0, 200);
}

/* address_from_book: the member's address id into p->addr. */
static mall_code
address_from_book(mall_rpc_ctx *ctx, int64_t member_id, int64_t address_id, placing *p,
                  mall_status *st)
{
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	Mall__Member__ListAddressesRequest req = MALL__MEMBER__LIST_ADDRESSES_REQUEST__INIT;
	req.member_id = member_id;
	ProtobufCMessage *reply;
	char *what =
	    mall_arena_printf(a, "read the addresses of member %lld", (long long)member_id);
	if (order_call(order_env_get()->member, &mall__member__member__descriptor, "ListAddresses",
	               &req.base, &reply, a, mall_rpc_ctx_trace_id(ctx), NULL, what,
	               st) != MALL_OK) {
		if (st->code == MALL_NOT_FOUND) /* no such member: no such address */
			return not_found_field(st, "addressId", "no such address");
		return st->code;
	}
	const Mall__Member__ListAddressesReply *r = (const void *)reply;
	for (size_t i = 0; i < r->n_addresses; i++) {
		const Mall__Member__Address *ad = r->addresses[i];
		if (ad->id != address_id || ad->member_id != member_id)
			continue;
		p->addr.recipient = ad->recipient;
		p->addr.phone = ad->phone;
		p->addr.postal_code = ad->postal_code;
		p->addr.address1 = ad->address1;
		p->addr.address2 = ad->address2;
		return MALL_OK;
	}
	return not_found_field(st, "addressId", "no such address");
}

/* reservation_lines: the quote's paid lines and gifts, one line per SKU
 * (a gift of a SKU that is also bought adds to its line). */
static size_t
reservation_lines(mall_arena *a, const Mall__Cart__Cart *q, Mall__Catalog__ReservationLine ***out)
{
	size_t cap = q->n_items + q->n_gifts;
	Mall__Catalog__ReservationLine **ls = mall_arena_alloc(a, sizeof(*ls) * (cap ? cap : 1));
	size_t n = 0;
	for (size_t i = 0; i < cap; i++) {
		int64_t sku =
		    i < q->n_items ? q->items[i]->sku_id : q->gifts[i - q->n_items]->sku_id;
		int32_t qty =
		    i < q->n_items ? q->items[i]->quantity : q->gifts[i - q->n_items]->quantity;
		size_t k = 0;
		while (k < n && ls[k]->sku_id != sku)
			k++;
		if (k == n) {
			ls[n] = mall_arena_alloc(a, sizeof(**ls));
			mall__catalog__reservation_line__init(ls[n]);
			ls[n]->sku_id = sku;
			n++;
		}
		ls[k]->quantity += qty;
	}
	*out = ls;
	return n;
}

/* order_name: "한우 등심 300g" or "한우 등심 300g 외 2건" (other paid lines). */
static char *
order_name(mall_arena *a, const Mall__Cart__Cart *q)
{
	const char *first = q->items[0]->name;
	if (q->n_items == 1)
		return mall_arena_strdup(a, first);
	return mall_arena_printf(a, "%s 외 %zu건", first, q->n_items - 1);
}

/* What a placement took from the peers, to give back when it fails. */
typedef struct taken {
	const char *number;
	bool reserved; /* ReserveStock may have acted */
	bool redeemed; /* RedeemCoupon may have acted */
	bool unsure;   /* a call may have acted without our knowing */
	bool deleted;  /* our transaction deleted the attempt row */
} taken;

/* give_back: the placement failed after taking its number: release what it
 * may hold; forget the attempt if that is certain to be all, else leave it
 * to the sweep. */
static void
give_back(mall_rpc_ctx *ctx, const taken *t)
{
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	const char *trace = mall_rpc_ctx_trace_id(ctx);
	bool clean = !t->unsure;
	mall_status st;
	if (t->redeemed) {
		mall_status_clear(&st);
		if (order_release_coupon(a, trace, t->number, &st) != MALL_OK) {
			mall_log_warn(trace, "%s", st.message);
			clean = false;
		}
	}
	if (t->reserved) {
		mall_status_clear(&st);
		if (order_release_stock(a, trace, t->number, &st) != MALL_OK) {
			mall_log_warn(trace, "%s", st.message);
			clean = false;
		}
	}
	/* while our transaction holds the row it deleted, another connection's
	 * delete would wait for us forever */
	if (clean && !t->deleted)
		order_attempt_forget(trace, t->number);
}

/* insert_rows: the order, its lines, its first history entry; the attempt
 * row goes.  *id is the order's, *event its order.placed (to add last). */
static mall_code
insert_rows(mall_rpc_ctx *ctx, const Mall__Order__PlaceOrderRequest *r, const placing *p,
            const Mall__Cart__Cart *q, const char *number, const char *due, taken *t, int64_t *id,
            Mall__Order__OrderPlaced **event, mall_status *st)
{
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *db = mall_rpc_ctx_worker(ctx);
	const char *currency = q->total && *q->total->currency ? q->total->currency : "KRW";
	const char *coupon = q->coupon && q->coupon->applicable ? q->coupon->code : "";
	const char *params[22] = {
	    number,
	    i64(a, p->member_id),
	    p->guest_id,
	    order_channel_text(r->channel),
	    order_method_text(r->payment_method),
	    currency,
	    i64(a, q->subtotal ? q->subtotal->amount : 0),
	    i64(a, q->discount ? q->discount->amount : 0),
	    i64(a, q->shipping_fee ? q->shipping_fee->amount : 0),
	    i64(a, q->total ? q->total->amount : 0),
	    coupon,
	    p->addr.recipient,
	    p->addr.phone,
	    p->addr.postal_code,
	    p->addr.address1,
	    p->addr.address2,
	    r->orderer_name,
	    p->orderer_phone,
	    p->orderer_email,
	    r->delivery_note,
	    order_name(a, q),
	    due,
	};
	PGresult *res = mall_db_exec(db, st, INSERT_ORDER_SQL, 22, params);
	if (res == NULL)
		return st->code;
	*id = mall_db_int64(res, 0, 0);
	char *placed_at = mall_arena_strdup(a, PQgetvalue(res, 0, 1));
	PQclear(res);
	char *idtext = i64(a, *id);

	Mall__Order__OrderPlaced *ev = mall_arena_alloc(a, sizeof(*ev));
	mall__order__order_placed__init(ev);
	ev->number = (char *)number;
	ev->member_id = p->member_id;
	ev->payment_method = r->payment_method;
	ev->total = q->total;
	ev->placed_at = placed_at;
	ev->payment_due_at = (char *)due;
	size_t nl = q->n_items + q->n_gifts;
	ev->lines = mall_arena_alloc(a, sizeof(*ev->lines) * nl);
	ev->n_lines = nl;
	for (size_t i = 0; i < nl; i++) {
		Mall__Order__OrderLine *l = mall_arena_alloc(a, sizeof(*l));
		mall__order__order_line__init(l);
		if (i < q->n_items) {
			const Mall__Cart__CartItem *it = q->items[i];
			l->sku_id = it->sku_id;
			l->sku_code = it->sku_code;
			l->product_id = it->product_id;
			l->name = it->name;
			l->option_text = it->option_text;
			l->unit_price = it->unit_price;
			l->quantity = it->quantity;
			l->line_total = it->line_total;
		} else {
			const Mall__Cart__Gift *g = q->gifts[i - q->n_items];
			Mall__Money *zero = mall_arena_alloc(a, sizeof(*zero));
			mall__money__init(zero);
			zero->currency = (char *)currency;
			l->sku_id = g->sku_id;
			l->sku_code = g->sku_code;
			l->name = g->name;
			l->option_text = g->option_text;
			l->unit_price = zero;
			l->quantity = g->quantity;
			l->line_total = zero;
			l->gift = true;
		}
		ev->lines[i] = l;
		const char *lp[11] = {
		    idtext,
		    i64(a, (int64_t)i + 1),
		    i64(a, l->sku_id),
		    l->sku_code,
		    i64(a, l->product_id),
		    l->name,
		    l->option_text,
		    i64(a, l->unit_price ? l->unit_price->amount : 0),
		    i64(a, l->quantity),
		    i64(a, l->line_total ? l->line_total->amount : 0),
		    l->gift ? "true" : "false",
		};
		if (mall_db_exec_cmd(db, st, INSERT_LINE_SQL, 11, lp) < 0)
			return st->code;
	}
	const char *actor = p->member_id > 0
	                        ? mall_arena_printf(a, "member:%lld", (long long)p->member_id)
	                        : "guest";
	const char *hp[2] = {idtext, actor};
	if (mall_db_exec_cmd(db, st, INSERT_HISTORY_SQL, 2, hp) < 0)
		return st->code;
	const char *dp[1] = {number};
	t->deleted = true;
	if (mall_db_exec_cmd(db, st, DELETE_ATTEMPT_SQL, 1, dp) < 0)
		return st->code;
	*event = ev;
	return MALL_OK;
}

/* allocate: a new number and its attempt row, committed on a side
 * connection; *due is now + the payment window. */
static mall_code
allocate(mall_arena *a, const char *key, int64_t window_ms, char **number, char **due,
         mall_status *st)
{
	mall_db_conn *c = mall_db_acquire(order_env_get()->side);
	const char *params[2] = {key, i64(a, window_ms)};
	PGresult *res = mall_db_exec(c, st, ALLOCATE_SQL, 2, params);
	mall_db_release(c);
	if (res == NULL) {
		if (st->code == MALL_FAILED_PRECONDITION) /* the day's counter is full */
			return mall_status_reason(
			    st, MALL_RESOURCE_EXHAUSTED, "order_numbers_exhausted",
			    "could not number the order: no numbers left today");
		return st->code;
	}
	*number = mall_arena_strdup(a, PQgetvalue(res, 0, 0));
	*due = mall_arena_strdup(a, PQgetvalue(res, 0, 1));
	PQclear(res);
	return MALL_OK;
}

/* hold: locks the number in our transaction and checks that its attempt row
 * is still there (the sweep has not given it up). */
static mall_code
hold(mall_db_conn *db, mall_arena *a, const char *number, mall_status *st)
{
	const char *params[2] = {i64(a, ORDER_ATTEMPT_LOCK_CLASS), number};
	PGresult *res = mall_db_exec(db, st, LOCK_ATTEMPT_SQL, 2, params);
	if (res == NULL)
		return st->code;
	bool there = mall_db_bool(res, 0, 1);
	PQclear(res);
	if (!there)
		return mall_status_set(st, MALL_ABORTED,
		                       "order %s was given up while being placed: retry", number);
	return MALL_OK;
}

mall_code
order_place(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
            mall_status *st)
{
	const Mall__Order__PlaceOrderRequest *r = (const void *)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *db = mall_rpc_ctx_worker(ctx);
	const char *trace = mall_rpc_ctx_trace_id(ctx);
	const order_env *env = order_env_get();
	placing p;
	check_request(st, a, r, &p);
	if (st->nfields > 0)
		return st->code;

	/* the quote */
	Mall__Cart__GetCartRequest creq = MALL__CART__GET_CART_REQUEST__INIT;
	creq.cart = r->cart;
	ProtobufCMessage *cr;
	if (order_call(env->cart, &mall__cart__cart_service__descriptor, "GetCart", &creq.base, &cr,
	               a, trace, NULL, "read the cart", st) != MALL_OK)
		return st->code;
	const Mall__Cart__Cart *q = (const void *)cr;
	if (q->n_items == 0)
		return mall_status_reason(st, MALL_FAILED_PRECONDITION, "cart_empty",
		                          "could not place the order: the cart is empty");
	if (!q->orderable) {
		/* a line short of stock is what ReserveStock would refuse: the
		 * same answer, whichever check sees it first */
		for (size_t i = 0; i < q->n_items; i++) {
			const Mall__Cart__CartItem *it = q->items[i];
			if (it->availability != MALL__CART__AVAILABILITY__SOLD_OUT &&
			    it->availability != MALL__CART__AVAILABILITY__INSUFFICIENT_STOCK)
				continue;
			mall_status_reason(st, MALL_FAILED_PRECONDITION, "out_of_stock",
			                   "could not place the order: %lld left of a product, "
			                   "%d in the cart",
			                   (long long)it->available_quantity, (int)it->quantity);
			mall_status_detail(st, "skuId", it->sku_id);
			mall_status_detail(st, "available", it->available_quantity);
			return st->code;
		}
		return mall_status_reason(st, MALL_FAILED_PRECONDITION, "cart_not_orderable",
		                          "could not place the order: a line of the cart cannot be "
		                          "bought as it is");
	}
	Mall__Catalog__ReservationLine **rl;
	size_t nrl = reservation_lines(a, q, &rl);
	if (nrl > ORDER_LINES_MAX)
		return mall_status_reason(st, MALL_FAILED_PRECONDITION, "too_many_lines",
		                          "could not place the order: %zu products, at most %d",
		                          nrl, ORDER_LINES_MAX);

	if (r->address_id > 0 &&
	    address_from_book(ctx, p.member_id, r->address_id, &p, st) != MALL_OK)
		return st->code;

	/* the number: committed before anything is taken from the peers */
	int64_t window = r->payment_method == MALL__ORDER__PAYMENT_METHOD__VIRTUAL_ACCOUNT
	                     ? env->deposit_window_ms
	                     : env->card_window_ms;
	char *number = NULL, *due = NULL;
	if (allocate(a, mall_rpc_ctx_idempotency_key(ctx), window, &number, &due, st) != MALL_OK)
		return st->code;
	taken t = {.number = number};
	if (hold(db, a, number, st) != MALL_OK)
		return st->code; /* the sweep has it */

	/* the stock */
	Mall__Catalog__ReserveStockRequest rreq = MALL__CATALOG__RESERVE_STOCK_REQUEST__INIT;
	rreq.order_id = number;
	rreq.lines = rl;
	rreq.n_lines = nrl;
	rreq.expires_at = due;
	ProtobufCMessage *rr;
	t.reserved = true;
	if (order_call(env->catalog, &mall__catalog__catalog__descriptor, "ReserveStock",
	               &rreq.base, &rr, a, trace, mall_arena_printf(a, "reserve-%s", number),
	               mall_arena_printf(a, "reserve stock for order %s", number), st) != MALL_OK) {
		t.reserved = !order_peer_definite(st);
		t.unsure = t.reserved;
		give_back(ctx, &t);
		return st->code;
	}

	/* the coupon */
	if (q->coupon != NULL && q->coupon->applicable && *q->coupon->code) {
		Mall__Cart__RedeemCouponRequest cp = MALL__CART__REDEEM_COUPON_REQUEST__INIT;
		cp.code = q->coupon->code;
		cp.member_id = p.member_id;
		cp.order_id = number;
		cp.subtotal = q->subtotal ? q->subtotal->amount : 0;
		ProtobufCMessage *cpr;
		t.redeemed = true;
		if (order_call(
		        env->cart, &mall__cart__cart_service__descriptor, "RedeemCoupon", &cp.base,
		        &cpr, a, trace, mall_arena_printf(a, "redeem-%s", number),
		        mall_arena_printf(a, "use coupon %s for order %s", q->coupon->code, number),
		        st) != MALL_OK) {
			t.redeemed = !order_peer_definite(st);
			t.unsure = t.redeemed;
			give_back(ctx, &t);
			return st->code;
		}
	}

	int64_t id = 0;
	Mall__Order__OrderPlaced *ev = NULL;
	Mall__Order__Order *o = NULL;
	if (insert_rows(ctx, r, &p, q, number, due, &t, &id, &ev, st) != MALL_OK ||
	    order_load(db, a, id, &o, st) != MALL_OK ||
	    mall_outbox_add(db, a, "order.placed", &ev->base, st) != MALL_OK) {
		give_back(ctx, &t);
		return st->code;
	}
	mall_log_info(trace, "order %s placed: %zu lines, total %lld", number, o->n_lines,
	              (long long)(o->total ? o->total->amount : 0));
	*reply = &o->base;
	return MALL_OK;
}
