/*
 * payment_store.c: payments as rows and as messages; GetPayment; recording
 * what the PG said of a payment, with the event that reports it, in the
 * caller's transaction.
 */
#include <stdio.h>
#include <string.h>

#include "outbox.h"
#include "payment.h"

#define COLS                                                                                       \
	"order_number, payment_key, status, method, currency, amount, balance, " PAYMENT_RFC3339(  \
	    "approved_at") ", va_bank, va_account_number, va_customer_name, va_due_date, "         \
	                   "va_secret, easy_pay_provider, card_company, card_number, "             \
	                   "card_approve_no, failure_code, failure_message, " PAYMENT_RFC3339(     \
	                       "created_at") ", " PAYMENT_RFC3339("updated_at")

#define FIND_SQL "SELECT " COLS " FROM payment WHERE order_number = $1"
#define LOCK_SQL "SELECT " COLS " FROM payment WHERE order_number = $1 FOR UPDATE"
#define RECORD_SQL                                                                                 \
	"UPDATE payment SET payment_key = $2, status = $3, method = $4, amount = $5::bigint, "     \
	"balance = $6::bigint, approved_at = NULLIF($7, '')::timestamptz, "                        \
	"last_transaction_key = $8, va_bank = $9, va_account_number = $10, "                       \
	"va_customer_name = $11, va_due_date = $12, "                                              \
	"va_secret = CASE WHEN $13 = '' THEN va_secret ELSE $13 END, easy_pay_provider = $14, "    \
	"card_company = $15, card_number = $16, card_approve_no = $17, failure_code = $18, "       \
	"failure_message = $19, currency = $20, updated_at = now() "                               \
	"WHERE order_number = $1 RETURNING " COLS

static const char *const status_text[] = {
    [MALL__PAYMENT__PAYMENT_STATUS__CONFIRMING] = "confirming",
    [MALL__PAYMENT__PAYMENT_STATUS__WAITING_FOR_DEPOSIT] = "waiting_for_deposit",
    [MALL__PAYMENT__PAYMENT_STATUS__DONE] = "done",
    [MALL__PAYMENT__PAYMENT_STATUS__FAILED] = "failed",
    [MALL__PAYMENT__PAYMENT_STATUS__CANCELLED] = "cancelled",
    [MALL__PAYMENT__PAYMENT_STATUS__PARTIALLY_CANCELLED] = "partially_cancelled",
    [MALL__PAYMENT__PAYMENT_STATUS__EXPIRED] = "expired",
};

const char *
payment_status_text(Mall__Payment__PaymentStatus s)
{
	if ((int)s <= 0 || (size_t)s >= sizeof(status_text) / sizeof(status_text[0]))
		return NULL;
	return status_text[s];
}

static Mall__Payment__PaymentStatus
status_parse(const char *s)
{
	for (size_t i = 1; i < sizeof(status_text) / sizeof(status_text[0]); i++)
		if (status_text[i] && strcmp(status_text[i], s) == 0)
			return (Mall__Payment__PaymentStatus)i;
	return MALL__PAYMENT__PAYMENT_STATUS__PAYMENT_STATUS_UNSPECIFIED;
}

Mall__Payment__PaymentStatus
payment_status_from_pg(const char *s)
{
	static const struct {
		const char *pg;
		Mall__Payment__PaymentStatus ours;
	} map[] = {
	    {"READY", MALL__PAYMENT__PAYMENT_STATUS__CONFIRMING},
	    {"IN_PROGRESS", MALL__PAYMENT__PAYMENT_STATUS__CONFIRMING},
	    {"WAITING_FOR_DEPOSIT", MALL__PAYMENT__PAYMENT_STATUS__WAITING_FOR_DEPOSIT},
	    {"DONE", MALL__PAYMENT__PAYMENT_STATUS__DONE},
	    {"CANCELED", MALL__PAYMENT__PAYMENT_STATUS__CANCELLED},
	    {"PARTIAL_CANCELED", MALL__PAYMENT__PAYMENT_STATUS__PARTIALLY_CANCELLED},
	    {"ABORTED", MALL__PAYMENT__PAYMENT_STATUS__FAILED},
	    {"EXPIRED", MALL__PAYMENT__PAYMENT_STATUS__EXPIRED},
	};
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(map[i].pg, s) == 0)
			return map[i].ours;
	return MALL__PAYMENT__PAYMENT_STATUS__PAYMENT_STATUS_UNSPECIFIED;
}

