/*
 * payment.h: the payment service's internal interface (mall-payment).
 *
 * Areas:
 *   main.c             the method table, settings, the order service's client,
 *                      the PG client and the pool it records exchanges on
 *   pg_toss.c          the PG's HTTP API over libcurl (pg_toss.h)
 *   payment_store.c    payments as rows and messages, GetPayment, recording
 *                      what the PG said with its event
 *   payment_confirm.c  Confirm, and settling a payment with the PG
 *   payment_sweep.c    the recovery sweep of payments left 'confirming'
 *   payment_webhook.c  DepositWebhook
 *   payment_cancel.c   Cancel (refunds)
 *
 * Confirm and DepositWebhook are idempotent by the order number (the payment
 * row, locked FOR UPDATE while the PG is called, says what was done already)
 * and run their own transactions on the worker's connection: a PG rejection
 * must be recorded (payment.failed) although the call answers an error, which
 * lib/idem.c's transaction would roll back.  Cancel runs in lib/idem.c's
 * transaction: its idempotency key names the cancel, and the PG's
 * Idempotency-Key is derived from it.
 */
#ifndef MALL_PAYMENT_H
#define MALL_PAYMENT_H

#include <stdbool.h>
#include <stdint.h>

#include "alloc.h"
#include "db.h"
#include "pg_toss.h"
#include "rpc.h"
#include "status.h"

#include "mall/order.pb-c.h"
#include "mall/payment.pb-c.h"

/* A timestamptz column as RFC 3339 in UTC, "" for NULL. */
#define PAYMENT_RFC3339(col)                                                                       \
	"coalesce(to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')"

typedef struct payment_env {
	mall_rpc_client *order; /* MALL_ORDER_ADDRS */
	pg_toss *pg;            /* MALL_PAYMENT_PG_URL, _SECRET_KEY, _TIMEOUT */
	mall_db *side;          /* pg_exchange records, in transactions of their own */
	const char *client_key; /* MALL_PAYMENT_PG_CLIENT_KEY (public: the window's) */
	int64_t rpc_timeout_ms; /* MALL_RPC_TIMEOUT */
} payment_env;

const payment_env *payment_env_get(void);

/* ---- payment_store.c ---- */

/* A payment row with what only the service sees (the deposit secret). */
typedef struct payment_row {
	Mall__Payment__Payment *msg;
	const char *secret; /* va_secret */
} payment_row;

/* payment_find: the payment of order number (FOR UPDATE when lock) into *row
 * (in a); NOT_FOUND naming the order when there is none. */
mall_code payment_find(mall_db_conn *db, mall_arena *a, const char *number, bool lock,
                       payment_row *row, mall_status *st);
/* payment_record: stores what the PG says of the payment of number (p) in the
 * open transaction and, when emit is not NULL, adds that event LAST
 * (payment.approved, ...); *out is the payment as stored. */
mall_code payment_record(mall_db_conn *db, mall_arena *a, const char *number,
                         const pg_toss_payment *p, const char *emit, int64_t cancelled,
                         payment_row *out, mall_status *st);
/* payment_event_type: the event a change to status s reports, or NULL. */
const char *payment_event_type(Mall__Payment__PaymentStatus s);
/* payment_status_from_pg / payment_method_from_pg: the PG's words as ours. */
Mall__Payment__PaymentStatus payment_status_from_pg(const char *s);
const char *payment_status_text(Mall__Payment__PaymentStatus s);
bool payment_status_final(Mall__Payment__PaymentStatus s);
/* payment_order_id_ok: 6 to 64 of A-Z a-z 0-9 - _ (the PG's rule). */
bool payment_order_id_ok(const char *s);

mall_code payment_get(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                      mall_status *st);

/* ---- payment_confirm.c ---- */

mall_code payment_confirm(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                          mall_status *st);

/* payment_load_order: order number as the order service has it (admin), in
 * a; NOT_FOUND naming it when there is none, else the call's error. */
mall_code payment_load_order(mall_arena *a, const char *trace, const char *number,
                             Mall__Order__Order **out, mall_status *st);

/* What a confirm is about: the PG's confirm is sent with exactly these
 * (Idempotency-Key "confirm-<order_id>-<payment_key>"). */
typedef struct payment_attempt {
	const char *order_id;
	const char *payment_key;
	int64_t amount;
	const char *currency;
} payment_attempt;

/* payment_settle: asks the PG about the attempt, whose payment row is locked
 * (FOR UPDATE) in the transaction open on db, records its answer with its
 * event as Confirm does, and ends the transaction (committed when something
 * was recorded, else rolled back).
 *
 * confirm: sends the confirm (a repeat of the key gets the PG's first
 * answer, so this never confirms twice): DONE -> payment.approved,
 * WAITING_FOR_DEPOSIT -> payment.awaiting_deposit, a REJECT_* answer ->
 * failed with payment.failed, answered FAILED_PRECONDITION payment_rejected;
 * DUPLICATED_ORDER_ID / ALREADY_PROCESSED_PAYMENT look the order's payment up
 * and record it if it is the order's (another key: already_paid).  Without
 * confirm, only the lookup below.
 *
 * resolve (the sweep): a definite refusal (404, 4xx) is followed by a lookup
 * of the payment key, and what the PG holds is recorded, a payment it never
 * confirmed as failed (payment.failed), so the row leaves 'confirming'; only
 * an unknown outcome (PG unreachable, 5xx, timeout) records nothing.
 *
 * out->msg is the payment as stored whenever something was recorded (also
 * when the answer is an error: payment_rejected, already_paid), else NULL. */
mall_code payment_settle(mall_db_conn *db, mall_arena *a, const char *trace,
                         const payment_attempt *at, bool confirm, bool resolve, payment_row *out,
                         mall_status *st);

/* ---- payment_sweep.c ---- */

/* payment_sweep_once: settles (payment_settle with resolve) the payments
 * left 'confirming' longer than grace_ms, each in its own transaction with
 * its row taken FOR UPDATE SKIP LOCKED (a confirm in progress, or another
 * instance's sweep, holds it): the confirm is sent again with its key while
 * the order awaits payment, else the payment is looked up.  stopping (may be
 * NULL) is asked between payments: true ends the pass early, so a shutdown
 * waits for one PG call at most.  Returns how many were settled. */
int payment_sweep_once(mall_db_conn *db, int64_t grace_ms, bool (*stopping)(void));

/* ---- payment_webhook.c ---- */

mall_code payment_deposit_webhook(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                  ProtobufCMessage **reply, mall_status *st);

/* ---- payment_cancel.c ---- */

mall_code payment_cancel(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                         mall_status *st);

#endif
