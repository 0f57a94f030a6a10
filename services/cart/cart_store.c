/*
 * cart_store.c: where the lines of a cart live, behind one interface.
 *
 * A guest's cart is one Redis hash, "cart:g:<guest_id>": "i:<skuId>" holds a
 * line's quantity, "t:<skuId>" the Unix ms it was added, "coupon" the applied
 * coupon's code.  It expires guest_ttl_ms after it was last changed or read.
 * Every change is one Lua script, so it is atomic: the script first looks up
 * the call's idempotency key ("cart:idem:<guest id>:<key>": a key is the
 * cart's own, so two carts never share one), and if it is recorded
 * changes nothing and answers "dup"; then it checks (the quantity cap, the
 * line limit, that the line exists) and, only when the change is made,
 * records the key (kept a day) in the same step.  A refused change records
 * nothing, so a retry with the same key is checked again, as lib/idem.c does
 * for a handler error.  The key's value fingerprints the change, so a key
 * reused for a different change is refused rather than taken as a repeat.
 * A script that ran but whose answer was lost is re-sent by lib/redis.c and
 * then answers "dup": repeating is safe.
 *
 * A member's cart is the rows of cart and cart_item.  Changes run inside the
 * transaction lib/idem.c opened for the call: they create the cart row if
 * need be and lock it (SELECT ... FOR UPDATE) before reading a line, so the
 * changes of one cart go one at a time and none is lost.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cart.h"
#include "idem.h"

#define IDEM_TTL_MS "86400000" /* a guest call's key is remembered a day */

/* ---- references ---- */

static bool
guest_id_valid(const char *id)
{
	if (id == NULL || strlen(id) != CART_GUEST_ID_LEN)
		return false;
	for (const char *p = id; *p; p++)
		if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
			return false;
	return true;
}

void
cart_ref_check(mall_status *st, const Mall__Cart__CartRef *ref)
{
	int64_t member = ref ? ref->member_id : 0;
	const char *guest = ref && ref->guest_id ? ref->guest_id : "";
	if (member < 0)
		mall_status_field(st, "cart.memberId", "must be a member id (positive)");
	if (*guest != '\0' && !guest_id_valid(guest))
		mall_status_field(st, "cart.guestId", "must be %d lowercase hex digits",
		                  CART_GUEST_ID_LEN);
	if (member > 0 && *guest != '\0')
		mall_status_field(st, "cart.guestId",
		                  "must be empty when cart.memberId is set: a cart is a member's "
		                  "or a guest's");
	if (member == 0 && *guest == '\0') {
		mall_status_field(st, "cart.memberId", "a member id or a guest id is required");
		mall_status_field(st, "cart.guestId", "a member id or a guest id is required");
	}
}

bool
cart_ref_is_guest(const Mall__Cart__CartRef *ref)
{
	return ref != NULL && ref->member_id == 0 && guest_id_valid(ref->guest_id);
}

static const char *
id_text(mall_arena *a, int64_t id)
{
	return mall_arena_printf(a, "%" PRId64, id);
}

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- guest carts (Redis) ---- */

static const char *
guest_key(mall_arena *a, const char *guest_id)
{
	return mall_arena_printf(a, "cart:g:%s", guest_id);
}

/* clang-format off */
/* Returns {"dup"} when the key is recorded for this change, {"reused"} when
 * for another, else falls through to the change.  KEYS[2] is the key's
 * record, ARGV[1] the change's fingerprint. */
#define LUA_IDEM                                                                                   \
	"local seen = redis.call('GET', KEYS[2])\n"                                                \
	"if seen then\n"                                                                           \
	"  if seen == ARGV[1] then return {'dup', 0} end\n"                                        \
	"  return {'reused', 0}\n"                                                                 \
	"end\n"
/* Records the key and pushes the cart's expiry back (ARGV[2]: ms) when it
 * still exists. */
#define LUA_DONE                                                                                   \
	"redis.call('SET', KEYS[2], ARGV[1], 'PX', " IDEM_TTL_MS ")\n"                             \
	"if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end\n"

