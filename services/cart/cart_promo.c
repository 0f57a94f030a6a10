/*
 * cart_promo.c: promotions: the shipping policy, coupons and their
 * redemptions, gift rules (the admin back office's RPCs and the order
 * service's RedeemCoupon/ReleaseCoupon), and cart_promotions_load, which
 * reads what pricing a cart needs in one place.
 *
 * The mutating handlers run inside the transaction lib/idem.c opened for
 * their idempotency key and never begin or commit; a handler error rolls the
 * whole call back.  Nothing here lets an SQL error happen on purpose inside
 * that transaction: times are checked in C (a strict RFC 3339 form) before
 * PostgreSQL casts them, and the table's checks are repeated here as field
 * errors.  A unique violation (a coupon code taken) is the one error the
 * database answers, and it ends the call anyway.
 *
 * Times reach pricing as Unix seconds rounded up, so a window never opens
 * early; the database's clock (now()) is the one that counts.
 */
#include <stdio.h>
#include <string.h>

#include "cart.h"
#include "json_pb.h"
#include "log.h"

#define MONEY_MAX 1000000000LL /* 10^9 won: prices, thresholds, discounts */
#define FEE_MAX 1000000LL      /* the shipping fee (the table's check) */
#define NAME_MAX_CHARS 100
#define ORDER_ID_MAX_CHARS 64
#define GIFT_QTY_MAX 10
#define TIME_EXAMPLE "an RFC 3339 time such as 2026-11-26T09:00:00+09:00"

/* clang-format off */
#define COUPON_COLUMNS \
	"c.id, c.code, c.name, c.kind, c.amount, c.percent, c.max_discount, c.min_subtotal, " \
	CART_RFC3339("c.starts_at") ", " CART_RFC3339("c.ends_at") ", " \
	"c.total_limit, c.per_member_limit, c.member_only, c.active, " \
	"(SELECT count(*) FROM coupon_redemption r WHERE r.coupon_id = c.id), " \
	CART_RFC3339("c.created_at")

/* A time as Unix seconds rounded up, 0 for NULL. */
#define EPOCH_S(col) "coalesce(ceil(extract(epoch FROM " col "))::bigint, 0)"

/* What cart_coupon_check needs of c (14 columns, see pricing_coupon). */
#define PRICING_COLUMNS \
	"c.id, c.code, c.name, c.kind, c.amount, c.percent, c.max_discount, c.min_subtotal, " \
	EPOCH_S("c.starts_at") ", " EPOCH_S("c.ends_at") ", " \
	"c.total_limit, c.per_member_limit, c.member_only, c.active"

#define GIFT_COLUMNS \
	"id, name, min_subtotal, trigger_sku_id, gift_sku_id, gift_quantity, " \
	CART_RFC3339("starts_at") ", " CART_RFC3339("ends_at") ", active, " \
	CART_RFC3339("created_at")
/* clang-format on */

static char *
col(mall_arena *a, const PGresult *res, int row, int c)
{
	return mall_arena_strdup(a, PQgetvalue(res, row, c));
}

static const char *
int_text(mall_arena *a, int64_t v)
{
	return mall_arena_printf(a, "%lld", (long long)v);
}

/* ---- checks: each adds a field error to st when the value is bad ---- */

/* Whether valid UTF-8 s holds a C0 or C1 control character or DEL. */
static bool
has_control(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	for (size_t i = 0; p[i]; i++) {
		if (p[i] < 0x20 || p[i] == 0x7F)
			return true;
		if (p[i] == 0xC2 && p[i + 1] >= 0x80 && p[i + 1] <= 0x9F)
			return true;
	}
	return false;
}

/* Required text: 1..max characters of valid UTF-8, not only blanks, without
 * control characters. */
static void
check_text(mall_status *st, const char *field, const char *v, size_t max)
{
	size_t len = strlen(v);
	if (len == 0)
		mall_status_field(st, field, "is required");
	else if (!mall_utf8_valid(v, len))
		mall_status_field(st, field, "must be valid UTF-8");
	else if (mall_utf8_chars(v, len) > max)
		mall_status_field(st, field, "must be 1 to %zu characters", max);
	else if (has_control(v))
		mall_status_field(st, field, "must not contain control characters");
	else if (strspn(v, " ") == len)
		mall_status_field(st, field, "must not be blank");
}

static void
check_money(mall_status *st, const char *field, int64_t v, int64_t max)
{
	if (v < 0 || v > max)
		mall_status_field(st, field, "must be 0 to %lld won", (long long)max);
}

static void
check_limit(mall_status *st, const char *field, int32_t v)
{
	if (v < 0)
		mall_status_field(st, field, "must be 0 (unlimited) or more");
}

/* A time of the API: "" (none) or RFC 3339. */
typedef struct when {
	bool set;
	int64_t us;    /* Unix microseconds */
	char text[128]; /* canonical, for ::timestamptz (room for any int: -Wformat-truncation) */
} when;

