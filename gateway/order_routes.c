/*
 * order_routes.c: the shopper's orders, each route one call to the order
 * service (mall.order.OrderService):
 *
 *   POST /api/v1/orders                   PlaceOrder: 201 {"order","payment"}
 *   GET  /api/v1/orders?page=&pageSize=   ListOrders: the member's, newest first
 *   GET  /api/v1/orders/{number}?phone=   GetOrder
 *   POST /api/v1/orders/{number}/cancel   CancelOrder {"reason", "refundAccount"}: 200
 *                                         with the order (a paid one refunded)
 *
 * An order is placed from the session's cart only (the CartRef as in
 * cart_routes.c: the signed-in member's cart, else the session's guest cart),
 * never one the request names: the body takes paymentMethod, shippingAddress
 * or addressId, ordererName, ordererPhone, ordererEmail and deliveryNote, and
 * any other key (cart, channel, memberId...) is 400 naming it.  A request
 * without a cart of its own names a new guest id that is kept nowhere, so the
 * service checks the fields first and then answers 409 cart_empty.  A member
 * session still holding a guest cart merges it first (mall_gw_cart_merge).
 *
 * Placing needs an Idempotency-Key (400 idempotency_key_required without
 * one): it names the order, so a retry after a lost answer gets the same
 * order rather than a second one.  The key is scoped to the cart ("m<member>:"
 * or "g<guest cart id>:" + key) as the cart routes do; the same key with
 * another body is 422 idempotency_key_reused (server.c, for every route).
 *
 * The sales channel is the gateway's to say, from the User-Agent header:
 * "Mobi" anywhere in it (the token every mobile browser sends: "Mobile",
 * "Mobi"; tablets do not) is web_mobile, anything else (no header too) web_pc.
 *
 * The 201 answer carries what the browser's payment window needs besides the
 * order: {"orderId" (the number, which the PG keeps as its order id),
 * "amount" (the total, won), "orderName", "clientKey"
 * (MALL_PAYMENT_PG_CLIENT_KEY, public), "windowUrl" (the payment window's
 * page, MALL_GATEWAY_PG_WINDOW_URL), "customerName", "customerEmail"}.
 *
 * One order (GET, cancel): a signed-in member reaches their own orders; with
 * ?phone= (the orderer's phone) an order placed as a guest, also by a member
 * whose own order it is not; a request without a member session needs phone
 * (400 naming it).  Anything else (another member's order, a wrong phone, a
 * number that is not one) is 404, the same as no order.  Cancel's optional
 * Idempotency-Key is scoped to the caller ("m<member>:", or "o<number>:" for
 * access by phone); an illegal cancel is 409 with the service's reason
 * (illegal_transition; refund_account_required for a paid virtual account
 * without "refundAccount" {"bank","accountNumber","holderName"};
 * deposit_received for an order awaiting its deposit whose deposit came
 * first), a refund or a virtual account's closing the payment service could
 * not make 503 refund_unavailable / payment_unavailable (nothing changed:
 * retry).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "gateway.h"
#include "log.h"
#include "mall/order.pb-c.h"
#include "session.h"

#define ORDER_NUMBER_LEN 15 /* YYYYMMDD-NNNNNN */

/* The channel of the request's User-Agent (see above). */
static Mall__Order__SalesChannel
channel_of(mall_gw_req *r)
{
	const char *ua = mg_get_header(r->conn, "User-Agent");
	return ua != NULL && strstr(ua, "Mobi") != NULL ? MALL__ORDER__SALES_CHANNEL__WEB_MOBILE
	                                                : MALL__ORDER__SALES_CHANNEL__WEB_PC;
}

/* The session, loaded; false once answered (503 without Redis). */
static bool
load_session(mall_gw_req *r, mall_gw_session **s)
{
	mall_status st;
	mall_status_clear(&st);
	if (mall_gw_session_load(r, s, &st) != MALL_OK) {
		mall_gw_respond_status(r, &st, "session store");
		return false;
	}
	return true;
}

/* Calls method of the order service with req; key (NULL: none, or a new one
 * when mutating) is the scoped idempotency key.  The reply, or NULL with st
 * set (not answered). */