/* ARGV: fingerprint, ttl, sku, qty, max, now_ms, lines_max */
static const char lua_add[] =
    LUA_IDEM
    "local f = 'i:' .. ARGV[3]\n"
    "local cur = tonumber(redis.call('HGET', KEYS[1], f) or '0')\n"
    "local new = cur + tonumber(ARGV[4])\n"
    "if new > tonumber(ARGV[5]) then return {'over', cur} end\n"
    "if cur == 0 then\n"
    "  local n = 0\n"
    "  for _, k in ipairs(redis.call('HKEYS', KEYS[1])) do\n"
    "    if string.sub(k, 1, 2) == 'i:' then n = n + 1 end\n"
    "  end\n"
    "  if n >= tonumber(ARGV[7]) then return {'full', n} end\n"
    "  redis.call('HSET', KEYS[1], 't:' .. ARGV[3], ARGV[6])\n"
    "end\n"
    "redis.call('HSET', KEYS[1], f, new)\n" LUA_DONE "return {'ok', new}\n";

/* ARGV: fingerprint, ttl, sku, qty */
static const char lua_set[] =
    LUA_IDEM
    "local f = 'i:' .. ARGV[3]\n"
    "if redis.call('HEXISTS', KEYS[1], f) == 0 then return {'missing', 0} end\n"
    "redis.call('HSET', KEYS[1], f, ARGV[4])\n" LUA_DONE "return {'ok', 0}\n";

/* ARGV: fingerprint, ttl, sku */
static const char lua_remove[] =
    LUA_IDEM
    "if redis.call('HDEL', KEYS[1], 'i:' .. ARGV[3]) == 0 then return {'missing', 0} end\n"
    "redis.call('HDEL', KEYS[1], 't:' .. ARGV[3])\n" LUA_DONE "return {'ok', 0}\n";

/* ARGV: fingerprint, ttl, code ("" removes it) */
static const char lua_coupon[] =
    LUA_IDEM
    "if ARGV[3] == '' then redis.call('HDEL', KEYS[1], 'coupon')\n"
    "else redis.call('HSET', KEYS[1], 'coupon', ARGV[3]) end\n" LUA_DONE "return {'ok', 0}\n";

/* ARGV: fingerprint, ttl */
static const char lua_clear[] = LUA_IDEM "redis.call('DEL', KEYS[1])\n" LUA_DONE
                                         "return {'ok', 0}\n";

/* ARGV: fingerprint, ttl, "sku:qty,sku:qty", coupon ("": keep it) */
static const char lua_take[] =
    LUA_IDEM
    "for sku, q in string.gmatch(ARGV[3], '(%d+):(%d+)') do\n"
    "  local f = 'i:' .. sku\n"
    "  local cur = tonumber(redis.call('HGET', KEYS[1], f) or '0')\n"
    "  if cur > tonumber(q) then redis.call('HSET', KEYS[1], f, cur - tonumber(q))\n"
    "  elseif cur > 0 then redis.call('HDEL', KEYS[1], f, 't:' .. sku) end\n"
    "end\n"
    "if ARGV[4] ~= '' and redis.call('HGET', KEYS[1], 'coupon') == ARGV[4] then\n"
    "  redis.call('HDEL', KEYS[1], 'coupon')\n"
    "end\n"
    "if redis.call('HLEN', KEYS[1]) == 0 then redis.call('DEL', KEYS[1]) end\n" LUA_DONE
    "return {'ok', 0}\n";

/* ARGV: ttl */
static const char lua_load[] =
    "local h = redis.call('HGETALL', KEYS[1])\n"
    "if #h > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end\n"
    "return h\n";
/* clang-format on */

/* A change script's answer: its word ("ok", "dup", "over", ...) and number. */
typedef struct script_answer {
	char word[16];
	int64_t n;
} script_answer;

/* eval: runs script with keys and args (nkeys + nargs strings); the reply is
 * the caller's (freeReplyObject), NULL with st set. */
