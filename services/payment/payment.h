/*
 * payment.h: the payment service's internal interface (mall-payment).
 *
 * Areas:
 *   main.c             the method table, settings, the order service's client,
 *                      the PG client and the pool it records exchanges on
 *   pg_toss.c          the PG's HTTP API over libcurl (pg_toss.h)
 *   payment_store.c    payments as rows and messages, GetPayment, recording
 *                      what the PG said with its event
 *   payment_confirm.c  Confirm
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

/* ---- payment_webhook.c ---- */

mall_code payment_deposit_webhook(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                  ProtobufCMessage **reply, mall_status *st);

/* ---- payment_cancel.c ---- */

mall_code payment_cancel(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                         mall_status *st);

#endif
