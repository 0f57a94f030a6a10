/*
 * catalog_reservation.c: stock reservations, the stock an order holds between
 * checkout and payment.
 *
 * A reservation (table reservation, one per order id, for good) holds its lines
 * (reservation_line) out of the SKUs' available stock by adding them to
 * sku.reserved.  Its states:
 *
 *   reserved --Commit--> committed --Restock--> restocked
 *       \--Release--> released
 *
 * Commit takes the lines off on_hand and reserved together (the order was
 * paid), Release gives them back to available (cancelled or expired unpaid),
 * Restock puts a paid order's lines back on hand (cancelled after payment).
 * Each call is idempotent by order id as well as by idempotency key: asking
 * for the state a reservation is in already answers it unchanged.
 *
 * Invariants: sku.reserved is the sum of the lines of the reservations in
 * state reserved, and 0 <= reserved <= on_hand (a CHECK on sku), so available
 * is never negative.  They hold under any concurrency because every change
 * runs in lib/idem.c's transaction (the handlers neither begin nor commit)
 * and takes its locks in one order: the reservation row first (its INSERT, or
 * SELECT ... FOR UPDATE), then the SKU rows by ascending id (SELECT ... ORDER
 * BY id FOR UPDATE) before any UPDATE touches them; SetStock locks a single
 * SKU row.  So two transactions never wait on each other in a cycle.  A
 * reservation's availability check reads the locked rows, so a line over the
 * available stock is refused with nothing written.
 *
 * Every change bumps catalog_version in its transaction, like the other
 * writes, so product pages show the new availability at once.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "catalog.h"
#include "json_pb.h"

#define MAX_LINES 100
#define MAX_QUANTITY 999
#define MAX_ORDER_ID 64
/* how far ahead an expiry may be: a virtual account's due date is days away,
 * not months */
#define MAX_EXPIRY_DAYS 30

/* The state names as stored (reservation.state), by enum value. */
static const char *const state_names[] = {
    [MALL__CATALOG__RESERVATION_STATE__RESERVED] = "reserved",
    [MALL__CATALOG__RESERVATION_STATE__COMMITTED] = "committed",
    [MALL__CATALOG__RESERVATION_STATE__RELEASED] = "released",
    [MALL__CATALOG__RESERVATION_STATE__RESTOCKED] = "restocked",
};
#define NSTATES (sizeof(state_names) / sizeof(state_names[0]))

static Mall__Catalog__ReservationState
state_from_name(const char *name)
{
	for (size_t i = 0; i < NSTATES; i++)
		if (state_names[i] != NULL && strcmp(state_names[i], name) == 0)
			return (Mall__Catalog__ReservationState)i;
	return MALL__CATALOG__RESERVATION_STATE__RESERVATION_STATE_UNSPECIFIED;
}

/* order id: 1 to 64 ASCII letters, digits, '-' or '_' (so no SQL, no path, no
 * UTF-8 question can arise from it) */
static void
check_order_id(mall_status *st, const char *v)
{
	size_t len = strlen(v);
	bool ok = len >= 1 && len <= MAX_ORDER_ID;
	for (size_t i = 0; ok && i < len; i++)
		ok = (v[i] >= 'a' && v[i] <= 'z') || (v[i] >= 'A' && v[i] <= 'Z') ||
		     (v[i] >= '0' && v[i] <= '9') || v[i] == '-' || v[i] == '_';
	if (!ok)
		mall_status_field(st, "orderId", "must be 1 to %d letters, digits, '-' or '_'",
		                  MAX_ORDER_ID);
}

/* digits: n decimal digits at s, into *out. */
static bool
digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* days_from_civil: days since 1970-01-01 of a proleptic Gregorian date
 * (Howard Hinnant's algorithm). */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* parse_rfc3339: s as an RFC 3339 date-time ("2026-11-26T15:04:05Z",
 * "2026-11-26T15:04:05.123+09:00"), into seconds since the epoch (fractions
 * dropped).  False when it is not one (leap seconds included). */
static bool
parse_rfc3339(const char *s, int64_t *out)
{
	int y, mo, d, h, mi, sec;
	size_t len = strlen(s);
	if (len < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
	    !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !digits(s + 17, 2, &sec))
		return false;
	static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] + (mo == 2 && leap) || h > 23 ||
	    mi > 59 || sec > 59)
		return false;
	const char *p = s + 19;
	if (*p == '.') {
		const char *f = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		if (p == f || p - f > 9)
			return false;
	}
	int64_t offset = 0;
	if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
		offset = 0;
	} else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
		int oh, om;
		if (!digits(p + 1, 2, &oh) || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
			return false;
		offset = (*p == '-' ? -1 : 1) * ((int64_t)oh * 3600 + om * 60);
	} else {
		return false;
	}
	*out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset;
	return true;
}

