/*
 * member_address.c: a member's address book.
 *
 * Every request names the member; an address of another member is NOT_FOUND,
 * exactly like one that does not exist.  A member with addresses always has
 * exactly one default (a partial unique index holds at most one): the first
 * address becomes it, a new default takes the flag from the old one, and
 * deleting the default hands the flag to the most recently added other
 * address.  Changes lock the member's row first, so concurrent changes to one
 * address book go one at a time and never trip over the index.
 */
#include <stdio.h>
#include <string.h>

#include "json_pb.h"
#include "member.h"

#define MAX_ADDRESSES 20

#define ADDRESS_COLUMNS                                                                            \
	"id, member_id, recipient, phone, postal_code, address1, address2, "                       \
	"is_default, " MEMBER_RFC3339("created_at")

static Mall__Member__Address *
address_from_row(mall_arena *a, const PGresult *res, int row)
{
	Mall__Member__Address *ad =
	    (Mall__Member__Address *)mall_pb_new(&mall__member__address__descriptor, a);
	ad->id = mall_db_int64(res, row, 0);
	ad->member_id = mall_db_int64(res, row, 1);
	ad->recipient = mall_arena_strdup(a, PQgetvalue(res, row, 2));
	ad->phone = mall_arena_strdup(a, PQgetvalue(res, row, 3));
	ad->postal_code = mall_arena_strdup(a, PQgetvalue(res, row, 4));
	ad->address1 = mall_arena_strdup(a, PQgetvalue(res, row, 5));
	ad->address2 = mall_arena_strdup(a, PQgetvalue(res, row, 6));
	ad->is_default = mall_db_bool(res, row, 7);
	ad->created_at = mall_arena_strdup(a, PQgetvalue(res, row, 8));
	return ad;
}

static const char *
id_text(mall_arena *a, int64_t id)
{
	return mall_arena_printf(a, "%lld", (long long)id);
}

/* Address id of member_id; NOT_FOUND when the member has no such address. */
static mall_code
load_address(mall_db_conn *conn, mall_arena *a, int64_t member_id, int64_t id,
             Mall__Member__Address **out, mall_status *st)
{
	const char *params[] = {id_text(a, member_id), id_text(a, id)};
	PGresult *res = mall_db_exec(conn, st,
	    "SELECT " ADDRESS_COLUMNS " FROM address WHERE member_id = $1 AND id = $2", 2, params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_NOT_FOUND, "address %lld of member %lld not found",
		                       (long long)id, (long long)member_id);
	}
	*out = address_from_row(a, res, 0);
	PQclear(res);
	return MALL_OK;
}

/* Takes the default flag from every address of member_id (before another
 * address gets it). */
static mall_code
clear_default(mall_db_conn *conn, mall_arena *a, int64_t member_id, mall_status *st)
{
	const char *params[] = {id_text(a, member_id)};
	if (mall_db_exec_cmd(conn, st,
	                     "UPDATE address SET is_default = false WHERE member_id = $1 AND is_default",
	                     1, params) < 0)
		return st->code;
	return MALL_OK;
}

mall_code
member_list_addresses(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                      mall_status *st)
{
	const Mall__Member__ListAddressesRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	mall_check_id(st, "memberId", req->member_id);
	if (st->code != MALL_OK || member_exists(conn, a, req->member_id, st) != MALL_OK)
		return st->code;
	const char *params[] = {id_text(a, req->member_id)};
	PGresult *res = mall_db_exec(conn, st,
	    "SELECT " ADDRESS_COLUMNS " FROM address WHERE member_id = $1"
	    " ORDER BY is_default DESC, created_at DESC, id DESC",
	    1, params);
	if (res == NULL)
		return st->code;
	Mall__Member__ListAddressesReply *out = (Mall__Member__ListAddressesReply *)mall_pb_new(
	    &mall__member__list_addresses_reply__descriptor, a);
	int n = PQntuples(res);
	out->n_addresses = (size_t)n;
	out->addresses = mall_arena_alloc(a, sizeof(*out->addresses) * (size_t)(n ? n : 1));
	for (int i = 0; i < n; i++)
		out->addresses[i] = address_from_row(a, res, i);
	PQclear(res);
	*reply = &out->base;
	return MALL_OK;
}

