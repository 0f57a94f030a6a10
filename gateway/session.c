/*
 * session.c: sessions in Redis and login throttling (see session.h).
 *
 * Every Redis command goes through lib/redis.h with its arguments as argv
 * (nothing formatted into a command).  The load and the creation are each one
 * Lua script, so a session is read and its expiry pushed back, or written with
 * its expiry, atomically; both are safe to repeat (lib/redis.h retries once).
 */
#include "session.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "gateway.h"
#include "log.h"

/* HMGET member_id csrf cart and, when the session exists, PEXPIRE ttl. */
static const char load_script[] =
    "local v = redis.call('HMGET', KEYS[1], 'member_id', 'csrf', 'cart') "
    "if v[2] then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
    "return v";

/* The session's cart field, set to ARGV[1] unless it holds an id already
 * (atomic: the first of concurrent requests sets it, the others read it); nil
 * when the session is gone (HSET alone would make a hash that never
 * expires). */
static const char cart_ensure_script[] =
    "if redis.call('EXISTS', KEYS[1]) == 0 then return false end "
    "local v = redis.call('HGET', KEYS[1], 'cart') "
    "if not v or #v ~= 32 or not string.match(v, '^[0-9a-f]+$') then "
    "v = ARGV[1] redis.call('HSET', KEYS[1], 'cart', v) end "
    "return v";

/* Sets the cart field of a session that exists. */
static const char cart_set_script[] = "if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end "
                                      "redis.call('HSET', KEYS[1], 'cart', ARGV[1]) "
                                      "return 1";

/* Deletes the cart field if it holds ARGV[1]. */
static const char cart_drop_script[] = "if redis.call('HGET', KEYS[1], 'cart') == ARGV[1] then "
                                       "return redis.call('HDEL', KEYS[1], 'cart') end "
                                       "return 0";

/* Replaces the hash with the fields, then PEXPIREs it to ttl. */
static const char create_script[] =
    "redis.call('DEL', KEYS[1]) "
    "redis.call('HMSET', KEYS[1], 'member_id', ARGV[1], 'csrf', ARGV[2], 'created', ARGV[3]) "
    "redis.call('PEXPIRE', KEYS[1], ARGV[4]) "
    "return 1";

/* INCR; the first failure of a window starts its expiry. */
static const char fail_script[] = "local n = redis.call('INCR', KEYS[1]) "
                                  "if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then "
                                  "redis.call('PEXPIRE', KEYS[1], ARGV[1]) end "
                                  "return n";

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static bool sodium_ok;

static void
init_sodium(void)
{
	sodium_ok = sodium_init() >= 0;
}

/* n (<= 32) random bytes as 2n hex digits into out[2n + 1]. */
static mall_code
random_hex_n(char *out, size_t n, mall_status *st)
{
	pthread_once(&sodium_once, init_sodium);
	if (!sodium_ok)
		return mall_status_set(st, MALL_INTERNAL, "libsodium could not start");
	unsigned char raw[32];
	randombytes_buf(raw, n);
	sodium_bin2hex(out, 2 * n + 1, raw, n);
	sodium_memzero(raw, sizeof(raw));
	return MALL_OK;
}

/* 32 random bytes as 64 hex digits into out[65]. */
static mall_code
random_hex(char *out, mall_status *st)
{
	return random_hex_n(out, 32, st);
}

/* prefix + SHA-256 hex of s into out (cap >= strlen(prefix) + 65). */
static void
hashed_key(const char *prefix, const char *s, size_t len, char *out, size_t cap)
{
	unsigned char h[crypto_hash_sha256_BYTES];
	char hex[2 * crypto_hash_sha256_BYTES + 1];
	crypto_hash_sha256(h, (const unsigned char *)s, len);
	sodium_bin2hex(hex, sizeof(hex), h, sizeof(h));
	snprintf(out, cap, "%s%s", prefix, hex);
}