static redisReply *
eval(const char *script, int nkeys, const char *const *keys, int nargs, const char *const *args,
     mall_status *st)
{
	const char *argv[16];
	char nk[8];
	int argc = 0;
	snprintf(nk, sizeof(nk), "%d", nkeys);
	argv[argc++] = "EVAL";
	argv[argc++] = script;
	argv[argc++] = nk;
	for (int i = 0; i < nkeys && argc < 16; i++)
		argv[argc++] = keys[i];
	for (int i = 0; i < nargs && argc < 16; i++)
		argv[argc++] = args[i];
	return mall_redis_argv(cart_redis(), st, argc, argv, NULL);
}

/* run_change: a change script on the guest cart of ref recorded under key;
 * args after the fingerprint and the ttl are extra[0..nextra). */
static mall_code
run_change(mall_arena *a, const Mall__Cart__CartRef *ref, const char *key, const char *script,
           const char *fingerprint, int nextra, const char *const *extra, script_answer *ans,
           mall_status *st)
{
	if (key == NULL || *key == '\0')
		return mall_status_set(st, MALL_INVALID_ARGUMENT,
		                       "a change of guest cart %s needs an idempotency key",
		                       ref->guest_id);
	const char *keys[2] = {guest_key(a, ref->guest_id),
	                       mall_arena_printf(a, "cart:idem:%s:%s", ref->guest_id, key)};
	const char *args[8];
	int nargs = 0;
	args[nargs++] = fingerprint;
	args[nargs++] = id_text(a, cart_env_get()->guest_ttl_ms);
	for (int i = 0; i < nextra && nargs < 8; i++)
		args[nargs++] = extra[i];
	redisReply *r = eval(script, 2, keys, nargs, args, st);
	if (r == NULL)
		return st->code;
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
	    (r->element[0]->type != REDIS_REPLY_STRING &&
	     r->element[0]->type != REDIS_REPLY_STATUS) ||
	    r->element[1]->type != REDIS_REPLY_INTEGER) {
		freeReplyObject(r);
		return mall_status_set(st, MALL_INTERNAL,
		                       "guest cart %s: redis answered the change script with an "
		                       "unexpected reply",
		                       ref->guest_id);
	}
	snprintf(ans->word, sizeof(ans->word), "%.*s", (int)r->element[0]->len, r->element[0]->str);
	ans->n = r->element[1]->integer;
	freeReplyObject(r);
	if (strcmp(ans->word, "reused") == 0)
		return mall_status_reason(st, MALL_INVALID_ARGUMENT, MALL_IDEM_KEY_REUSED,
		                          "idempotency key %s was used for a different request", key);
	return MALL_OK;
}

/* The line of an "i:<sku>" or "t:<sku>" field in lines[0..*n), added when new. */
static cart_line *
line_of(cart_line *lines, size_t *n, int64_t sku)
{
	for (size_t i = 0; i < *n; i++)
		if (lines[i].sku_id == sku)
			return &lines[i];
	lines[*n] = (cart_line){.sku_id = sku};
	return &lines[(*n)++];
}

static int
line_cmp(const void *x, const void *y)
{
	const cart_line *l = x, *r = y;
	if (l->added_ms != r->added_ms)
		return l->added_ms < r->added_ms ? -1 : 1;
	return (l->sku_id > r->sku_id) - (l->sku_id < r->sku_id);
}

