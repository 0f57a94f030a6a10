/*
 * order_saga.c: the order's side of the payment saga.  mall-order follows
 * the payment service's events (lib/consumer.h, source "payment") and moves
 * each order as its payment goes:
 *
 *   payment.approved           pending_payment | awaiting_deposit -> paid
 *   payment.awaiting_deposit   pending_payment -> awaiting_deposit, with
 *                              payment_due_at = the account's due date
 *   payment.failed             nothing: the shopper may pay again within
 *                              the window, and the sweep cancels at its end
 *   payment.cancelled/expired  pending_payment | awaiting_deposit ->
 *                              cancelled (reservation and coupon released)
 *
 * Each event is applied in the consumer's transaction by order_change, the
 * code ChangeStatus runs, so the catalog's and the cart's side is called
 * inside it.  Those calls are idempotent by key (commit-<number>,
 * release-<number>), so an event rolled back and applied again repeats them
 * harmlessly; a peer that fails fails the event, which the runner retries
 * after a backoff: a catalog outage delays payments, it never drops one.
 * An event that no longer applies (the order moved on, the number is
 * unknown here) is recorded in the inbox and ignored with a log line: it
 * must not stop the stream.  A payment approved for an order cancelled
 * already (its window closed first) is noted in the order's history and
 * logged, and the order stays cancelled: a refund_due row written with the
 * event has the sweep refund it (order_refund.c).  payment.cancelled of a
 * paid order is a refund the order recorded when it asked for it, unless
 * that commit was lost: order_refund_reported catches the order up.
 *
 * What a paid order took is taken out of its cart after the commit, by the
 * consumer's applied hook (best effort, as after ChangeStatus): its lines'
 * quantities and its coupon, not what the shopper added since.
 *
 * The events of different orders do not depend on each other: the consumer
 * runs MALL_ORDER_SAGA_LANES lanes keyed by order number (consumer.h), so a
 * slow peer call of one order does not hold up the others, and the events
 * of one order keep their order.  The handler and the hook therefore run on
 * several threads; what the hook needs is kept per thread.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "consumer.h"
#include "log.h"
#include "order.h"

#include "mall/payment.pb-c.h"

#define S(x) MALL__ORDER__ORDER_STATUS__##x
#define ACTOR "payment"

/* What the applied hook needs: set by the handler of the event that made an
 * order paid, read after its commit, on the same thread (one per lane). */
typedef struct saga_state {
	char *number;    /* NULL: nothing to do */
	uint8_t *clear;  /* the packed ClearCartRequest, NULL: none */
	size_t clear_len;
} saga_state;

static mall_consumer *consumer;
static pthread_key_t state_key;
static pthread_once_t state_once = PTHREAD_ONCE_INIT;

static void
state_reset(saga_state *s)
{
	free(s->number);
	free(s->clear);
	s->number = NULL;
	s->clear = NULL;
	s->clear_len = 0;
}

static void
state_free(void *p)
{
	state_reset(p);
	free(p);
}

static void
state_key_make(void)
{
	if (pthread_key_create(&state_key, state_free) != 0)
		abort();
}

/* state: this thread's; freed when the thread ends. */
static saga_state *
state(void)
{
	pthread_once(&state_once, state_key_make);
	saga_state *s = pthread_getspecific(state_key);
	if (s == NULL) {
		s = mall_xcalloc(1, sizeof(*s));
		if (pthread_setspecific(state_key, s) != 0)
			abort();
	}
	return s;
}

