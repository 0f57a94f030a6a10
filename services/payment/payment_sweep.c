/*
 * payment_sweep.c: the recovery sweep.  Confirm commits the payment row as
 * 'confirming' before it calls the PG; if the service dies after that (before
 * the PG was asked, while it answered, or before the answer was committed)
 * and the shopper never confirms again, the row would stay 'confirming' and a
 * payment the PG approved would never reach the order.  The sweep, a thread
 * of every instance (main.c), settles such rows once they are older than a
 * grace period, with payment_settle, the code Confirm runs:
 *
 *   - the order still awaits payment of this amount: the confirm is sent
 *     again with the SAME Idempotency-Key, so a confirm the PG executed is
 *     answered from its idempotency record (never executed twice) and one it
 *     never received is executed now, as the shopper asked;
 *   - otherwise (the order was cancelled meanwhile, or is gone): the payment
 *     is only looked up (GET /v1/payments/{paymentKey}), so a payment the
 *     order no longer wants is never confirmed, and one the PG did confirm is
 *     recorded anyway (its payment.approved reaches the order service, which
 *     notes a payment for a cancelled order to be refunded).
 *
 * Either way the outcome is recorded with its event as Confirm records it; a
 * definite refusal, or a payment the PG never confirmed, becomes 'failed'
 * with payment.failed.  A PG that does not answer leaves the row for the next
 * pass.
 *
 * Several instances sweep at once safely: each row is taken in its own
 * transaction with FOR UPDATE SKIP LOCKED and still 'confirming' (a row that
 * a live Confirm or another sweep holds is skipped, one settled meanwhile is
 * no longer a candidate), and the lock is held while the PG is asked, as
 * Confirm holds it.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "payment.h"

#define SWEEP_BATCH 50

#define CANDIDATES_SQL                                                                             \
	"SELECT order_number FROM payment WHERE status = 'confirming' AND updated_at < now() - "   \
	"make_interval(secs => $1::float8 / 1000) ORDER BY updated_at LIMIT $2"
#define TAKE_SQL                                                                                   \
	"SELECT 1 FROM payment WHERE order_number = $1 AND status = 'confirming' AND "             \
	"updated_at < now() - make_interval(secs => $2::float8 / 1000) "                           \
	"FOR UPDATE SKIP LOCKED"

/* settle_one: settles the payment of number if it is still a candidate and
 * nobody holds it.  1: settled, 0: not ours (held, or settled meanwhile),
 * -1: the outcome is still unknown (tried again next pass). */
static int
settle_one(mall_db_conn *db, mall_arena *a, const char *number, const char *grace)
{
	mall_status st;
	mall_status_clear(&st);
	/* the order first, outside the transaction: no row lock waits on the
	 * order service */
	Mall__Order__Order *o = NULL;
	if (payment_load_order(a, NULL, number, &o, &st) != MALL_OK) {
		if (st.code != MALL_NOT_FOUND) {
			mall_log_warn(NULL, "payment sweep: %s", st.message);
			return -1;
		}
		o = NULL;
		mall_status_clear(&st);
	}

	if (mall_db_begin(db, &st) != MALL_OK) {
		mall_log_warn(NULL, "payment sweep: %s", st.message);
		return -1;
	}
	const char *params[2] = {number, grace};
	PGresult *res = mall_db_exec(db, &st, TAKE_SQL, 2, params);
	if (res == NULL || PQntuples(res) == 0) {
		if (res == NULL)
			mall_log_warn(NULL, "payment sweep: order %s: %s", number, st.message);
		PQclear(res);
		mall_db_rollback(db);
		return res == NULL ? -1 : 0;
	}
	PQclear(res);
	payment_row row;
	if (payment_find(db, a, number, true, &row, &st) != MALL_OK) {
		mall_db_rollback(db);
		mall_log_warn(NULL, "payment sweep: %s", st.message);
		return -1;
	}
	const Mall__Payment__Payment *m = row.msg;
	payment_attempt at = {.order_id = m->order_id,
	                      .payment_key = m->payment_key,
	                      .amount = m->amount->amount,
	                      .currency = m->amount->currency};
	bool payable = o != NULL && o->status == MALL__ORDER__ORDER_STATUS__PENDING_PAYMENT &&
	               o->total != NULL && o->total->amount == at.amount;
	payment_row out;
	payment_settle(db, a, NULL, &at, payable, true, &out, &st);
	if (out.msg == NULL) {
		mall_log_warn(NULL,
		              "payment sweep: payment %s of order %s is still unsettled (%s): %s",
		              at.payment_key, number, payable ? "confirm sent again" : "looked up",
		              st.message);
		return -1;
	}
	mall_log_info(NULL, "payment sweep: payment %s of order %s left confirming is %s (%s)",
	              at.payment_key, number, payment_status_text(out.msg->status),
	              payable ? "confirm sent again" : "looked up: the order is not payable");
	return 1;
}

int
payment_sweep_once(mall_db_conn *db, int64_t grace_ms, bool (*stopping)(void))
{
	mall_status st;
	mall_status_clear(&st);
	char grace[24], lim[16];
	snprintf(grace, sizeof(grace), "%lld", (long long)grace_ms);
	snprintf(lim, sizeof(lim), "%d", SWEEP_BATCH);
	const char *params[2] = {grace, lim};
	PGresult *res = mall_db_exec(db, &st, CANDIDATES_SQL, 2, params);
	if (res == NULL) {
		mall_log_warn(NULL, "payment sweep: %s", st.message);
		return 0;
	}
	mall_arena *a = mall_arena_new();
	int n = PQntuples(res), settled = 0;
	for (int i = 0; i < n && !(stopping && stopping()); i++) {
		if (settle_one(db, a, PQgetvalue(res, i, 0), grace) > 0)
			settled++;
		mall_arena_reset(a);
	}
	PQclear(res);
	mall_arena_free(a);
	return settled;
}
