/*
 * order.h: the order service's internal interface (mall-order).
 *
 * Areas:
 *   main.c          the method table, settings, the peers' clients, the
 *                   mutation hook (a paid order's cart is emptied after the
 *                   commit), the sweep thread's life
 *   order_check.c   validation of what clients send (field errors with the
 *                   JSON names) and the enum <-> text mappings of the tables
 *   order_store.c   reading orders (GetOrder, ListOrders) and the pieces the
 *                   writers share: loading an order into its message,
 *                   recording a change of state with its history and events
 *   order_place.c   PlaceOrder: quote, address, number, reservation, coupon,
 *                   rows
 *   order_status.c  CancelOrder, ChangeStatus (the transition table, the side
 *                   effects of each change) and the sweep (expired orders,
 *                   abandoned placement attempts)
 *   order_saga.c    the payment saga: payment.* events move orders (paid,
 *                   awaiting deposit, cancelled)
 *   order_refund.c  refunds through the payment service: CancelOrder's of a
 *                   paid order, RefundOrder, late refunds of payments
 *                   approved for cancelled orders (refund_due and the sweep)
 *
 * Every handler runs on an RPC worker thread whose state is the worker's own
 * mall_db_conn; the MALL_RPC_MUTATING ones run inside the transaction that
 * lib/idem.c opened for their idempotency key and must neither begin nor
 * commit.  Calls to the catalog and the cart carry idempotency keys derived
 * from the order number ("reserve-<number>"), so a retry repeats nothing.
 */
#ifndef MALL_ORDER_H
#define MALL_ORDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"
#include "check.h"
#include "db.h"
#include "rpc.h"
#include "status.h"

#include "mall/cart.pb-c.h"
#include "mall/catalog.pb-c.h"
#include "mall/member.pb-c.h"
#include "mall/order.pb-c.h"
#include "mall/payment.pb-c.h"

/* A timestamptz column as RFC 3339 in UTC, "" for NULL (to_char of NULL). */
#define ORDER_RFC3339(col)                                                                         \
	"coalesce(to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), '')"

#define ORDER_LINES_MAX 100 /* what one reservation takes (catalog.proto) */
#define ORDER_NUMBER_LEN 15 /* YYYYMMDD-NNNNNN */
/* The key space (first int4 of pg_advisory_xact_lock(int4, int4)) of the lock a
 * placement holds on its number while it runs: "ORDR". */
#define ORDER_ATTEMPT_LOCK_CLASS 0x4f524452

/* ---- main.c: what the process shares ---- */

typedef struct order_env {
	mall_rpc_client *catalog;  /* MALL_CATALOG_ADDRS */
	mall_rpc_client *cart;     /* MALL_CART_ADDRS */
	mall_rpc_client *member;   /* MALL_MEMBER_ADDRS */
	mall_rpc_client *payment;  /* MALL_PAYMENT_ADDRS: Events.Since of the saga */
	mall_db *side;             /* short transactions outside the RPC's (numbers) */
	int64_t rpc_timeout_ms;    /* MALL_RPC_TIMEOUT */
	int64_t card_window_ms;    /* MALL_ORDER_CARD_WINDOW: card, easy pay */
	int64_t deposit_window_ms; /* MALL_ORDER_DEPOSIT_WINDOW: virtual account */
	int64_t sweep_interval_ms; /* MALL_ORDER_SWEEP_INTERVAL */
	int saga_lanes;            /* MALL_ORDER_SAGA_LANES: payment events applied at once */
	/* an attempt older than this with no order is abandoned (its placement
	 * crashed or failed): a few RPC deadlines, so no call of it is in flight */
	int64_t attempt_grace_ms;
} order_env;

/* order_env_get: the process's environment (set up by main.c's start). */
const order_env *order_env_get(void);

/* ---- order_check.c (text, phone, email, postal code: lib/check.h) ---- */

/* order_number_ok: whether v looks like an order number. */
bool order_number_ok(const char *v);
/* order_check_number: the field error of a request's "number" (required, an
 * order number), if it has one. */
void order_check_number(mall_status *st, const char *number);

/* Enum <-> the text stored in the tables ("pending_payment"); NULL / 0 for
 * values that have none. */
const char *order_status_text(Mall__Order__OrderStatus s);
Mall__Order__OrderStatus order_status_parse(const char *s);
const char *order_method_text(Mall__Order__PaymentMethod m);
Mall__Order__PaymentMethod order_method_parse(const char *s);
const char *order_channel_text(Mall__Order__SalesChannel c);
Mall__Order__SalesChannel order_channel_parse(const char *s);

/* ---- order_store.c ---- */