/* Whether s[0..len) is n lower-case hex digits. */
static bool
is_hex(const char *s, size_t len, size_t n)
{
	if (len != n)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

static bool
is_hex64(const char *s)
{
	return is_hex(s, strlen(s), 64);
}

bool
mall_gw_session_has_cookie(mall_gw_req *r)
{
	const char *cookies = mg_get_header(r->conn, "Cookie");
	char buf[8];
	/* -1: absent; -3: present but longer than buf */
	return cookies != NULL &&
	       mg_get_cookie(cookies, MALL_GW_SESSION_COOKIE, buf, sizeof(buf)) != -1;
}

bool
mall_gw_csrf_equal(const char *sent, const char *csrf)
{
	if (sent == NULL)
		return false;
	size_t n = strlen(csrf);
	if (strlen(sent) != n || n == 0)
		return false;
	return sodium_memcmp(sent, csrf, n) == 0;
}

static redisReply *
command(mall_gw_req *r, mall_status *st, int argc, const char **argv)
{
	size_t lens[8];
	for (int i = 0; i < argc; i++)
		lens[i] = strlen(argv[i]);
	redisReply *rep = mall_redis_argv(r->gw->redis, st, argc, argv, lens);
	if (rep == NULL && st->code != MALL_UNAVAILABLE) {
		mall_log_warn(r->trace_id, "redis: %s", st->message);
		return NULL;
	}
	return rep;
}

mall_code
mall_gw_session_load(mall_gw_req *r, mall_gw_session **out, mall_status *st)
{
	if (r->session_loaded) {
		*out = r->session;
		return MALL_OK;
	}
	*out = NULL;
	const char *cookies = mg_get_header(r->conn, "Cookie");
	char token[80];
	if (cookies == NULL ||
	    mg_get_cookie(cookies, MALL_GW_SESSION_COOKIE, token, sizeof(token)) < 0 ||
	    !is_hex64(token)) {
		r->session_loaded = true;
		return MALL_OK;
	}
	mall_gw_session *s = mall_arena_alloc(r->arena, sizeof(*s));
	memset(s, 0, sizeof(*s));
	memcpy(s->token, token, 65); /* is_hex64: 64 digits and the NUL */
	hashed_key("sess:", token, strlen(token), s->key, sizeof(s->key));
	char ttl[24];
	snprintf(ttl, sizeof(ttl), "%" PRId64, r->gw->cfg.session_ttl_ms);
	const char *argv[] = {"EVAL", load_script, "1", s->key, ttl};
	redisReply *rep = command(r, st, 5, argv);
	if (rep == NULL)
		return st->code;
	if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 3 &&
	    rep->element[1]->type == REDIS_REPLY_STRING && rep->element[1]->len == 64 &&
	    rep->element[0]->type == REDIS_REPLY_STRING) {
		memcpy(s->csrf, rep->element[1]->str, 64);
		s->csrf[64] = '\0';
		s->member_id = strtoll(rep->element[0]->str, NULL, 10);
		const redisReply *cart = rep->element[2];
		if (cart->type == REDIS_REPLY_STRING &&
		    is_hex(cart->str, cart->len, MALL_GW_GUEST_CART_LEN))
			memcpy(s->cart, cart->str, MALL_GW_GUEST_CART_LEN + 1);
		s->live = true;
		r->session = s;
	}
	freeReplyObject(rep);
	r->session_loaded = true;
	*out = r->session;
	return MALL_OK;
}

static void
set_cookies(mall_gw_req *r, const char *token, const char *csrf, bool expire)
{
	const char *secure = r->gw->cfg.secure_cookies ? "; Secure" : "";
	const char *age = expire ? "; Max-Age=0" : "";
	mall_gw_header(r, "Set-Cookie",
	               mall_arena_printf(r->arena, "%s=%s; Path=/; HttpOnly; SameSite=Lax%s%s",
	                                 MALL_GW_SESSION_COOKIE, token, secure, age));
	mall_gw_header(r, "Set-Cookie",
	               mall_arena_printf(r->arena, "%s=%s; Path=/; SameSite=Lax%s%s",
	                                 MALL_GW_CSRF_COOKIE, csrf, secure, age));
}

