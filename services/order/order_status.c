/*
 * order_status.c: an order's life after placing.  CancelOrder (the shopper
 * or the back office; a paid order's refund is order_refund.c's),
 * ChangeStatus (the back office, logistics), the side effects of each change
 * (order_change, which the payment saga in order_saga.c shares) and the
 * sweep that cancels orders left unpaid past their window, has late payments
 * refunded (order_refund.c) and gives back what abandoned placements took.
 *
 * Every change locks the order row (FOR UPDATE), checks the transition
 * table, makes the peer's side of it first (release, commit or restock the
 * reservation; release the coupon use), then records the state, a history
 * entry and the events in the same transaction.  The peer calls are
 * idempotent by order number, so when our commit fails after them a retry
 * (or the sweep, for an order left open) repeats them harmlessly.
 */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "order.h"

/* An attempt without a reservation is kept this long, in case a
 * ReserveStock of the dead placement is still on its way to the catalog. */
#define ATTEMPT_FORGET_SQL_INTERVAL "10 minutes"
#define SWEEP_BATCH 100

#define S(x) MALL__ORDER__ORDER_STATUS__##x

bool
order_transition_ok(Mall__Order__OrderStatus from, Mall__Order__OrderStatus to)
{
	switch (from) {
	case S(PENDING_PAYMENT):
		return to == S(AWAITING_DEPOSIT) || to == S(PAID) || to == S(CANCELLED);
	case S(AWAITING_DEPOSIT):
		return to == S(PAID) || to == S(CANCELLED);
	case S(PAID):
		return to == S(PREPARING) || to == S(CANCELLED) || to == S(REFUNDED) ||
		       to == S(PARTIALLY_REFUNDED);
	case S(PREPARING):
		return to == S(SHIPPED) || to == S(CANCELLED) || to == S(REFUNDED) ||
		       to == S(PARTIALLY_REFUNDED);
	case S(SHIPPED):
		return to == S(DELIVERED);
	case S(DELIVERED):
		return to == S(REFUNDED) || to == S(PARTIALLY_REFUNDED);
	case S(PARTIALLY_REFUNDED):
		return to == S(REFUNDED) || to == S(PARTIALLY_REFUNDED);
	default:
		return false;
	}
}

static bool
is_open(Mall__Order__OrderStatus s)
{
	return s == S(PENDING_PAYMENT) || s == S(AWAITING_DEPOSIT);
}

static mall_code
illegal(mall_status *st, const order_row *row, Mall__Order__OrderStatus to)
{
	const char *to_text = order_status_text(to);
	return mall_status_reason(
	    st, MALL_FAILED_PRECONDITION, "illegal_transition", "order %s cannot go from %s to %s",
	    row->number, order_status_text(row->status), to_text ? to_text : "unspecified");
}

/* cancel_open: cancels an order not yet paid: the virtual account of a
 * virtual-account order closed at the payment service first, so no deposit
 * can come after (unless the payment saga is the one cancelling: the payment
 * ended already; the order may still be pending_payment when the saga is
 * behind), its reservation released, its coupon use released, then the
 * change recorded. */
static mall_code
cancel_open(mall_db_conn *db, mall_arena *a, const char *trace, const order_row *row,
            const char *actor, const char *reason, mall_status *st)
{
	if (row->payment_method == MALL__ORDER__PAYMENT_METHOD__VIRTUAL_ACCOUNT &&
	    strcmp(actor, "payment") != 0 && order_close_deposit(a, trace, row, st) != MALL_OK)
		return st->code;
	if (order_release_stock(a, trace, row->number, st) != MALL_OK)
		return st->code;
	if (*row->coupon_code && order_release_coupon(a, trace, row->number, st) != MALL_OK)
		return st->code;
	return order_record_change(db, a, row, S(CANCELLED), actor, reason, st);
}

/* reservation_call: Commit or Restock of the order's reservation. */
static mall_code
reservation_call(mall_arena *a, const char *trace, const char *method, const char *verb,
                 const char *number, mall_status *st)
{
	/* Commit and Restock requests have the same shape: order_id = 1 */
	Mall__Catalog__CommitReservationRequest c = MALL__CATALOG__COMMIT_RESERVATION_REQUEST__INIT;
	Mall__Catalog__RestockReservationRequest r =
	    MALL__CATALOG__RESTOCK_RESERVATION_REQUEST__INIT;
	c.order_id = r.order_id = (char *)number;
	const ProtobufCMessage *req = strcmp(method, "CommitReservation") == 0 ? &c.base : &r.base;
	ProtobufCMessage *reply;
	return order_call(order_env_get()->catalog, &mall__catalog__catalog__descriptor, method,
	                  req, &reply, a, trace, mall_arena_printf(a, "%s-%s", verb, number),
	                  mall_arena_printf(a, "%s the stock of order %s", verb, number), st);
}