static ProtobufCMessage *
call(mall_gw_req *r, const char *method, const ProtobufCMessage *req, bool mutating,
     const char *key, int64_t member_id, mall_status *st)
{
	ProtobufCMessage *reply = NULL;
	mall_status_clear(st);
	mall_rpc_call_opts opts = {
	    .trace_id = r->trace_id,
	    .idempotency_key = key,
	    .member_id = member_id,
	    .flags = mutating ? MALL_RPC_CALL_MUTATING : 0,
	};
	if (mall_rpc_call(r->gw->order, &mall__order__order_service__descriptor, method, req,
	                  &reply, r->arena, &opts, st) != MALL_OK)
		return NULL;
	return reply;
}

/* ---- POST /api/v1/orders ---- */

static const char *const place_fields[] = {
    "paymentMethod", "shippingAddress", "addressId",    "ordererName",
    "ordererPhone",  "ordererEmail",    "deliveryNote", NULL,
};

/* The request's cart into ref (guest, room for its id); false once answered. */
static bool
cart_of(mall_gw_req *r, Mall__Cart__CartRef *ref, char guest[MALL_GW_GUEST_CART_LEN + 1])
{
	mall_status st;
	mall_status_clear(&st);
	mall_gw_session *s;
	if (!load_session(r, &s))
		return false;
	if (s != NULL && s->member_id > 0) {
		/* the guest cart filled before signing in belongs in this order */
		if (s->cart[0] != '\0' && mall_gw_cart_merge(r, s, s->cart, &st) != MALL_OK) {
			mall_gw_respond_status(r, &st, "cart");
			return false;
		}
		ref->member_id = s->member_id;
		return true;
	}
	if (s != NULL && s->cart[0] != '\0') {
		memcpy(guest, s->cart, MALL_GW_GUEST_CART_LEN + 1);
	} else if (mall_gw_guest_cart_id_new(guest, &st) != MALL_OK) {
		mall_gw_respond_status(r, &st, "gateway");
		return false;
	}
	ref->guest_id = guest;
	return true;
}

/* The 201 body: {"order": o, "payment": what the PG window needs}. */
static void
respond_placed(mall_gw_req *r, const Mall__Order__Order *o)
{
	json_t *pay = json_object();
	json_object_set_new(pay, "orderId", json_string(o->number));
	json_object_set_new(pay, "amount", json_integer(o->total ? o->total->amount : 0));
	json_object_set_new(pay, "orderName", json_string(o->order_name));
	json_object_set_new(pay, "clientKey", json_string(r->gw->cfg.pg_client_key));
	json_object_set_new(pay, "windowUrl", json_string(r->gw->cfg.pg_window_url));
	json_object_set_new(pay, "customerName", json_string(o->orderer_name));
	json_object_set_new(pay, "customerEmail", json_string(o->orderer_email));
	char *ptext = json_dumps(pay, JSON_COMPACT);
	json_decref(pay);
	char *otext = mall_pb_to_json_text(&o->base, NULL);
	if (ptext == NULL || otext == NULL)
		abort(); /* out of memory */
	char *body = mall_arena_printf(r->arena, "{\"order\":%s,\"payment\":%s}", otext, ptext);
	free(otext);
	free(ptext);
	mall_gw_respond(r, 201, MALL_GW_JSON, body, strlen(body));
}

void
mall_gw_handle_order_place(mall_gw_req *r)
{
	const char *key = mall_gw_idempotency_key(r);
	if (key != NULL && key[0] == '\0')
		return;
	if (key == NULL) {
		mall_status st;
		mall_status_clear(&st);
		mall_status_field(&st, "Idempotency-Key",
		                  "is required: a key of your own for this order, sent again "
		                  "with a retry");
		mall_gw_respond_error(r, 400, "idempotency_key_required",
		                      "placing an order needs an Idempotency-Key header (1 to 64 "
		                      "of [A-Za-z0-9._-]), so that a retry cannot order twice",
		                      &st);
		return;
	}
	ProtobufCMessage *msg = mall_gw_read_fields(
	    r, &mall__order__place_order_request__descriptor, place_fields, NULL, NULL, NULL);
	if (msg == NULL)
		return;
	Mall__Order__PlaceOrderRequest *req = (Mall__Order__PlaceOrderRequest *)msg;
	Mall__Cart__CartRef ref = MALL__CART__CART_REF__INIT;
	char guest[MALL_GW_GUEST_CART_LEN + 1] = "";
	if (!cart_of(r, &ref, guest))
		return;
	req->cart = &ref;
	req->channel = channel_of(r);
	const char *scoped =
	    ref.member_id > 0 ? mall_arena_printf(r->arena, "m%" PRId64 ":%s", ref.member_id, key)
	                      : mall_arena_printf(r->arena, "g%s:%s", guest, key);
	mall_status st;
	ProtobufCMessage *reply = call(r, "PlaceOrder", msg, true, scoped, ref.member_id, &st);
	if (reply == NULL) {
		mall_gw_respond_status(r, &st, "order");
		return;
	}
	respond_placed(r, (const Mall__Order__Order *)reply);
}

