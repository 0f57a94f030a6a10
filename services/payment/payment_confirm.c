/*
 * payment_confirm.c: Confirm, the server's half of the PG's payment window.
 *
 * The order's total is the price: the amount the browser brought back must
 * equal it, or the PG is not called at all (a tampered amount).  Then, per
 * order number:
 *
 *   1. the payment row is inserted with status 'confirming' and committed
 *      (INSERT ... ON CONFLICT DO NOTHING): it exists before the PG is called;
 *   2. a transaction locks it (SELECT ... FOR UPDATE) and holds the lock while
 *      the PG is called, so concurrent confirms of one order wait and then
 *      find the outcome recorded;
 *   3. a recorded outcome is answered as it is (a retry, a duplicate);
 *   4. else the PG's confirm is sent with the Idempotency-Key
 *      "confirm-<orderId>-<paymentKey>": a retry after a timeout or a crash
 *      (which may have left the PG's answer unread) sends the same key, and
 *      the PG replays its first answer instead of confirming again.  The
 *      payment key is part of the key because a shopper may open the window
 *      again after a rejection: Toss replays a key's first answer whatever
 *      the body, so a key of the order alone would replay the rejection;
 *   5. the answer, the payment's new state and its event are committed
 *      together.
 *
 * If another payment of the order was confirmed first (our record lost by a
 * crash while a new window was opened), the PG answers DUPLICATED_ORDER_ID or
 * ALREADY_PROCESSED_PAYMENT; the order's payment is then looked up at the PG
 * and recorded if it is the order's.
 *
 * Steps 4 and 5 are payment_settle, which the recovery sweep
 * (payment_sweep.c) runs too on a row a crash left 'confirming': the same
 * confirm with the same key, recorded the same way, so a payment settled by
 * the sweep cannot differ from one the shopper's retry would have settled.
 */
#include <string.h>

#include "log.h"
#include "payment.h"

#define INSERT_SQL                                                                                 \
	"INSERT INTO payment (order_number, payment_key, status, amount, currency) "               \
	"VALUES ($1, $2, 'confirming', $3::bigint, $4) ON CONFLICT (order_number) DO NOTHING"
#define TAKE_OVER_SQL                                                                              \
	"UPDATE payment SET payment_key = $2, status = 'confirming', amount = $3::bigint, "        \
	"failure_code = '', failure_message = '', updated_at = now() WHERE order_number = $1"

static pg_toss_payment *
blank_payment(mall_arena *a)
{
	pg_toss_payment *p = mall_arena_alloc(a, sizeof(*p));
	const char **s[] = {&p->payment_key,
	                    &p->order_id,
	                    &p->method,
	                    &p->status,
	                    &p->currency,
	                    &p->approved_at,
	                    &p->last_transaction_key,
	                    &p->va_bank,
	                    &p->va_account_number,
	                    &p->va_customer_name,
	                    &p->va_due_date,
	                    &p->secret,
	                    &p->easy_pay_provider,
	                    &p->card_company,
	                    &p->card_number,
	                    &p->card_approve_no,
	                    &p->failure_code,
	                    &p->failure_message,
	                    &p->cancel_transaction_key,
	                    &p->cancel_reason,
	                    &p->canceled_at};
	for (size_t i = 0; i < sizeof(s) / sizeof(s[0]); i++)
		*s[i] = "";
	return p;
}

mall_code
payment_load_order(mall_arena *a, const char *trace, const char *number, Mall__Order__Order **out,
                   mall_status *st)
{
	Mall__Order__GetOrderRequest req = MALL__ORDER__GET_ORDER_REQUEST__INIT;
	req.number = (char *)number;
	req.admin = true;
	mall_rpc_call_opts opts = {.trace_id = trace && *trace ? trace : NULL};
	mall_status cst;
	mall_status_clear(&cst);
	ProtobufCMessage *reply = NULL;
	if (mall_rpc_call(payment_env_get()->order, &mall__order__order_service__descriptor,
	                  "GetOrder", &req.base, &reply, a, &opts, &cst) != MALL_OK) {
		if (cst.code == MALL_NOT_FOUND)
			return mall_status_set(st, MALL_NOT_FOUND, "order %s not found", number);
		mall_code c = cst.code == MALL_INVALID_ARGUMENT ? MALL_INTERNAL : cst.code;
		return mall_status_set(st, c, "could not read order %s: %.180s", number,
		                       cst.message);
	}
	*out = (Mall__Order__Order *)reply;
	return MALL_OK;
}

