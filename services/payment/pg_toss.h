/*
 * pg_toss.h: the client of the PG's HTTP API (Toss Payments v1, as
 * tests/fakes/README.md describes it), over libcurl.
 *
 * Every call is one HTTP request with `Authorization: Basic
 * base64(secret_key + ":")`, JSON in and out, a connect timeout of 3 s and a
 * total timeout (MALL_PAYMENT_PG_TIMEOUT).  POSTs carry the caller's
 * Idempotency-Key: a call that ended UNAVAILABLE may have acted at the PG, and
 * is retried with the SAME key, which the PG answers with its first answer
 * instead of acting again.
 *
 * Every request and its answer are recorded in the table pg_exchange, each in
 * a transaction of its own on a connection of the pool given to pg_toss_new
 * (never the caller's transaction): the request before it is sent, the answer
 * as soon as it came, so a crash after the PG answered leaves the record.  The
 * Authorization header is never recorded; a virtual account's `secret` is
 * masked in bodies.
 *
 * Results: MALL_OK with the Payment parsed into *out (strings in the arena),
 * or an error status.  A PG error answer ({"code","message"}) becomes a
 * status whose reason is the PG's code in lower case ("reject_card_payment")
 * and whose message holds the PG's message: 404 NOT_FOUND, 400/403/422
 * FAILED_PRECONDITION, 401 INTERNAL (our key is wrong), 409 and 429
 * UNAVAILABLE.  No answer, a timeout, a 5xx or a 2xx that is not a Payment
 * is UNAVAILABLE with reason pg_unavailable (the outcome is unknown).
 */
#ifndef MALL_PG_TOSS_H
#define MALL_PG_TOSS_H

#include <stdbool.h>
#include <stdint.h>

#include "alloc.h"
#include "db.h"
#include "status.h"

typedef struct pg_toss pg_toss;

typedef struct pg_toss_opts {
	const char *url;        /* "http://127.0.0.1:8091" (no trailing slash needed) */
	const char *secret_key; /* the merchant's secret key */
	int64_t connect_timeout_ms;
	int64_t timeout_ms; /* the whole request */
	mall_db *record;    /* the pool pg_exchange rows are written on */
} pg_toss_opts;

/* The PG's Payment object: the fields the mall uses ("" / 0 when absent). */
typedef struct pg_toss_payment {
	const char *payment_key;
	const char *order_id;
	const char *method; /* "카드", "가상계좌", "간편결제" */
	const char *status; /* "DONE", "WAITING_FOR_DEPOSIT", "CANCELED", ... */
	int64_t total_amount;
	int64_t balance_amount;
	const char *currency;
	const char *approved_at;
	const char *last_transaction_key;
	bool has_virtual_account;
	const char *va_bank;
	const char *va_account_number;
	const char *va_customer_name;
	const char *va_due_date;
	const char *secret; /* the deposit callback's secret (virtual accounts) */
	const char *easy_pay_provider;
	const char *card_company;
	const char *card_number;
	const char *card_approve_no;
	const char *failure_code;
	const char *failure_message;
	/* the last cancel: its transaction key, amount, reason and time */
	const char *cancel_transaction_key;
	int64_t cancel_amount;
	const char *cancel_reason;
	const char *canceled_at;
} pg_toss_payment;

/* A refund account for cancelling a paid virtual account. */
typedef struct pg_toss_refund_account {
	const char *bank;
	const char *account_number;
	const char *holder_name;
} pg_toss_refund_account;

/* pg_toss_global_init: libcurl's global initialization; call once at start,
 * before any thread uses the client. */
mall_code pg_toss_global_init(mall_status *st);

/* pg_toss_new: a client (thread-safe: each call uses its own curl handle);
 * the strings of opts are copied.  The caller owns it. */
mall_code pg_toss_new(pg_toss **out, const pg_toss_opts *opts, mall_status *st);
void pg_toss_free(pg_toss *pg);

/* pg_toss_confirm: POST /v1/payments/confirm {paymentKey, orderId, amount}
 * with the Idempotency-Key key. */
mall_code pg_toss_confirm(pg_toss *pg, mall_arena *a, const char *trace, const char *payment_key,
                          const char *order_id, int64_t amount, const char *key,
                          pg_toss_payment **out, mall_status *st);
/* pg_toss_get: GET /v1/payments/{paymentKey}. */
mall_code pg_toss_get(pg_toss *pg, mall_arena *a, const char *trace, const char *payment_key,
                      pg_toss_payment **out, mall_status *st);
/* pg_toss_get_by_order: GET /v1/payments/orders/{orderId}. */
mall_code pg_toss_get_by_order(pg_toss *pg, mall_arena *a, const char *trace, const char *order_id,
                               pg_toss_payment **out, mall_status *st);
/* pg_toss_cancel: POST /v1/payments/{paymentKey}/cancel {cancelReason,
 * cancelAmount (omitted when amount is 0: the whole balance),
 * refundReceiveAccount (when refund is not NULL)} with the Idempotency-Key
 * key. */
mall_code pg_toss_cancel(pg_toss *pg, mall_arena *a, const char *trace, const char *payment_key,
                         const char *reason, int64_t amount, const pg_toss_refund_account *refund,
                         const char *key, pg_toss_payment **out, mall_status *st);

/* pg_toss_parse_payment: the Payment object in json (text of len bytes), or
 * NULL when it is not one (no paymentKey or status).  Exposed for tests. */
pg_toss_payment *pg_toss_parse_payment(mall_arena *a, const char *json, size_t len);
/* pg_toss_mask: body with every "secret" member masked and every
 * refundReceiveAccount.accountNumber shortened to its last 4 digits,
 * re-serialized; a body that
 * is not JSON is returned as is. */
char *pg_toss_mask(mall_arena *a, const char *body, size_t len);

#endif
