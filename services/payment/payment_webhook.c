/*
 * payment_webhook.c: DepositWebhook, the PG's deposit callback (Toss's
 * DEPOSIT_CALLBACK) for virtual accounts.
 *
 * The callback is unauthenticated HTTP, so nothing in it is believed: its
 * secret must equal the payment's (compared in constant time; a mismatch is
 * PERMISSION_DENIED and changes nothing), and then the payment is re-queried
 * at the PG and what the PG says is recorded, with the payment row locked.
 * A DONE payment that was waiting becomes DONE with payment.approved; a
 * CANCELED one cancelled with payment.cancelled; an EXPIRED one expired with
 * payment.expired.  A state already recorded changes nothing and emits
 * nothing, so a repeated callback (the PG re-sends until it gets a 2xx) is
 * harmless and answers OK.
 */
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "log.h"
#include "payment.h"

static const char *
field(mall_arena *a, json_t *o, const char *k, const char *given)
{
	if (given && *given)
		return given;
	json_t *v = json_object_get(o, k);
	return json_is_string(v) ? mall_arena_strdup(a, json_string_value(v)) : "";
}

static bool
secret_equal(const char *want, const char *got)
{
	size_t n = strlen(want);
	if (n == 0 || strlen(got) != n)
		return false;
	return sodium_memcmp(want, got, n) == 0;
}

mall_code
payment_deposit_webhook(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                        mall_status *st)
{
	const Mall__Payment__DepositWebhookRequest *r =
	    (const Mall__Payment__DepositWebhookRequest *)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *db = mall_rpc_ctx_worker(ctx);
	const char *trace = mall_rpc_ctx_trace_id(ctx);

	json_t *body = NULL;
	if (*r->body) {
		json_error_t err;
		body = json_loads(r->body, 0, &err);
		if (!json_is_object(body)) {
			json_decref(body);
			return mall_status_field(st, "body", "must be a JSON object");
		}
	}
	const char *secret = field(a, body, "secret", r->secret);
	const char *status = field(a, body, "status", r->status);
	const char *order_id = field(a, body, "orderId", r->order_id);
	const char *tx_key = field(a, body, "transactionKey", r->transaction_key);
	json_decref(body);
	if (!payment_order_id_ok(order_id))
		mall_status_field(st, "orderId", "must be an order number");
	if (!*secret)
		mall_status_field(st, "secret", "is required");
	if (st->nfields > 0)
		return st->code;

	payment_row row;
	if (payment_find(db, a, order_id, false, &row, st) != MALL_OK)
		return st->code;
	if (!secret_equal(row.secret, secret)) {
		mall_log_warn(trace, "deposit callback for order %s with a wrong secret: ignored",
		              order_id);
		return mall_status_reason(st, MALL_PERMISSION_DENIED, "webhook_secret_mismatch",
		                          "the deposit callback's secret is not order %s's",
		                          order_id);
	}

	if (mall_db_begin(db, st) != MALL_OK)
		return st->code;
	if (payment_find(db, a, order_id, true, &row, st) != MALL_OK) {
		mall_db_rollback(db);
		return st->code;
	}
	pg_toss_payment *p = NULL;
	if (pg_toss_get(payment_env_get()->pg, a, trace, row.msg->payment_key, &p, st) != MALL_OK) {
		mall_db_rollback(db);
		return st->code;
	}
	if (strcmp(p->order_id, order_id) != 0) {
		mall_db_rollback(db);
		return mall_status_set(st, MALL_INTERNAL,
		                       "the PG holds payment %s as order %s, not %s",
		                       p->payment_key, p->order_id, order_id);
	}
	Mall__Payment__PaymentStatus now = payment_status_from_pg(p->status);
	Mall__Payment__PaymentStatus was = row.msg->status;
	bool change = false;
	switch (now) {
	case MALL__PAYMENT__PAYMENT_STATUS__DONE:
	case MALL__PAYMENT__PAYMENT_STATUS__EXPIRED:
		change = was == MALL__PAYMENT__PAYMENT_STATUS__WAITING_FOR_DEPOSIT ||
		         was == MALL__PAYMENT__PAYMENT_STATUS__CONFIRMING;
		break;
	case MALL__PAYMENT__PAYMENT_STATUS__CANCELLED:
	case MALL__PAYMENT__PAYMENT_STATUS__PARTIALLY_CANCELLED:
		change = was != now && was != MALL__PAYMENT__PAYMENT_STATUS__CANCELLED;
		break;
	default:
		break;
	}
	if (change) {
		int64_t cancelled = 0;
		if (now == MALL__PAYMENT__PAYMENT_STATUS__CANCELLED ||
		    now == MALL__PAYMENT__PAYMENT_STATUS__PARTIALLY_CANCELLED)
			cancelled = p->cancel_amount;
		if (payment_record(db, a, order_id, p, payment_event_type(now), cancelled, &row,
		                   st) != MALL_OK) {
			mall_db_rollback(db);
			return st->code;
		}
		mall_log_info(trace,
		              "deposit callback (%s, transaction %s): payment of order %s is %s",
		              status, tx_key, order_id, p->status);
	}
	if (mall_db_commit(db, st) != MALL_OK)
		return st->code;
	*reply = &row.msg->base;
	return MALL_OK;
}