bool
payment_status_final(Mall__Payment__PaymentStatus s)
{
	return s != MALL__PAYMENT__PAYMENT_STATUS__CONFIRMING &&
	       s != MALL__PAYMENT__PAYMENT_STATUS__FAILED &&
	       s != MALL__PAYMENT__PAYMENT_STATUS__PAYMENT_STATUS_UNSPECIFIED;
}

const char *
payment_event_type(Mall__Payment__PaymentStatus s)
{
	switch (s) {
	case MALL__PAYMENT__PAYMENT_STATUS__DONE:
		return "payment.approved";
	case MALL__PAYMENT__PAYMENT_STATUS__WAITING_FOR_DEPOSIT:
		return "payment.awaiting_deposit";
	case MALL__PAYMENT__PAYMENT_STATUS__FAILED:
		return "payment.failed";
	case MALL__PAYMENT__PAYMENT_STATUS__CANCELLED:
	case MALL__PAYMENT__PAYMENT_STATUS__PARTIALLY_CANCELLED:
		return "payment.cancelled";
	case MALL__PAYMENT__PAYMENT_STATUS__EXPIRED:
		return "payment.expired";
	default:
		return NULL;
	}
}

static const char *
method_text(const char *pg)
{
	if (strcmp(pg, "카드") == 0)
		return "card";
	if (strcmp(pg, "가상계좌") == 0)
		return "virtual_account";
	if (strcmp(pg, "간편결제") == 0)
		return "easy_pay";
	return "";
}

static Mall__Payment__PaymentMethod
method_parse(const char *s)
{
	if (strcmp(s, "card") == 0)
		return MALL__PAYMENT__PAYMENT_METHOD__CARD;
	if (strcmp(s, "virtual_account") == 0)
		return MALL__PAYMENT__PAYMENT_METHOD__VIRTUAL_ACCOUNT;
	if (strcmp(s, "easy_pay") == 0)
		return MALL__PAYMENT__PAYMENT_METHOD__EASY_PAY;
	return MALL__PAYMENT__PAYMENT_METHOD__PAYMENT_METHOD_UNSPECIFIED;
}

bool
payment_order_id_ok(const char *s)
{
	size_t n = strlen(s);
	if (n < 6 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		      c == '-' || c == '_'))
			return false;
	}
	return true;
}

static Mall__Money *
money(mall_arena *a, int64_t amount, const char *currency)
{
	Mall__Money *m = mall_arena_alloc(a, sizeof(*m));
	mall__money__init(m);
	m->amount = amount;
	m->currency = mall_arena_strdup(a, currency && *currency ? currency : "KRW");
	return m;
}

static char *
col(mall_arena *a, const PGresult *res, int c)
{
	return mall_arena_strdup(a, PQgetvalue(res, 0, c));
}

static void
row_from(mall_arena *a, const PGresult *res, payment_row *row)
{
	Mall__Payment__Payment *p = mall_arena_alloc(a, sizeof(*p));
	mall__payment__payment__init(p);
	p->order_id = col(a, res, 0);
	p->payment_key = col(a, res, 1);
	p->status = status_parse(PQgetvalue(res, 0, 2));
	p->method = method_parse(PQgetvalue(res, 0, 3));
	const char *cur = PQgetvalue(res, 0, 4);
	p->amount = money(a, mall_db_int64(res, 0, 5), cur);
	p->balance = money(a, mall_db_int64(res, 0, 6), cur);
	p->approved_at = col(a, res, 7);
	if (*PQgetvalue(res, 0, 9)) {
		Mall__Payment__VirtualAccount *va = mall_arena_alloc(a, sizeof(*va));
		mall__payment__virtual_account__init(va);
		va->bank = col(a, res, 8);
		va->account_number = col(a, res, 9);
		va->customer_name = col(a, res, 10);
		va->due_date = col(a, res, 11);
		p->virtual_account = va;
	}
	row->secret = col(a, res, 12);
	p->easy_pay_provider = col(a, res, 13);
	if (*PQgetvalue(res, 0, 14) || *PQgetvalue(res, 0, 15)) {
		Mall__Payment__Card *c = mall_arena_alloc(a, sizeof(*c));
		mall__payment__card__init(c);
		c->company = col(a, res, 14);
		c->number = col(a, res, 15);
		c->approve_no = col(a, res, 16);
		p->card = c;
	}
	p->failure_code = col(a, res, 17);
	p->failure_message = col(a, res, 18);
	p->created_at = col(a, res, 19);
	p->updated_at = col(a, res, 20);
	row->msg = p;
}

