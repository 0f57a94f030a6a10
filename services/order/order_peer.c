/*
 * order_peer.c: the order service's calls to its peers.  Every mutating call
 * carries an idempotency key derived from the order number and the action
 * ("reserve-20261126-000123"), so a retry (ours, the RPC client's, a
 * re-placed order after a crash, the sweep) is answered by the peer's record
 * instead of acting twice.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "order.h"

mall_code
order_peer_failed(mall_status *st, const mall_status *cst, const char *what)
{
	mall_status_clear(st);
	st->code = cst->code;
	snprintf(st->message, sizeof(st->message), "could not %.80s: %.150s", what, cst->message);
	memcpy(st->reason, cst->reason, sizeof(st->reason));
	st->ndetails = cst->ndetails;
	memcpy(st->details, cst->details, sizeof(st->details));
	/* the peer's field errors are about our request, not the caller's */
	if (st->code == MALL_INVALID_ARGUMENT)
		st->code = MALL_INTERNAL;
	return st->code;
}

bool
order_peer_definite(const mall_status *st)
{
	switch (st->code) {
	case MALL_FAILED_PRECONDITION:
	case MALL_NOT_FOUND:
	case MALL_INVALID_ARGUMENT:
	case MALL_ALREADY_EXISTS:
	case MALL_PERMISSION_DENIED:
	case MALL_OUT_OF_RANGE:
		return true;
	default:
		return false;
	}
}

mall_code
order_call(mall_rpc_client *c, const ProtobufCServiceDescriptor *svc, const char *method,
           const ProtobufCMessage *req, ProtobufCMessage **reply, mall_arena *a, const char *trace,
           const char *key, const char *what, mall_status *st)
{
	mall_rpc_call_opts opts = {.trace_id = trace && *trace ? trace : NULL};
	if (key != NULL) {
		opts.idempotency_key = key;
		opts.flags = MALL_RPC_CALL_MUTATING;
	}
	mall_status cst;
	mall_status_clear(&cst);
	*reply = NULL;
	if (mall_rpc_call(c, svc, method, req, reply, a, &opts, &cst) != MALL_OK)
		return order_peer_failed(st, &cst, what);
	return MALL_OK;
}

mall_code
order_release_stock(mall_arena *a, const char *trace, const char *number, mall_status *st)
{
	Mall__Catalog__ReleaseReservationRequest req =
	    MALL__CATALOG__RELEASE_RESERVATION_REQUEST__INIT;
	req.order_id = (char *)number;
	ProtobufCMessage *reply;
	char *key = mall_arena_printf(a, "release-%s", number);
	char *what = mall_arena_printf(a, "release the stock of order %s", number);
	return order_call(order_env_get()->catalog, &mall__catalog__catalog__descriptor,
	                  "ReleaseReservation", &req.base, &reply, a, trace, key, what, st);
}

mall_code
order_release_coupon(mall_arena *a, const char *trace, const char *number, mall_status *st)
{
	Mall__Cart__ReleaseCouponRequest req = MALL__CART__RELEASE_COUPON_REQUEST__INIT;
	req.order_id = (char *)number;
	ProtobufCMessage *reply;
	char *key = mall_arena_printf(a, "release-coupon-%s", number);
	char *what = mall_arena_printf(a, "release the coupon use of order %s", number);
	return order_call(order_env_get()->cart, &mall__cart__cart_service__descriptor,
	                  "ReleaseCoupon", &req.base, &reply, a, trace, key, what, st);
}

Mall__Cart__ClearCartRequest *
order_clear_request(mall_arena *a, const Mall__Order__Order *o, const char *guest_id)
{
	if (o->member_id == 0 && (guest_id == NULL || *guest_id == '\0'))
		return NULL;
	Mall__Cart__CartRef *ref = mall_arena_alloc(a, sizeof(*ref));
	mall__cart__cart_ref__init(ref);
	ref->member_id = o->member_id;
	if (o->member_id == 0)
		ref->guest_id = mall_arena_strdup(a, guest_id);
	Mall__Cart__ClearCartRequest *req = mall_arena_alloc(a, sizeof(*req));
	mall__cart__clear_cart_request__init(req);
	req->cart = ref;
	req->coupon_code = mall_arena_strdup(a, o->coupon_code ? o->coupon_code : "");
	req->lines = mall_arena_alloc(a, (o->n_lines ? o->n_lines : 1) * sizeof(*req->lines));
	for (size_t i = 0; i < o->n_lines; i++) {
		const Mall__Order__OrderLine *l = o->lines[i];
		if (l->gift) /* never a cart line */
			continue;
		size_t j = 0;
		while (j < req->n_lines && req->lines[j]->sku_id != l->sku_id)
			j++;
		if (j == req->n_lines) {
			Mall__Cart__TakenLine *t = mall_arena_alloc(a, sizeof(*t));
			mall__cart__taken_line__init(t);
			t->sku_id = l->sku_id;
			req->lines[req->n_lines++] = t;
		}
		req->lines[j]->quantity += l->quantity;
	}
	if (req->n_lines == 0) /* nothing but gifts: nothing to take */
		return NULL;
	return req;
}

void
order_clear_cart(mall_arena *a, const char *trace, const char *number,
                 const Mall__Cart__ClearCartRequest *req)
{
	if (req == NULL)
		return;
	ProtobufCMessage *reply;
	mall_status st;
	mall_status_clear(&st);
	if (order_call(order_env_get()->cart, &mall__cart__cart_service__descriptor, "ClearCart",
	               &req->base, &reply, a, trace, mall_arena_printf(a, "clear-%s", number),
	               mall_arena_printf(a, "take paid order %s out of its cart", number),
	               &st) != MALL_OK)
		mall_log_warn(trace, "%s", st.message);
}

void
order_attempt_forget(const char *trace, const char *number)
{
	mall_db_conn *c = mall_db_acquire(order_env_get()->side);
	mall_status st;
	mall_status_clear(&st);
	const char *params[1] = {number};
	if (mall_db_exec_cmd(c, &st, "DELETE FROM order_attempt WHERE number = $1", 1, params) < 0)
		mall_log_warn(trace, "placement attempt of order %s left for the sweep: %s", number,
		              st.message);
	mall_db_release(c);
}