/* pg_code: a status reason ("reject_card_payment") as the PG's code
 * ("REJECT_CARD_PAYMENT"), the form failure_code is stored in. */
static char *
pg_code(mall_arena *a, const char *reason)
{
	char *code = mall_arena_strdup(a, reason);
	for (char *c = code; *c; c++)
		if (*c >= 'a' && *c <= 'z')
			*c = (char)(*c - 'a' + 'A');
	return code;
}

/* record_failure: the attempt's payment as failed (code, message) with
 * payment.failed, in the open transaction; *row as stored. */
static mall_code
record_failure(mall_db_conn *db, mall_arena *a, const payment_attempt *at, const char *code,
               const char *message, payment_row *row, mall_status *st)
{
	pg_toss_payment *f = blank_payment(a);
	f->payment_key = at->payment_key;
	f->order_id = at->order_id;
	f->status = "ABORTED";
	f->total_amount = at->amount;
	f->currency = at->currency;
	f->failure_code = code;
	f->failure_message = message;
	return payment_record(db, a, at->order_id, f, "payment.failed", 0, row, st);
}

static mall_code
fail(mall_db_conn *db, mall_status *st)
{
	mall_db_rollback(db);
	return st->code;
}

/* settle_lookup: the sweep's last word on a payment (payment_settle with
 * resolve): what the PG holds of the payment key is recorded, and a payment
 * the PG never confirmed (still IN_PROGRESS, expired unconfirmed, unknown, of
 * another order) becomes failed, with refusal (the confirm's definite
 * refusal, "" if none) as its code, so the row leaves 'confirming' for good.
 * Only an unknown outcome (the PG unreachable) records nothing. */
static mall_code
settle_lookup(mall_db_conn *db, mall_arena *a, const char *trace, const payment_attempt *at,
              const char *refusal, payment_row *out, mall_status *st)
{
	pg_toss_payment *p = NULL;
	mall_status pst;
	mall_status_clear(&pst);
	mall_code rc = pg_toss_get(payment_env_get()->pg, a, trace, at->payment_key, &p, &pst);
	const char *code = *refusal ? pg_code(a, refusal) : "NOT_CONFIRMED";
	const char *why;
	if (rc == MALL_NOT_FOUND) {
		code = pg_code(a, pst.reason);
		why = mall_arena_printf(a, "the PG knows no payment %s", at->payment_key);
	} else if (rc != MALL_OK) {
		mall_db_rollback(db);
		*st = pst;
		return st->code;
	} else if (strcmp(p->order_id, at->order_id) != 0 || p->total_amount != at->amount) {
		why = mall_arena_printf(a, "the PG holds payment %s as order %s of %lld, not %lld",
		                        p->payment_key, p->order_id, (long long)p->total_amount,
		                        (long long)at->amount);
	} else {
		Mall__Payment__PaymentStatus s = payment_status_from_pg(p->status);
		bool confirmed =
		    payment_status_final(s) || s == MALL__PAYMENT__PAYMENT_STATUS__FAILED;
		if (s == MALL__PAYMENT__PAYMENT_STATUS__EXPIRED && !p->has_virtual_account)
			confirmed = false; /* the confirm window passed, not an account's */
		if (confirmed) {
			int64_t cancelled = 0;
			if (s == MALL__PAYMENT__PAYMENT_STATUS__CANCELLED ||
			    s == MALL__PAYMENT__PAYMENT_STATUS__PARTIALLY_CANCELLED)
				cancelled = p->total_amount - p->balance_amount;
			if (payment_record(db, a, at->order_id, p, payment_event_type(s), cancelled,
			                   out, st) != MALL_OK ||
			    mall_db_commit(db, st) != MALL_OK) {
				mall_db_rollback(db);
				out->msg = NULL;
				return st->code;
			}
			mall_log_info(trace, "payment %s of order %s: the PG holds it as %s",
			              p->payment_key, at->order_id, p->status);
			return MALL_OK;
		}
		why = mall_arena_printf(a, "the PG never confirmed payment %s (it is %s)",
		                        at->payment_key, p->status);
	}
	if (record_failure(db, a, at, code, why, out, st) != MALL_OK ||
	    mall_db_commit(db, st) != MALL_OK) {
		mall_db_rollback(db);
		out->msg = NULL;
		return st->code;
	}
	mall_log_info(trace, "payment %s of order %s failed: %s (%s)", at->payment_key,
	              at->order_id, code, why);
	return MALL_OK;
}