/* n decimal digits at s as a number, or -1; stops at the first non-digit, so
 * it never reads past a terminating NUL. */
static int
digits(const char *s, int n)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar. */
static int64_t
days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static int
days_in_month(int y, int m)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
	return m == 2 && leap ? 29 : days[m - 1];
}

/* Parses YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM) (RFC 3339; 't', 'z'
 * and a space for the T too), within what PostgreSQL takes: years
 * 0001..9999, offsets up to 15:59, no leap second.  Digits of the fraction
 * beyond microseconds are dropped. */
static bool
rfc3339_parse(const char *s, when *out)
{
	if (strlen(s) < 20 || s[4] != '-' || s[7] != '-' || s[13] != ':' || s[16] != ':' ||
	    (s[10] != 'T' && s[10] != 't' && s[10] != ' '))
		return false;
	int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
	int h = digits(s + 11, 2), mi = digits(s + 14, 2), sec = digits(s + 17, 2);
	if (y < 1 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h < 0 || h > 23 ||
	    mi < 0 || mi > 59 || sec < 0 || sec > 59)
		return false;
	const char *p = s + 19;
	int frac = 0, nfrac = 0;
	if (*p == '.') {
		for (p++; *p >= '0' && *p <= '9'; p++, nfrac++)
			if (nfrac < 6)
				frac = frac * 10 + (*p - '0');
		if (nfrac == 0 || nfrac > 9)
			return false;
		for (int i = nfrac; i < 6; i++)
			frac *= 10;
	}
	int sign = 1, oh = 0, om = 0;
	if ((p[0] == 'Z' || p[0] == 'z') && p[1] == '\0') {
		/* UTC */
	} else if ((p[0] == '+' || p[0] == '-') && strlen(p) == 6 && p[3] == ':') {
		sign = p[0] == '-' ? -1 : 1;
		oh = digits(p + 1, 2);
		om = digits(p + 4, 2);
		if (oh < 0 || oh > 15 || om < 0 || om > 59)
			return false;
	} else {
		return false;
	}
	int64_t local = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec;
	int64_t utc = local - sign * (oh * 3600 + om * 60);
	out->set = true;
	out->us = utc * 1000000 + frac;
	snprintf(out->text, sizeof(out->text), "%04d-%02d-%02dT%02d:%02d:%02d.%06d%c%02d:%02d", y,
	         mo, d, h, mi, sec, frac, sign < 0 ? '-' : '+', oh, om);
	return true;
}

static void
check_time(mall_status *st, const char *field, const char *v, when *out)
{
	memset(out, 0, sizeof(*out));
	if (v[0] != '\0' && !rfc3339_parse(v, out))
		mall_status_field(st, field, "must be %s, or \"\" for none", TIME_EXAMPLE);
}

/* starts before ends when both are set; the error goes on endsAt, or on
 * startsAt when that is what changes (on_starts). */
static void
check_window(mall_status *st, bool on_starts, const when *starts, const when *ends)
{
	if (!starts->set || !ends->set || starts->us < ends->us)
		return;
	if (on_starts)
		mall_status_field(st, "startsAt", "must be before endsAt");
	else
		mall_status_field(st, "endsAt", "must be after startsAt");
}

static const char *
when_param(const when *w)
{
	return w->set ? w->text : NULL;
}

char *
cart_coupon_code_normalize(mall_status *st, mall_arena *a, const char *field, const char *code)
{
	/* a code pasted from a mail often comes with blanks around it */
	while (*code == ' ' || *code == '\t')
		code++;
	size_t len = strlen(code);
	while (len > 0 && (code[len - 1] == ' ' || code[len - 1] == '\t'))
		len--;
	if (len == 0) {
		mall_status_field(st, field, "is required");
		return NULL;
	}
	bool ok = len >= 3 && len <= 32;
	for (size_t i = 0; ok && i < len; i++) {
		char c = code[i];
		ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		     c == '_' || c == '-';
	}
	if (!ok) {
		mall_status_field(st, field, "must be 3 to 32 letters, digits, '_' or '-'");
		return NULL;
	}
	char *out = mall_arena_strndup(a, code, len);
	for (char *p = out; *p; p++)
		if (*p >= 'a' && *p <= 'z')
			*p = (char)(*p - 'a' + 'A');
	return out;
}

/* ---- the shipping policy ---- */

static Mall__Cart__ShippingPolicy *
policy_from_row(mall_arena *a, const PGresult *res)
{
	Mall__Cart__ShippingPolicy *p =
	    (Mall__Cart__ShippingPolicy *)mall_pb_new(&mall__cart__shipping_policy__descriptor, a);
	if (PQntuples(res) == 0)
		return p; /* no row: no fee, never free (as cart_promotions_load) */
	p->fee = mall_db_int64(res, 0, 0);
	p->free_threshold = mall_db_int64(res, 0, 1);
	p->updated_at = col(a, res, 0, 2);
	return p;
}