/* A locked order row: what the writers need to decide a change. */
typedef struct order_row {
	int64_t id;
	const char *number;
	int64_t member_id;
	const char *guest_id;
	Mall__Order__OrderStatus status;
	const char *orderer_phone;
	int64_t total;
	const char *coupon_code;
	int64_t refunded; /* refunded so far (won) */
	Mall__Order__PaymentMethod payment_method;
} order_row;

/* order_lock: the order numbered number, locked FOR UPDATE, into *row (strings
 * in a).  NOT_FOUND (naming the order) when there is none. */
mall_code order_lock(mall_db_conn *db, mall_arena *a, const char *number, order_row *row,
                     mall_status *st);
/* order_load: the whole order (lines, history oldest first) by id, in a. */
mall_code order_load(mall_db_conn *db, mall_arena *a, int64_t id, Mall__Order__Order **out,
                     mall_status *st);
/* order_access: whether the caller of GetOrder/CancelOrder may see the order
 * (admin; the member who placed it; a guest order and its orderer's phone).
 * An answer of false is to be reported as NOT_FOUND, like a missing order. */
bool order_access(const order_row *row, int64_t member_id, const char *phone, bool admin);
/* order_check_access_request: field errors of the (number, member_id,
 * orderer_phone, admin) part of GetOrder/CancelOrder; *phone_out is the
 * normalized phone (or "" when none was needed). */
void order_check_access_request(mall_status *st, mall_arena *a, const char *number,
                                int64_t member_id, const char *phone, bool admin,
                                const char **phone_out);
/* order_record_change: row moves to `to` in the open transaction: the status
 * (and paid_at / cancelled_at), a history entry and the outbox events
 * order.status_changed (and order.paid / order.cancelled).  The caller
 * checked the transition. */
mall_code order_record_change(mall_db_conn *db, mall_arena *a, const order_row *row,
                              Mall__Order__OrderStatus to, const char *actor, const char *reason,
                              mall_status *st);

/* order_note: a history entry on the locked row that changes nothing (from
 * and to both its status): something the back office must see although the
 * order stays as it is (a payment approved after it was cancelled).  No
 * event. */
mall_code order_note(mall_db_conn *db, const order_row *row, const char *actor, const char *reason,
                     mall_status *st);

mall_code order_get(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                    mall_status *st);
mall_code order_list(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                     mall_status *st);

/* ---- order_place.c ---- */

mall_code order_place(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                      mall_status *st);

/* ---- order_status.c ---- */

mall_code order_cancel(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                       mall_status *st);
mall_code order_change_status(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                              ProtobufCMessage **reply, mall_status *st);
/* order_transition_ok: whether the table allows from -> to. */
bool order_transition_ok(Mall__Order__OrderStatus from, Mall__Order__OrderStatus to);
/* order_change: the locked order row moves to `to` (the caller checked the
 * transition) in the open transaction: the peers' side first (to paid:
 * CommitReservation "commit-<number>"; an open order cancelled: its
 * reservation and coupon use released; a paid one cancelled: restocked),
 * then order_record_change.  A peer's failure is returned (st as
 * order_peer_failed leaves it) and nothing is recorded.  The cart of an order
 * that became paid is the caller's to empty, after the commit
 * (order_clear_cart). */
mall_code order_change(mall_db_conn *db, mall_arena *a, const char *trace, const order_row *row,
                       Mall__Order__OrderStatus to, const char *actor, const char *reason,
                       mall_status *st);

/* ---- order_peer.c: calls to the catalog, the cart and the member service ---- */

/* order_call: method of svc on client c; key (may be NULL: a read) is the
 * idempotency key of a mutating call.  The reply lives in a.  On failure st
 * is the peer's status as order_peer_failed leaves it, prefixed with what. */
mall_code order_call(mall_rpc_client *c, const ProtobufCServiceDescriptor *svc, const char *method,
                     const ProtobufCMessage *req, ProtobufCMessage **reply, mall_arena *a,
                     const char *trace, const char *key, const char *what, mall_status *st);
/* order_peer_definite: whether a failed call's status proves it did nothing
 * (a refusal), as opposed to a timeout or an unreachable peer (it may have
 * run). */
bool order_peer_definite(const mall_status *st);
/* order_attempt_forget: deletes the placement attempt of number on a side
 * connection (its own transaction); failures are logged only. */
void order_attempt_forget(const char *trace, const char *number);

/* The peers, with the order's idempotency keys: each is an RPC that may be
 * repeated safely.  trace may be NULL.  Failures keep the peer's code and
 * reason (not its field errors, which are about our request). */
mall_code order_release_stock(mall_arena *a, const char *trace, const char *number,
                              mall_status *st);
mall_code order_release_coupon(mall_arena *a, const char *trace, const char *number,
                               mall_status *st);