mall_code
payment_find(mall_db_conn *db, mall_arena *a, const char *number, bool lock, payment_row *row,
             mall_status *st)
{
	const char *params[1] = {number};
	PGresult *res = mall_db_exec(db, st, lock ? LOCK_SQL : FIND_SQL, 1, params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_NOT_FOUND, "order %s has no payment", number);
	}
	row_from(a, res, row);
	PQclear(res);
	return MALL_OK;
}

mall_code
payment_record(mall_db_conn *db, mall_arena *a, const char *number, const pg_toss_payment *p,
               const char *emit, int64_t cancelled, payment_row *out, mall_status *st)
{
	Mall__Payment__PaymentStatus s = payment_status_from_pg(p->status);
	char amount[24], balance[24];
	snprintf(amount, sizeof(amount), "%lld", (long long)p->total_amount);
	snprintf(balance, sizeof(balance), "%lld",
	         (long long)(s == MALL__PAYMENT__PAYMENT_STATUS__DONE ||
	                             s == MALL__PAYMENT__PAYMENT_STATUS__PARTIALLY_CANCELLED
	                         ? p->balance_amount
	                         : 0));
	const char *params[20] = {number,
	                          p->payment_key,
	                          payment_status_text(s) ? payment_status_text(s) : "confirming",
	                          method_text(p->method),
	                          amount,
	                          balance,
	                          p->approved_at,
	                          p->last_transaction_key,
	                          p->va_bank,
	                          p->va_account_number,
	                          p->va_customer_name,
	                          p->va_due_date,
	                          p->secret,
	                          p->easy_pay_provider,
	                          p->card_company,
	                          p->card_number,
	                          p->card_approve_no,
	                          p->failure_code,
	                          p->failure_message,
	                          *p->currency ? p->currency : "KRW"};
	PGresult *res = mall_db_exec(db, st, RECORD_SQL, 20, params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_NOT_FOUND, "order %s has no payment", number);
	}
	row_from(a, res, out);
	PQclear(res);
	if (emit == NULL)
		return MALL_OK;
	const Mall__Payment__Payment *m = out->msg;
	Mall__Payment__PaymentEvent ev = MALL__PAYMENT__PAYMENT_EVENT__INIT;
	ev.order_id = m->order_id;
	ev.payment_key = m->payment_key;
	ev.amount = m->amount;
	ev.method = m->method;
	ev.status = m->status;
	ev.due_date = m->virtual_account ? m->virtual_account->due_date : "";
	ev.approved_at = m->approved_at;
	ev.failure_code = m->failure_code;
	if (cancelled > 0)
		ev.cancelled = money(a, cancelled, m->amount->currency);
	ev.balance = m->balance;
	ev.at = m->updated_at;
	return mall_outbox_add(db, a, emit, &ev.base, st);
}

mall_code
payment_get(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
            mall_status *st)
{
	const Mall__Payment__GetPaymentRequest *r = (const Mall__Payment__GetPaymentRequest *)req;
	if (!payment_order_id_ok(r->order_id))
		return mall_status_field(st, "orderId", "must be an order number");
	payment_row row;
	if (payment_find(mall_rpc_ctx_worker(ctx), mall_rpc_ctx_arena(ctx), r->order_id, false,
	                 &row, st) != MALL_OK)
		return st->code;
	*reply = &row.msg->base;
	return MALL_OK;
}