static mall_code
guest_load(mall_arena *a, const char *guest_id, cart_contents *out, mall_status *st)
{
	const char *keys[1] = {guest_key(a, guest_id)};
	const char *args[1] = {id_text(a, cart_env_get()->guest_ttl_ms)};
	redisReply *r = eval(lua_load, 1, keys, 1, args, st);
	if (r == NULL)
		return st->code;
	if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
		freeReplyObject(r);
		return mall_status_set(
		    st, MALL_INTERNAL,
		    "guest cart %s: redis answered HGETALL with an unexpected reply", guest_id);
	}
	size_t cap = r->elements / 2;
	cart_line *lines = mall_arena_alloc(a, sizeof(*lines) * (cap ? cap : 1));
	size_t n = 0;
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *f = r->element[i], *v = r->element[i + 1];
		if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
			continue;
		if (strcmp(f->str, "coupon") == 0) {
			out->coupon_code = v->len ? mall_arena_strndup(a, v->str, v->len) : NULL;
			continue;
		}
		if (f->len < 3 || (f->str[0] != 'i' && f->str[0] != 't') || f->str[1] != ':')
			continue;
		char *end = NULL;
		long long sku = strtoll(f->str + 2, &end, 10);
		long long val = strtoll(v->str, NULL, 10);
		if (*end != '\0' || sku <= 0)
			continue;
		cart_line *l = line_of(lines, &n, sku);
		if (f->str[0] == 'i')
			l->quantity = (int32_t)(val < 0              ? 0
			                        : val > CART_QTY_MAX ? CART_QTY_MAX
			                                             : val);
		else
			l->added_ms = val;
	}
	freeReplyObject(r);
	/* a "t:" without its "i:" is no line */
	size_t kept = 0;
	for (size_t i = 0; i < n; i++)
		if (lines[i].quantity > 0)
			lines[kept++] = lines[i];
	qsort(lines, kept, sizeof(*lines), line_cmp);
	out->lines = lines;
	out->n = kept;
	return MALL_OK;
}

mall_code
cart_store_guest_delete(const char *guest_id, mall_status *st)
{
	char key[64];
	snprintf(key, sizeof(key), "cart:g:%s", guest_id);
	redisReply *r = mall_redis_command(cart_redis(), st, "DEL %s", key);
	if (r == NULL)
		return st->code;
	freeReplyObject(r);
	return MALL_OK;
}

/* ---- member carts (PostgreSQL) ---- */

/* Creates the member's cart row when ensure and it has none, and locks it;
 * *exists (if not NULL) says whether there is one.  coupon (if not NULL)
 * gets the cart's coupon code, NULL for none. */
static mall_code
member_lock(mall_db_conn *conn, mall_arena *a, int64_t member_id, bool ensure, bool *exists,
            const char **coupon, mall_status *st)
{
	const char *mid = id_text(a, member_id);
	if (ensure && mall_db_exec_cmd(conn, st,
	                               "INSERT INTO cart (member_id) VALUES ($1)"
	                               " ON CONFLICT (member_id) DO NOTHING",
	                               1, &mid) < 0)
		return st->code;
	PGresult *res = mall_db_exec(
	    conn, st, "SELECT coupon_code FROM cart WHERE member_id = $1 FOR UPDATE", 1, &mid);
	if (res == NULL)
		return st->code;
	bool found = PQntuples(res) > 0;
	if (exists != NULL)
		*exists = found;
	if (coupon != NULL)
		*coupon = found && !PQgetisnull(res, 0, 0)
		              ? mall_arena_strdup(a, PQgetvalue(res, 0, 0))
		              : NULL;
	PQclear(res);
	return MALL_OK;
}

static mall_code
touch(mall_db_conn *conn, const char *mid, mall_status *st)
{
	if (mall_db_exec_cmd(conn, st, "UPDATE cart SET updated_at = now() WHERE member_id = $1", 1,
	                     &mid) < 0)
		return st->code;
	return MALL_OK;
}

static mall_code
member_load(mall_db_conn *conn, mall_arena *a, int64_t member_id, bool lock, cart_contents *out,
            mall_status *st)
{
	const char *mid = id_text(a, member_id);
	if (lock && mall_db_in_tx(conn)) {
		if (member_lock(conn, a, member_id, true, NULL, &out->coupon_code, st) != MALL_OK)
			return st->code;
	} else {
		PGresult *res = mall_db_exec(
		    conn, st, "SELECT coupon_code FROM cart WHERE member_id = $1", 1, &mid);
		if (res == NULL)
			return st->code;
		if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
			out->coupon_code = mall_arena_strdup(a, PQgetvalue(res, 0, 0));
		PQclear(res);
	}
	PGresult *res =
	    mall_db_exec(conn, st,
	                 "SELECT sku_id, quantity, (extract(epoch FROM added_at) * 1000)::bigint"
	                 " FROM cart_item WHERE member_id = $1 ORDER BY added_at, sku_id",
	                 1, &mid);
	if (res == NULL)
		return st->code;
	int n = PQntuples(res);
	out->lines = mall_arena_alloc(a, sizeof(*out->lines) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++) {
		out->lines[i].sku_id = mall_db_int64(res, i, 0);
		out->lines[i].quantity = (int32_t)mall_db_int64(res, i, 1);
		out->lines[i].added_ms = mall_db_int64(res, i, 2);
	}
	out->n = (size_t)n;
	PQclear(res);
	return MALL_OK;
}