/* order_clear_request: the ClearCart request that takes the paid order o out
 * of the cart it was placed from (the member's, or guest_id's for a guest
 * order): its lines' quantities, gifts left out, and its coupon, in a; NULL
 * when there is nothing to take.  Only what the order took goes: what the
 * shopper put in the cart since stays. */
Mall__Cart__ClearCartRequest *order_clear_request(mall_arena *a, const Mall__Order__Order *o,
                                                 const char *guest_id);
/* order_clear_cart: sends req (NULL: nothing) once the order is paid and
 * committed, with key "clear-<number>": a repeat is a no-op at the cart.
 * Best effort: a failure is logged (a line left in a cart, never an unpaid
 * order). */
void order_clear_cart(mall_arena *a, const char *trace, const char *number,
                      const Mall__Cart__ClearCartRequest *req);
/* order_peer_failed: st describes the failed call cst of what ("reserve stock
 * for order X"): cst's code, reason and details, its message prefixed. */
mall_code order_peer_failed(mall_status *st, const mall_status *cst, const char *what);

/* ---- order_saga.c: the payment saga ---- */

/* order_saga_start: consumes the payment service's payment.* events into
 * the order database db (conninfo), reading them from payment (an RPC client
 * that must outlive the consumer) and waking up on events_addrs (the
 * payment relays; NULL or "": pull only).  Each event moves its order in
 * the consumer's transaction (docs/architecture.md, "The payment saga"). */
mall_code order_saga_start(const char *db, mall_rpc_client *payment, const char *events_addrs,
                           int lanes, mall_status *st);
/* order_saga_stop: stops the consumer (an event being applied finishes or
 * rolls back).  Safe when it was not started. */
void order_saga_stop(void);

/* ---- order_refund.c: refunds (keys and ordering: the file's comment) ---- */

mall_code order_refund(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                       mall_status *st);
/* order_check_refund_account: field errors (refundAccount.bank, ...) of an
 * account a caller gave; NULL is none and no error. */
void order_check_refund_account(mall_status *st, const Mall__Order__RefundAccount *ra);
/* order_refund_cancel: CancelOrder of the locked paid or preparing order
 * row, in the open transaction: what is left paid is refunded through
 * PaymentService.Cancel first (a virtual account needs ra, else
 * FAILED_PRECONDITION refund_account_required), then the order is restocked
 * and recorded cancelled (order_change).  A failure changes nothing here
 * (the caller rolls back) and says why. */
mall_code order_refund_cancel(mall_db_conn *db, mall_arena *a, const char *trace,
                              const order_row *row, const Mall__Order__RefundAccount *ra,
                              const char *actor, const char *reason, mall_status *st);
/* order_close_deposit: PaymentService.Cancel (unpaid_only, key
 * close-<number>) of the virtual account of row, an unpaid virtual-account
 * order being cancelled, so that no deposit can come after.  OK
 * also when there is no payment or it is closed already; FAILED_PRECONDITION
 * deposit_received when the deposit came first (the order is to be paid, not
 * cancelled); an uncertain failure has reason payment_unavailable. */
mall_code order_close_deposit(mall_arena *a, const char *trace, const order_row *row,
                              mall_status *st);
/* order_refund_due_add: the saga heard that payment_key (amount won) was
 * approved for the cancelled order row: a refund_due row and a history note,
 * in the event's transaction; the sweep refunds it. */
mall_code order_refund_due_add(mall_db_conn *db, mall_arena *a, const order_row *row,
                               const char *payment_key, int64_t amount, mall_status *st);
/* order_refund_reported: payment.cancelled p of the order row, which is not
 * open: an order that did not record that much refunded is brought up to the
 * payment's balance (a paid or preparing order refunded in full is cancelled
 * and restocked); otherwise nothing. */
mall_code order_refund_reported(mall_db_conn *db, mall_arena *a, const order_row *row,
                                const Mall__Payment__PaymentEvent *p, mall_status *st);
/* order_refund_sweep: the sweep's pass over due late refunds on db (one
 * transaction each, the order locked while the payment service is called);
 * a is reset between them.  Returns how many it closed. */
int order_refund_sweep(mall_db_conn *db, mall_arena *a);

/* order_sweep_next: begins a transaction on db and runs sql (its $1: how
 * many rows to skip, the ones that failed this pass) for a sweep's next item:
 * the result, with its transaction left open for the caller to end, or NULL
 * when there is none or the database failed (logged; nothing left open). */
PGresult *order_sweep_next(mall_db_conn *db, const char *sql, int skip);

/* order_sweep_once: one pass of the sweep on db (its own connection): cancels
 * the open orders past their payment window, refunds late payments and
 * cleans up abandoned placement attempts, one per transaction.  Returns how
 * many it handled. */
int order_sweep_once(mall_db_conn *db);

#endif
