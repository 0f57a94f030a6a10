/*
 * session_routes.c: the storefront's session API (session.h).
 *
 *   GET    /api/v1/session   the current session: {"member": <account or null>,
 *                            "csrfToken"}; makes an anonymous one when none
 *   POST   /api/v1/session   login {"email","password"}: VerifyLogin, then a
 *                            new session (the old one is deleted): 200
 *                            {"member","csrfToken"} with both cookies; the
 *                            guest cart of the old session moves into the
 *                            member's cart
 *   DELETE /api/v1/session   logout: 204, the session deleted, cookies expired
 *
 * Login is throttled before the member service is asked: failed logins are
 * counted per client IP and per email (session.h), and at a limit the answer
 * is 429 with Retry-After.  Only failures count, so many successful logins
 * from one address (an office behind NAT) are never throttled.  An unknown
 * email and a wrong password get the same 401.
 *
 * The guest cart at login: the old session's guest cart id (session.h) is
 * written into the new member session too, then merged into the member's cart
 * (mall_gw_cart_merge, cart_routes.c), which drops the field once it is done.
 * If the cart service cannot merge now, the login still succeeds and the
 * field stays: the member's next cart request merges it.  Only an anonymous
 * session's guest cart (or the same member's, still unmerged) is carried: a
 * different member logging in on the same browser does not get it.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "json_pb.h"
#include "log.h"
#include "mall/member.pb-c.h"
#include "session.h"

/* Answers {"member": <member JSON or null>, "csrfToken": csrf} with status. */
static void
respond_session(mall_gw_req *r, const ProtobufCMessage *member, const char *csrf)
{
	size_t len = 0;
	char *text = member != NULL ? mall_pb_to_json_text(member, &len) : NULL;
	/* csrf is 64 hex digits: nothing to escape */
	char *body = mall_arena_printf(r->arena, "{\"member\":%s,\"csrfToken\":\"%s\"}",
	                               text != NULL ? text : "null", csrf);
	free(text);
	mall_gw_respond(r, 200, MALL_GW_JSON, body, strlen(body));
}

/* Answers a Redis failure: 503 when it is unreachable. */
static void
respond_redis(mall_gw_req *r, const mall_status *st)
{
	mall_gw_respond_status(r, st, "session store");
}

void
mall_gw_handle_session_get(mall_gw_req *r)
{
	mall_status st;
	mall_status_clear(&st);
	mall_gw_session *s;
	if (mall_gw_session_load(r, &s, &st) != MALL_OK ||
	    (s == NULL && mall_gw_session_create(r, 0, &s, &st) != MALL_OK)) {
		respond_redis(r, &st);
		return;
	}
	if (s->member_id == 0) {
		respond_session(r, NULL, s->csrf);
		return;
	}
	Mall__Member__GetMemberRequest req = MALL__MEMBER__GET_MEMBER_REQUEST__INIT;
	req.id = s->member_id;
	ProtobufCMessage *reply = NULL;
	mall_rpc_call_opts opts = {.trace_id = r->trace_id};
	if (mall_rpc_call(r->gw->member, &mall__member__member__descriptor, "GetMember", &req.base,
	                  &reply, r->arena, &opts, &st) != MALL_OK) {
		if (st.code == MALL_NOT_FOUND) { /* the account is gone */
			respond_session(r, NULL, s->csrf);
			return;
		}
		mall_gw_respond_status(r, &st, "member");
		return;
	}
	respond_session(r, reply, s->csrf);
}

void
mall_gw_handle_session_login(mall_gw_req *r)
{
	mall_status st;
	mall_status_clear(&st);
	ProtobufCMessage *msg = NULL;
	if (mall_gw_read_json(r, &mall__member__verify_login_request__descriptor, &msg, &st) !=
	    MALL_OK) {
		if (st.code == MALL_RESOURCE_EXHAUSTED)
			mall_gw_respond_too_large(r);
		else
			mall_gw_respond_status(r, &st, "gateway");
		return;
	}
	Mall__Member__VerifyLoginRequest *req = (Mall__Member__VerifyLoginRequest *)msg;
	const char *email = req->email != NULL ? req->email : "";
	if (email[0] == '\0' || req->password == NULL || req->password[0] == '\0') {
		mall_status_clear(&st);
		if (email[0] == '\0')
			mall_status_field(&st, "email", "is required");
		if (req->password == NULL || req->password[0] == '\0')
			mall_status_field(&st, "password", "is required");
		mall_gw_respond_status(r, &st, "gateway");
		return;
	}

	int64_t retry_after = 0;
	mall_code c = mall_gw_login_check(r, email, &retry_after, &st);
	if (c == MALL_RESOURCE_EXHAUSTED) {
		char secs[24];
		snprintf(secs, sizeof(secs), "%" PRId64, retry_after);
		mall_gw_header(r, "Retry-After", secs);
		mall_gw_respond_error(r, 429, "resource_exhausted",
		                      "too many failed logins, try again later", NULL);
		return;
	}
	if (c != MALL_OK) {
		respond_redis(r, &st);
		return;
	}

	ProtobufCMessage *account = NULL;
	mall_rpc_call_opts opts = {.trace_id = r->trace_id};
	if (mall_rpc_call(r->gw->member, &mall__member__member__descriptor, "VerifyLogin",
	                  &req->base, &account, r->arena, &opts, &st) != MALL_OK) {
		if (st.code == MALL_UNAUTHENTICATED) {
			mall_status fst;
			mall_status_clear(&fst);
			if (mall_gw_login_failed(r, email, &fst) != MALL_OK)
				mall_log_warn(r->trace_id, "could not count a failed login: %s",
				              fst.message);
			mall_gw_respond_error(r, 401, "unauthenticated", "wrong email or password",
			                      NULL);
			return;
		}
		mall_gw_respond_status(r, &st, "member");
		return;
	}
	mall_gw_login_succeeded(r, email);
	const Mall__Member__Account *a = (const Mall__Member__Account *)account;
	mall_gw_session *s;
	char guest[MALL_GW_GUEST_CART_LEN + 1] = "";
	if (mall_gw_session_load(r, &s, &st) != MALL_OK) {
		respond_redis(r, &st);
		return;
	}
	if (s != NULL && (s->member_id == 0 || s->member_id == a->id))
		memcpy(guest, s->cart, sizeof(guest));
	if (mall_gw_session_create(r, a->id, &s, &st) != MALL_OK) {
		respond_redis(r, &st);
		return;
	}
	if (guest[0] != '\0') {
		if (mall_gw_session_cart_set(r, s, guest, &st) != MALL_OK)
			mall_log_warn(r->trace_id,
			              "could not keep the guest cart in the session: %s",
			              st.message);
		(void)mall_gw_cart_merge(r, s, guest, &st); /* logged there */
	}
	respond_session(r, account, s->csrf);
}

void
mall_gw_handle_session_logout(mall_gw_req *r)
{
	mall_status st;
	mall_status_clear(&st);
	if (mall_gw_session_destroy(r, &st) != MALL_OK) {
		respond_redis(r, &st);
		return;
	}
	mall_gw_respond(r, 204, MALL_GW_JSON, "", 0);
}