mall_code
cart_get_shipping_policy(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                         mall_status *st)
{
	(void)req;
	PGresult *res = mall_db_exec(mall_rpc_ctx_worker(ctx), st,
	    "SELECT fee, free_threshold, " CART_RFC3339("updated_at") " FROM shipping_policy", 0,
	    NULL);
	if (res == NULL)
		return st->code;
	Mall__Cart__ShippingPolicy *p = policy_from_row(mall_rpc_ctx_arena(ctx), res);
	PQclear(res);
	*reply = &p->base;
	return MALL_OK;
}

mall_code
cart_set_shipping_policy(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                         mall_status *st)
{
	const Mall__Cart__SetShippingPolicyRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	check_money(st, "fee", req->fee, FEE_MAX);
	check_money(st, "freeThreshold", req->free_threshold, MONEY_MAX);
	if (st->code != MALL_OK)
		return st->code;
	const char *params[] = {int_text(a, req->fee), int_text(a, req->free_threshold)};
	PGresult *res = mall_db_exec(mall_rpc_ctx_worker(ctx), st,
	    "INSERT INTO shipping_policy (fee, free_threshold) VALUES ($1, $2)"
	    " ON CONFLICT (id) DO UPDATE SET fee = EXCLUDED.fee,"
	    " free_threshold = EXCLUDED.free_threshold, updated_at = now()"
	    " RETURNING fee, free_threshold, " CART_RFC3339("updated_at"),
	    2, params);
	if (res == NULL)
		return st->code;
	Mall__Cart__ShippingPolicy *p = policy_from_row(a, res);
	PQclear(res);
	mall_log_info(mall_rpc_ctx_trace_id(ctx), "shipping policy set: fee %lld, free from %lld",
	              (long long)p->fee, (long long)p->free_threshold);
	*reply = &p->base;
	return MALL_OK;
}

/* ---- coupons ---- */

static Mall__Cart__CouponKind
kind_from_text(const char *kind)
{
	return strcmp(kind, "percentage") == 0 ? MALL__CART__COUPON_KIND__PERCENTAGE
	                                       : MALL__CART__COUPON_KIND__FIXED;
}

/* Row r of a result of COUPON_COLUMNS. */
static Mall__Cart__Coupon *
coupon_from_row(mall_arena *a, const PGresult *res, int r)
{
	Mall__Cart__Coupon *c =
	    (Mall__Cart__Coupon *)mall_pb_new(&mall__cart__coupon__descriptor, a);
	c->id = mall_db_int64(res, r, 0);
	c->code = col(a, res, r, 1);
	c->name = col(a, res, r, 2);
	c->kind = kind_from_text(PQgetvalue(res, r, 3));
	c->amount = mall_db_int64(res, r, 4);
	c->percent = (int32_t)mall_db_int64(res, r, 5);
	c->max_discount = mall_db_int64(res, r, 6);
	c->min_subtotal = mall_db_int64(res, r, 7);
	c->starts_at = col(a, res, r, 8);
	c->ends_at = col(a, res, r, 9);
	c->total_limit = (int32_t)mall_db_int64(res, r, 10);
	c->per_member_limit = (int32_t)mall_db_int64(res, r, 11);
	c->member_only = mall_db_bool(res, r, 12);
	c->active = mall_db_bool(res, r, 13);
	c->used_count = mall_db_int64(res, r, 14);
	c->created_at = col(a, res, r, 15);
	return c;
}

/* The coupon of PRICING_COLUMNS starting at column c0 of row 0 (use counts
 * still 0). */
static void
pricing_coupon(mall_arena *a, const PGresult *res, int c0, cart_coupon *c, int64_t *id)
{
	memset(c, 0, sizeof(*c));
	*id = mall_db_int64(res, 0, c0);
	c->code = col(a, res, 0, c0 + 1);
	c->name = col(a, res, 0, c0 + 2);
	c->kind = kind_from_text(PQgetvalue(res, 0, c0 + 3)) == MALL__CART__COUPON_KIND__PERCENTAGE
	              ? CART_COUPON_PERCENTAGE
	              : CART_COUPON_FIXED;
	c->amount = mall_db_int64(res, 0, c0 + 4);
	c->percent = (int32_t)mall_db_int64(res, 0, c0 + 5);
	c->max_discount = mall_db_int64(res, 0, c0 + 6);
	c->min_subtotal = mall_db_int64(res, 0, c0 + 7);
	c->starts_s = mall_db_int64(res, 0, c0 + 8);
	c->ends_s = mall_db_int64(res, 0, c0 + 9);
	c->total_limit = (int32_t)mall_db_int64(res, 0, c0 + 10);
	c->per_member_limit = (int32_t)mall_db_int64(res, 0, c0 + 11);
	c->member_only = mall_db_bool(res, 0, c0 + 12);
	c->active = mall_db_bool(res, 0, c0 + 13);
}

