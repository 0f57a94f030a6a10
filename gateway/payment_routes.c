/*
 * payment_routes.c: the return from the PG's payment window and the PG's
 * deposit callback, each one call to the payment service
 * (mall.payment.PaymentService):
 *
 *   POST /api/v1/payments/confirm   Confirm {"paymentKey","orderId","amount"}:
 *                                   200 {"order","payment"}
 *   POST /webhooks/payments/toss    DepositWebhook, the body as received:
 *                                   200 {"ok":true}
 *
 * Confirm is what the storefront calls when the window comes back to its
 * successUrl with paymentKey, orderId and amount.  The body takes those three
 * keys and no other, amount a positive JSON integer (400 naming the field
 * otherwise, before any call).  There is no session or ownership check:
 * the payment key is the PG's random name of a payment only the paying
 * browser learnt, and the service confirms nothing unless the PG (or its
 * record of an earlier confirm with that same key) agrees with the order
 * number and the amount, which must be the order's total.  So the session
 * plays no part (a guest, a member, a new tab after the session ended all
 * confirm alike).  Errors come from the service: 400 bad fields, 404 no such
 * order (or the PG knows no such payment: not_found_payment,
 * not_found_payment_session when the window expired), 409 amount_mismatch
 * (the PG was not called), order_not_payable, already_paid and
 * payment_rejected (the PG declined: FAILED_PRECONDITION like every refusal
 * of the request as it stands, so 409, not the unstandardized 402), 503
 * when the service or the PG does not answer (confirming again is safe: the
 * service acts once per order).  amount_mismatch and payment_rejected are
 * answered in our words: the service's message names the order's total,
 * which must not be readable by anyone who can guess an order number, and
 * the PG's rejection text is not for shoppers.
 *
 * On success the answer holds the payment (a virtual account's bank,
 * accountNumber, dueDate included) and the order as the order service has
 * it.  The order's status changes when the order service consumes the
 * payment's event, a moment later: the order is read again whenever the
 * gateway hears an order.status_changed of it (order_watch.c, registered
 * before the Confirm so none is missed) and at least every
 * MALL_GATEWAY_CONFIRM_RECHECK (250 ms), until it leaves pending_payment or
 * MALL_GATEWAY_CONFIRM_WAIT (2 s) has passed, and answered as it is then; a
 * page that still sees pending_payment polls GET /api/v1/orders/{number}.
 * A civetweb thread waits meanwhile.  If the
 * order cannot be read at all the answer is that error (503): the payment
 * is recorded, and confirming again answers it.
 *
 * The deposit callback is not a browser's request: no session, and no CSRF
 * token, since server.c asks one only of requests carrying a session cookie
 * (which the PG never sends).  Its only authority is the payment's secret in
 * the body, which the service checks before it re-queries the PG.  The body
 * (UTF-8, one JSON object, at most MALL_GATEWAY_MAX_BODY) is passed as it
 * came; its Content-Type is not checked, and neither is the query string, so
 * that nothing but the body's truth can cost a deposit.  Answers: 200
 * {"ok":true} when handled (a repeat too), 400 a malformed body, 403 a wrong
 * secret (nothing changes), 404 no payment of that order, 503 with
 * Retry-After when the payment service or the PG does not answer in time, so
 * that the PG sends it again.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "gateway.h"
#include "mall/order.pb-c.h"
#include "mall/payment.pb-c.h"

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- POST /api/v1/payments/confirm ---- */

static const char *const confirm_fields[] = {"paymentKey", "orderId", "amount", NULL};

/* Answers a failed Confirm (see above for the words). */
static void
respond_confirm_failed(mall_gw_req *r, const mall_status *st)
{
	if (st->code == MALL_FAILED_PRECONDITION && strcmp(st->reason, "amount_mismatch") == 0) {
		mall_gw_respond_error(r, 409, "amount_mismatch",
		                      "the amount is not the order's total: nothing was paid",
		                      NULL);
		return;
	}
	if (st->code == MALL_FAILED_PRECONDITION && strcmp(st->reason, "payment_rejected") == 0) {
		mall_gw_respond_error(r, 409, "payment_rejected",
		                      "the payment was declined: nothing was paid; try again "
		                      "with another card or payment method",
		                      NULL);
		return;
	}
	mall_gw_respond_status(r, st, "payment");
}

/* The order number as the order service has it (admin: the payment proved
 * the caller's claim), or NULL with st set.  timeout_ms 0: the default. */
static Mall__Order__Order *
read_order(mall_gw_req *r, const char *number, int64_t timeout_ms, mall_status *st)
{
	Mall__Order__GetOrderRequest req = MALL__ORDER__GET_ORDER_REQUEST__INIT;
	req.number = (char *)number;
	req.admin = true;
	mall_rpc_call_opts opts = {.trace_id = r->trace_id, .timeout_ms = timeout_ms};
	ProtobufCMessage *reply = NULL;
	mall_status_clear(st);
	if (mall_rpc_call(r->gw->order, &mall__order__order_service__descriptor, "GetOrder",
	                  &req.base, &reply, r->arena, &opts, st) != MALL_OK)
		return NULL;
	return (Mall__Order__Order *)reply;
}

/* The PG's failure text is not for shoppers (payment.proto). */
static bool
skip_failure_message(const ProtobufCFieldDescriptor *f, const ProtobufCMessageDescriptor *owner,
                     void *arg)
{
	(void)arg;
	return owner == &mall__payment__payment__descriptor &&
	       strcmp(f->name, "failure_message") == 0;
}

