/*
 * me_routes.c: the signed-in member's own profile and address book, each
 * route one call to the member service (mall.member.Member).
 *
 *   GET    /api/v1/me                   GetMember
 *   PATCH  /api/v1/me                   UpdateMember (name, phone, marketingConsent)
 *   GET    /api/v1/me/addresses         ListAddresses
 *   POST   /api/v1/me/addresses         AddAddress: 201 with the address
 *   PATCH  /api/v1/me/addresses/{id}    UpdateAddress
 *   DELETE /api/v1/me/addresses/{id}    DeleteAddress: 204
 *
 * Every route needs a session of a signed-in member (else 401
 * unauthenticated); the member id comes only from the session, never from
 * the request (bodies naming id, memberId or updateMask are 400).  A PATCH
 * changes exactly the keys present in its JSON body: mall_gw_read_fields
 * (server.c) parses it once to learn them (they become update_mask), then
 * binds it to the request message (wrong types are 400 naming the field).
 * An address of another member is 404 (the service looks it up by member and
 * id).  Writes carry the client's Idempotency-Key, else a new key.  Unsafe
 * methods were CSRF-checked by server.c before routing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "json_pb.h"
#include "mall/member.pb-c.h"
#include "session.h"

/* The signed-in member's id, or 0 once answered (401, or 503 without Redis). */
static int64_t
member_id(mall_gw_req *r)
{
	mall_status st;
	mall_status_clear(&st);
	mall_gw_session *s;
	if (mall_gw_session_load(r, &s, &st) != MALL_OK) {
		mall_gw_respond_status(r, &st, "session store");
		return 0;
	}
	if (s == NULL || s->member_id <= 0) {
		mall_gw_respond_error(r, 401, "unauthenticated", "sign in first", NULL);
		return 0;
	}
	return s->member_id;
}

/* Calls method of the member service; a write when mutating.  The reply, or
 * NULL once answered with the error. */
static ProtobufCMessage *
call(mall_gw_req *r, const char *method, const ProtobufCMessage *req, bool mutating)
{
	const char *key = NULL;
	if (mutating) {
		key = mall_gw_idempotency_key(r);
		if (key != NULL && key[0] == '\0')
			return NULL;
	}
	ProtobufCMessage *reply = NULL;
	mall_status st;
	mall_status_clear(&st);
	mall_rpc_call_opts opts = {
	    .trace_id = r->trace_id,
	    .idempotency_key = key,
	    .flags = mutating ? MALL_RPC_CALL_MUTATING : 0,
	};
	if (mall_rpc_call(r->gw->member, &mall__member__member__descriptor, method, req, &reply,
	                  r->arena, &opts, &st) != MALL_OK) {
		mall_gw_respond_status(r, &st, "member");
		return NULL;
	}
	return reply;
}

static void
respond_json(mall_gw_req *r, int status, const ProtobufCMessage *m)
{
	size_t len;
	char *text = mall_pb_to_json_text(m, &len);
	mall_gw_respond(r, status, MALL_GW_JSON, text, len);
	free(text);
}

/* The {id} of an address route: a positive decimal integer, else 0 once
 * answered 404. */
static int64_t
address_id(mall_gw_req *r)
{
	const char *p = r->param != NULL ? r->param : "";
	char *end = NULL;
	errno = 0;
	long long v = (p[0] >= '0' && p[0] <= '9') ? strtoll(p, &end, 10) : 0;
	if (errno != 0 || end == NULL || *end != '\0' || v <= 0) {
		mall_gw_respond_error(r, 404, "not_found", "no such address", NULL);
		return 0;
	}
	return (int64_t)v;
}

void
mall_gw_handle_me_get(mall_gw_req *r)
{
	int64_t mid = member_id(r);
	if (mid == 0)
		return;
	Mall__Member__GetMemberRequest req = MALL__MEMBER__GET_MEMBER_REQUEST__INIT;
	req.id = mid;
	ProtobufCMessage *reply = call(r, "GetMember", &req.base, false);
	if (reply != NULL)
		respond_json(r, 200, reply);
}

static const char *const member_fields[] = {"name", "phone", "marketingConsent", NULL};

void
mall_gw_handle_me_patch(mall_gw_req *r)
{
	int64_t mid = member_id(r);
	if (mid == 0)
		return;
	char **mask = NULL;
	size_t nmask = 0;
	ProtobufCMessage *msg =
	    mall_gw_read_fields(r, &mall__member__update_member_request__descriptor, member_fields,
	                        "marketingConsent", &mask, &nmask);
	if (msg == NULL)
		return;
	Mall__Member__UpdateMemberRequest *req = (Mall__Member__UpdateMemberRequest *)msg;
	req->id = mid;
	req->update_mask = mask;
	req->n_update_mask = nmask;
	ProtobufCMessage *reply = call(r, "UpdateMember", msg, true);
	if (reply != NULL)
		respond_json(r, 200, reply);
}

void
mall_gw_handle_me_addresses(mall_gw_req *r)
{
	int64_t mid = member_id(r);
	if (mid == 0)
		return;
	Mall__Member__ListAddressesRequest req = MALL__MEMBER__LIST_ADDRESSES_REQUEST__INIT;
	req.member_id = mid;
	ProtobufCMessage *reply = call(r, "ListAddresses", &req.base, false);
	if (reply != NULL)
		respond_json(r, 200, reply);
}

static const char *const address_fields[] = {"recipient", "phone",     "postalCode", "address1",
                                             "address2",  "isDefault", NULL};

void
mall_gw_handle_me_address_add(mall_gw_req *r)
{
	int64_t mid = member_id(r);
	if (mid == 0)
		return;
	ProtobufCMessage *msg = mall_gw_read_fields(
	    r, &mall__member__add_address_request__descriptor, address_fields, NULL, NULL, NULL);
	if (msg == NULL)
		return;
	((Mall__Member__AddAddressRequest *)msg)->member_id = mid;
	ProtobufCMessage *reply = call(r, "AddAddress", msg, true);
	if (reply != NULL)
		respond_json(r, 201, reply);
}

void
mall_gw_handle_me_address_patch(mall_gw_req *r)
{
	int64_t mid = member_id(r);
	if (mid == 0)
		return;
	int64_t id = address_id(r);
	if (id == 0)
		return;
	char **mask = NULL;
	size_t nmask = 0;
	ProtobufCMessage *msg =
	    mall_gw_read_fields(r, &mall__member__update_address_request__descriptor,
	                        address_fields, NULL, &mask, &nmask);
	if (msg == NULL)
		return;
	Mall__Member__UpdateAddressRequest *req = (Mall__Member__UpdateAddressRequest *)msg;
	req->member_id = mid;
	req->id = id;
	req->update_mask = mask;
	req->n_update_mask = nmask;
	ProtobufCMessage *reply = call(r, "UpdateAddress", msg, true);
	if (reply != NULL)
		respond_json(r, 200, reply);
}

void
mall_gw_handle_me_address_delete(mall_gw_req *r)
{
	int64_t mid = member_id(r);
	if (mid == 0)
		return;
	int64_t id = address_id(r);
	if (id == 0)
		return;
	Mall__Member__DeleteAddressRequest req = MALL__MEMBER__DELETE_ADDRESS_REQUEST__INIT;
	req.member_id = mid;
	req.id = id;
	if (call(r, "DeleteAddress", &req.base, true) != NULL)
		mall_gw_respond(r, 204, MALL_GW_JSON, "", 0);
}