mall_code
payment_settle(mall_db_conn *db, mall_arena *a, const char *trace, const payment_attempt *at,
               bool confirm, bool resolve, payment_row *out, mall_status *st)
{
	const payment_env *env = payment_env_get();
	out->msg = NULL;
	out->secret = "";
	if (!confirm)
		return settle_lookup(db, a, trace, at, "", out, st);

	char *key = mall_arena_printf(a, "confirm-%s-%s", at->order_id, at->payment_key);
	pg_toss_payment *p = NULL;
	mall_status pst;
	mall_status_clear(&pst);
	mall_code rc = pg_toss_confirm(env->pg, a, trace, at->payment_key, at->order_id, at->amount,
	                               key, &p, &pst);
	if (rc == MALL_OK) {
		if (strcmp(p->order_id, at->order_id) != 0 || p->total_amount != at->amount) {
			mall_status_set(
			    st, MALL_INTERNAL,
			    "the PG confirmed payment %s as order %s of %lld, not order %s of "
			    "%lld",
			    p->payment_key, p->order_id, (long long)p->total_amount, at->order_id,
			    (long long)at->amount);
			mall_log_error(trace, "%s", st->message);
			return fail(db, st);
		}
		Mall__Payment__PaymentStatus s = payment_status_from_pg(p->status);
		if (payment_record(db, a, at->order_id, p, payment_event_type(s), 0, out, st) !=
		        MALL_OK ||
		    mall_db_commit(db, st) != MALL_OK) {
			out->msg = NULL;
			return fail(db, st);
		}
		mall_log_info(trace, "payment %s of order %s: %s (%lld won)", p->payment_key,
		              at->order_id, p->status, (long long)p->total_amount);
		return MALL_OK;
	}
	if (rc == MALL_FAILED_PRECONDITION && strncmp(pst.reason, "reject_", 7) == 0) {
		/* a rejection: recorded, with payment.failed, and answered as an error */
		char *code = pg_code(a, pst.reason);
		if (record_failure(db, a, at, code, pst.message, out, st) != MALL_OK ||
		    mall_db_commit(db, st) != MALL_OK) {
			out->msg = NULL;
			return fail(db, st);
		}
		mall_log_info(trace, "payment %s of order %s rejected by the PG: %s",
		              at->payment_key, at->order_id, code);
		return mall_status_reason(st, MALL_FAILED_PRECONDITION, "payment_rejected",
		                          "the PG rejected the payment of order %s: %.180s",
		                          at->order_id, pst.message);
	}
	if (rc == MALL_FAILED_PRECONDITION &&
	    (strcmp(pst.reason, "duplicated_order_id") == 0 ||
	     strcmp(pst.reason, "already_processed_payment") == 0)) {
		/* another confirm of the order acted: what does the PG hold? */
		pg_toss_payment *q = NULL;
		mall_status qst;
		mall_status_clear(&qst);
		if (pg_toss_get_by_order(env->pg, a, trace, at->order_id, &q, &qst) == MALL_OK &&
		    strcmp(q->order_id, at->order_id) == 0 && q->total_amount == at->amount &&
		    payment_status_final(payment_status_from_pg(q->status))) {
			Mall__Payment__PaymentStatus s = payment_status_from_pg(q->status);
			if (payment_record(db, a, at->order_id, q, payment_event_type(s), 0, out,
			                   st) != MALL_OK ||
			    mall_db_commit(db, st) != MALL_OK) {
				out->msg = NULL;
				return fail(db, st);
			}
			mall_log_warn(trace,
			              "payment %s of order %s was confirmed before: recorded as %s",
			              q->payment_key, at->order_id, q->status);
			if (strcmp(q->payment_key, at->payment_key) != 0)
				return mall_status_reason(
				    st, MALL_FAILED_PRECONDITION, "already_paid",
				    "order %s was paid already (with another payment)",
				    at->order_id);
			return MALL_OK;
		}
		if (resolve)
			return settle_lookup(db, a, trace, at, pst.reason, out, st);
		mall_status_reason(st, MALL_FAILED_PRECONDITION, "already_processed", "%.200s",
		                   pst.message);
		return fail(db, st);
	}
	/* a definite refusal (unknown key, expired window, another amount): the
	 * sweep settles the row by what the PG holds */
	if (resolve && (rc == MALL_NOT_FOUND || rc == MALL_FAILED_PRECONDITION))
		return settle_lookup(db, a, trace, at, pst.reason, out, st);
	/* anything else (PG down, timeout), or a refusal the shopper is told of:
	 * nothing recorded but the 'confirming' row; a retry sends the same
	 * Idempotency-Key */
	mall_db_rollback(db);
	*st = pst;
	if (rc == MALL_NOT_FOUND)
		st->code = MALL_NOT_FOUND;
	mall_log_warn(trace, "%s", st->message);
	return st->code;
}