/* The kind and discount fields of a new coupon. */
static void
check_discount(mall_status *st, const Mall__Cart__CreateCouponRequest *req)
{
	switch (req->kind) {
	case MALL__CART__COUPON_KIND__FIXED:
		if (req->amount < 1 || req->amount > MONEY_MAX)
			mall_status_field(st, "amount", "must be 1 to %lld won for a fixed coupon",
			                  MONEY_MAX);
		if (req->percent != 0)
			mall_status_field(st, "percent", "must be 0 for a fixed coupon");
		if (req->max_discount != 0)
			mall_status_field(st, "maxDiscount", "must be 0 for a fixed coupon");
		break;
	case MALL__CART__COUPON_KIND__PERCENTAGE:
		if (req->percent < 1 || req->percent > 100)
			mall_status_field(st, "percent",
			                  "must be 1 to 100 for a percentage coupon");
		if (req->amount != 0)
			mall_status_field(st, "amount", "must be 0 for a percentage coupon");
		check_money(st, "maxDiscount", req->max_discount, MONEY_MAX);
		break;
	default:
		mall_status_field(st, "kind", "must be fixed or percentage");
		break;
	}
}

mall_code
cart_create_coupon(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                   mall_status *st)
{
	const Mall__Cart__CreateCouponRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	char *code = cart_coupon_code_normalize(st, a, "code", req->code);
	check_text(st, "name", req->name, NAME_MAX_CHARS);
	check_discount(st, req);
	check_money(st, "minSubtotal", req->min_subtotal, MONEY_MAX);
	when starts, ends;
	check_time(st, "startsAt", req->starts_at, &starts);
	check_time(st, "endsAt", req->ends_at, &ends);
	check_window(st, false, &starts, &ends);
	check_limit(st, "totalLimit", req->total_limit);
	check_limit(st, "perMemberLimit", req->per_member_limit);
	if (st->code != MALL_OK)
		return st->code;

	bool pct = req->kind == MALL__CART__COUPON_KIND__PERCENTAGE;
	const char *params[] = {code,
	                        req->name,
	                        pct ? "percentage" : "fixed",
	                        int_text(a, req->amount),
	                        int_text(a, req->percent),
	                        int_text(a, req->max_discount),
	                        int_text(a, req->min_subtotal),
	                        when_param(&starts),
	                        when_param(&ends),
	                        int_text(a, req->total_limit),
	                        int_text(a, req->per_member_limit),
	                        req->member_only ? "true" : "false"};
	PGresult *res = mall_db_exec(mall_rpc_ctx_worker(ctx), st,
	    "INSERT INTO coupon AS c (code, name, kind, amount, percent, max_discount,"
	    " min_subtotal, starts_at, ends_at, total_limit, per_member_limit, member_only)"
	    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::timestamptz, $9::timestamptz, $10, $11,"
	    " $12::boolean) RETURNING " COUPON_COLUMNS,
	    12, params);
	if (res == NULL && st->code == MALL_ALREADY_EXISTS) {
		mall_status_field(st, "code", "is taken by another coupon");
		return mall_status_set(st, MALL_ALREADY_EXISTS, "coupon %s exists already", code);
	}
	if (res == NULL)
		return st->code;
	Mall__Cart__Coupon *c = coupon_from_row(a, res, 0);
	PQclear(res);
	mall_log_info(mall_rpc_ctx_trace_id(ctx), "coupon %s created", c->code);
	*reply = &c->base;
	return MALL_OK;
}

mall_code
cart_list_coupons(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                  mall_status *st)
{
	(void)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	PGresult *res = mall_db_exec(mall_rpc_ctx_worker(ctx), st,
	    "SELECT " COUPON_COLUMNS " FROM coupon c ORDER BY c.created_at DESC, c.id DESC", 0,
	    NULL);
	if (res == NULL)
		return st->code;
	Mall__Cart__ListCouponsReply *out = (Mall__Cart__ListCouponsReply *)mall_pb_new(
	    &mall__cart__list_coupons_reply__descriptor, a);
	int n = PQntuples(res);
	out->n_coupons = (size_t)n;
	out->coupons = mall_arena_alloc(a, sizeof(*out->coupons) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++)
		out->coupons[i] = coupon_from_row(a, res, i);
	PQclear(res);
	*reply = &out->base;
	return MALL_OK;
}

static const char *const coupon_updatable[] = {"name",       "minSubtotal",    "startsAt", "endsAt",
                                               "totalLimit", "perMemberLimit", "active"};
enum { U_NAME, U_MIN_SUBTOTAL, U_STARTS, U_ENDS, U_TOTAL_LIMIT, U_MEMBER_LIMIT, U_ACTIVE, U_COUNT };