static mall_code
delete_key(mall_gw_req *r, const char *key, mall_status *st)
{
	const char *argv[] = {"DEL", key};
	redisReply *rep = command(r, st, 2, argv);
	if (rep == NULL)
		return st->code;
	freeReplyObject(rep);
	return MALL_OK;
}

mall_code
mall_gw_session_create(mall_gw_req *r, int64_t member_id, mall_gw_session **out, mall_status *st)
{
	*out = NULL;
	mall_gw_session *old;
	mall_code c = mall_gw_session_load(r, &old, st);
	if (c != MALL_OK)
		return c;
	if (old != NULL && (c = delete_key(r, old->key, st)) != MALL_OK)
		return c;
	mall_gw_session *s = mall_arena_alloc(r->arena, sizeof(*s));
	memset(s, 0, sizeof(*s));
	if ((c = random_hex(s->token, st)) != MALL_OK || (c = random_hex(s->csrf, st)) != MALL_OK)
		return c;
	hashed_key("sess:", s->token, 64, s->key, sizeof(s->key));
	s->member_id = member_id;
	char id[24], created[24], ttl[24];
	snprintf(id, sizeof(id), "%" PRId64, member_id);
	snprintf(created, sizeof(created), "%lld", (long long)time(NULL));
	snprintf(ttl, sizeof(ttl), "%" PRId64, r->gw->cfg.session_ttl_ms);
	const char *argv[] = {"EVAL", create_script, "1", s->key, id, s->csrf, created, ttl};
	redisReply *rep = command(r, st, 8, argv);
	if (rep == NULL)
		return st->code;
	freeReplyObject(rep);
	s->live = true;
	r->session = s;
	r->session_loaded = true;
	set_cookies(r, s->token, s->csrf, false);
	*out = s;
	return MALL_OK;
}

mall_code
mall_gw_session_destroy(mall_gw_req *r, mall_status *st)
{
	mall_gw_session *s;
	mall_code c = mall_gw_session_load(r, &s, st);
	if (c != MALL_OK)
		return c;
	if (s != NULL && (c = delete_key(r, s->key, st)) != MALL_OK)
		return c;
	r->session = NULL;
	set_cookies(r, "", "", true);
	return MALL_OK;
}

/* ---- the guest cart id ---- */

mall_code
mall_gw_guest_cart_id_new(char *out, mall_status *st)
{
	return random_hex_n(out, MALL_GW_GUEST_CART_LEN / 2, st);
}

mall_code
mall_gw_session_cart_ensure(mall_gw_req *r, mall_gw_session *s, mall_status *st)
{
	if (s->cart[0] != '\0')
		return MALL_OK;
	char id[MALL_GW_GUEST_CART_LEN + 1];
	mall_code c = mall_gw_guest_cart_id_new(id, st);
	if (c != MALL_OK)
		return c;
	const char *argv[] = {"EVAL", cart_ensure_script, "1", s->key, id};
	redisReply *rep = command(r, st, 5, argv);
	if (rep == NULL)
		return st->code;
	if (rep->type == REDIS_REPLY_STRING && is_hex(rep->str, rep->len, MALL_GW_GUEST_CART_LEN))
		memcpy(s->cart, rep->str, MALL_GW_GUEST_CART_LEN + 1);
	else if (rep->type == REDIS_REPLY_NIL)
		c = mall_status_set(st, MALL_NOT_FOUND, "the session ended");
	else
		c = mall_status_set(st, MALL_INTERNAL, "unexpected reply to the cart id script");
	freeReplyObject(rep);
	return c;
}

mall_code
mall_gw_session_cart_set(mall_gw_req *r, mall_gw_session *s, const char *guest_id, mall_status *st)
{
	const char *argv[] = {"EVAL", cart_set_script, "1", s->key, guest_id};
	redisReply *rep = command(r, st, 5, argv);
	if (rep == NULL)
		return st->code;
	freeReplyObject(rep);
	snprintf(s->cart, sizeof(s->cart), "%s", guest_id);
	return MALL_OK;
}