static bool
digits(const char *s, int n)
{
	for (int i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/* due_date: the PG's due date (RFC 3339, "2026-11-29T23:59:59+09:00") as a
 * timestamptz literal, or NULL when it is not one.  Without an offset it is
 * the PG's local time, Asia/Seoul. */
static const char *
due_date(mall_arena *a, const char *v)
{
	/* YYYY-MM-DDTHH:MM:SS */
	if (strlen(v) < 19 || !digits(v, 4) || v[4] != '-' || !digits(v + 5, 2) || v[7] != '-' ||
	    !digits(v + 8, 2) || (v[10] != 'T' && v[10] != ' ') || !digits(v + 11, 2) ||
	    v[13] != ':' || !digits(v + 14, 2) || v[16] != ':' || !digits(v + 17, 2))
		return NULL;
	const char *z = v + 19;
	if (*z == '.') {
		z++;
		if (*z < '0' || *z > '9')
			return NULL;
		while (*z >= '0' && *z <= '9')
			z++;
	}
	if (*z == '\0')
		return mall_arena_printf(a, "%s+09:00", v);
	if ((z[0] == 'Z' || z[0] == 'z') && z[1] == '\0')
		return v;
	if ((z[0] == '+' || z[0] == '-') && digits(z + 1, 2) && z[3] == ':' && digits(z + 4, 2) &&
	    z[6] == '\0')
		return v;
	return NULL;
}

static bool
is_open(Mall__Order__OrderStatus s)
{
	return s == S(PENDING_PAYMENT) || s == S(AWAITING_DEPOSIT);
}

static const char *
status_text(Mall__Order__OrderStatus s)
{
	const char *t = order_status_text(s);
	return t ? t : "unknown";
}

static mall_code
approved(mall_db_conn *db, mall_arena *a, saga_state *s, const order_row *row,
         const Mall__Payment__PaymentEvent *p, mall_status *st)
{
	int64_t paid = p->amount ? p->amount->amount : 0;
	if (paid != row->total) {
		/* Confirm checks the amount against the order; this cannot happen
		 * unless something is badly wrong: keep the order as it is */
		mall_log_error(NULL,
		               "order %s: payment %s approved %lld won, but the order's total "
		               "is %lld: order left %s",
		               row->number, p->payment_key, (long long)paid, (long long)row->total,
		               status_text(row->status));
		return order_note(db, row, ACTOR,
		                  mall_arena_printf(a,
		                                    "payment %s approved %lld won, not the "
		                                    "total: to be checked",
		                                    p->payment_key, (long long)paid),
		                  st);
	}
	if (order_transition_ok(row->status, S(PAID))) {
		const char *reason = mall_arena_printf(a, "payment %s approved", p->payment_key);
		if (order_change(db, a, NULL, row, S(PAID), ACTOR, reason, st) != MALL_OK)
			return st->code;
		Mall__Order__Order *o;
		if (order_load(db, a, row->id, &o, st) != MALL_OK)
			return st->code;
		const Mall__Cart__ClearCartRequest *clear =
		    order_clear_request(a, o, row->guest_id);
		s->number = mall_xstrdup(row->number);
		if (clear != NULL) {
			s->clear_len = mall__cart__clear_cart_request__get_packed_size(clear);
			s->clear = mall_xmalloc(s->clear_len ? s->clear_len : 1);
			mall__cart__clear_cart_request__pack(clear, s->clear);
		}
		mall_log_info(NULL, "order %s paid (payment %s, %lld won)", row->number,
		              p->payment_key, (long long)paid);
		return MALL_OK;
	}
	if (row->status == S(CANCELLED)) {
		/* the duty is written with the event, so it outlives any crash; the
		 * sweep refunds it (order_refund.c) */
		mall_log_warn(NULL,
		              "order %s: payment %s approved after the order was cancelled: "
		              "the order stays cancelled and the payment is to be refunded",
		              row->number, p->payment_key);
		return order_refund_due_add(db, a, row, p->payment_key, paid, st);
	}
	mall_log_info(NULL, "order %s is %s already: payment.approved of payment %s ignored",
	              row->number, status_text(row->status), p->payment_key);
	return MALL_OK;
}

static mall_code
awaiting_deposit(mall_db_conn *db, mall_arena *a, const order_row *row,
                 const Mall__Payment__PaymentEvent *p, mall_status *st)
{
	if (!order_transition_ok(row->status, S(AWAITING_DEPOSIT))) {
		mall_log_info(NULL,
		              "order %s is %s: payment.awaiting_deposit of payment %s ignored",
		              row->number, status_text(row->status), p->payment_key);
		return MALL_OK;
	}
	const char *due = due_date(a, p->due_date);
	if (due != NULL) {
		char id[24];
		snprintf(id, sizeof(id), "%lld", (long long)row->id);
		const char *params[2] = {id, due};
		if (mall_db_exec_cmd(
		        db, st, "UPDATE orders SET payment_due_at = $2::timestamptz WHERE id = $1",
		        2, params) < 0)
			return st->code;
	} else {
		mall_log_warn(NULL,
		              "order %s: payment %s has no usable due date (\"%.40s\"): the "
		              "order keeps its payment window",
		              row->number, p->payment_key, p->due_date);
	}
	const char *reason = mall_arena_printf(a, "virtual account issued (payment %s), due %s",
	                                       p->payment_key, due ? p->due_date : "unknown");
	if (order_change(db, a, NULL, row, S(AWAITING_DEPOSIT), ACTOR, reason, st) != MALL_OK)
		return st->code;
	mall_log_info(NULL, "order %s awaiting deposit until %s (payment %s)", row->number,
	              due ? p->due_date : "its window's end", p->payment_key);
	return MALL_OK;
}

static mall_code
ended(mall_db_conn *db, mall_arena *a, const order_row *row, const char *type,
      const Mall__Payment__PaymentEvent *p, mall_status *st)
{
	bool expired = strcmp(type, "payment.expired") == 0;
	if (!is_open(row->status) && strcmp(type, "payment.cancelled") == 0)
		/* a refund: recorded already, unless its asker's commit was lost */
		return order_refund_reported(db, a, row, p, st);
	if (!is_open(row->status) ||
	    p->status == MALL__PAYMENT__PAYMENT_STATUS__PARTIALLY_CANCELLED) {
		mall_log_info(NULL, "order %s is %s: %s of payment %s ignored", row->number,
		              status_text(row->status), type, p->payment_key);
		return MALL_OK;
	}
	const char *reason =
	    mall_arena_printf(a,
	                      expired ? "virtual account of payment %s expired unpaid"
	                              : "payment %s cancelled before it was paid",
	                      p->payment_key);
	if (order_change(db, a, NULL, row, S(CANCELLED), ACTOR, reason, st) != MALL_OK)
		return st->code;
	mall_log_info(NULL, "order %s cancelled: %s", row->number, reason);
	return MALL_OK;
}

static mall_code
apply_payment(mall_db_conn *db, mall_arena *a, saga_state *s, const Mall__Rpc__Event *ev,
              const Mall__Payment__PaymentEvent *p, mall_status *st)
{
	if (!order_number_ok(p->order_id)) {
		mall_log_warn(NULL,
		              "%s %s (seq %lld) is for \"%.40s\", not an order number: ignored",
		              ev->type, ev->event_id, (long long)ev->seq, p->order_id);
		return MALL_OK;
	}
	order_row row;
	if (order_lock(db, a, p->order_id, &row, st) != MALL_OK) {
		if (st->code != MALL_NOT_FOUND)
			return st->code;
		mall_log_warn(NULL, "%s %s (seq %lld): order %s not found: ignored", ev->type,
		              ev->event_id, (long long)ev->seq, p->order_id);
		mall_status_clear(st);
		return MALL_OK;
	}
	if (strcmp(ev->type, "payment.approved") == 0)
		return approved(db, a, s, &row, p, st);
	if (strcmp(ev->type, "payment.awaiting_deposit") == 0)
		return awaiting_deposit(db, a, &row, p, st);
	if (strcmp(ev->type, "payment.cancelled") == 0 || strcmp(ev->type, "payment.expired") == 0)
		return ended(db, a, &row, ev->type, p, st);
	if (strcmp(ev->type, "payment.failed") == 0) {
		mall_log_info(NULL,
		              "order %s: payment %s failed (%s): the order stays %s until it is "
		              "paid or its window closes",
		              row.number, p->payment_key, p->failure_code, status_text(row.status));
		return MALL_OK;
	}
	mall_log_info(NULL, "%s %s for order %s: not a type the order service applies", ev->type,
	              ev->event_id, row.number);
	return MALL_OK;
}

/* apply: the consumer's handler (consumer.h), in its transaction. */
static mall_code
apply(mall_db_conn *db, const Mall__Rpc__Event *ev, void *arg, mall_status *st)
{
	(void)arg;
	saga_state *s = state();
	state_reset(s); /* left by an event that rolled back */
	mall_arena *a = mall_arena_new();
	Mall__Payment__PaymentEvent *p = mall__payment__payment_event__unpack(
	    mall_arena_pb(a), ev->payload.len, ev->payload.data);
	mall_code rc = MALL_OK;
	if (p == NULL)
		/* it will never decode: stopping the stream for it helps nobody */
		mall_log_error(NULL, "%s %s (seq %lld) is not a mall.payment.PaymentEvent: ignored",
		               ev->type, ev->event_id, (long long)ev->seq);
	else
		rc = apply_payment(db, a, s, ev, p, st);
	mall_arena_free(a);
	if (rc != MALL_OK)
		state_reset(s);
	return rc;
}

/* applied: after the commit of an event the handler ran. */
static void
applied(const Mall__Rpc__Event *ev, void *arg)
{
	(void)ev;
	(void)arg;
	saga_state *s = state();
	if (s->clear != NULL) {
		mall_arena *a = mall_arena_new();
		Mall__Cart__ClearCartRequest *req = mall__cart__clear_cart_request__unpack(
		    mall_arena_pb(a), s->clear_len, s->clear);
		if (req != NULL)
			order_clear_cart(a, NULL, s->number, req);
		mall_arena_free(a);
	}
	state_reset(s);
}

/* key: the order an event is about, so that its events stay in order. */
static uint64_t
key(const Mall__Rpc__Event *ev, void *arg)
{
	(void)arg;
	mall_arena *a = mall_arena_new();
	Mall__Payment__PaymentEvent *p = mall__payment__payment_event__unpack(
	    mall_arena_pb(a), ev->payload.len, ev->payload.data);
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (const char *c = p ? p->order_id : ""; *c; c++)
		h = (h ^ (uint8_t)*c) * 1099511628211ULL;
	mall_arena_free(a);
	return h;
}

mall_code
order_saga_start(const char *db, mall_rpc_client *payment, const char *events_addrs, int lanes,
                 mall_status *st)
{
	static const char *const types[] = {"payment.", NULL};
	mall_consumer_opts opts = {
	    .source = "payment",
	    .client = payment,
	    .events_addrs = events_addrs,
	    .db = db,
	    .types = types,
	    .apply = apply,
	    .applied = applied,
	    .lanes = lanes,
	    .key = key,
	};
	return mall_consumer_start(&consumer, &opts, st);
}

void
order_saga_stop(void)
{
	mall_consumer_stop(consumer); /* its lanes' states go with their threads */
	consumer = NULL;
}