mall_code
cart_update_coupon(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                   mall_status *st)
{
	const Mall__Cart__UpdateCouponRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	bool set[U_COUNT] = {false};
	char *code = cart_coupon_code_normalize(st, a, "code", req->code);
	mall_update_mask_parse(req->update_mask, req->n_update_mask, coupon_updatable, U_COUNT, set,
	                       st);
	if (set[U_NAME])
		check_text(st, "name", req->name, NAME_MAX_CHARS);
	if (set[U_MIN_SUBTOTAL])
		check_money(st, "minSubtotal", req->min_subtotal, MONEY_MAX);
	when starts = {0}, ends = {0};
	if (set[U_STARTS])
		check_time(st, "startsAt", req->starts_at, &starts);
	if (set[U_ENDS])
		check_time(st, "endsAt", req->ends_at, &ends);
	if (set[U_TOTAL_LIMIT])
		check_limit(st, "totalLimit", req->total_limit);
	if (set[U_MEMBER_LIMIT])
		check_limit(st, "perMemberLimit", req->per_member_limit);
	if (st->code != MALL_OK)
		return st->code;

	/* the window as it will be: the new ends with the old starts, or the
	 * other way round */
	const char *lock[] = {code};
	PGresult *res = mall_db_exec(conn, st,
	    "SELECT c.id,"
	    " c.starts_at IS NOT NULL, (extract(epoch FROM c.starts_at) * 1000000)::bigint,"
	    " c.ends_at IS NOT NULL, (extract(epoch FROM c.ends_at) * 1000000)::bigint"
	    " FROM coupon c WHERE c.code = $1 FOR UPDATE",
	    1, lock);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_NOT_FOUND, "coupon %s not found", code);
	}
	int64_t id = mall_db_int64(res, 0, 0);
	if (!set[U_STARTS])
		starts = (when){.set = mall_db_bool(res, 0, 1), .us = mall_db_int64(res, 0, 2)};
	if (!set[U_ENDS])
		ends = (when){.set = mall_db_bool(res, 0, 3), .us = mall_db_int64(res, 0, 4)};
	PQclear(res);
	check_window(st, !set[U_ENDS], &starts, &ends);
	if (st->code != MALL_OK)
		return st->code;

	const char *params[] = {int_text(a, id),
	                        set[U_NAME] ? req->name : NULL,
	                        set[U_MIN_SUBTOTAL] ? int_text(a, req->min_subtotal) : NULL,
	                        set[U_STARTS] ? "true" : "false",
	                        set[U_STARTS] ? when_param(&starts) : NULL,
	                        set[U_ENDS] ? "true" : "false",
	                        set[U_ENDS] ? when_param(&ends) : NULL,
	                        set[U_TOTAL_LIMIT] ? int_text(a, req->total_limit) : NULL,
	                        set[U_MEMBER_LIMIT] ? int_text(a, req->per_member_limit) : NULL,
	                        set[U_ACTIVE] ? (req->active ? "true" : "false") : NULL};
	res = mall_db_exec(conn, st,
	    "UPDATE coupon AS c SET name = coalesce($2, name),"
	    " min_subtotal = coalesce($3::bigint, min_subtotal),"
	    " starts_at = CASE WHEN $4::boolean THEN $5::timestamptz ELSE starts_at END,"
	    " ends_at = CASE WHEN $6::boolean THEN $7::timestamptz ELSE ends_at END,"
	    " total_limit = coalesce($8::integer, total_limit),"
	    " per_member_limit = coalesce($9::integer, per_member_limit),"
	    " active = coalesce($10::boolean, active)"
	    " WHERE c.id = $1 RETURNING " COUPON_COLUMNS,
	    10, params);
	if (res == NULL)
		return st->code;
	Mall__Cart__Coupon *c = coupon_from_row(a, res, 0);
	PQclear(res);
	mall_log_info(mall_rpc_ctx_trace_id(ctx), "coupon %s updated", c->code);
	*reply = &c->base;
	return MALL_OK;
}

/* An order id: 1..64 characters of text. */
static void
check_order_id(mall_status *st, const char *field, const char *v)
{
	check_text(st, field, v, ORDER_ID_MAX_CHARS);
}

/* The redemption recorded for order_id, if any: found false without one; a
 * redemption of another coupon or member is FAILED_PRECONDITION. */