mall_code
mall_gw_session_cart_drop(mall_gw_req *r, mall_gw_session *s, const char *guest_id, mall_status *st)
{
	const char *argv[] = {"EVAL", cart_drop_script, "1", s->key, guest_id};
	redisReply *rep = command(r, st, 5, argv);
	if (rep == NULL)
		return st->code;
	freeReplyObject(rep);
	if (strcmp(s->cart, guest_id) == 0)
		s->cart[0] = '\0';
	return MALL_OK;
}

/* ---- login throttling ---- */

/* The two counters' keys: per client IP and per lower-cased email (hashed, so
 * that Redis holds no addresses). */
static void
login_keys(mall_gw_req *r, const char *email, char *ip_key, char *acct_key, size_t cap)
{
	const char *ip = r->ri->remote_addr;
	hashed_key("login:fail:ip:", ip, strlen(ip), ip_key, cap);
	size_t n = strlen(email);
	char *low = mall_arena_alloc(r->arena, n + 1);
	for (size_t i = 0; i < n; i++)
		low[i] = (email[i] >= 'A' && email[i] <= 'Z') ? (char)(email[i] + 32) : email[i];
	low[n] = '\0';
	hashed_key("login:fail:acct:", low, n, acct_key, cap);
}

/* The count under key and the seconds its window has left (>= 1). */
static mall_code
counter(mall_gw_req *r, const char *key, int64_t *count, int64_t *left, mall_status *st)
{
	const char *get[] = {"GET", key};
	redisReply *rep = command(r, st, 2, get);
	if (rep == NULL)
		return st->code;
	*count = rep->type == REDIS_REPLY_STRING ? strtoll(rep->str, NULL, 10) : 0;
	freeReplyObject(rep);
	*left = 1;
	if (*count == 0)
		return MALL_OK;
	const char *pttl[] = {"PTTL", key};
	if ((rep = command(r, st, 2, pttl)) == NULL)
		return st->code;
	if (rep->type == REDIS_REPLY_INTEGER && rep->integer > 0)
		*left = (rep->integer + 999) / 1000;
	freeReplyObject(rep);
	return MALL_OK;
}

mall_code
mall_gw_login_check(mall_gw_req *r, const char *email, int64_t *retry_after, mall_status *st)
{
	char ip_key[96], acct_key[96];
	login_keys(r, email, ip_key, acct_key, sizeof(ip_key));
	int64_t n, left;
	*retry_after = 0;
	mall_code c = counter(r, ip_key, &n, &left, st);
	if (c != MALL_OK)
		return c;
	if (n >= r->gw->cfg.login_max_per_ip)
		*retry_after = left;
	if ((c = counter(r, acct_key, &n, &left, st)) != MALL_OK)
		return c;
	if (n >= r->gw->cfg.login_max_per_account && left > *retry_after)
		*retry_after = left;
	if (*retry_after > 0)
		return mall_status_set(st, MALL_RESOURCE_EXHAUSTED,
		                       "too many failed logins: try again in %" PRId64 " s",
		                       *retry_after);
	return MALL_OK;
}

mall_code
mall_gw_login_failed(mall_gw_req *r, const char *email, mall_status *st)
{
	char ip_key[96], acct_key[96];
	login_keys(r, email, ip_key, acct_key, sizeof(ip_key));
	char window[24];
	snprintf(window, sizeof(window), "%" PRId64, r->gw->cfg.login_window_ms);
	const char *keys[] = {ip_key, acct_key};
	for (int i = 0; i < 2; i++) {
		const char *argv[] = {"EVAL", fail_script, "1", keys[i], window};
		redisReply *rep = command(r, st, 5, argv);
		if (rep == NULL)
			return st->code;
		freeReplyObject(rep);
	}
	return MALL_OK;
}

void
mall_gw_login_succeeded(mall_gw_req *r, const char *email)
{
	char ip_key[96], acct_key[96];
	login_keys(r, email, ip_key, acct_key, sizeof(ip_key));
	mall_status st;
	mall_status_clear(&st);
	(void)delete_key(r, acct_key, &st);
}