/* ---- GET /api/v1/orders ---- */

void
mall_gw_handle_orders(mall_gw_req *r)
{
	mall_gw_session *s;
	if (!load_session(r, &s))
		return;
	if (s == NULL || s->member_id <= 0) {
		mall_gw_respond_error(r, 401, "unauthenticated",
		                      "sign in first (a guest reads an order by its number and "
		                      "phone)",
		                      NULL);
		return;
	}
	Mall__Order__ListOrdersRequest req = MALL__ORDER__LIST_ORDERS_REQUEST__INIT;
	req.member_id = s->member_id;
	mall_status st;
	mall_status_clear(&st);
	/* the parameters were checked against the route's list (routes.c), which
	 * names fields of ListOrdersRequest */
	for (size_t i = 0; i < r->nparams; i++)
		if (r->params[i].value[0] != '\0')
			mall_pb_set_from_string(&req.base, r->arena, r->params[i].name,
			                        r->params[i].value, &st);
	if (st.code != MALL_OK) {
		mall_gw_respond_status(r, &st, "gateway");
		return;
	}
	ProtobufCMessage *reply = call(r, "ListOrders", &req.base, false, NULL, s->member_id, &st);
	if (reply == NULL)
		mall_gw_respond_status(r, &st, "order");
	else
		mall_gw_respond_pb(r, reply);
}

/* ---- one order ---- */

/* Who asks for an order: a member (member_id), a holder of its phone, or
 * both (a member who gave phone: their own order, else a guest one). */
typedef struct order_caller {
	const char *number;
	int64_t member_id;
	const char *phone; /* NULL: not given */
} order_caller;

static bool
number_ok(const char *v)
{
	if (v == NULL || strlen(v) != ORDER_NUMBER_LEN || v[8] != '-')
		return false;
	for (size_t i = 0; i < ORDER_NUMBER_LEN; i++)
		if (i != 8 && (v[i] < '0' || v[i] > '9'))
			return false;
	return true;
}

static void
respond_no_order(mall_gw_req *r, const char *number)
{
	char msg[96];
	snprintf(msg, sizeof(msg), "order %.20s not found", number ? number : "");
	mall_gw_respond_error(r, 404, "not_found", msg, NULL);
}

/* The caller of an order route into c; false once answered (404 for a number
 * that is none, 400 without a member session or phone). */
static bool
caller_of(mall_gw_req *r, order_caller *c)
{
	memset(c, 0, sizeof(*c));
	c->number = r->param;
	if (!number_ok(c->number)) {
		respond_no_order(r, c->number);
		return false;
	}
	for (size_t i = 0; i < r->nparams; i++)
		if (strcmp(r->params[i].name, "phone") == 0 && r->params[i].value[0] != '\0')
			c->phone = r->params[i].value;
	mall_gw_session *s;
	if (!load_session(r, &s))
		return false;
	if (s != NULL && s->member_id > 0)
		c->member_id = s->member_id;
	if (c->member_id == 0 && c->phone == NULL) {
		mall_status st;
		mall_status_clear(&st);
		mall_status_field(&st, "phone",
		                  "is required without signing in: the orderer's phone of the "
		                  "order");
		mall_gw_respond_status(r, &st, "gateway");
		return false;
	}
	return true;
}

/* The service names the phone after its request field; the route's is
 * "phone". */
static void
rename_phone_field(mall_status *st)
{
	for (int i = 0; i < st->nfields; i++)
		if (strcmp(st->fields[i].field, "ordererPhone") == 0)
			snprintf(st->fields[i].field, sizeof(st->fields[i].field), "phone");
}