static mall_code
existing_redemption(mall_db_conn *conn, mall_arena *a, const Mall__Cart__RedeemCouponRequest *req,
                    int64_t coupon_id, const char *code, Mall__Cart__Redemption **out,
                    mall_status *st)
{
	*out = NULL;
	const char *params[] = {req->order_id};
	PGresult *res = mall_db_exec(conn, st,
	    "SELECT r.coupon_id, c.code, r.member_id, " CART_RFC3339("r.redeemed_at")
	    " FROM coupon_redemption r JOIN coupon c ON c.id = r.coupon_id WHERE r.order_id = $1",
	    1, params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return MALL_OK;
	}
	int64_t cid = mall_db_int64(res, 0, 0), member = mall_db_int64(res, 0, 2);
	char *other = col(a, res, 0, 1), *at = col(a, res, 0, 3);
	PQclear(res);
	if (cid != coupon_id)
		return mall_status_set(st, MALL_FAILED_PRECONDITION,
		                       "order %s redeemed coupon %s already, not %s", req->order_id,
		                       other, code);
	if (member != req->member_id)
		return mall_status_set(st, MALL_FAILED_PRECONDITION,
		                       "order %s redeemed coupon %s already, for another member",
		                       req->order_id, code);
	Mall__Cart__Redemption *r =
	    (Mall__Cart__Redemption *)mall_pb_new(&mall__cart__redemption__descriptor, a);
	r->code = other;
	r->order_id = mall_arena_strdup(a, req->order_id);
	r->member_id = member;
	r->redeemed_at = at;
	*out = r;
	return MALL_OK;
}

mall_code
cart_redeem_coupon(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                   mall_status *st)
{
	const Mall__Cart__RedeemCouponRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	char *code = cart_coupon_code_normalize(st, a, "code", req->code);
	if (req->member_id < 0)
		mall_status_field(st, "memberId", "must be a member id, or 0 for a guest");
	check_order_id(st, "orderId", req->order_id);
	if (req->subtotal < 0)
		mall_status_field(st, "subtotal", "must not be negative");
	if (st->code != MALL_OK)
		return st->code;

	/* the coupon's row lock makes redemptions of one coupon go one at a
	 * time, so the counts below hold until the commit */
	const char *lock[] = {code};
	PGresult *res = mall_db_exec(conn, st,
	    "SELECT " PRICING_COLUMNS ", floor(extract(epoch FROM now()))::bigint"
	    " FROM coupon c WHERE c.code = $1 FOR UPDATE",
	    1, lock);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_NOT_FOUND, "coupon %s not found", code);
	}
	cart_coupon c;
	int64_t id;
	pricing_coupon(a, res, 0, &c, &id);
	int64_t now_s = mall_db_int64(res, 0, 14);
	PQclear(res);

	/* the same order again is the same use, even if the coupon has changed
	 * since */
	Mall__Cart__Redemption *r;
	if (existing_redemption(conn, a, req, id, code, &r, st) != MALL_OK)
		return st->code;
	if (r != NULL) {
		*reply = &r->base;
		return MALL_OK;
	}
	if (!c.active)
		return mall_status_set(st, MALL_NOT_FOUND, "coupon %s not found: it is not offered",
		                       code);

	const char *count[] = {int_text(a, id), int_text(a, req->member_id)};
	res = mall_db_exec(conn, st,
	    "SELECT count(*), count(*) FILTER (WHERE $2::bigint > 0 AND member_id = $2::bigint)"
	    " FROM coupon_redemption WHERE coupon_id = $1",
	    2, count);
	if (res == NULL)
		return st->code;
	c.used_total = mall_db_int64(res, 0, 0);
	c.used_by_member = mall_db_int64(res, 0, 1);
	PQclear(res);
	cart_coupon_verdict v = cart_coupon_check(&c, req->subtotal, req->member_id, now_s);
	if (v != CART_COUPON_OK) {
		char msg[200];
		mall_status_reason(st, MALL_FAILED_PRECONDITION, cart_coupon_reason(v), "%s",
		                   cart_coupon_message(v, &c, msg, sizeof(msg)));
		if (v == CART_COUPON_MIN_SPEND)
			mall_status_detail(st, "minSubtotal", c.min_subtotal);
		return st->code;
	}

	const char *params[] = {int_text(a, id), req->order_id, int_text(a, req->member_id)};
	res = mall_db_exec(conn, st,
	    "INSERT INTO coupon_redemption (coupon_id, order_id, member_id) VALUES ($1, $2, $3)"
	    " RETURNING " CART_RFC3339("redeemed_at"),
	    3, params);
	if (res == NULL && st->code == MALL_ALREADY_EXISTS) /* another coupon, concurrently */
		return mall_status_set(st, MALL_FAILED_PRECONDITION,
		                       "order %s redeemed another coupon already", req->order_id);
	if (res == NULL)
		return st->code;
	r = (Mall__Cart__Redemption *)mall_pb_new(&mall__cart__redemption__descriptor, a);
	r->code = code;
	r->order_id = mall_arena_strdup(a, req->order_id);
	r->member_id = req->member_id;
	r->redeemed_at = col(a, res, 0, 0);
	PQclear(res);
	mall_log_info(mall_rpc_ctx_trace_id(ctx), "coupon %s redeemed by order %s", code,
	              req->order_id);
	*reply = &r->base;
	return MALL_OK;
}