mall_code
member_add_address(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                   mall_status *st)
{
	const Mall__Member__AddAddressRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	mall_check_id(st, "memberId", req->member_id);
	mall_check_text(st, "recipient", req->recipient, 1, 50);
	char *phone = mall_check_phone(st, a, "phone", req->phone);
	mall_check_postal_code(st, "postalCode", req->postal_code);
	mall_check_text(st, "address1", req->address1, 1, 200);
	mall_check_text(st, "address2", req->address2, 0, 200);
	if (st->code != MALL_OK || member_lock(conn, a, req->member_id, st) != MALL_OK)
		return st->code;

	const char *mid = id_text(a, req->member_id);
	PGresult *res =
	    mall_db_exec(conn, st, "SELECT count(*) FROM address WHERE member_id = $1", 1, &mid);
	if (res == NULL)
		return st->code;
	int64_t count = mall_db_int64(res, 0, 0);
	PQclear(res);
	if (count >= MAX_ADDRESSES)
		return mall_status_set(st, MALL_FAILED_PRECONDITION,
		                       "member %lld has %d addresses, the most allowed: delete one first",
		                       (long long)req->member_id, MAX_ADDRESSES);
	bool is_default = req->is_default || count == 0;
	if (is_default && count > 0 && clear_default(conn, a, req->member_id, st) != MALL_OK)
		return st->code;
	const char *params[] = {mid,           req->recipient, phone, req->postal_code,
	                        req->address1, req->address2,  is_default ? "true" : "false"};
	res = mall_db_exec(conn, st,
	    "INSERT INTO address (member_id, recipient, phone, postal_code, address1, address2,"
	    " is_default) VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING " ADDRESS_COLUMNS,
	    7, params);
	if (res == NULL)
		return st->code;
	Mall__Member__Address *ad = address_from_row(a, res, 0);
	PQclear(res);
	*reply = &ad->base;
	return MALL_OK;
}

static const char *const updatable[] = {"recipient", "phone",    "postalCode",
                                        "address1",  "address2", "isDefault"};
enum { U_RECIPIENT, U_PHONE, U_POSTAL, U_ADDRESS1, U_ADDRESS2, U_DEFAULT, U_COUNT };

mall_code
member_update_address(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                      mall_status *st)
{
	const Mall__Member__UpdateAddressRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	bool set[U_COUNT] = {false};
	mall_check_id(st, "memberId", req->member_id);
	mall_check_id(st, "id", req->id);
	mall_update_mask_parse(req->update_mask, req->n_update_mask, updatable, U_COUNT, set, st);
	if (set[U_RECIPIENT])
		mall_check_text(st, "recipient", req->recipient, 1, 50);
	char *phone = set[U_PHONE] ? mall_check_phone(st, a, "phone", req->phone) : NULL;
	if (set[U_POSTAL])
		mall_check_postal_code(st, "postalCode", req->postal_code);
	if (set[U_ADDRESS1])
		mall_check_text(st, "address1", req->address1, 1, 200);
	if (set[U_ADDRESS2])
		mall_check_text(st, "address2", req->address2, 0, 200);
	if (st->code != MALL_OK || member_lock(conn, a, req->member_id, st) != MALL_OK)
		return st->code;

	Mall__Member__Address *cur = NULL;
	if (load_address(conn, a, req->member_id, req->id, &cur, st) != MALL_OK)
		return st->code;
	if (set[U_DEFAULT] && !req->is_default && cur->is_default)
		return mall_status_field(st, "isDefault",
		                         "the default address stays the default until another "
		                         "address is made the default");
	bool make_default = set[U_DEFAULT] && req->is_default && !cur->is_default;
	if (make_default && clear_default(conn, a, req->member_id, st) != MALL_OK)
		return st->code;
	const char *params[] = {id_text(a, req->id),
	                        set[U_RECIPIENT] ? req->recipient : NULL,
	                        phone,
	                        set[U_POSTAL] ? req->postal_code : NULL,
	                        set[U_ADDRESS1] ? req->address1 : NULL,
	                        set[U_ADDRESS2] ? req->address2 : NULL,
	                        make_default ? "true" : NULL};
	PGresult *res = mall_db_exec(conn, st,
	    "UPDATE address SET recipient = coalesce($2, recipient), phone = coalesce($3, phone),"
	    " postal_code = coalesce($4, postal_code), address1 = coalesce($5, address1),"
	    " address2 = coalesce($6, address2), is_default = coalesce($7::boolean, is_default)"
	    " WHERE id = $1 RETURNING " ADDRESS_COLUMNS,
	    7, params);
	if (res == NULL)
		return st->code;
	Mall__Member__Address *ad = address_from_row(a, res, 0);
	PQclear(res);
	*reply = &ad->base;
	return MALL_OK;
}

mall_code
member_delete_address(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply,
                      mall_status *st)
{
	const Mall__Member__DeleteAddressRequest *req = (const void *)req_;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	mall_check_id(st, "memberId", req->member_id);
	mall_check_id(st, "id", req->id);
	if (st->code != MALL_OK || member_lock(conn, a, req->member_id, st) != MALL_OK)
		return st->code;
	const char *params[] = {id_text(a, req->member_id), id_text(a, req->id)};
	PGresult *res = mall_db_exec(conn, st,
	    "DELETE FROM address WHERE member_id = $1 AND id = $2 RETURNING is_default", 2, params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		PQclear(res);
		return mall_status_set(st, MALL_NOT_FOUND, "address %lld of member %lld not found",
		                       (long long)req->id, (long long)req->member_id);
	}
	bool was_default = mall_db_bool(res, 0, 0);
	PQclear(res);
	if (was_default &&
	    mall_db_exec_cmd(conn, st,
	                     "UPDATE address SET is_default = true WHERE id = (SELECT id FROM address"
	                     " WHERE member_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1)",
	                     1, params) < 0)
		return st->code;
	*reply = mall_pb_new(&mall__member__delete_address_reply__descriptor, a);
	return MALL_OK;
}