void
mall_gw_handle_payment_confirm(mall_gw_req *r)
{
	ProtobufCMessage *msg = mall_gw_read_fields(r, &mall__payment__confirm_request__descriptor,
	                                            confirm_fields, NULL, NULL, NULL);
	if (msg == NULL)
		return;
	Mall__Payment__ConfirmRequest *req = (Mall__Payment__ConfirmRequest *)msg;
	mall_status st;
	mall_status_clear(&st);
	if (req->payment_key[0] == '\0')
		mall_status_field(&st, "paymentKey", "is required: the successUrl's paymentKey");
	if (req->order_id[0] == '\0')
		mall_status_field(&st, "orderId", "is required: the successUrl's orderId");
	if (req->amount <= 0)
		mall_status_field(&st, "amount",
		                  "must be a positive integer: the successUrl's amount, in won");
	if (st.nfields > 0) {
		mall_gw_respond_status(r, &st, "gateway");
		return;
	}

	int64_t timeout = r->gw->cfg.rpc_timeout_ms > MALL_GW_CONFIRM_TIMEOUT_MS
	                      ? r->gw->cfg.rpc_timeout_ms
	                      : MALL_GW_CONFIRM_TIMEOUT_MS;
	mall_rpc_call_opts opts = {.trace_id = r->trace_id, .timeout_ms = timeout};
	ProtobufCMessage *reply = NULL;
	/* heard from now on: the order may change before the Confirm returns */
	mall_gw_ticket ticket;
	mall_gw_watch_begin(r->gw->watch, &ticket, req->order_id);
	if (mall_rpc_call(r->gw->payment, &mall__payment__payment_service__descriptor, "Confirm",
	                  msg, &reply, r->arena, &opts, &st) != MALL_OK) {
		mall_gw_watch_end(r->gw->watch, &ticket);
		respond_confirm_failed(r, &st);
		return;
	}
	const Mall__Payment__Payment *pay = (const Mall__Payment__Payment *)reply;

	/* wait a little for the order service to take the payment in */
	int64_t deadline = now_ms() + r->gw->cfg.confirm_wait_ms;
	Mall__Order__Order *o = read_order(r, req->order_id, 0, &st);
	while (o != NULL && o->status == MALL__ORDER__ORDER_STATUS__PENDING_PAYMENT) {
		int64_t left = deadline - now_ms();
		if (left <= 0)
			break;
		int64_t recheck = r->gw->cfg.confirm_recheck_ms;
		bool heard =
		    mall_gw_watch_wait(r->gw->watch, &ticket, left < recheck ? left : recheck);
		left = deadline - now_ms();
		if (!heard && left <= 0)
			break; /* the wait is over: answer the last read */
		Mall__Order__Order *again =
		    read_order(r, req->order_id, left > 100 ? left : 100, &st);
		if (again == NULL)
			break; /* answer what was read */
		o = again;
	}
	mall_gw_watch_end(r->gw->watch, &ticket);
	if (o == NULL) {
		mall_gw_respond_status(r, &st, "order");
		return;
	}

	mall_pb_json_opts jopts = {.skip = skip_failure_message};
	char *otext = mall_pb_to_json_text(&o->base, NULL);
	char *ptext = mall_pb_to_json_text_opts(&pay->base, &jopts, NULL);
	if (otext == NULL || ptext == NULL)
		abort(); /* out of memory */
	char *body = mall_arena_printf(r->arena, "{\"order\":%s,\"payment\":%s}", otext, ptext);
	free(otext);
	free(ptext);
	mall_gw_respond(r, 200, MALL_GW_JSON, body, strlen(body));
}

/* ---- POST /webhooks/payments/toss ---- */

void
mall_gw_handle_payment_webhook_toss(mall_gw_req *r)
{
	mall_status st;
	mall_status_clear(&st);
	const char *body = "";
	size_t len = 0;
	if (mall_gw_read_body(r, true, &body, &len, &st) != MALL_OK) {
		if (st.code == MALL_RESOURCE_EXHAUSTED)
			mall_gw_respond_too_large(r);
		else
			mall_gw_respond_status(r, &st, "gateway");
		return;
	}
	/* one JSON object, checked here so that junk costs no call; the fields
	 * are the service's to judge */
	json_error_t je;
	json_t *obj = memchr(body, '\0', len) == NULL
	                  ? json_loadb(body, len, JSON_REJECT_DUPLICATES, &je)
	                  : NULL;
	bool object = json_is_object(obj);
	json_decref(obj);
	if (!object) {
		mall_gw_respond_error(r, 400, "invalid_argument",
		                      "the deposit callback's body must be a JSON object", NULL);
		return;
	}

	Mall__Payment__DepositWebhookRequest req = MALL__PAYMENT__DEPOSIT_WEBHOOK_REQUEST__INIT;
	req.body = (char *)body;
	mall_rpc_call_opts opts = {.trace_id = r->trace_id};
	ProtobufCMessage *reply = NULL;
	if (mall_rpc_call(r->gw->payment, &mall__payment__payment_service__descriptor,
	                  "DepositWebhook", &req.base, &reply, r->arena, &opts, &st) != MALL_OK) {
		/* the PG sends again after anything but a 2xx; too slow is as
		 * unreachable to it */
		if (st.code == MALL_DEADLINE_EXCEEDED)
			st.code = MALL_UNAVAILABLE;
		mall_gw_respond_status(r, &st, "payment");
		return;
	}
	static const char ok[] = "{\"ok\":true}";
	mall_gw_respond(r, 200, MALL_GW_JSON, ok, sizeof(ok) - 1);
}
