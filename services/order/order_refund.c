/*
 * order_refund.c: money going back to the shopper.  The refund of a paid
 * order that CancelOrder cancels, RefundOrder (the back office's refunds in
 * part or of the rest), the late refunds of payments approved for orders
 * cancelled first (the refund_due duty the saga writes and the sweep carries
 * out), and what the saga does with a refund it hears of that the order did
 * not record.
 *
 * Every refund is a PaymentService.Cancel made inside the order's
 * transaction, with the order row locked, before anything is written: when
 * the call fails the transaction rolls back and the order is as it was, and
 * the caller is told why.  The call's idempotency key is derived from what
 * the refund is, never made up per attempt:
 *
 *   refund-<number>             CancelOrder of a paid card or easy-pay order
 *   refund-<number>-to-<hash>   ... of a paid virtual account, per refund
 *                               account (a refusal of a mistyped account is
 *                               the PG's stored answer for its key, so
 *                               another account needs another key; the
 *                               whole balance goes once whatever the key)
 *   refund-<number>-by-<K>      RefundOrder with idempotency key K
 *   late-refund-<number>        the sweep's refund of a late payment
 *   close-<number>              the cancel of an order awaiting its deposit:
 *                               its virtual account closed (unpaid_only: a
 *                               deposit that came first is never refunded
 *                               by it, the cancel is refused instead)
 *
 * so a retry after a timeout, or after our commit was lost, is answered from
 * the payment service's record (or the PG's, under the Idempotency-Key the
 * payment service derives from ours) instead of refunding twice.  The
 * reasons sent with them are fixed per key for the same reason: the payment
 * service refuses a key reused with another request.
 *
 * One window is left by that order of work: the payment service refunded,
 * then our call timed out or our commit failed, and nobody retries.  The
 * payment service's payment.cancelled closes it: the saga hands it to
 * order_refund_reported, which brings an order that did not record the
 * refund up to the payment's balance (a paid order refunded in full is
 * cancelled and restocked, as CancelOrder would have).
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "order.h"

#include "mall/payment.pb-c.h"

#define S(x) MALL__ORDER__ORDER_STATUS__##x

/* The PG's cancelReason of the refunds whose key is the order's alone. */
#define CANCEL_REFUND_REASON "주문 취소"
#define LATE_REFUND_REASON "주문 취소 후 승인된 결제 환불"
#define LATE_ACTOR "payment"
#define SWEEP_BATCH 100

#define SET_REFUNDED_SQL                                                                           \
	"UPDATE orders SET refunded = GREATEST(refunded, $2::bigint), updated_at = now() "         \
	"WHERE id = $1"
#define ACCOUNT_HASH_SQL "SELECT left(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 16)"
#define DUE_INSERT_SQL                                                                             \
	"INSERT INTO refund_due (number, payment_key, amount, reason) "                            \
	"VALUES ($1, $2, $3::bigint, $4) ON CONFLICT (number) DO NOTHING"
#define DUE_NEXT_SQL                                                                               \
	"SELECT number, payment_key FROM refund_due WHERE state = 'due' ORDER BY created_at "      \
	"LIMIT 1 OFFSET $1 FOR UPDATE SKIP LOCKED"
#define DUE_CLOSE_SQL                                                                              \
	"UPDATE refund_due SET state = $2, attempts = attempts + 1, last_error = $3, "             \
	"updated_at = now() WHERE number = $1"
#define DUE_FAILED_SQL                                                                             \
	"UPDATE refund_due SET attempts = attempts + 1, last_error = $2, updated_at = now() "      \
	"WHERE number = $1 AND state = 'due'"