mall_code
cart_release_coupon(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                    mall_status *st)
{
	const Mall__Cart__ReleaseCouponRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	check_order_id(st, "orderId", req->order_id);
	if (st->code != MALL_OK)
		return st->code;
	const char *params[] = {req->order_id};
	int64_t n = mall_db_exec_cmd(mall_rpc_ctx_worker(ctx), st,
	    "DELETE FROM coupon_redemption WHERE order_id = $1", 1, params);
	if (n < 0)
		return st->code;
	Mall__Cart__ReleaseCouponReply *out = (Mall__Cart__ReleaseCouponReply *)mall_pb_new(
	    &mall__cart__release_coupon_reply__descriptor, a);
	out->released = n > 0;
	if (n > 0)
		mall_log_info(mall_rpc_ctx_trace_id(ctx), "coupon of order %s released",
		              req->order_id);
	*reply = &out->base;
	return MALL_OK;
}

/* ---- gift rules ---- */

static Mall__Cart__GiftRule *
gift_rule_from_row(mall_arena *a, const PGresult *res, int r)
{
	Mall__Cart__GiftRule *g =
	    (Mall__Cart__GiftRule *)mall_pb_new(&mall__cart__gift_rule__descriptor, a);
	g->id = mall_db_int64(res, r, 0);
	g->name = col(a, res, r, 1);
	g->min_subtotal = mall_db_int64(res, r, 2);
	g->trigger_sku_id = mall_db_int64(res, r, 3);
	g->gift_sku_id = mall_db_int64(res, r, 4);
	g->gift_quantity = (int32_t)mall_db_int64(res, r, 5);
	g->starts_at = col(a, res, r, 6);
	g->ends_at = col(a, res, r, 7);
	g->active = mall_db_bool(res, r, 8);
	g->created_at = col(a, res, r, 9);
	return g;
}

mall_code
cart_create_gift_rule(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                      mall_status *st)
{
	const Mall__Cart__CreateGiftRuleRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	check_text(st, "name", req->name, NAME_MAX_CHARS);
	check_money(st, "minSubtotal", req->min_subtotal, MONEY_MAX);
	if (req->trigger_sku_id < 0)
		mall_status_field(st, "triggerSkuId", "must be a SKU id, or 0 for none");
	if (req->min_subtotal == 0 && req->trigger_sku_id == 0)
		mall_status_field(st, "minSubtotal",
		                  "or triggerSkuId must be set: a gift goes with a purchase");
	if (req->gift_sku_id <= 0)
		mall_status_field(st, "giftSkuId", "must be a positive id");
	if (req->gift_quantity < 1 || req->gift_quantity > GIFT_QTY_MAX)
		mall_status_field(st, "giftQuantity", "must be 1 to %d", GIFT_QTY_MAX);
	when starts, ends;
	check_time(st, "startsAt", req->starts_at, &starts);
	check_time(st, "endsAt", req->ends_at, &ends);
	check_window(st, false, &starts, &ends);
	if (st->code != MALL_OK)
		return st->code;
	const char *params[] = {req->name,
	                        int_text(a, req->min_subtotal),
	                        int_text(a, req->trigger_sku_id),
	                        int_text(a, req->gift_sku_id),
	                        int_text(a, req->gift_quantity),
	                        when_param(&starts),
	                        when_param(&ends)};
	PGresult *res = mall_db_exec(mall_rpc_ctx_worker(ctx), st,
	    "INSERT INTO gift_rule (name, min_subtotal, trigger_sku_id, gift_sku_id, gift_quantity,"
	    " starts_at, ends_at) VALUES ($1, $2, $3, $4, $5, $6::timestamptz, $7::timestamptz)"
	    " RETURNING " GIFT_COLUMNS,
	    7, params);
	if (res == NULL)
		return st->code;
	Mall__Cart__GiftRule *g = gift_rule_from_row(a, res, 0);
	PQclear(res);
	mall_log_info(mall_rpc_ctx_trace_id(ctx), "gift rule %lld created: sku %lld x %d",
	              (long long)g->id, (long long)g->gift_sku_id, (int)g->gift_quantity);
	*reply = &g->base;
	return MALL_OK;
}

mall_code
cart_list_gift_rules(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
                     mall_status *st)
{
	(void)req;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	PGresult *res = mall_db_exec(mall_rpc_ctx_worker(ctx), st,
	    "SELECT " GIFT_COLUMNS " FROM gift_rule ORDER BY created_at DESC, id DESC", 0, NULL);
	if (res == NULL)
		return st->code;
	Mall__Cart__ListGiftRulesReply *out = (Mall__Cart__ListGiftRulesReply *)mall_pb_new(
	    &mall__cart__list_gift_rules_reply__descriptor, a);
	int n = PQntuples(res);
	out->n_rules = (size_t)n;
	out->rules = mall_arena_alloc(a, sizeof(*out->rules) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++)
		out->rules[i] = gift_rule_from_row(a, res, i);
	PQclear(res);
	*reply = &out->base;
	return MALL_OK;
}

