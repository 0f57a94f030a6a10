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
 * changes exactly the keys present in its JSON body: the body is parsed once
 * with jansson to learn them (they become update_mask), then bound to the
 * request message with json_pb (wrong types are 400 naming the field).  An
 * address of another member is 404 (the service looks it up by member and
 * id).  Writes carry the client's Idempotency-Key, else a new key.  Unsafe
 * methods were CSRF-checked by server.c before routing.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

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

static void
respond_bad(mall_gw_req *r, mall_status *st)
{
	if (st->code == MALL_RESOURCE_EXHAUSTED)
		mall_gw_respond_too_large(r);
	else
		mall_gw_respond_status(r, st, "gateway");
}

static bool
key_allowed(const char *key, const char *const *allowed)
{
	for (size_t i = 0; allowed[i] != NULL; i++)
		if (strcmp(key, allowed[i]) == 0)
			return true;
	return false;
}

/*
 * Reads the JSON body as a desc message, accepting only the keys of allowed
 * (JSON names).  When mask is set, the keys present become (*mask)[], *nmask;
 * an object value of a key in sub_keys (marketingConsent) names its own keys
 * ("marketingConsent.email").  An empty object is refused when mask is set.
 * NULL once answered with the error.
 */
static ProtobufCMessage *
read_body(mall_gw_req *r, const ProtobufCMessageDescriptor *desc, const char *const *allowed,
          const char *sub_key, char ***mask, size_t *nmask)
{
	mall_status st;
	mall_status_clear(&st);
	if (!mall_gw_media_is_json(mg_get_header(r->conn, "Content-Type"))) {
		mall_status_set(&st, MALL_INVALID_ARGUMENT,
		                "request body must be application/json");
		respond_bad(r, &st);
		return NULL;
	}
	const char *body = "";
	size_t len = 0;
	if (mall_gw_read_body(r, true, &body, &len, &st) != MALL_OK) {
		respond_bad(r, &st);
		return NULL;
	}
	json_error_t je;
	json_t *obj = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (obj == NULL || !json_is_object(obj)) {
		json_decref(obj);
		mall_status_set(&st, MALL_INVALID_ARGUMENT, "request body must be a JSON object");
		respond_bad(r, &st);
		return NULL;
	}
	size_t n = json_object_size(obj);
	char **keys = mall_arena_alloc(r->arena, (n * 2 + 1) * sizeof(char *));
	size_t nkeys = 0;
	const char *k;
	json_t *v;
	json_object_foreach(obj, k, v)
	{
		if (!key_allowed(k, allowed)) {
			mall_status_field(&st, k, "is not a field that can be set here");
			continue;
		}
		if (sub_key != NULL && strcmp(k, sub_key) == 0 && json_is_object(v)) {
			const char *sk;
			json_t *sv;
			size_t before = nkeys;
			json_object_foreach(v, sk, sv)
			{
				(void)sv;
				if (nkeys < n * 2)
					keys[nkeys++] = mall_arena_printf(r->arena, "%s.%s", k, sk);
			}
			if (before == nkeys && mask != NULL)
				mall_status_field(&st, k, "must name email or sms");
			continue;
		}
		if (nkeys < n * 2)
			keys[nkeys++] = mall_arena_strdup(r->arena, k);
	}
	if (mask != NULL && n == 0)
		mall_status_set(&st, MALL_INVALID_ARGUMENT, "the body names no field to change");
	ProtobufCMessage *msg = NULL;
	if (st.code == MALL_OK)
		mall_json_obj_to_pb(obj, desc, r->arena, &msg, &st);
	json_decref(obj);
	if (st.code != MALL_OK) {
		respond_bad(r, &st);
		return NULL;
	}
	if (mask != NULL) {
		*mask = keys;
		*nmask = nkeys;
	}
	return msg;
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
	ProtobufCMessage *msg = read_body(r, &mall__member__update_member_request__descriptor,
	                                  member_fields, "marketingConsent", &mask, &nmask);
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
	ProtobufCMessage *msg = read_body(r, &mall__member__add_address_request__descriptor,
	                                  address_fields, NULL, NULL, NULL);
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
	ProtobufCMessage *msg = read_body(r, &mall__member__update_address_request__descriptor,
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
