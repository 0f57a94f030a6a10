/*
 * order_store.c: orders as rows and as messages.  GetOrder and ListOrders,
 * and what the writers share: locking an order, loading it whole, recording
 * a change of state with its history entry and its events.
 *
 * Who may see an order: the back office (admin), the member who placed it,
 * and for a guest order whoever gives its number and the orderer's phone.
 * Everyone else is told NOT_FOUND, as for an order that does not exist, so
 * the answer tells nothing about other people's orders.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_pb.h"
#include "log.h"
#include "order.h"
#include "outbox.h"

#define ORDER_COLS                                                                                 \
	"id, number, member_id, status, channel, payment_method, currency, subtotal, discount, "   \
	"shipping_fee, total, refunded, coupon_code, recipient, phone, postal_code, address1, "    \
	"address2, orderer_name, orderer_phone, orderer_email, delivery_note, "                    \
	"order_name, " ORDER_RFC3339("payment_due_at") ", " ORDER_RFC3339(                         \
	    "placed_at") ", " ORDER_RFC3339("paid_at") ", " ORDER_RFC3339("cancelled_at")

#define LOAD_SQL "SELECT " ORDER_COLS " FROM orders WHERE id = $1"
#define LINES_SQL                                                                                  \
	"SELECT sku_id, sku_code, product_id, name, option_text, unit_price, quantity, "           \
	"line_total, gift FROM order_line WHERE order_id = $1 ORDER BY position"
#define HISTORY_SQL                                                                                \
	"SELECT coalesce(from_status, ''), to_status, actor, reason, " ORDER_RFC3339(              \
	    "at") " FROM order_status_history WHERE order_id = $1 ORDER BY id"
#define ROW_COLS                                                                                   \
	"id, number, member_id, guest_id, status, orderer_phone, total, coupon_code, refunded, "   \
	"payment_method"
#define LOCK_SQL "SELECT " ROW_COLS " FROM orders WHERE number = $1 FOR UPDATE"
#define FIND_SQL "SELECT " ROW_COLS " FROM orders WHERE number = $1"
#define LIST_SQL                                                                                   \
	"SELECT id, count(*) OVER () FROM orders WHERE member_id = $1 "                            \
	"ORDER BY placed_at DESC, id DESC LIMIT $2 OFFSET $3"
#define COUNT_SQL "SELECT count(*) FROM orders WHERE member_id = $1"
#define UPDATE_STATUS_SQL                                                                          \
	"UPDATE orders SET status = $2, updated_at = now(), "                                      \
	"paid_at = CASE WHEN $2 = 'paid' THEN now() ELSE paid_at END, "                            \
	"cancelled_at = CASE WHEN $2 = 'cancelled' THEN now() ELSE cancelled_at END "              \
	"WHERE id = $1"
#define HISTORY_INSERT_SQL                                                                         \
	"INSERT INTO order_status_history (order_id, from_status, to_status, actor, reason) "      \
	"VALUES ($1, $2, $3, $4, $5) RETURNING " ORDER_RFC3339("at")

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
col(mall_arena *a, const PGresult *res, int r, int c)
{
	return mall_arena_strdup(a, PQgetvalue(res, r, c));
}

static void
row_from(mall_arena *a, const PGresult *res, order_row *row)
{
	row->id = mall_db_int64(res, 0, 0);
	row->number = col(a, res, 0, 1);
	row->member_id = mall_db_int64(res, 0, 2);
	row->guest_id = col(a, res, 0, 3);
	row->status = order_status_parse(PQgetvalue(res, 0, 4));
	row->orderer_phone = col(a, res, 0, 5);
	row->total = mall_db_int64(res, 0, 6);
	row->coupon_code = col(a, res, 0, 7);
	row->refunded = mall_db_int64(res, 0, 8);
	row->payment_method = order_method_parse(PQgetvalue(res, 0, 9));
}

static mall_code
find(mall_db_conn *db, mall_arena *a, const char *sql, const char *number, order_row *row,
     mall_status *st)
{
	const char *params[1] = {number};
	PGresult *res = mall_db_exec(db, st, sql, 1, params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_NOT_FOUND, "order %s not found", number);
	}
	row_from(a, res, row);
	PQclear(res);
	return MALL_OK;
}

mall_code
order_lock(mall_db_conn *db, mall_arena *a, const char *number, order_row *row, mall_status *st)
{
	return find(db, a, LOCK_SQL, number, row, st);
}

mall_code
order_load(mall_db_conn *db, mall_arena *a, int64_t id, Mall__Order__Order **out, mall_status *st)
{
	char idbuf[24];
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)id);
	const char *params[1] = {idbuf};
	PGresult *res = mall_db_exec(db, st, LOAD_SQL, 1, params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_NOT_FOUND, "order %s not found", idbuf);
	}
	Mall__Order__Order *o = mall_arena_alloc(a, sizeof(*o));
	mall__order__order__init(o);
	o->id = mall_db_int64(res, 0, 0);
	o->number = col(a, res, 0, 1);
	o->member_id = mall_db_int64(res, 0, 2);
	o->status = order_status_parse(PQgetvalue(res, 0, 3));
	o->channel = order_channel_parse(PQgetvalue(res, 0, 4));
	o->payment_method = order_method_parse(PQgetvalue(res, 0, 5));
	const char *cur = col(a, res, 0, 6);
	o->subtotal = money(a, mall_db_int64(res, 0, 7), cur);
	o->discount = money(a, mall_db_int64(res, 0, 8), cur);
	o->shipping_fee = money(a, mall_db_int64(res, 0, 9), cur);
	o->total = money(a, mall_db_int64(res, 0, 10), cur);
	o->refunded = money(a, mall_db_int64(res, 0, 11), cur);
	o->coupon_code = col(a, res, 0, 12);
	Mall__Order__ShippingAddress *ad = mall_arena_alloc(a, sizeof(*ad));
	mall__order__shipping_address__init(ad);
	ad->recipient = col(a, res, 0, 13);
	ad->phone = col(a, res, 0, 14);
	ad->postal_code = col(a, res, 0, 15);
	ad->address1 = col(a, res, 0, 16);
	ad->address2 = col(a, res, 0, 17);
	o->shipping_address = ad;
	o->orderer_name = col(a, res, 0, 18);
	o->orderer_phone = col(a, res, 0, 19);
	o->orderer_email = col(a, res, 0, 20);
	o->delivery_note = col(a, res, 0, 21);
	o->order_name = col(a, res, 0, 22);
	o->payment_due_at = col(a, res, 0, 23);
	o->placed_at = col(a, res, 0, 24);
	o->paid_at = col(a, res, 0, 25);
	o->cancelled_at = col(a, res, 0, 26);
	PQclear(res);

	res = mall_db_exec(db, st, LINES_SQL, 1, params);
	if (res == NULL)
		return st->code;
	int n = PQntuples(res);
	o->n_lines = (size_t)n;
	o->lines = mall_arena_alloc(a, sizeof(*o->lines) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++) {
		Mall__Order__OrderLine *l = mall_arena_alloc(a, sizeof(*l));
		mall__order__order_line__init(l);
		l->sku_id = mall_db_int64(res, i, 0);
		l->sku_code = col(a, res, i, 1);
		l->product_id = mall_db_int64(res, i, 2);
		l->name = col(a, res, i, 3);
		l->option_text = col(a, res, i, 4);
		l->unit_price = money(a, mall_db_int64(res, i, 5), cur);
		l->quantity = (int32_t)mall_db_int64(res, i, 6);
		l->line_total = money(a, mall_db_int64(res, i, 7), cur);
		l->gift = mall_db_bool(res, i, 8);
		o->lines[i] = l;
	}
	PQclear(res);

	res = mall_db_exec(db, st, HISTORY_SQL, 1, params);
	if (res == NULL)
		return st->code;
	n = PQntuples(res);
	o->n_history = (size_t)n;
	o->history = mall_arena_alloc(a, sizeof(*o->history) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++) {
		Mall__Order__StatusChange *h = mall_arena_alloc(a, sizeof(*h));
		mall__order__status_change__init(h);
		h->from = order_status_parse(PQgetvalue(res, i, 0));
		h->to = order_status_parse(PQgetvalue(res, i, 1));
		h->actor = col(a, res, i, 2);
		h->reason = col(a, res, i, 3);
		h->at = col(a, res, i, 4);
		o->history[i] = h;
	}
	PQclear(res);
	*out = o;
	return MALL_OK;
}

bool
order_access(const order_row *row, int64_t member_id, const char *phone, bool admin)
{
	if (admin)
		return true;
	if (member_id > 0)
		return row->member_id == member_id;
	return row->member_id == 0 && phone != NULL && *phone != '\0' &&
	       strcmp(row->orderer_phone, phone) == 0;
}

void
order_check_access_request(mall_status *st, mall_arena *a, const char *number, int64_t member_id,
                           const char *phone, bool admin, const char **phone_out)
{
	*phone_out = "";
	order_check_number(st, number);
	if (member_id < 0)
		mall_status_field(st, "memberId", "must be a positive id");
	if (!admin && member_id == 0) {
		const char *p = mall_check_phone(st, a, "ordererPhone", phone);
		if (p != NULL)
			*phone_out = p;
	}
}

mall_code
order_record_change(mall_db_conn *db, mall_arena *a, const order_row *row,
                    Mall__Order__OrderStatus to, const char *actor, const char *reason,
                    mall_status *st)
{
	char idbuf[24];
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)row->id);
	const char *to_text = order_status_text(to);
	const char *up[2] = {idbuf, to_text};
	if (mall_db_exec_cmd(db, st, UPDATE_STATUS_SQL, 2, up) < 0)
		return st->code;
	const char *hist[5] = {idbuf, order_status_text(row->status), to_text, actor,
	                       reason ? reason : ""};
	PGresult *res = mall_db_exec(db, st, HISTORY_INSERT_SQL, 5, hist);
	if (res == NULL)
		return st->code;
	char *at = col(a, res, 0, 0);
	PQclear(res);

	Mall__Order__OrderStatusChanged *ev = mall_arena_alloc(a, sizeof(*ev));
	mall__order__order_status_changed__init(ev);
	ev->number = (char *)row->number;
	ev->member_id = row->member_id;
	ev->from = row->status;
	ev->to = to;
	ev->actor = (char *)actor;
	ev->reason = (char *)(reason ? reason : "");
	ev->at = at;
	ev->total = money(a, row->total, "KRW");
	if (mall_outbox_add(db, a, "order.status_changed", &ev->base, st) != MALL_OK)
		return st->code;
	if (to == MALL__ORDER__ORDER_STATUS__PAID &&
	    mall_outbox_add(db, a, "order.paid", &ev->base, st) != MALL_OK)
		return st->code;
	if (to == MALL__ORDER__ORDER_STATUS__CANCELLED &&
	    mall_outbox_add(db, a, "order.cancelled", &ev->base, st) != MALL_OK)
		return st->code;
	return MALL_OK;
}

mall_code
order_note(mall_db_conn *db, const order_row *row, const char *actor, const char *reason,
           mall_status *st)
{
	char idbuf[24];
	snprintf(idbuf, sizeof(idbuf), "%lld", (long long)row->id);
	const char *status = order_status_text(row->status);
	const char *hist[5] = {idbuf, status, status, actor, reason ? reason : ""};
	PGresult *res = mall_db_exec(db, st, HISTORY_INSERT_SQL, 5, hist);
	if (res == NULL)
		return st->code;
	PQclear(res);
	return MALL_OK;
}

/* ---- GetOrder, ListOrders ---- */