/* A request line with its place in the request, for sorting by SKU id. */
typedef struct line {
	int64_t sku_id;
	int32_t quantity;
	size_t index;
} line;

static int
line_cmp(const void *a, const void *b)
{
	const line *x = a, *y = b;
	return x->sku_id < y->sku_id ? -1 : x->sku_id > y->sku_id;
}

/* "{a,b,c}": an array literal of the SKU ids of lines, or their quantities. */
static char *
array_text(mall_arena *a, const line *lines, size_t n, bool quantities)
{
	char *s = mall_arena_alloc(a, n * 21 + 3);
	size_t len = 0;
	s[len++] = '{';
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			s[len++] = ',';
		long long v = quantities ? lines[i].quantity : lines[i].sku_id;
		len += (size_t)sprintf(s + len, "%lld", v);
	}
	s[len++] = '}';
	s[len] = '\0';
	return s;
}

#define RESERVATION_SQL                                                                            \
	"SELECT state, " CATALOG_RFC3339_UTC("expires_at") ", " CATALOG_RFC3339_UTC("created_at")  \
	", " CATALOG_RFC3339_UTC("updated_at") " FROM reservation WHERE order_id = $1"

/* load_reservation: the reservation of order_id with its lines (by SKU id),
 * read on conn into a; *out NULL when there is none.  With lock, its row is
 * locked FOR UPDATE (the first lock a state change takes). */
static mall_code
load_reservation(mall_db_conn *conn, mall_arena *a, const char *order_id, bool lock,
                 Mall__Catalog__Reservation **out, mall_status *st)
{
	*out = NULL;
	const char *params[] = {order_id};
	PGresult *res = mall_db_exec(conn, st,
	    lock ? RESERVATION_SQL " FOR UPDATE" : RESERVATION_SQL, 1, params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return MALL_OK;
	}
	Mall__Catalog__Reservation *r =
	    (void *)mall_pb_new(&mall__catalog__reservation__descriptor, a);
	r->order_id = mall_arena_strdup(a, order_id);
	r->state = state_from_name(PQgetvalue(res, 0, 0));
	r->expires_at = mall_arena_strdup(a, PQgetvalue(res, 0, 1));
	r->created_at = mall_arena_strdup(a, PQgetvalue(res, 0, 2));
	r->updated_at = mall_arena_strdup(a, PQgetvalue(res, 0, 3));
	bool known = r->state != MALL__CATALOG__RESERVATION_STATE__RESERVATION_STATE_UNSPECIFIED;
	PQclear(res);
	if (!known)
		return mall_status_set(st, MALL_DATA_LOSS,
		                       "reservation of order %s has an unknown state", order_id);

	res = mall_db_exec(conn, st,
	    "SELECT sku_id, quantity FROM reservation_line WHERE order_id = $1 ORDER BY sku_id", 1,
	    params);
	if (res == NULL)
		return st->code;
	int n = PQntuples(res);
	r->n_lines = (size_t)n;
	r->lines = mall_arena_alloc(a, sizeof(*r->lines) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++) {
		Mall__Catalog__ReservationLine *l =
		    (void *)mall_pb_new(&mall__catalog__reservation_line__descriptor, a);
		l->sku_id = mall_db_int64(res, i, 0);
		l->quantity = (int32_t)mall_db_int64(res, i, 1);
		r->lines[i] = l;
	}
	PQclear(res);
	*out = r;
	return MALL_OK;
}

/* answer_existing: a reservation r exists for the order: the request's lines
 * (sorted, n of them) are its lines, so it is the answer as it is, or they
 * are not: reservation_mismatch. */
static mall_code
answer_existing(Mall__Catalog__Reservation *r, const line *lines, size_t n,
                ProtobufCMessage **reply, mall_status *st)
{
	bool same = r->n_lines == n;
	for (size_t i = 0; same && i < n; i++)
		same = r->lines[i]->sku_id == lines[i].sku_id &&
		       r->lines[i]->quantity == lines[i].quantity;
	if (!same)
		return mall_status_reason(st, MALL_FAILED_PRECONDITION, "reservation_mismatch",
		                          "order %s has a reservation with other lines",
		                          r->order_id);
	*reply = &r->base;
	return MALL_OK;
}

/* check_reserve: validates req; on success *out holds its lines sorted by SKU
 * id and *expires the expiry (seconds since the epoch) when one is given.
 * Whether it is in the future is the caller's to check: a repeat of an old
 * request may carry a time that has passed. */