/* Answers a failed order call: a missing (or someone else's) order is 404
 * in our words. */
static void
respond_failed(mall_gw_req *r, const order_caller *c, mall_status *st)
{
	if (st->code == MALL_NOT_FOUND) {
		respond_no_order(r, c->number);
		return;
	}
	rename_phone_field(st);
	mall_gw_respond_status(r, st, "order");
}

void
mall_gw_handle_order_get(mall_gw_req *r)
{
	order_caller c;
	if (!caller_of(r, &c))
		return;
	Mall__Order__GetOrderRequest req = MALL__ORDER__GET_ORDER_REQUEST__INIT;
	req.number = (char *)c.number;
	mall_status st;
	mall_status_clear(&st);
	ProtobufCMessage *reply = NULL;
	if (c.member_id > 0) {
		req.member_id = c.member_id;
		reply = call(r, "GetOrder", &req.base, false, NULL, c.member_id, &st);
	}
	if (reply == NULL && c.phone != NULL && (c.member_id == 0 || st.code == MALL_NOT_FOUND)) {
		req.member_id = 0;
		req.orderer_phone = (char *)c.phone;
		reply = call(r, "GetOrder", &req.base, false, NULL, c.member_id, &st);
	}
	if (reply == NULL)
		respond_failed(r, &c, &st);
	else
		mall_gw_respond_pb(r, reply);
}

static const char *const cancel_fields[] = {"reason", "refundAccount", NULL};

void
mall_gw_handle_order_cancel(mall_gw_req *r)
{
	order_caller c;
	if (!caller_of(r, &c))
		return;
	const char *key = mall_gw_idempotency_key(r);
	if (key != NULL && key[0] == '\0')
		return;
	Mall__Order__CancelOrderRequest *req;
	/* the body is optional: none, or an object of reason and refundAccount */
	if (r->body_kind == MALL_GW_BODY_NONE || (r->body_read && r->body_len == 0)) {
		req = mall_arena_alloc(r->arena, sizeof(*req));
		mall__order__cancel_order_request__init(req);
	} else {
		ProtobufCMessage *msg =
		    mall_gw_read_fields(r, &mall__order__cancel_order_request__descriptor,
		                        cancel_fields, NULL, NULL, NULL);
		if (msg == NULL)
			return;
		req = (Mall__Order__CancelOrderRequest *)msg;
	}
	req->number = (char *)c.number;
	mall_status st;
	mall_status_clear(&st);
	ProtobufCMessage *reply = NULL;
	if (c.member_id > 0) {
		req->member_id = c.member_id;
		const char *scoped =
		    key ? mall_arena_printf(r->arena, "m%" PRId64 ":%s", c.member_id, key) : NULL;
		reply = call(r, "CancelOrder", &req->base, true, scoped, c.member_id, &st);
	}
	if (reply == NULL && c.phone != NULL && (c.member_id == 0 || st.code == MALL_NOT_FOUND)) {
		req->member_id = 0;
		req->orderer_phone = (char *)c.phone;
		const char *scoped =
		    key ? mall_arena_printf(r->arena, "o%s:%s", c.number, key) : NULL;
		reply = call(r, "CancelOrder", &req->base, true, scoped, c.member_id, &st);
	}
	bool refund = reply == NULL && strcmp(st.reason, "refund_unavailable") == 0;
	if (refund || (reply == NULL && strcmp(st.reason, "payment_unavailable") == 0)) {
		/* the payment service or the PG did not answer: the order service
		 * is fine, and the shopper must know the order was not cancelled */
		char msg[160];
		snprintf(msg, sizeof(msg),
		         "the %s could not be made now, so order %s was not cancelled: try again "
		         "later",
		         refund ? "refund" : "virtual account's closing", c.number);
		mall_log_warn(r->trace_id, "%s %s: %s", r->method, r->path ? r->path : "?",
		              st.message);
		mall_gw_header(r, "Retry-After", "1");
		mall_gw_respond_error(r, mall_code_http(st.code), st.reason, msg, NULL);
	} else if (reply == NULL) {
		respond_failed(r, &c, &st);
	} else {
		mall_gw_respond_pb(r, reply);
	}
}
