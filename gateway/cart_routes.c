/*
 * cart_routes.c: the shopper's cart, each route one call to the cart service
 * (mall.cart.CartService), each answering 200 with the whole priced cart (the
 * mall.cart.Cart message as JSON):
 *
 *   GET    /api/v1/cart                  GetCart
 *   POST   /api/v1/cart/items            AddItem {"skuId","quantity"}
 *   PATCH  /api/v1/cart/items/{itemId}   SetItemQuantity {"quantity"}
 *   DELETE /api/v1/cart/items/{itemId}   RemoveItem
 *   PUT    /api/v1/cart/coupon           ApplyCoupon {"code"}
 *   DELETE /api/v1/cart/coupon           RemoveCoupon
 *
 * Which cart (the CartRef) comes from the session only, never from the
 * request: a signed-in member's own cart, else the guest cart whose id the
 * session keeps (session.h).  A request without a cart of its own sees an
 * empty one: GET asks the service for a new guest id that is kept nowhere, so
 * the shipping numbers are still the service's.  The first write that needs a
 * cart (an add, a coupon) makes it: an anonymous session when there is none
 * (both cookies set) and its guest cart id.  Such a write without a session
 * has no CSRF token to check, which is safe because the body must be JSON: a
 * cross-site form cannot send that, and a cross-site fetch of it needs a CORS
 * grant the gateway never gives.  Writes with a session were CSRF-checked by
 * server.c before routing.
 *
 * A member's session that still holds a guest cart (the cart service was down
 * at login, session_routes.c) merges it before anything else is done with
 * the cart (mall_gw_cart_merge).
 *
 * Bodies take only their own keys (anything else is 400 naming the key);
 * quantities must be JSON integers 1..99 and SKU ids positive, checked here
 * before a session or a cart is made.  Writes carry the client's
 * Idempotency-Key, scoped to the cart ("m<member>:" or "g<guest>:" + key), so
 * two shoppers' keys never meet and no client key can equal the merge's
 * "merge-<guest id>"; without one the RPC client makes a key per request.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "log.h"
#include "mall/cart.pb-c.h"
#include "session.h"

#define QTY_MIN 1
#define QTY_MAX 99

/* What a request without a cart of its own gets. */
typedef enum cart_need {
	CART_FIND, /* an empty cart: a new guest id, kept nowhere (cart_ctx.empty) */
	CART_MAKE, /* a session and a guest cart, made now */
} cart_need;

/* One request's cart. */
typedef struct cart_ctx {
	Mall__Cart__CartRef ref;
	char guest[MALL_GW_GUEST_CART_LEN + 1];
	bool empty;      /* no cart of its own: ref names a new, unkept id */
	const char *key; /* the client's Idempotency-Key, NULL: none */
} cart_ctx;

/* Whether a failed call is one the cart service may get over, so that a
 * merge is worth trying again later. */
static bool
transient(mall_code c)
{
	return mall_code_http(c) >= 500 || c == MALL_ABORTED || c == MALL_RESOURCE_EXHAUSTED;
}