/* The quantity of the member's line of sku (0 without one) and the number
 * of lines of the cart. */
static mall_code
member_line(mall_db_conn *conn, mall_arena *a, int64_t member_id, int64_t sku, int32_t *qty,
            int64_t *nlines, mall_status *st)
{
	const char *params[] = {id_text(a, member_id), id_text(a, sku)};
	PGresult *res =
	    mall_db_exec(conn, st,
	                 "SELECT coalesce(max(quantity) FILTER (WHERE sku_id = $2), 0), count(*)"
	                 " FROM cart_item WHERE member_id = $1",
	                 2, params);
	if (res == NULL)
		return st->code;
	*qty = (int32_t)mall_db_int64(res, 0, 0);
	*nlines = mall_db_int64(res, 0, 1);
	PQclear(res);
	return MALL_OK;
}

/* ---- the interface ---- */

mall_code
cart_store_load(mall_db_conn *conn, mall_arena *a, const Mall__Cart__CartRef *ref, bool lock,
                cart_contents *out, mall_status *st)
{
	memset(out, 0, sizeof(*out));
	if (cart_ref_is_guest(ref))
		return guest_load(a, ref->guest_id, out, st);
	return member_load(conn, a, ref->member_id, lock, out, st);
}

static mall_code
over_max(mall_status *st, int64_t sku_id, int32_t max)
{
	return mall_status_set(st, MALL_FAILED_PRECONDITION,
	                       "sku %" PRId64 ": a cart line may hold at most %d of it", sku_id,
	                       max);
}

static mall_code
cart_full(mall_status *st)
{
	return mall_status_reason(st, MALL_FAILED_PRECONDITION, "cart_full",
	                          "a cart holds at most %d different items: remove one first",
	                          CART_LINES_MAX);
}

mall_code
cart_store_add(mall_db_conn *conn, mall_arena *a, const Mall__Cart__CartRef *ref, const char *key,
               int64_t sku_id, int32_t qty, int32_t max, int32_t *current, mall_status *st)
{
	*current = 0;
	if (cart_ref_is_guest(ref)) {
		const char *extra[] = {id_text(a, sku_id), id_text(a, qty), id_text(a, max),
		                       id_text(a, now_ms()), id_text(a, CART_LINES_MAX)};
		/* not max: a retry may see other stock */
		const char *fp =
		    mall_arena_printf(a, "add %s %" PRId64 " %d", ref->guest_id, sku_id, (int)qty);
		script_answer ans;
		if (run_change(a, ref, key, lua_add, fp, 5, extra, &ans, st) != MALL_OK)
			return st->code;
		if (strcmp(ans.word, "over") == 0) {
			*current = (int32_t)ans.n;
			return over_max(st, sku_id, max);
		}
		if (strcmp(ans.word, "full") == 0)
			return cart_full(st);
		return MALL_OK; /* "ok", or "dup": applied before */
	}

	const char *mid = id_text(a, ref->member_id);
	int32_t cur = 0;
	int64_t nlines = 0;
	if (member_lock(conn, a, ref->member_id, true, NULL, NULL, st) != MALL_OK ||
	    member_line(conn, a, ref->member_id, sku_id, &cur, &nlines, st) != MALL_OK)
		return st->code;
	*current = cur;
	if ((int64_t)cur + qty > max)
		return over_max(st, sku_id, max);
	if (cur == 0 && nlines >= CART_LINES_MAX)
		return cart_full(st);
	/* clock_timestamp: lines added one after another in one transaction (a
	 * merge) keep their order */
	const char *params[] = {mid, id_text(a, sku_id), id_text(a, cur + qty)};
	if (mall_db_exec_cmd(
	        conn, st,
	        "INSERT INTO cart_item (member_id, sku_id, quantity, added_at)"
	        " VALUES ($1, $2, $3, clock_timestamp())"
	        " ON CONFLICT (member_id, sku_id) DO UPDATE SET quantity = EXCLUDED.quantity",
	        3, params) < 0)
		return st->code;
	return touch(conn, mid, st);
}