static mall_code
check_reserve(mall_arena *a, const Mall__Catalog__ReserveStockRequest *req, line **out,
              int64_t *expires, mall_status *st)
{
	check_order_id(st, req->order_id);
	if (req->n_lines == 0 || req->n_lines > MAX_LINES)
		mall_status_field(st, "lines", "must have 1 to %d lines, not %zu", MAX_LINES,
		                  req->n_lines);
	*expires = 0;
	if (req->expires_at[0] != '\0' && !parse_rfc3339(req->expires_at, expires))
		mall_status_field(st, "expiresAt",
		                  "must be an RFC 3339 time such as 2026-11-26T15:04:05Z");
	if (req->n_lines == 0 || req->n_lines > MAX_LINES)
		return st->code;
	line *lines = mall_arena_alloc(a, sizeof(*lines) * req->n_lines);
	for (size_t i = 0; i < req->n_lines; i++) {
		char field[40];
		const Mall__Catalog__ReservationLine *l = req->lines[i];
		if (l->sku_id <= 0) {
			snprintf(field, sizeof(field), "lines[%zu].skuId", i);
			mall_status_field(st, field, "must be a sku id");
		}
		if (l->quantity < 1 || l->quantity > MAX_QUANTITY) {
			snprintf(field, sizeof(field), "lines[%zu].quantity", i);
			mall_status_field(st, field, "must be between 1 and %d", MAX_QUANTITY);
		}
		lines[i] = (line){.sku_id = l->sku_id, .quantity = l->quantity, .index = i};
	}
	qsort(lines, req->n_lines, sizeof(*lines), line_cmp);
	for (size_t i = 1; i < req->n_lines; i++) {
		if (lines[i].sku_id == lines[i - 1].sku_id && lines[i].sku_id > 0) {
			/* qsort is not stable: name the later line */
			size_t x = lines[i - 1].index, y = lines[i].index;
			char field[40];
			snprintf(field, sizeof(field), "lines[%zu].skuId", x > y ? x : y);
			mall_status_field(st, field, "sku %lld is in lines[%zu] already",
			                  (long long)lines[i].sku_id, x < y ? x : y);
		}
	}
	*out = lines;
	return st->code;
}

/* lock_and_check: locks the SKU rows of lines (sorted by id) in id order and
 * checks each exists and has the line's quantity available. */
static mall_code
lock_and_check(mall_db_conn *conn, mall_arena *a, const line *lines, size_t n, mall_status *st)
{
	const char *params[] = {array_text(a, lines, n, false)};
	PGresult *res = mall_db_exec(conn, st,
	    "SELECT id, on_hand, reserved FROM sku WHERE id = ANY($1::bigint[]) ORDER BY id "
	    "FOR UPDATE",
	    1, params);
	if (res == NULL)
		return st->code;
	int rows = PQntuples(res);
	/* both in id order: walk them together; a line without its row is unknown */
	int r = 0;
	for (size_t i = 0; i < n; i++) {
		if (r >= rows || mall_db_int64(res, r, 0) != lines[i].sku_id) {
			PQclear(res);
			mall_status_set(st, MALL_NOT_FOUND, "sku %lld not found (lines[%zu].skuId)",
			                (long long)lines[i].sku_id, lines[i].index);
			mall_status_detail(st, "skuId", lines[i].sku_id);
			return st->code;
		}
		r++;
	}
	for (size_t i = 0; i < n; i++) {
		int64_t on_hand = mall_db_int64(res, (int)i, 1);
		int64_t reserved = mall_db_int64(res, (int)i, 2);
		int64_t available = on_hand > reserved ? on_hand - reserved : 0;
		if (lines[i].quantity > available) {
			PQclear(res);
			mall_status_reason(st, MALL_FAILED_PRECONDITION, "out_of_stock",
			                   "sku %lld has %lld available, not %d (lines[%zu])",
			                   (long long)lines[i].sku_id, (long long)available,
			                   (int)lines[i].quantity, lines[i].index);
			mall_status_detail(st, "skuId", lines[i].sku_id);
			mall_status_detail(st, "available", available);
			return st->code;
		}
	}
	PQclear(res);
	return MALL_OK;
}