mall_code
mall_gw_cart_merge(mall_gw_req *r, mall_gw_session *s, const char *guest_id, mall_status *st)
{
	char gid[MALL_GW_GUEST_CART_LEN + 1];
	snprintf(gid, sizeof(gid), "%s", guest_id); /* s->cart may be cleared below */
	char key[8 + MALL_GW_GUEST_CART_LEN];
	snprintf(key, sizeof(key), "merge-%s", gid);
	Mall__Cart__MergeGuestCartRequest req = MALL__CART__MERGE_GUEST_CART_REQUEST__INIT;
	req.guest_id = gid;
	req.member_id = s->member_id;
	ProtobufCMessage *reply = NULL;
	mall_rpc_call_opts opts = {
	    .trace_id = r->trace_id,
	    .idempotency_key = key,
	    .member_id = s->member_id,
	    .flags = MALL_RPC_CALL_MUTATING,
	};
	mall_status_clear(st);
	mall_code c = mall_rpc_call(r->gw->cart, &mall__cart__cart_service__descriptor,
	                            "MergeGuestCart", &req.base, &reply, r->arena, &opts, st);
	if (c != MALL_OK && transient(c)) {
		mall_log_warn(r->trace_id,
		              "could not merge guest cart %.8s... into the cart of member %" PRId64
		              " (tried again at its next cart request): %s",
		              gid, s->member_id, st->message);
		return c;
	}
	if (c != MALL_OK)
		mall_log_warn(r->trace_id,
		              "guest cart %.8s... cannot be merged into the cart of member %" PRId64
		              ", left out: %s",
		              gid, s->member_id, st->message);
	mall_status dst;
	mall_status_clear(&dst);
	if (mall_gw_session_cart_drop(r, s, gid, &dst) != MALL_OK)
		mall_log_warn(r->trace_id,
		              "could not drop the merged guest cart from the session: %s",
		              dst.message);
	mall_status_clear(st);
	return MALL_OK;
}

/* The client's Idempotency-Key into cc->key; false once answered (a bad
 * one is 400). */
static bool
read_key(mall_gw_req *r, cart_ctx *cc)
{
	cc->key = mall_gw_idempotency_key(r);
	return cc->key == NULL || cc->key[0] != '\0';
}

/* The request's cart into cc (see cart_need), after merging a guest cart
 * a member's session still holds; false once answered (503 without Redis or
 * the cart service). */
static bool
find_cart(mall_gw_req *r, cart_need need, cart_ctx *cc)
{
	mall_status st;
	mall_status_clear(&st);
	mall_gw_session *s;
	if (mall_gw_session_load(r, &s, &st) != MALL_OK) {
		mall_gw_respond_status(r, &st, "session store");
		return false;
	}
	if (s != NULL && s->member_id > 0) {
		/* a service that cannot be reached for the merge cannot be for
		 * the cart either: answer now rather than wait twice */
		if (s->cart[0] != '\0' && mall_gw_cart_merge(r, s, s->cart, &st) != MALL_OK &&
		    (st.code == MALL_UNAVAILABLE || st.code == MALL_DEADLINE_EXCEEDED)) {
			mall_gw_respond_status(r, &st, "cart");
			return false;
		}
		cc->ref.member_id = s->member_id;
		return true;
	}
	if (s == NULL || s->cart[0] == '\0') {
		if (need == CART_FIND) {
			if (mall_gw_guest_cart_id_new(cc->guest, &st) != MALL_OK) {
				mall_gw_respond_status(r, &st, "gateway");
				return false;
			}
			cc->ref.guest_id = cc->guest;
			cc->empty = true;
			return true;
		}
		/* a session that ends between its load and the script is made anew */
		for (int tries = 0;; tries++) {
			if (s == NULL && mall_gw_session_create(r, 0, &s, &st) != MALL_OK) {
				mall_gw_respond_status(r, &st, "session store");
				return false;
			}
			mall_code c = mall_gw_session_cart_ensure(r, s, &st);
			if (c == MALL_OK)
				break;
			if (c != MALL_NOT_FOUND || tries > 0) {
				mall_gw_respond_status(r, &st, "session store");
				return false;
			}
			s = NULL;
		}
	}
	memcpy(cc->guest, s->cart, sizeof(cc->guest));
	cc->ref.guest_id = cc->guest;
	return true;
}

/* Answers 404 for a line the cart does not have (in our words: the
 * service's name the cart, and a guest cart's id stays in the gateway). */
static void
respond_no_item(mall_gw_req *r, int64_t id)
{
	char msg[96];
	snprintf(msg, sizeof(msg), "the cart has no item %" PRId64, id);
	mall_gw_respond_error(r, 404, "not_found", msg, NULL);
}