static mall_code
line_missing(mall_status *st, const Mall__Cart__CartRef *ref, int64_t sku_id)
{
	if (cart_ref_is_guest(ref))
		return mall_status_set(st, MALL_NOT_FOUND,
		                       "item %" PRId64 " not found in guest cart %s", sku_id,
		                       ref->guest_id);
	return mall_status_set(st, MALL_NOT_FOUND,
	                       "item %" PRId64 " not found in member %" PRId64 "'s cart", sku_id,
	                       ref->member_id);
}

mall_code
cart_store_set(mall_db_conn *conn, mall_arena *a, const Mall__Cart__CartRef *ref, const char *key,
               int64_t sku_id, int32_t qty, mall_status *st)
{
	if (cart_ref_is_guest(ref)) {
		const char *extra[] = {id_text(a, sku_id), id_text(a, qty)};
		const char *fp =
		    mall_arena_printf(a, "set %s %" PRId64 " %d", ref->guest_id, sku_id, (int)qty);
		script_answer ans;
		if (run_change(a, ref, key, lua_set, fp, 2, extra, &ans, st) != MALL_OK)
			return st->code;
		if (strcmp(ans.word, "missing") == 0)
			return line_missing(st, ref, sku_id);
		return MALL_OK;
	}
	const char *mid = id_text(a, ref->member_id);
	if (member_lock(conn, a, ref->member_id, false, NULL, NULL, st) != MALL_OK)
		return st->code;
	const char *params[] = {mid, id_text(a, sku_id), id_text(a, qty)};
	int64_t n = mall_db_exec_cmd(
	    conn, st, "UPDATE cart_item SET quantity = $3 WHERE member_id = $1 AND sku_id = $2", 3,
	    params);
	if (n < 0)
		return st->code;
	if (n == 0)
		return line_missing(st, ref, sku_id);
	return touch(conn, mid, st);
}

mall_code
cart_store_remove(mall_db_conn *conn, mall_arena *a, const Mall__Cart__CartRef *ref,
                  const char *key, int64_t sku_id, mall_status *st)
{
	if (cart_ref_is_guest(ref)) {
		const char *extra[] = {id_text(a, sku_id)};
		const char *fp = mall_arena_printf(a, "remove %s %" PRId64, ref->guest_id, sku_id);
		script_answer ans;
		if (run_change(a, ref, key, lua_remove, fp, 1, extra, &ans, st) != MALL_OK)
			return st->code;
		if (strcmp(ans.word, "missing") == 0)
			return line_missing(st, ref, sku_id);
		return MALL_OK;
	}
	const char *mid = id_text(a, ref->member_id);
	if (member_lock(conn, a, ref->member_id, false, NULL, NULL, st) != MALL_OK)
		return st->code;
	const char *params[] = {mid, id_text(a, sku_id)};
	int64_t n = mall_db_exec_cmd(
	    conn, st, "DELETE FROM cart_item WHERE member_id = $1 AND sku_id = $2", 2, params);
	if (n < 0)
		return st->code;
	if (n == 0)
		return line_missing(st, ref, sku_id);
	return touch(conn, mid, st);
}

mall_code
cart_store_set_coupon(mall_db_conn *conn, mall_arena *a, const Mall__Cart__CartRef *ref,
                      const char *key, const char *code, mall_status *st)
{
	if (cart_ref_is_guest(ref)) {
		const char *extra[] = {code ? code : ""};
		const char *fp =
		    mall_arena_printf(a, "coupon %s %s", ref->guest_id, code ? code : "");
		script_answer ans;
		return run_change(a, ref, key, lua_coupon, fp, 1, extra, &ans, st);
	}
	const char *mid = id_text(a, ref->member_id);
	bool exists;
	if (member_lock(conn, a, ref->member_id, code != NULL, &exists, NULL, st) != MALL_OK)
		return st->code;
	if (!exists) /* no cart and no coupon to remove */
		return MALL_OK;
	const char *params[] = {mid, code};
	if (mall_db_exec_cmd(conn, st,
	                     "UPDATE cart SET coupon_code = $2, updated_at = now()"
	                     " WHERE member_id = $1",
	                     2, params) < 0)
		return st->code;
	return MALL_OK;
}