mall_code
catalog_reserve_stock(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                      mall_status *st)
{
	const Mall__Catalog__ReserveStockRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	line *lines = NULL;
	int64_t expires = 0;
	if (check_reserve(a, req, &lines, &expires, st) != MALL_OK)
		return st->code;
	size_t n = req->n_lines;

	/* a repeat for the order: answered as the reservation is, whatever its state */
	Mall__Catalog__Reservation *r;
	if (load_reservation(conn, a, req->order_id, false, &r, st) != MALL_OK)
		return st->code;
	if (r != NULL)
		return answer_existing(r, lines, n, reply, st);

	bool given = req->expires_at[0] != '\0';
	if (given) {
		int64_t now = (int64_t)time(NULL);
		if (expires <= now)
			return mall_status_field(st, "expiresAt", "must be in the future");
		if (expires > now + (int64_t)MAX_EXPIRY_DAYS * 86400)
			return mall_status_field(st, "expiresAt", "must be within %d days",
			                         MAX_EXPIRY_DAYS);
	}
	/* The reservation row first: a concurrent Reserve of the same order
	 * waits here on the primary key until the first one ends, then finds its
	 * reservation (or, if it rolled back, goes on). */
	const char *hparams[] = {req->order_id,
	                         given ? mall_arena_printf(a, "%lld", (long long)expires) : NULL};
	int64_t inserted = mall_db_exec_cmd(conn, st,
	    "INSERT INTO reservation (order_id, expires_at) VALUES ($1,"
	    " coalesce(to_timestamp($2::bigint), now() + interval '30 minutes'))"
	    " ON CONFLICT (order_id) DO NOTHING",
	    2, hparams);
	if (inserted < 0)
		return st->code;
	if (inserted == 0) {
		if (load_reservation(conn, a, req->order_id, false, &r, st) != MALL_OK)
			return st->code;
		if (r == NULL)
			return mall_status_set(st, MALL_ABORTED,
			                       "reservation of order %s vanished: retry",
			                       req->order_id);
		return answer_existing(r, lines, n, reply, st);
	}

	if (lock_and_check(conn, a, lines, n, st) != MALL_OK)
		return st->code; /* lib/idem.c rolls back: nothing is written */
	const char *lparams[] = {req->order_id, array_text(a, lines, n, false),
	                         array_text(a, lines, n, true)};
	if (mall_db_exec_cmd(conn, st,
	        "INSERT INTO reservation_line (order_id, sku_id, quantity)"
	        " SELECT $1, l.id, l.q FROM unnest($2::bigint[], $3::int[]) AS l(id, q)",
	        3, lparams) < 0 ||
	    mall_db_exec_cmd(conn, st,
	        "UPDATE sku SET reserved = sku.reserved + l.q"
	        " FROM unnest($1::bigint[], $2::bigint[]) AS l(id, q) WHERE sku.id = l.id",
	        2, lparams + 1) < 0 ||
	    catalog_bump_version(conn, st) != MALL_OK ||
	    load_reservation(conn, a, req->order_id, false, &r, st) != MALL_OK)
		return st->code;
	if (r == NULL)
		return mall_status_set(st, MALL_INTERNAL, "reservation of order %s vanished",
		                       req->order_id);
	*reply = &r->base;
	return MALL_OK;
}

/* The state changes after Reserve. */
typedef enum change { CHANGE_COMMIT, CHANGE_RELEASE, CHANGE_RESTOCK } change;

#define STATE(x) MALL__CATALOG__RESERVATION_STATE__##x

/* Why a change cannot be made from a state: the status reason and the rest of
 * the message. */
typedef struct refusal {
	const char *reason;
	const char *why;
} refusal;

/* A change: the state it starts from and leads to, what it does to the SKUs of
 * the lines ($1 the order id; run once their rows are locked), and its
 * refusals by state.  From any other state (the change is done already) the
 * reservation is answered as it is. */
static const struct change_def {
	Mall__Catalog__ReservationState from, to;
	const char *sku_sql;
	refusal refused[NSTATES];
} changes[] = {
    [CHANGE_COMMIT] =
        {
            .from = STATE(RESERVED),
            .to = STATE(COMMITTED),
            .sku_sql = "UPDATE sku SET on_hand = sku.on_hand - l.quantity,"
                       " reserved = sku.reserved - l.quantity FROM reservation_line l"
                       " WHERE l.order_id = $1 AND sku.id = l.sku_id",
            .refused = {[STATE(RELEASED)] = {"reservation_released", "it cannot be committed"}},
        },
    [CHANGE_RELEASE] =
        {
            .from = STATE(RESERVED),
            .to = STATE(RELEASED),
            .sku_sql = "UPDATE sku SET reserved = sku.reserved - l.quantity"
                       " FROM reservation_line l WHERE l.order_id = $1 AND sku.id = l.sku_id",
            .refused =
                {
                    [STATE(COMMITTED)] = {"reservation_committed",
                                          "a paid order's stock goes back with Restock"},
                    [STATE(RESTOCKED)] = {"reservation_committed",
                                          "its stock went back on hand already"},
                },
        },
    [CHANGE_RESTOCK] =
        {
            .from = STATE(COMMITTED),
            .to = STATE(RESTOCKED),
            .sku_sql = "UPDATE sku SET on_hand = sku.on_hand + l.quantity"
                       " FROM reservation_line l WHERE l.order_id = $1 AND sku.id = l.sku_id",
            .refused =
                {
                    [STATE(RESERVED)] = {"reservation_not_committed",
                                         "an unpaid order's stock goes back with Release"},
                    [STATE(RELEASED)] = {"reservation_released", "there is nothing to restock"},
                },
        },
};

