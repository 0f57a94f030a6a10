/*
 * session.h: login sessions of the gateway, kept in Redis.
 *
 * A session is a random 256-bit token, sent to the browser as the cookie
 * mall_session (hex; HttpOnly, SameSite=Lax, Path=/, Secure when
 * MALL_GATEWAY_SECURE_COOKIES is on).  Redis keeps only the token's SHA-256:
 * the hash "sess:<sha256 hex of the token>" holds {member_id (0: anonymous),
 * csrf, created (Unix seconds), and cart once there is one} and expires
 * MALL_GATEWAY_SESSION_TTL after its last use (each load refreshes it).  The
 * session's CSRF token goes to the browser as the readable cookie mall_csrf;
 * an unsafe request carrying a live session must send it back in X-CSRF-Token
 * (server.c checks it).
 *
 * cart is a guest cart's id (32 random hex digits; the cart service keeps the
 * cart under it): the one a shopper fills before signing in, made on the
 * first cart write of an anonymous session.  It never leaves the gateway, so
 * a client cannot name another guest's cart.  In a member's session the field
 * is a guest cart still to be merged into the member's cart (cart_routes.c);
 * it goes once the merge is done.
 *
 * A cookie that names no live session (expired, deleted, made up) counts as
 * no session: it grants nothing.  Redis unreachable is UNAVAILABLE (503).
 */
#ifndef MALL_GW_SESSION_H
#define MALL_GW_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "status.h"

struct mall_gw_req;

#define MALL_GW_SESSION_COOKIE "mall_session"
#define MALL_GW_CSRF_COOKIE "mall_csrf"
#define MALL_GW_CSRF_HEADER "X-CSRF-Token"

#define MALL_GW_GUEST_CART_LEN 32 /* hex digits */

typedef struct mall_gw_session {
	bool live;         /* a session exists in Redis (loaded or just made) */
	char token[65];    /* the cookie's value: 64 hex digits */
	char key[70];      /* "sess:" + SHA-256 hex of token */
	char csrf[65];     /* 64 hex digits */
	int64_t member_id; /* 0: anonymous */
	char cart[33];     /* the guest cart id, "" when none */
} mall_gw_session;

/* mall_gw_session_has_cookie: whether the request carries a mall_session
 * cookie (well-formed or not). */
bool mall_gw_session_has_cookie(struct mall_gw_req *r);

/* mall_gw_session_load: the request's session, loaded once per request (later
 * calls answer the same); *out is NULL when the request has none (no cookie,
 * a malformed one, or one naming no live session).  A live session's expiry is
 * pushed back to the TTL from now.  UNAVAILABLE when Redis cannot be reached. */
mall_code mall_gw_session_load(struct mall_gw_req *r, mall_gw_session **out, mall_status *st);

/* mall_gw_session_create: a new session for member_id (0: anonymous) with a
 * new token and CSRF token; deletes the request's current session first, if
 * any (rotation), and adds both Set-Cookie headers to the response.  The
 * request's session becomes the new one. */
mall_code mall_gw_session_create(struct mall_gw_req *r, int64_t member_id, mall_gw_session **out,
                                 mall_status *st);

/* mall_gw_session_destroy: deletes the request's session from Redis, if any,
 * and adds Set-Cookie headers expiring both cookies. */
mall_code mall_gw_session_destroy(struct mall_gw_req *r, mall_status *st);

/* mall_gw_guest_cart_id_new: a new random guest cart id (32 hex digits) into
 * out[33]. */
mall_code mall_gw_guest_cart_id_new(char *out, mall_status *st);

/* mall_gw_session_cart_ensure: gives the live session s a guest cart id
 * (s->cart) unless it has one.  The id is set only if the field holds none
 * yet (one Lua script), so concurrent requests of one session agree on one
 * cart.  NOT_FOUND when the session is gone meanwhile (expired, logged
 * out). */
mall_code mall_gw_session_cart_ensure(struct mall_gw_req *r, mall_gw_session *s, mall_status *st);
/* mall_gw_session_cart_set: stores guest_id in s's cart field (a guest cart
 * carried into a new member session at login); nothing when s is gone. */
mall_code mall_gw_session_cart_set(struct mall_gw_req *r, mall_gw_session *s, const char *guest_id,
                                   mall_status *st);
/* mall_gw_session_cart_drop: removes s's cart field if it still holds
 * guest_id (a concurrent request may have changed it). */
mall_code mall_gw_session_cart_drop(struct mall_gw_req *r, mall_gw_session *s, const char *guest_id,
                                    mall_status *st);

/* mall_gw_csrf_equal: constant-time comparison of a sent CSRF token with the
 * session's (false when sent is NULL or of another length). */
bool mall_gw_csrf_equal(const char *sent, const char *csrf);

/* Login throttling: failures are counted per client IP and per lower-cased
 * email in fixed windows of MALL_GATEWAY_LOGIN_WINDOW.
 * mall_gw_login_check: RESOURCE_EXHAUSTED with *retry_after (seconds, >= 1)
 * when either count is at its limit; UNAVAILABLE without Redis. */
mall_code mall_gw_login_check(struct mall_gw_req *r, const char *email, int64_t *retry_after,
                              mall_status *st);
/* mall_gw_login_failed: counts one failed login for the IP and the email. */
mall_code mall_gw_login_failed(struct mall_gw_req *r, const char *email, mall_status *st);
/* mall_gw_login_succeeded: forgets the email's failures (the IP's stay). */
void mall_gw_login_succeeded(struct mall_gw_req *r, const char *email);

#endif