/* taken_text: the taken lines as "sku:qty,sku:qty", for the Lua script. */
static char *
taken_text(mall_arena *a, Mall__Cart__TakenLine *const *taken, size_t n)
{
	char *out = mall_arena_strdup(a, "");
	for (size_t i = 0; i < n; i++)
		out = mall_arena_printf(a, "%s%s%lld:%d", out, i ? "," : "",
		                        (long long)taken[i]->sku_id, (int)taken[i]->quantity);
	return out;
}

#define TAKE_DELETE_SQL                                                                            \
	"DELETE FROM cart_item c USING unnest($2::bigint[], $3::int[]) t(sku, q) "                 \
	"WHERE c.member_id = $1 AND c.sku_id = t.sku AND c.quantity <= t.q"
#define TAKE_UPDATE_SQL                                                                            \
	"UPDATE cart_item c SET quantity = c.quantity - t.q "                                      \
	"FROM unnest($2::bigint[], $3::int[]) t(sku, q) "                                         \
	"WHERE c.member_id = $1 AND c.sku_id = t.sku"
#define TAKE_COUPON_SQL                                                                            \
	"UPDATE cart SET coupon_code = NULL, updated_at = now() "                                 \
	"WHERE member_id = $1 AND coupon_code = $2"

mall_code
cart_store_clear(mall_db_conn *conn, mall_arena *a, const Mall__Cart__CartRef *ref, const char *key,
                 Mall__Cart__TakenLine *const *taken, size_t n, const char *coupon,
                 mall_status *st)
{
	if (cart_ref_is_guest(ref)) {
		script_answer ans;
		if (n == 0) {
			const char *fp = mall_arena_printf(a, "clear %s", ref->guest_id);
			return run_change(a, ref, key, lua_clear, fp, 0, NULL, &ans, st);
		}
		const char *lines = taken_text(a, taken, n);
		const char *extra[] = {lines, coupon ? coupon : ""};
		const char *fp = mall_arena_printf(a, "take %s %s %s", ref->guest_id, lines,
		                                   coupon ? coupon : "");
		return run_change(a, ref, key, lua_take, fp, 2, extra, &ans, st);
	}
	const char *mid = id_text(a, ref->member_id);
	bool exists;
	if (member_lock(conn, a, ref->member_id, false, &exists, NULL, st) != MALL_OK)
		return st->code;
	if (n == 0) {
		/* the lines go with the cart row (ON DELETE CASCADE) */
		if (mall_db_exec_cmd(conn, st, "DELETE FROM cart WHERE member_id = $1", 1, &mid) <
		    0)
			return st->code;
		return MALL_OK;
	}
	if (!exists)
		return MALL_OK;
	char *skus = mall_arena_strdup(a, "{"), *qtys = mall_arena_strdup(a, "{");
	for (size_t i = 0; i < n; i++) {
		skus = mall_arena_printf(a, "%s%s%lld", skus, i ? "," : "",
		                         (long long)taken[i]->sku_id);
		qtys = mall_arena_printf(a, "%s%s%d", qtys, i ? "," : "", (int)taken[i]->quantity);
	}
	const char *params[] = {mid, mall_arena_printf(a, "%s}", skus),
	                        mall_arena_printf(a, "%s}", qtys)};
	if (mall_db_exec_cmd(conn, st, TAKE_DELETE_SQL, 3, params) < 0 ||
	    mall_db_exec_cmd(conn, st, TAKE_UPDATE_SQL, 3, params) < 0)
		return st->code;
	if (coupon != NULL && *coupon) {
		const char *cp[] = {mid, coupon};
		if (mall_db_exec_cmd(conn, st, TAKE_COUPON_SQL, 2, cp) < 0)
			return st->code;
	}
	return touch(conn, mid, st);
}
