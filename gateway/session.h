/*
 * session.h: login sessions of the gateway, kept in Redis.
 *
 * A session is a random 256-bit token, sent to the browser as the cookie
 * mall_session (hex; HttpOnly, SameSite=Lax, Path=/, Secure when
 * MALL_GATEWAY_SECURE_COOKIES is on).  Redis keeps only the token's SHA-256:
 * the hash "sess:<sha256 hex of the token>" holds {member_id (0: anonymous),
 * csrf, created (Unix seconds)} and expires MALL_GATEWAY_SESSION_TTL after its
 * last use (each load refreshes it).  The session's CSRF token goes to the
 * browser as the readable cookie mall_csrf; an unsafe request carrying a live
 * session must send it back in X-CSRF-Token (server.c checks it).
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

typedef struct mall_gw_session {
	bool live;         /* a session exists in Redis (loaded or just made) */
	char token[65];    /* the cookie's value: 64 hex digits */
	char key[70];      /* "sess:" + SHA-256 hex of token */
	char csrf[65];     /* 64 hex digits */
	int64_t member_id; /* 0: anonymous */
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