mall_code
order_change(mall_db_conn *db, mall_arena *a, const char *trace, const order_row *row,
             Mall__Order__OrderStatus to, const char *actor, const char *reason, mall_status *st)
{
	if (to == S(CANCELLED) && is_open(row->status))
		return cancel_open(db, a, trace, row, actor, reason, st);
	mall_code rc = MALL_OK;
	if (to == S(PAID))
		rc = reservation_call(a, trace, "CommitReservation", "commit", row->number, st);
	else if (to == S(CANCELLED)) /* paid or preparing: the stock goes back */
		rc = reservation_call(a, trace, "RestockReservation", "restock", row->number, st);
	if (rc != MALL_OK)
		return rc;
	return order_record_change(db, a, row, to, actor, reason, st);
}

static const char *
caller_actor(mall_rpc_ctx *ctx, mall_arena *a, int64_t member_id, bool admin)
{
	if (admin || mall_rpc_ctx_admin_id(ctx) > 0)
		return mall_rpc_ctx_admin_id(ctx) > 0
		           ? mall_arena_printf(a, "admin:%lld",
		                               (long long)mall_rpc_ctx_admin_id(ctx))
		           : "admin";
	if (member_id > 0)
		return mall_arena_printf(a, "member:%lld", (long long)member_id);
	return "guest";
}

mall_code
order_cancel(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
             mall_status *st)
{
	const Mall__Order__CancelOrderRequest *r = (const void *)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *db = mall_rpc_ctx_worker(ctx);
	const char *phone;
	order_check_access_request(st, a, r->number, r->member_id, r->orderer_phone, r->admin,
	                           &phone);
	mall_check_text(st, "reason", r->reason, 0, 200);
	order_check_refund_account(st, r->refund_account);
	if (st->nfields > 0)
		return st->code;
	order_row row;
	if (order_lock(db, a, r->number, &row, st) != MALL_OK)
		return st->code;
	if (!order_access(&row, r->member_id, phone, r->admin))
		return mall_status_set(st, MALL_NOT_FOUND, "order %s not found", r->number);
	const char *trace = mall_rpc_ctx_trace_id(ctx);
	const char *actor = caller_actor(ctx, a, r->member_id, r->admin);
	mall_code rc;
	if (row.status == S(PAID) || row.status == S(PREPARING))
		/* refunded first: a refund that fails leaves it paid */
		rc = order_refund_cancel(db, a, trace, &row, r->refund_account, actor, r->reason,
		                         st);
	else if (is_open(row.status))
		rc = cancel_open(db, a, trace, &row, actor, r->reason, st);
	else
		rc = illegal(st, &row, S(CANCELLED));
	if (rc != MALL_OK)
		return st->code;
	Mall__Order__Order *o;
	if (order_load(db, a, row.id, &o, st) != MALL_OK)
		return st->code;
	*reply = &o->base;
	return MALL_OK;
}

mall_code
order_change_status(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                    mall_status *st)
{
	const Mall__Order__ChangeStatusRequest *r = (const void *)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *db = mall_rpc_ctx_worker(ctx);
	const char *trace = mall_rpc_ctx_trace_id(ctx);
	order_check_number(st, r->number);
	if (order_status_text(r->to) == NULL)
		mall_status_field(st, "to", "is required");
	mall_check_text(st, "actor", r->actor, 1, 64);
	mall_check_text(st, "reason", r->reason, 0, 200);
	if (st->nfields > 0)
		return st->code;
	order_row row;
	if (order_lock(db, a, r->number, &row, st) != MALL_OK)
		return st->code;
	if (!order_transition_ok(row.status, r->to))
		return illegal(st, &row, r->to);
	if (order_change(db, a, trace, &row, r->to, r->actor, r->reason, st) != MALL_OK)
		return st->code;
	Mall__Order__Order *o;
	if (order_load(db, a, row.id, &o, st) != MALL_OK)
		return st->code;
	*reply = &o->base;
	return MALL_OK;
}

/* ---- the sweep ---- */

#define EXPIRED_SQL                                                                                \
	"SELECT number FROM orders WHERE status IN ('pending_payment', 'awaiting_deposit') "       \
	"AND payment_due_at < now() ORDER BY payment_due_at LIMIT 1 OFFSET $1 "                    \
	"FOR UPDATE SKIP LOCKED"
#define ATTEMPTS_SQL                                                                               \
	"SELECT number FROM order_attempt WHERE created_at < now() - make_interval(secs => "       \
	"$1::float8 / 1000) ORDER BY created_at LIMIT $2"
#define ATTEMPT_LOCK_SQL                                                                           \
	"SELECT pg_try_advisory_xact_lock($1::int4, hashtext($2)), "                               \
	"EXISTS (SELECT 1 FROM order_attempt WHERE number = $2), "                                 \
	"EXISTS (SELECT 1 FROM orders WHERE number = $2), "                                        \
	"EXISTS (SELECT 1 FROM order_attempt WHERE number = $2 AND created_at < now() - "          \
	"interval '" ATTEMPT_FORGET_SQL_INTERVAL "')"

