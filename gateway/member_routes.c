/*
 * member_routes.c: the storefront's member API, each route one call to the
 * member service (mall.member.Member).
 *
 *   POST /api/v1/members          SignUp: 201 with the new member
 *
 * The JSON body binds to the request message with json_pb (unknown fields and
 * wrong types are 400 naming the field); the member service checks the values
 * and answers field errors, ALREADY_EXISTS (409) for a taken email.  Writes
 * carry an idempotency key: the client's Idempotency-Key header when it sent
 * one (so its retry of a signup that went through gets the same answer), else
 * a new one that the RPC client keeps across its own retries.
 */
#include <stdlib.h>
#include <string.h>

#include "gateway.h"
#include "json_pb.h"
#include "mall/member.pb-c.h"

/* Calls method of the member service with req as a write; the reply, or NULL
 * once answered with the error. */
static ProtobufCMessage *
call_mutating(mall_gw_req *r, const char *method, const ProtobufCMessage *req)
{
	const char *key = mall_gw_idempotency_key(r);
	if (key != NULL && key[0] == '\0')
		return NULL;
	ProtobufCMessage *reply = NULL;
	mall_status st;
	mall_status_clear(&st);
	mall_rpc_call_opts opts = {
	    .trace_id = r->trace_id,
	    .idempotency_key = key,
	    .flags = MALL_RPC_CALL_MUTATING,
	};
	if (mall_rpc_call(r->gw->member, &mall__member__member__descriptor, method, req, &reply,
	                  r->arena, &opts, &st) != MALL_OK) {
		mall_gw_respond_status(r, &st, "member");
		return NULL;
	}
	return reply;
}

/* Reads the JSON body as a desc message; NULL once answered with the error. */
static ProtobufCMessage *
read_request(mall_gw_req *r, const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *req = NULL;
	mall_status st;
	mall_status_clear(&st);
	if (mall_gw_read_json(r, desc, &req, &st) == MALL_OK)
		return req;
	if (st.code == MALL_RESOURCE_EXHAUSTED)
		mall_gw_respond_too_large(r);
	else
		mall_gw_respond_status(r, &st, "gateway");
	return NULL;
}

static void
respond_created(mall_gw_req *r, const ProtobufCMessage *m)
{
	size_t len;
	char *text = mall_pb_to_json_text(m, &len);
	mall_gw_respond(r, 201, MALL_GW_JSON, text, len);
	free(text);
}

void
mall_gw_handle_members(mall_gw_req *r)
{
	ProtobufCMessage *req = read_request(r, &mall__member__sign_up_request__descriptor);
	if (req == NULL)
		return;
	ProtobufCMessage *reply = call_mutating(r, "SignUp", req);
	if (reply != NULL)
		respond_created(r, reply);
}