/* change_state: makes change what to the reservation of order_id: from its
 * `from` state, locks the SKU rows in id order, changes them and the state;
 * from a refused state it fails with the refusal's reason; from any other it
 * answers the reservation as it is. */
static mall_code
change_state(mall_rpc_ctx *ctx, const char *order_id, change what, ProtobufCMessage **reply,
             mall_status *st)
{
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	const struct change_def *c = &changes[what];
	check_order_id(st, order_id);
	if (st->code != MALL_OK)
		return st->code;
	Mall__Catalog__Reservation *r;
	if (load_reservation(conn, a, order_id, true, &r, st) != MALL_OK)
		return st->code;
	if (r == NULL)
		return mall_status_set(st, MALL_NOT_FOUND, "order %s has no reservation", order_id);
	const refusal *no = &c->refused[r->state];
	if (no->reason != NULL)
		return mall_status_reason(st, MALL_FAILED_PRECONDITION, no->reason,
		                          "reservation of order %s is %s: %s", order_id,
		                          state_names[r->state], no->why);
	if (r->state != c->from) {
		*reply = &r->base;
		return MALL_OK;
	}

	/* the SKU rows in id order before the UPDATE touches them (in whatever
	 * order its plan visits them) */
	const char *params[] = {order_id, state_names[c->to]};
	PGresult *res = mall_db_exec(conn, st,
	    "SELECT s.id FROM sku s JOIN reservation_line l ON l.sku_id = s.id"
	    " WHERE l.order_id = $1 ORDER BY s.id FOR UPDATE OF s",
	    1, params);
	if (res == NULL)
		return st->code;
	PQclear(res);
	if (mall_db_exec_cmd(conn, st, c->sku_sql, 1, params) < 0 ||
	    mall_db_exec_cmd(conn, st,
	        "UPDATE reservation SET state = $2, updated_at = now() WHERE order_id = $1", 2,
	        params) < 0 ||
	    catalog_bump_version(conn, st) != MALL_OK ||
	    load_reservation(conn, a, order_id, false, &r, st) != MALL_OK)
		return st->code;
	if (r == NULL)
		return mall_status_set(st, MALL_INTERNAL, "reservation of order %s vanished",
		                       order_id);
	*reply = &r->base;
	return MALL_OK;
}

mall_code
catalog_commit_reservation(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                           ProtobufCMessage **reply, mall_status *st)
{
	return change_state(ctx, ((const Mall__Catalog__CommitReservationRequest *)req)->order_id,
	                    CHANGE_COMMIT, reply, st);
}

mall_code
catalog_release_reservation(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                            ProtobufCMessage **reply, mall_status *st)
{
	return change_state(ctx, ((const Mall__Catalog__ReleaseReservationRequest *)req)->order_id,
	                    CHANGE_RELEASE, reply, st);
}

mall_code
catalog_restock_reservation(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                            ProtobufCMessage **reply, mall_status *st)
{
	return change_state(ctx, ((const Mall__Catalog__RestockReservationRequest *)req)->order_id,
	                    CHANGE_RESTOCK, reply, st);
}

mall_code
catalog_get_reservation(mall_rpc_ctx *ctx, const ProtobufCMessage *req_,
                        ProtobufCMessage **reply, mall_status *st)
{
	const Mall__Catalog__GetReservationRequest *req = (const void *)req_;
	check_order_id(st, req->order_id);
	if (st->code != MALL_OK)
		return st->code;
	Mall__Catalog__Reservation *r;
	if (load_reservation(mall_rpc_ctx_worker(ctx), mall_rpc_ctx_arena(ctx), req->order_id,
	                     false, &r, st) != MALL_OK)
		return st->code;
	if (r == NULL)
		return mall_status_set(st, MALL_NOT_FOUND, "order %s has no reservation",
		                       req->order_id);
	*reply = &r->base;
	return MALL_OK;
}