PGresult *
order_sweep_next(mall_db_conn *db, const char *sql, int skip)
{
	mall_status st;
	mall_status_clear(&st);
	if (mall_db_begin(db, &st) != MALL_OK) {
		mall_log_warn(NULL, "order sweep: %s", st.message);
		return NULL;
	}
	char off[16];
	snprintf(off, sizeof(off), "%d", skip);
	const char *params[1] = {off};
	PGresult *res = mall_db_exec(db, &st, sql, 1, params);
	if (res == NULL || PQntuples(res) == 0) {
		if (res == NULL)
			mall_log_warn(NULL, "order sweep: %s", st.message);
		PQclear(res);
		mall_db_rollback(db);
		return NULL;
	}
	return res;
}

/* expire_one: cancels the oldest expired open order that nobody holds,
 * skipping the first `skip` (ones that failed this pass).  1: one handled,
 * 0: none left, -1: it failed. */
static int
expire_one(mall_db_conn *db, mall_arena *a, int skip)
{
	mall_status st;
	mall_status_clear(&st);
	PGresult *res = order_sweep_next(db, EXPIRED_SQL, skip);
	if (res == NULL)
		return 0;
	char *number = mall_arena_strdup(a, PQgetvalue(res, 0, 0));
	PQclear(res);
	order_row row;
	if (order_lock(db, a, number, &row, &st) != MALL_OK ||
	    cancel_open(db, a, NULL, &row, "system:expiry", "payment window closed", &st) !=
	        MALL_OK ||
	    mall_db_commit(db, &st) != MALL_OK) {
		mall_db_rollback(db);
		mall_log_warn(NULL, "order sweep: could not cancel expired order %s: %s", number,
		              st.message);
		return -1;
	}
	mall_log_info(NULL, "order %s cancelled: payment window closed", number);
	return 1;
}

/* abandon: gives back what the placement attempt of number took, if nobody
 * holds it and no order owns the number.  true: handled (or not ours now). */
static bool
abandon(mall_db_conn *db, mall_arena *a, const char *number)
{
	mall_status st;
	mall_status_clear(&st);
	if (mall_db_begin(db, &st) != MALL_OK)
		return false;
	char cls[16];
	snprintf(cls, sizeof(cls), "%d", ORDER_ATTEMPT_LOCK_CLASS);
	const char *params[2] = {cls, number};
	PGresult *res = mall_db_exec(db, &st, ATTEMPT_LOCK_SQL, 2, params);
	if (res == NULL) {
		mall_db_rollback(db);
		return false;
	}
	bool locked = mall_db_bool(res, 0, 0), there = mall_db_bool(res, 0, 1);
	bool ordered = mall_db_bool(res, 0, 2), old = mall_db_bool(res, 0, 3);
	PQclear(res);
	if (!locked || !there) { /* being placed, or another sweep did it */
		mall_db_rollback(db);
		return true;
	}
	if (!ordered) {
		if (order_release_stock(a, NULL, number, &st) != MALL_OK) {
			if (st.code != MALL_NOT_FOUND) {
				mall_log_warn(NULL, "order sweep: abandoned order %s: %s", number,
				              st.message);
				mall_db_rollback(db);
				return false;
			}
			if (!old) { /* no reservation yet: keep watching for a late one */
				mall_db_rollback(db);
				return true;
			}
		}
		mall_status_clear(&st);
		if (order_release_coupon(a, NULL, number, &st) != MALL_OK) {
			mall_log_warn(NULL, "order sweep: abandoned order %s: %s", number,
			              st.message);
			mall_db_rollback(db);
			return false;
		}
	}
	const char *dp[1] = {number};
	if (mall_db_exec_cmd(db, &st, "DELETE FROM order_attempt WHERE number = $1", 1, dp) < 0 ||
	    mall_db_commit(db, &st) != MALL_OK) {
		mall_db_rollback(db);
		return false;
	}
	if (!ordered)
		mall_log_info(NULL, "order sweep: gave back what abandoned order %s held", number);
	return true;
}

int
order_sweep_once(mall_db_conn *db)
{
	const order_env *env = order_env_get();
	mall_arena *a = mall_arena_new();
	int handled = 0, failed = 0;
	for (int i = 0; i < SWEEP_BATCH; i++) {
		int rc = expire_one(db, a, failed);
		mall_arena_reset(a);
		if (rc == 0)
			break;
		if (rc < 0)
			failed++;
		else
			handled++;
	}

	mall_status st;
	mall_status_clear(&st);
	char grace[24], lim[16];
	snprintf(grace, sizeof(grace), "%lld", (long long)env->attempt_grace_ms);
	snprintf(lim, sizeof(lim), "%d", SWEEP_BATCH);
	const char *params[2] = {grace, lim};
	PGresult *res = mall_db_exec(db, &st, ATTEMPTS_SQL, 2, params);
	if (res == NULL) {
		mall_log_warn(NULL, "order sweep: %s", st.message);
	} else {
		int n = PQntuples(res);
		for (int i = 0; i < n; i++) {
			if (abandon(db, a, PQgetvalue(res, i, 0)))
				handled++;
			mall_arena_reset(a);
		}
		PQclear(res);
	}
	handled += order_refund_sweep(db, a);
	mall_arena_free(a);
	return handled;
}