mall_code
payment_confirm(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                mall_status *st)
{
	const Mall__Payment__ConfirmRequest *r = (const Mall__Payment__ConfirmRequest *)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *db = mall_rpc_ctx_worker(ctx);
	const char *trace = mall_rpc_ctx_trace_id(ctx);

	size_t klen = strlen(r->payment_key);
	if (klen == 0 || klen > 200)
		mall_status_field(st, "paymentKey", "must be 1 to 200 characters");
	for (size_t i = 0; i < klen; i++)
		if ((unsigned char)r->payment_key[i] <= ' ' || r->payment_key[i] == 0x7f) {
			mall_status_field(st, "paymentKey",
			                  "must not hold spaces or control characters");
			break;
		}
	if (!payment_order_id_ok(r->order_id))
		mall_status_field(st, "orderId", "must be an order number");
	if (st->nfields > 0)
		return st->code;

	Mall__Order__Order *o = NULL;
	if (payment_load_order(a, trace, r->order_id, &o, st) != MALL_OK)
		return st->code;
	int64_t total = o->total ? o->total->amount : 0;
	if (r->amount <= 0 || r->amount != total) {
		mall_status_reason(st, MALL_FAILED_PRECONDITION, "amount_mismatch",
		                   "the amount %lld is not the total %lld of order %s",
		                   (long long)r->amount, (long long)total, r->order_id);
		mall_status_detail(st, "orderTotal", total);
		mall_log_warn(trace, "%s (payment key %s)", st->message, r->payment_key);
		return st->code;
	}
	const char *currency =
	    o->total->currency && *o->total->currency ? o->total->currency : "KRW";

	char amount[24];
	snprintf(amount, sizeof(amount), "%lld", (long long)r->amount);
	const char *ins[4] = {r->order_id, r->payment_key, amount, currency};
	if (mall_db_exec_cmd(db, st, INSERT_SQL, 4, ins) < 0)
		return st->code;

	if (mall_db_begin(db, st) != MALL_OK)
		return st->code;
	payment_row row;
	if (payment_find(db, a, r->order_id, true, &row, st) != MALL_OK)
		return fail(db, st);
	Mall__Payment__Payment *cur = row.msg;
	bool same_key = strcmp(cur->payment_key, r->payment_key) == 0;
	if (payment_status_final(cur->status)) {
		if (!same_key) {
			mall_status_reason(st, MALL_FAILED_PRECONDITION, "already_paid",
			                   "order %s was paid already (with another payment)",
			                   r->order_id);
			return fail(db, st);
		}
		if (mall_db_commit(db, st) != MALL_OK)
			return st->code;
		*reply = &row.msg->base;
		return MALL_OK;
	}
	if (cur->status == MALL__PAYMENT__PAYMENT_STATUS__FAILED && same_key) {
		mall_status_reason(st, MALL_FAILED_PRECONDITION, "payment_rejected",
		                   "the PG rejected the payment of order %s: %s %.120s",
		                   r->order_id, cur->failure_code, cur->failure_message);
		return fail(db, st);
	}
	if (o->status != MALL__ORDER__ORDER_STATUS__PENDING_PAYMENT) {
		mall_status_reason(st, MALL_FAILED_PRECONDITION, "order_not_payable",
		                   "order %s is not awaiting payment", r->order_id);
		return fail(db, st);
	}
	if (!same_key || cur->status == MALL__PAYMENT__PAYMENT_STATUS__FAILED) {
		const char *p[3] = {r->order_id, r->payment_key, amount};
		if (mall_db_exec_cmd(db, st, TAKE_OVER_SQL, 3, p) < 0)
			return fail(db, st);
	}

	payment_attempt at = {.order_id = r->order_id,
	                      .payment_key = r->payment_key,
	                      .amount = r->amount,
	                      .currency = currency};
	payment_row done;
	if (payment_settle(db, a, trace, &at, true, false, &done, st) != MALL_OK)
		return st->code;
	*reply = &done.msg->base;
	return MALL_OK;
}
