/*
 * payment_cancel.c: Cancel, through the PG's cancel API: a waiting virtual
 * account is cancelled, a paid payment refunded in full or in part.
 *
 * It runs in lib/idem.c's transaction for the caller's idempotency key K,
 * with the payment row locked while the PG is called; the PG's
 * Idempotency-Key is "cancel-<orderId>-<K>", so a retry of the call after a
 * timeout (the PG may have acted) gets the PG's first answer instead of a
 * second refund.  The cancel (payment_cancel), the payment's new balance and
 * payment.cancelled commit together.
 *
 * unpaid_only (the order service cancelling an order still awaiting its
 * deposit) closes a waiting virtual account and nothing else: a payment that
 * is paid, or being confirmed, is refused (already_paid), so an unpaid
 * order's cancel can never refund, and one already closed is answered as it
 * is.
 */
#include <string.h>

#include "log.h"
#include "payment.h"

#define CANCEL_INSERT_SQL                                                                          \
	"INSERT INTO payment_cancel (transaction_key, order_number, amount, reason, "              \
	"cancelled_at) "                                                                           \
	"VALUES ($1, $2, $3::bigint, $4, $5) ON CONFLICT (transaction_key) DO NOTHING"

/* unpaid_refused: the PG would not close the waiting virtual account of
 * order (st says why): it may have moved on without telling us (expired at
 * its due date, paid by a deposit whose callback is still on its way).  The
 * PG's payment decides: closed is recorded (with its event) and answered;
 * paid is already_paid (its deposit callback records it); still waiting,
 * the refusal stands. */
static mall_code
unpaid_refused(mall_rpc_ctx *ctx, payment_row *row, const char *order, ProtobufCMessage **reply,
               mall_status *st)
{
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_status refused = *st;
	mall_status_clear(st);
	pg_toss_payment *now;
	if (pg_toss_get(payment_env_get()->pg, a, mall_rpc_ctx_trace_id(ctx),
	                row->msg->payment_key, &now, st) != MALL_OK)
		return st->code;
	Mall__Payment__PaymentStatus s = payment_status_from_pg(now->status);
	if (s == MALL__PAYMENT__PAYMENT_STATUS__DONE ||
	    s == MALL__PAYMENT__PAYMENT_STATUS__PARTIALLY_CANCELLED)
		return mall_status_reason(st, MALL_FAILED_PRECONDITION, "already_paid",
		                          "the virtual account of order %s has been paid into: an "
		                          "unpaid-only cancel does not refund it",
		                          order);
	if (s != MALL__PAYMENT__PAYMENT_STATUS__CANCELLED &&
	    s != MALL__PAYMENT__PAYMENT_STATUS__EXPIRED) {
		*st = refused;
		return st->code;
	}
	if (payment_record(mall_rpc_ctx_worker(ctx), a, order, now, payment_event_type(s), 0, row,
	                   st) != MALL_OK)
		return st->code;
	mall_log_info(mall_rpc_ctx_trace_id(ctx), "payment of order %s: %s at the PG already",
	              order, payment_status_text(s));
	*reply = &row->msg->base;
	return MALL_OK;
}

mall_code
payment_cancel(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
               mall_status *st)
{
	const Mall__Payment__CancelRequest *r = (const Mall__Payment__CancelRequest *)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *db = mall_rpc_ctx_worker(ctx);
	const char *trace = mall_rpc_ctx_trace_id(ctx);

	if (!payment_order_id_ok(r->order_id))
		mall_status_field(st, "orderId", "must be an order number");
	size_t rl = strlen(r->reason);
	if (rl == 0 || rl > 600) /* 200 characters of Korean text in UTF-8 */
		mall_status_field(st, "reason", "must be 1 to 200 characters");
	if (r->amount < 0)
		mall_status_field(st, "amount", "must be 0 (all) or more");
	const Mall__Payment__RefundAccount *ra = r->refund_account;
	if (ra != NULL && (!*ra->bank || !*ra->account_number || !*ra->holder_name))
		mall_status_field(st, "refundAccount", "needs bank, accountNumber and holderName");
	if (st->nfields > 0)
		return st->code;

	payment_row row;
	if (payment_find(db, a, r->order_id, true, &row, st) != MALL_OK)
		return st->code;
	Mall__Payment__PaymentStatus s = row.msg->status;
	if (r->unpaid_only) {
		if (s == MALL__PAYMENT__PAYMENT_STATUS__DONE ||
		    s == MALL__PAYMENT__PAYMENT_STATUS__PARTIALLY_CANCELLED ||
		    s == MALL__PAYMENT__PAYMENT_STATUS__CONFIRMING)
			return mall_status_reason(st, MALL_FAILED_PRECONDITION, "already_paid",
			                          "the payment of order %s is %s: an unpaid-only "
			                          "cancel does not refund it",
			                          r->order_id, payment_status_text(s));
		if (s != MALL__PAYMENT__PAYMENT_STATUS__WAITING_FOR_DEPOSIT) {
			*reply = &row.msg->base; /* closed already: nothing to do */
			return MALL_OK;
		}
	}
	if (s != MALL__PAYMENT__PAYMENT_STATUS__DONE &&
	    s != MALL__PAYMENT__PAYMENT_STATUS__WAITING_FOR_DEPOSIT &&
	    s != MALL__PAYMENT__PAYMENT_STATUS__PARTIALLY_CANCELLED)
		return mall_status_reason(st, MALL_FAILED_PRECONDITION, "not_cancelable",
		                          "the payment of order %s is %s: nothing to cancel",
		                          r->order_id, payment_status_text(s));
	pg_toss_refund_account refund;
	if (ra != NULL) {
		refund.bank = ra->bank;
		refund.account_number = ra->account_number;
		refund.holder_name = ra->holder_name;
	}
	char *key =
	    mall_arena_printf(a, "cancel-%s-%s", r->order_id, mall_rpc_ctx_idempotency_key(ctx));
	pg_toss_payment *p = NULL;
	if (pg_toss_cancel(payment_env_get()->pg, a, trace, row.msg->payment_key, r->reason,
	                   r->amount, ra ? &refund : NULL, key, &p, st) != MALL_OK) {
		if (r->unpaid_only && st->code == MALL_FAILED_PRECONDITION)
			return unpaid_refused(ctx, &row, r->order_id, reply, st);
		return st->code;
	}
	if (*p->cancel_transaction_key) {
		char amount[24];
		snprintf(amount, sizeof(amount), "%lld", (long long)p->cancel_amount);
		const char *params[5] = {p->cancel_transaction_key, r->order_id, amount,
		                         p->cancel_reason, p->canceled_at};
		if (mall_db_exec_cmd(db, st, CANCEL_INSERT_SQL, 5, params) < 0)
			return st->code;
	}
	if (payment_record(db, a, r->order_id, p, "payment.cancelled", p->cancel_amount, &row,
	                   st) != MALL_OK)
		return st->code;
	mall_log_info(trace, "payment of order %s: cancelled %lld won, %s", r->order_id,
	              (long long)p->cancel_amount, p->status);
	*reply = &row.msg->base;
	return MALL_OK;
}