mall_code
cart_set_gift_rule_active(mall_rpc_ctx *ctx, const ProtobufCMessage *req_,
                          ProtobufCMessage **reply, mall_status *st)
{
	const Mall__Cart__SetGiftRuleActiveRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	if (req->id <= 0)
		mall_status_field(st, "id", "must be a positive id");
	if (st->code != MALL_OK)
		return st->code;
	const char *params[] = {int_text(a, req->id), req->active ? "true" : "false"};
	PGresult *res = mall_db_exec(mall_rpc_ctx_worker(ctx), st,
	    "UPDATE gift_rule SET active = $2::boolean WHERE id = $1 RETURNING " GIFT_COLUMNS, 2,
	    params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_NOT_FOUND, "gift rule %lld not found",
		                       (long long)req->id);
	}
	Mall__Cart__GiftRule *g = gift_rule_from_row(a, res, 0);
	PQclear(res);
	mall_log_info(mall_rpc_ctx_trace_id(ctx), "gift rule %lld %s", (long long)g->id,
	              g->active ? "activated" : "deactivated");
	*reply = &g->base;
	return MALL_OK;
}

/* ---- what pricing needs ---- */

mall_code
cart_promotions_load(mall_db_conn *conn, mall_arena *a, const char *coupon_code,
                     int64_t member_id, cart_promotions *out, mall_status *st)
{
	memset(out, 0, sizeof(*out));
	/* a stored code is upper case already; a code as typed is made so */
	char *code = NULL;
	if (coupon_code != NULL && coupon_code[0] != '\0') {
		code = mall_arena_strdup(a, coupon_code);
		for (char *p = code; *p; p++)
			if (*p >= 'a' && *p <= 'z')
				*p = (char)(*p - 'a' + 'A');
	}
	/* the policy, the clock and the coupon with its counts: one row, the
	 * coupon's columns NULL when there is none */
	const char *params[] = {code, int_text(a, member_id > 0 ? member_id : 0)};
	PGresult *res = mall_db_exec(conn, st,
	    "SELECT coalesce(p.fee, 0), coalesce(p.free_threshold, 0),"
	    " floor(extract(epoch FROM now()))::bigint, c.id IS NOT NULL, " PRICING_COLUMNS ","
	    " (SELECT count(*) FROM coupon_redemption r WHERE r.coupon_id = c.id),"
	    " (SELECT count(*) FROM coupon_redemption r WHERE r.coupon_id = c.id"
	    "  AND $2::bigint > 0 AND r.member_id = $2::bigint)"
	    " FROM (SELECT 1) one LEFT JOIN shipping_policy p ON true"
	    " LEFT JOIN coupon c ON c.code = $1::text",
	    2, params);
	if (res == NULL)
		return st->code;
	out->policy.fee = mall_db_int64(res, 0, 0);
	out->policy.free_threshold = mall_db_int64(res, 0, 1);
	out->now_s = mall_db_int64(res, 0, 2);
	if (mall_db_bool(res, 0, 3)) {
		int64_t id;
		out->coupon = mall_arena_alloc(a, sizeof(*out->coupon));
		pricing_coupon(a, res, 4, out->coupon, &id);
		out->coupon->used_total = mall_db_int64(res, 0, 18);
		out->coupon->used_by_member = mall_db_int64(res, 0, 19);
	}
	PQclear(res);

	/* the rules that can apply now; pricing checks their window again */
	res = mall_db_exec(conn, st,
	    "SELECT id, name, min_subtotal, trigger_sku_id, gift_sku_id, gift_quantity, "
	    EPOCH_S("starts_at") ", " EPOCH_S("ends_at") " FROM gift_rule WHERE active"
	    " AND (starts_at IS NULL OR starts_at <= now())"
	    " AND (ends_at IS NULL OR ends_at > now())"
	    " ORDER BY id",
	    0, NULL);
	if (res == NULL)
		return st->code;
	int n = PQntuples(res);
	out->nrules = (size_t)n;
	out->rules = mall_arena_alloc(a, sizeof(*out->rules) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++) {
		cart_gift_rule *r = &out->rules[i];
		r->id = mall_db_int64(res, i, 0);
		r->name = col(a, res, i, 1);
		r->min_subtotal = mall_db_int64(res, i, 2);
		r->trigger_sku_id = mall_db_int64(res, i, 3);
		r->gift_sku_id = mall_db_int64(res, i, 4);
		r->gift_quantity = (int32_t)mall_db_int64(res, i, 5);
		r->starts_s = mall_db_int64(res, i, 6);
		r->ends_s = mall_db_int64(res, i, 7);
	}
	PQclear(res);
	return MALL_OK;
}