mall_code
order_get(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply, mall_status *st)
{
	const Mall__Order__GetOrderRequest *r = (const void *)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *db = mall_rpc_ctx_worker(ctx);
	const char *phone;
	order_check_access_request(st, a, r->number, r->member_id, r->orderer_phone, r->admin,
	                           &phone);
	if (st->nfields > 0)
		return st->code;
	/* one snapshot: the status, the lines and the history as of one moment
	 * (separate statements could show a status older than its history) */
	if (mall_db_begin(db, st) != MALL_OK)
		return st->code;
	if (mall_db_exec_cmd(db, st, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
	                     0, NULL) < 0)
		goto fail;
	order_row row;
	if (find(db, a, FIND_SQL, r->number, &row, st) != MALL_OK)
		goto fail;
	if (!order_access(&row, r->member_id, phone, r->admin)) {
		mall_status_set(st, MALL_NOT_FOUND, "order %s not found", r->number);
		goto fail;
	}
	Mall__Order__Order *o;
	if (order_load(db, a, row.id, &o, st) != MALL_OK || mall_db_commit(db, st) != MALL_OK)
		goto fail;
	*reply = &o->base;
	return MALL_OK;
fail:
	mall_db_rollback(db);
	return st->code;
}

mall_code
order_list(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
           mall_status *st)
{
	const Mall__Order__ListOrdersRequest *r = (const void *)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *db = mall_rpc_ctx_worker(ctx);
	if (r->member_id <= 0)
		mall_status_field(st, "memberId", "must be a positive id");
	if (r->page < 0)
		mall_status_field(st, "page", "must be at least 1");
	if (r->page_size < 0 || r->page_size > 100)
		mall_status_field(st, "pageSize", "must be 1 to 100");
	if (st->nfields > 0)
		return st->code;
	int64_t page = r->page ? r->page : 1;
	int64_t size = r->page_size ? r->page_size : 20;
	char mid[24], lim[24], off[24];
	snprintf(mid, sizeof(mid), "%lld", (long long)r->member_id);
	snprintf(lim, sizeof(lim), "%lld", (long long)size);
	snprintf(off, sizeof(off), "%lld", (long long)((page - 1) * size));
	const char *params[3] = {mid, lim, off};
	PGresult *res = mall_db_exec(db, st, LIST_SQL, 3, params);
	if (res == NULL)
		return st->code;
	int n = PQntuples(res);
	Mall__Order__ListOrdersReply *out = mall_arena_alloc(a, sizeof(*out));
	mall__order__list_orders_reply__init(out);
	out->n_orders = (size_t)n;
	out->orders = mall_arena_alloc(a, sizeof(*out->orders) * (size_t)(n ? n : 1));
	int64_t *ids = mall_arena_alloc(a, sizeof(*ids) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++)
		ids[i] = mall_db_int64(res, i, 0);
	out->total_count = n > 0 ? mall_db_int64(res, 0, 1) : 0;
	PQclear(res);
	if (n == 0 && page > 1) {
		/* past the last page: the count still says how many there are */
		res = mall_db_exec(db, st, COUNT_SQL, 1, params);
		if (res == NULL)
			return st->code;
		out->total_count = mall_db_int64(res, 0, 0);
		PQclear(res);
	}
	for (int i = 0; i < n; i++)
		if (order_load(db, a, ids[i], &out->orders[i], st) != MALL_OK)
			return st->code;
	*reply = &out->base;
	return MALL_OK;
}