/* Calls method of the cart service with req (whose cart is cc's) and answers
 * the cart it returns, or the error; item (0: none) is the line the call is
 * about. */
static void
call(mall_gw_req *r, cart_ctx *cc, const char *method, const ProtobufCMessage *req, bool mutating,
     int64_t item)
{
	const char *key = NULL;
	if (mutating && cc->key != NULL)
		key =
		    cc->ref.member_id > 0
		        ? mall_arena_printf(r->arena, "m%" PRId64 ":%s", cc->ref.member_id, cc->key)
		        : mall_arena_printf(r->arena, "g%s:%s", cc->guest, cc->key);
	ProtobufCMessage *reply = NULL;
	mall_status st;
	mall_status_clear(&st);
	mall_rpc_call_opts opts = {
	    .trace_id = r->trace_id,
	    .idempotency_key = key,
	    .member_id = cc->ref.member_id,
	    .flags = mutating ? MALL_RPC_CALL_MUTATING : 0,
	};
	if (mall_rpc_call(r->gw->cart, &mall__cart__cart_service__descriptor, method, req, &reply,
	                  r->arena, &opts, &st) != MALL_OK) {
		if (st.code == MALL_NOT_FOUND && item > 0)
			respond_no_item(r, item);
		else
			mall_gw_respond_status(r, &st, "cart");
		return;
	}
	mall_gw_respond_pb(r, reply);
}

/* Answers cc's cart as it is (GetCart). */
static void
get_cart(mall_gw_req *r, cart_ctx *cc)
{
	Mall__Cart__GetCartRequest req = MALL__CART__GET_CART_REQUEST__INIT;
	req.cart = &cc->ref;
	call(r, cc, "GetCart", &req.base, false, 0);
}

static void
cart_ctx_init(cart_ctx *cc)
{
	memset(cc, 0, sizeof(*cc));
	mall__cart__cart_ref__init(&cc->ref);
}

/* A quantity's field error (1..99) into st unless q is within. */
static void
check_quantity(mall_status *st, int32_t q)
{
	if (q < QTY_MIN || q > QTY_MAX)
		mall_status_field(st, "quantity", "must be an integer from %d to %d", QTY_MIN,
		                  QTY_MAX);
}

/* The {itemId} of an item route: a positive decimal integer, else 0 once
 * answered 400. */
static int64_t
item_id(mall_gw_req *r)
{
	const char *p = r->param != NULL ? r->param : "";
	int64_t v = 0;
	bool ok = p[0] != '\0';
	for (const char *q = p; ok && *q; q++) {
		if (*q < '0' || *q > '9' || v > (INT64_MAX - (*q - '0')) / 10)
			ok = false;
		else
			v = v * 10 + (*q - '0');
	}
	if (!ok || v <= 0) {
		mall_status st;
		mall_status_clear(&st);
		mall_status_field(&st, "itemId",
		                  "must be a positive integer (the SKU id of a line)");
		mall_gw_respond_status(r, &st, "gateway");
		return 0;
	}
	return v;
}

void
mall_gw_handle_cart_get(mall_gw_req *r)
{
	cart_ctx cc;
	cart_ctx_init(&cc);
	if (find_cart(r, CART_FIND, &cc))
		get_cart(r, &cc);
}

static const char *const add_fields[] = {"skuId", "quantity", NULL};

void
mall_gw_handle_cart_item_add(mall_gw_req *r)
{
	cart_ctx cc;
	cart_ctx_init(&cc);
	if (!read_key(r, &cc))
		return;
	ProtobufCMessage *msg = mall_gw_read_fields(r, &mall__cart__add_item_request__descriptor,
	                                            add_fields, NULL, NULL, NULL);
	if (msg == NULL)
		return;
	Mall__Cart__AddItemRequest *req = (Mall__Cart__AddItemRequest *)msg;
	mall_status st;
	mall_status_clear(&st);
	if (req->sku_id <= 0)
		mall_status_field(&st, "skuId", "is required: a positive integer (the SKU's id)");
	check_quantity(&st, req->quantity);
	if (st.code != MALL_OK) {
		mall_gw_respond_status(r, &st, "gateway");
		return;
	}
	if (!find_cart(r, CART_MAKE, &cc))
		return;
	req->cart = &cc.ref;
	call(r, &cc, "AddItem", msg, true, 0);
}