static bool
digits(const char *s, size_t min, size_t max)
{
	size_t n = strlen(s);
	if (n < min || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

void
order_check_refund_account(mall_status *st, const Mall__Order__RefundAccount *ra)
{
	if (ra == NULL)
		return;
	/* the PG's rules (tests/fakes/README.md), checked here so the shopper is
	 * told which field before the PG is asked */
	if (!digits(ra->bank, 2, 3))
		mall_status_field(st, "refundAccount.bank",
		                  "must be a bank code of 2 or 3 digits such as 088");
	if (!digits(ra->account_number, 6, 20))
		mall_status_field(st, "refundAccount.accountNumber", "must be 6 to 20 digits");
	mall_check_text(st, "refundAccount.holderName", ra->holder_name, 1, 60);
}

static mall_code
account_required(mall_status *st, const order_row *row)
{
	mall_status_reason(st, MALL_FAILED_PRECONDITION, "refund_account_required",
	                   "order %s was paid by virtual account: a refund needs the bank "
	                   "account to pay it back to (refundAccount: bank, accountNumber, "
	                   "holderName)",
	                   row->number);
	return st->code;
}

/* set_refunded: row's refunded total becomes at least amount. */
static mall_code
set_refunded(mall_db_conn *db, const order_row *row, int64_t amount, mall_status *st)
{
	char id[24], am[24];
	snprintf(id, sizeof(id), "%lld", (long long)row->id);
	snprintf(am, sizeof(am), "%lld", (long long)amount);
	const char *params[2] = {id, am};
	return mall_db_exec_cmd(db, st, SET_REFUNDED_SQL, 2, params) < 0 ? st->code : MALL_OK;
}

/* account_key: the refund key of the cancel of row to account ra: a hash of
 * the account, so the key does not carry the account number into the
 * payment service's and the PG's logs. */
static const char *
account_key(mall_db_conn *db, mall_arena *a, const order_row *row,
            const Mall__Order__RefundAccount *ra, mall_status *st)
{
	const char *params[1] = {
	    mall_arena_printf(a, "%s|%s|%s", ra->bank, ra->account_number, ra->holder_name)};
	PGresult *res = mall_db_exec(db, st, ACCOUNT_HASH_SQL, 1, params);
	if (res == NULL)
		return NULL;
	const char *key =
	    mall_arena_printf(a, "refund-%s-to-%s", row->number, PQgetvalue(res, 0, 0));
	PQclear(res);
	return key;
}

/* payment_refund: PaymentService.Cancel of the payment of order row: amount
 * (0: the whole balance), reason (the PG's cancelReason), ra (a virtual
 * account's refund account, or NULL), with idempotency key.  *refunded is
 * then what the payment says is refunded of the order's total.  On failure
 * st is the payment service's status as order_peer_failed leaves it, except
 * that an uncertain failure (down, timed out: it may have refunded, and a
 * retry with the key finds out) has reason refund_unavailable, and its
 * NOT_FOUND (the order has no payment there: it was marked paid by hand) is
 * FAILED_PRECONDITION payment_not_found: the order exists. */
static mall_code
payment_refund(mall_arena *a, const char *trace, const order_row *row, int64_t amount,
               const char *reason, const Mall__Order__RefundAccount *ra, const char *key,
               int64_t *refunded, mall_status *st)
{
	Mall__Payment__RefundAccount acc = MALL__PAYMENT__REFUND_ACCOUNT__INIT;
	Mall__Payment__CancelRequest req = MALL__PAYMENT__CANCEL_REQUEST__INIT;
	req.order_id = (char *)row->number;
	req.amount = amount;
	req.reason = (char *)reason;
	if (ra != NULL) {
		acc.bank = ra->bank;
		acc.account_number = ra->account_number;
		acc.holder_name = ra->holder_name;
		req.refund_account = &acc;
	}
	ProtobufCMessage *reply;
	const char *what = amount > 0 ? mall_arena_printf(a, "refund %lld won of order %s",
	                                                  (long long)amount, row->number)
	                              : mall_arena_printf(a, "refund order %s", row->number);
	if (order_call(order_env_get()->payment, &mall__payment__payment_service__descriptor,
	               "Cancel", &req.base, &reply, a, trace, key, what, st) != MALL_OK) {
		if (st->code == MALL_NOT_FOUND)
			return mall_status_reason(st, MALL_FAILED_PRECONDITION, "payment_not_found",
			                          "order %s has no payment to refund (it was "
			                          "marked paid by hand): refund it outside mall",
			                          row->number);
		if (!order_peer_definite(st)) /* down, timed out: the gateway says so */
			snprintf(st->reason, sizeof(st->reason), "refund_unavailable");
		return st->code;
	}
	const Mall__Payment__Payment *p = (const Mall__Payment__Payment *)reply;
	int64_t balance = p->balance ? p->balance->amount : 0;
	*refunded = row->total - balance;
	if (*refunded < row->refunded) /* a reply recorded before a later refund */
		*refunded = row->refunded;
	if (*refunded > row->total)
		*refunded = row->total;
	return MALL_OK;
}

/* ---- CancelOrder of a paid order ---- */

mall_code
order_refund_cancel(mall_db_conn *db, mall_arena *a, const char *trace, const order_row *row,
                    const Mall__Order__RefundAccount *ra, const char *actor, const char *reason,
                    mall_status *st)
{
	if (row->total > row->refunded) {
		bool va = row->payment_method == MALL__ORDER__PAYMENT_METHOD__VIRTUAL_ACCOUNT;
		if (va && ra == NULL)
			return account_required(st, row);
		/* a card is refunded to the card: an account given is not sent, so
		 * it cannot change the request the key names */
		const char *key = va ? account_key(db, a, row, ra, st)
		                     : mall_arena_printf(a, "refund-%s", row->number);
		if (key == NULL)
			return st->code;
		int64_t refunded;
		if (payment_refund(a, trace, row, 0, CANCEL_REFUND_REASON, va ? ra : NULL, key,
		                   &refunded, st) != MALL_OK ||
		    set_refunded(db, row, refunded, st) != MALL_OK)
			return st->code;
		mall_log_info(trace, "order %s: %lld won refunded for its cancel", row->number,
		              (long long)(refunded - row->refunded));
	}
	/* restocked (the reservation was committed when it was paid), then recorded */
	return order_change(db, a, trace, row, S(CANCELLED), actor, reason, st);
}

/* ---- CancelOrder of an order awaiting its deposit ---- */

mall_code
order_close_deposit(mall_arena *a, const char *trace, const order_row *row, mall_status *st)
{
	Mall__Payment__CancelRequest req = MALL__PAYMENT__CANCEL_REQUEST__INIT;
	req.order_id = (char *)row->number;
	req.reason = CANCEL_REFUND_REASON;
	req.unpaid_only = true;
	ProtobufCMessage *reply;
	if (order_call(order_env_get()->payment, &mall__payment__payment_service__descriptor,
	               "Cancel", &req.base, &reply, a, trace,
	               mall_arena_printf(a, "close-%s", row->number),
	               mall_arena_printf(a, "close the virtual account of order %s", row->number),
	               st) == MALL_OK)
		return MALL_OK;
	if (st->code == MALL_NOT_FOUND) { /* no payment there: nothing to close */
		mall_status_clear(st);
		return MALL_OK;
	}
	if (st->code == MALL_FAILED_PRECONDITION && strcmp(st->reason, "already_paid") == 0)
		return mall_status_reason(st, MALL_FAILED_PRECONDITION, "deposit_received",
		                          "the deposit for order %s has arrived: the order is "
		                          "being marked paid; cancel it then, with a refund "
		                          "account",
		                          row->number);
	if (!order_peer_definite(st))
		snprintf(st->reason, sizeof(st->reason), "payment_unavailable");
	return st->code;
}

/* ---- RefundOrder ---- */

static bool
refundable_state(Mall__Order__OrderStatus s)
{
	return s == S(PAID) || s == S(PREPARING) || s == S(DELIVERED) || s == S(PARTIALLY_REFUNDED);
}

mall_code
order_refund(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
             mall_status *st)
{
	const Mall__Order__RefundOrderRequest *r = (const void *)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *db = mall_rpc_ctx_worker(ctx);
	const char *trace = mall_rpc_ctx_trace_id(ctx);
	order_check_number(st, r->number);
	if (r->amount <= 0)
		mall_status_field(st, "amount", "must be 1 won or more");
	mall_check_text(st, "reason", r->reason, 1, 200);
	mall_check_text(st, "actor", r->actor, 1, 64);
	order_check_refund_account(st, r->refund_account);
	if (st->nfields > 0)
		return st->code;
	order_row row;
	if (order_lock(db, a, r->number, &row, st) != MALL_OK)
		return st->code;
	if (!refundable_state(row.status))
		return mall_status_reason(st, MALL_FAILED_PRECONDITION, "not_refundable",
		                          "order %s is %s: only a paid, preparing, delivered or "
		                          "partially refunded order can be refunded",
		                          row.number, order_status_text(row.status));
	int64_t left = row.total - row.refunded;
	if (r->amount > left) {
		mall_status_reason(st, MALL_FAILED_PRECONDITION, "exceeds_refundable",
		                   "order %s has %lld won left to refund, not %lld", row.number,
		                   (long long)left, (long long)r->amount);
		mall_status_detail(st, "refundable", left);
		return st->code;
	}
	bool va = row.payment_method == MALL__ORDER__PAYMENT_METHOD__VIRTUAL_ACCOUNT;
	if (va && r->refund_account == NULL)
		return account_required(st, &row);
	const char *key =
	    mall_arena_printf(a, "refund-%s-by-%s", row.number, mall_rpc_ctx_idempotency_key(ctx));
	int64_t refunded;
	if (payment_refund(a, trace, &row, r->amount, r->reason, va ? r->refund_account : NULL, key,
	                   &refunded, st) != MALL_OK ||
	    set_refunded(db, &row, refunded, st) != MALL_OK)
		return st->code;
	Mall__Order__OrderStatus to = refunded >= row.total ? S(REFUNDED) : S(PARTIALLY_REFUNDED);
	const char *why = mall_arena_printf(a, "%s (%lld won refunded, %lld in all)", r->reason,
	                                    (long long)r->amount, (long long)refunded);
	if (order_record_change(db, a, &row, to, r->actor, why, st) != MALL_OK)
		return st->code;
	mall_log_info(trace, "order %s: %lld won refunded by %s, %lld of %lld in all: %s",
	              row.number, (long long)r->amount, r->actor, (long long)refunded,
	              (long long)row.total, order_status_text(to));
	Mall__Order__Order *o;
	if (order_load(db, a, row.id, &o, st) != MALL_OK)
		return st->code;
	*reply = &o->base;
	return MALL_OK;
}

/* ---- what the saga hears ---- */

mall_code
order_refund_due_add(mall_db_conn *db, mall_arena *a, const order_row *row, const char *payment_key,
                     int64_t amount, mall_status *st)
{
	char am[24];
	snprintf(am, sizeof(am), "%lld", (long long)amount);
	const char *reason = mall_arena_printf(
	    a, "payment %s approved for a cancelled order: to be refunded", payment_key);
	const char *params[4] = {row->number, payment_key, am, reason};
	if (mall_db_exec_cmd(db, st, DUE_INSERT_SQL, 4, params) < 0)
		return st->code;
	return order_note(db, row, LATE_ACTOR, reason, st);
}

mall_code
order_refund_reported(mall_db_conn *db, mall_arena *a, const order_row *row,
                      const Mall__Payment__PaymentEvent *p, mall_status *st)
{
	int64_t balance = p->balance ? p->balance->amount : 0;
	int64_t refunded = row->total - balance;
	if (row->status == S(CANCELLED) || row->status == S(REFUNDED) ||
	    refunded <= row->refunded || refunded > row->total) {
		/* the usual case: CancelOrder, RefundOrder or the late refund
		 * recorded it in the transaction that asked for it */
		mall_log_info(NULL,
		              "order %s is %s, %lld won refunded: payment.cancelled of payment "
		              "%s (balance %lld) changes nothing",
		              row->number, order_status_text(row->status), (long long)row->refunded,
		              p->payment_key, (long long)balance);
		return MALL_OK;
	}
	/* the payment service refunded and the order did not record it: the
	 * commit of the call that asked was lost, or someone refunded at the
	 * payment service directly */
	mall_log_warn(NULL,
	              "order %s: payment %s has %lld won refunded in all, the order had recorded "
	              "%lld: recording it",
	              row->number, p->payment_key, (long long)refunded, (long long)row->refunded);
	if (set_refunded(db, row, refunded, st) != MALL_OK)
		return st->code;
	if (balance == 0 && (row->status == S(PAID) || row->status == S(PREPARING)))
		/* as CancelOrder would have: the stock goes back, nothing ships */
		return order_change(
		    db, a, NULL, row, S(CANCELLED), LATE_ACTOR,
		    mall_arena_printf(a, "payment %s refunded in full", p->payment_key), st);
	Mall__Order__OrderStatus to = balance == 0 ? S(REFUNDED) : S(PARTIALLY_REFUNDED);
	const char *why = mall_arena_printf(a, "payment %s refunded %lld won in all",
	                                    p->payment_key, (long long)refunded);
	if (order_transition_ok(row->status, to))
		return order_record_change(db, a, row, to, LATE_ACTOR, why, st);
	return order_note(db, row, LATE_ACTOR, why, st); /* shipped: it stays shipped */
}

/* ---- the sweep: late refunds ---- */

/* late_one: refunds the oldest due late payment nobody holds, skipping the
 * first `skip` (ones that failed this pass).  1: one handled, 0: none left,
 * -1: it failed (it stays due, for the next pass). */
static int
late_one(mall_db_conn *db, mall_arena *a, int skip)
{
	mall_status st;
	mall_status_clear(&st);
	PGresult *res = order_sweep_next(db, DUE_NEXT_SQL, skip);
	if (res == NULL)
		return 0;
	const char *number = mall_arena_strdup(a, PQgetvalue(res, 0, 0));
	const char *payment_key = mall_arena_strdup(a, PQgetvalue(res, 0, 1));
	PQclear(res);
	order_row row;
	if (order_lock(db, a, number, &row, &st) != MALL_OK)
		goto failed;
	mall_status pst;
	mall_status_clear(&pst);
	int64_t refunded = 0;
	const char *state, *note;
	if (row.status != S(CANCELLED)) {
		/* the saga writes a duty only for a cancelled order, and a cancelled
		 * one stays so: refunding anything else would be wrong */
		snprintf(pst.message, sizeof(pst.message), "order %s is %s, not cancelled", number,
		         order_status_text(row.status));
		pst.code = MALL_FAILED_PRECONDITION;
	} else if (row.payment_method == MALL__ORDER__PAYMENT_METHOD__VIRTUAL_ACCOUNT) {
		/* the PG pays it back by transfer, to an account only the shopper
		 * can name: the back office asks them */
		mall_status_reason(&pst, MALL_FAILED_PRECONDITION, "refund_account_required",
		                   "a virtual account is refunded to an account the shopper names");
	} else {
		payment_refund(a, NULL, &row, 0, LATE_REFUND_REASON, NULL,
		               mall_arena_printf(a, "late-refund-%s", number), &refunded, &pst);
	}
	if (pst.code == MALL_OK) {
		state = "done";
		note = mall_arena_printf(a,
		                         "payment %s refunded automatically (%lld won): it was "
		                         "approved after the order was cancelled",
		                         payment_key, (long long)(refunded - row.refunded));
		if (set_refunded(db, &row, refunded, &st) != MALL_OK)
			goto failed;
	} else if (order_peer_definite(&pst)) {
		state = "refused";
		note = mall_arena_printf(a,
		                         "payment %s could not be refunded automatically (%s): "
		                         "refund it from the back office",
		                         payment_key, pst.reason[0] ? pst.reason : pst.message);
	} else {
		st = pst;
		goto failed;
	}
	const char *closed[3] = {number, state, pst.code == MALL_OK ? "" : pst.message};
	if (mall_db_exec_cmd(db, &st, DUE_CLOSE_SQL, 3, closed) < 0 ||
	    order_note(db, &row, LATE_ACTOR, note, &st) != MALL_OK ||
	    mall_db_commit(db, &st) != MALL_OK)
		goto failed;
	if (pst.code == MALL_OK)
		mall_log_info(NULL, "order %s: late payment %s refunded", number, payment_key);
	else
		mall_log_error(NULL,
		               "order %s: late payment %s could not be refunded automatically: %s "
		               "(refund it from the back office)",
		               number, payment_key, pst.message);
	return 1;

failed:
	mall_db_rollback(db);
	mall_log_warn(NULL, "order sweep: could not refund the late payment of order %s: %s",
	              number, st.message);
	const char *fp[2] = {number, st.message};
	mall_status ust;
	mall_status_clear(&ust);
	mall_db_exec_cmd(db, &ust, DUE_FAILED_SQL, 2, fp); /* for ops: best effort */
	return -1;
}

int
order_refund_sweep(mall_db_conn *db, mall_arena *a)
{
	int handled = 0, failed = 0;
	for (int i = 0; i < SWEEP_BATCH; i++) {
		int rc = late_one(db, a, failed);
		mall_arena_reset(a);
		if (rc == 0)
			break;
		if (rc < 0)
			failed++;
		else
			handled++;
	}
	return handled;
}