static const char *const quantity_fields[] = {"quantity", NULL};

void
mall_gw_handle_cart_item_patch(mall_gw_req *r)
{
	cart_ctx cc;
	cart_ctx_init(&cc);
	int64_t id = item_id(r);
	if (id == 0 || !read_key(r, &cc))
		return;
	ProtobufCMessage *msg =
	    mall_gw_read_fields(r, &mall__cart__set_item_quantity_request__descriptor,
	                        quantity_fields, NULL, NULL, NULL);
	if (msg == NULL)
		return;
	Mall__Cart__SetItemQuantityRequest *req = (Mall__Cart__SetItemQuantityRequest *)msg;
	mall_status st;
	mall_status_clear(&st);
	check_quantity(&st, req->quantity);
	if (st.code != MALL_OK) {
		mall_gw_respond_status(r, &st, "gateway");
		return;
	}
	if (!find_cart(r, CART_FIND, &cc))
		return;
	if (cc.empty) {
		respond_no_item(r, id);
		return;
	}
	req->cart = &cc.ref;
	req->item_id = id;
	call(r, &cc, "SetItemQuantity", msg, true, id);
}

void
mall_gw_handle_cart_item_delete(mall_gw_req *r)
{
	cart_ctx cc;
	cart_ctx_init(&cc);
	int64_t id = item_id(r);
	if (id == 0 || !read_key(r, &cc) || !find_cart(r, CART_FIND, &cc))
		return;
	if (cc.empty) {
		respond_no_item(r, id);
		return;
	}
	Mall__Cart__RemoveItemRequest req = MALL__CART__REMOVE_ITEM_REQUEST__INIT;
	req.cart = &cc.ref;
	req.item_id = id;
	call(r, &cc, "RemoveItem", &req.base, true, id);
}

static const char *const coupon_fields[] = {"code", NULL};

void
mall_gw_handle_cart_coupon_put(mall_gw_req *r)
{
	cart_ctx cc;
	cart_ctx_init(&cc);
	if (!read_key(r, &cc))
		return;
	ProtobufCMessage *msg = mall_gw_read_fields(
	    r, &mall__cart__apply_coupon_request__descriptor, coupon_fields, NULL, NULL, NULL);
	if (msg == NULL)
		return;
	Mall__Cart__ApplyCouponRequest *req = (Mall__Cart__ApplyCouponRequest *)msg;
	if (req->code == NULL || req->code[0] == '\0') {
		mall_status st;
		mall_status_clear(&st);
		mall_status_field(&st, "code", "is required");
		mall_gw_respond_status(r, &st, "gateway");
		return;
	}
	if (!find_cart(r, CART_MAKE, &cc))
		return;
	req->cart = &cc.ref;
	call(r, &cc, "ApplyCoupon", msg, true, 0);
}

void
mall_gw_handle_cart_coupon_delete(mall_gw_req *r)
{
	cart_ctx cc;
	cart_ctx_init(&cc);
	if (!read_key(r, &cc) || !find_cart(r, CART_FIND, &cc))
		return;
	if (cc.empty) { /* no cart, no coupon: the empty cart */
		get_cart(r, &cc);
		return;
	}
	Mall__Cart__RemoveCouponRequest req = MALL__CART__REMOVE_COUPON_REQUEST__INIT;
	req.cart = &cc.ref;
	call(r, &cc, "RemoveCoupon", &req.base, true, 0);
}
