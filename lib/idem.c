/*
 * idem.c: idempotency records of mutating RPCs, kept in the service database.
 *
 * The record and the handler's change share one transaction, so they commit
 * or vanish together.  The unique key is the lock: a concurrent call with the
 * same key blocks in its INSERT until the first one ends, then either finds
 * the committed record (and answers it) or, if the first rolled back, inserts
 * the key and runs the handler itself.  The request is identified by
 * SHA-256(method "\n" body), so a key reused for another request is refused
 * instead of answering a reply that belongs to something else; for a request
 * carrying a password the body is hashed with the password emptied
 * (mall_idem_mutate_secret).
 */
#include "idem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "db.h"

#define INSERT_SQL                                                                                 \
	"INSERT INTO rpc_idempotency (key, method, request_hash) VALUES ($1, $2, $3) "             \
	"ON CONFLICT (key) DO NOTHING"
#define UPDATE_SQL "UPDATE rpc_idempotency SET reply = $2 WHERE key = $1"
#define SELECT_SQL                                                                                 \
	"SELECT method = $2 AND request_hash = $3, reply FROM rpc_idempotency WHERE key = $1"

/* bytea_text: data as bytea text input ("\x0a1b..."), in the arena. */
static char *
bytea_text(mall_arena *a, const uint8_t *data, size_t len)
{
	char *s = mall_arena_alloc(a, 2 * len + 3);
	s[0] = '\\';
	s[1] = 'x';
	sodium_bin2hex(s + 2, 2 * len + 1, data, len);
	return s;
}

/* request_hash: SHA-256(method "\n" body) of body (len bytes). */
static void
request_hash(const mall_rpc_ctx *ctx, const uint8_t *body, size_t len,
             unsigned char out[crypto_hash_sha256_BYTES])
{
	const char *method = mall_rpc_ctx_method(ctx);
	crypto_hash_sha256_state h;
	crypto_hash_sha256_init(&h);
	crypto_hash_sha256_update(&h, (const unsigned char *)method, strlen(method));
	crypto_hash_sha256_update(&h, (const unsigned char *)"\n", 1);
	if (body != NULL && len > 0)
		crypto_hash_sha256_update(&h, body, len);
	crypto_hash_sha256_final(&h, out);
}

/* run_new: the key was inserted in the open transaction: run the handler,
 * store its reply, commit. */
static mall_code
run_new(mall_rpc_ctx *ctx, mall_db_conn *db, const char *key, mall_rpc_handler fn,
        const ProtobufCMessage *req, ProtobufCMessage **reply, mall_status *st)
{
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	*reply = NULL;
	mall_code rc = fn(ctx, req, reply, st);
	if (rc == MALL_OK && *reply == NULL)
		rc = mall_status_set(st, MALL_INTERNAL, "method %s returned no reply",
		                     mall_rpc_ctx_method(ctx));
	if (rc != MALL_OK) {
		mall_db_rollback(db);
		*reply = NULL;
		return rc;
	}
	size_t n = protobuf_c_message_get_packed_size(*reply);
	uint8_t *buf = mall_arena_alloc(a, n ? n : 1);
	protobuf_c_message_pack(*reply, buf);
	const char *params[2] = {key, bytea_text(a, buf, n)};
	if (mall_db_exec_cmd(db, st, UPDATE_SQL, 2, params) < 0 ||
	    mall_db_commit(db, st) != MALL_OK) {
		mall_db_rollback(db);
		*reply = NULL;
		return st->code;
	}
	return MALL_OK;
}

/* answer_recorded: the key exists (committed): check it is this request's and
 * decode its reply.  The transaction is still open; the caller rolls back. */
static mall_code
answer_recorded(mall_rpc_ctx *ctx, mall_db_conn *db, const char *key, const char *hash_hex,
                ProtobufCMessage **reply, mall_status *st, bool *vanished)
{
	const char *params[3] = {key, mall_rpc_ctx_method(ctx), hash_hex};
	PGresult *res = mall_db_exec(db, st, SELECT_SQL, 3, params);
	if (res == NULL)
		return st->code;
	if (PQntuples(res) == 0) {
		/* removed (expired) between our INSERT and SELECT: try again */
		PQclear(res);
		*vanished = true;
		return MALL_ABORTED;
	}
	if (!mall_db_bool(res, 0, 0)) {
		PQclear(res);
		return mall_status_reason(st, MALL_INVALID_ARGUMENT, MALL_IDEM_KEY_REUSED,
		                          "idempotency key %s was used for a different request",
		                          key);
	}
	if (PQgetisnull(res, 0, 1)) {
		PQclear(res);
		return mall_status_set(st, MALL_INTERNAL,
		                       "idempotency key %s has a record without a reply", key);
	}
	size_t n = 0;
	unsigned char *bin = PQunescapeBytea((const unsigned char *)PQgetvalue(res, 0, 1), &n);
	PQclear(res);
	if (bin == NULL)
		abort(); /* libpq could not allocate */
	const ProtobufCMessageDescriptor *desc = mall_rpc_ctx_reply_desc(ctx);
	*reply =
	    desc ? protobuf_c_message_unpack(desc, mall_arena_pb(mall_rpc_ctx_arena(ctx)), n, bin)
	         : NULL;
	PQfreemem(bin);
	if (*reply == NULL)
		return mall_status_set(st, MALL_INTERNAL,
		                       "could not decode the stored reply of idempotency key %s",
		                       key);
	return MALL_OK;
}

/* mutate: mall_idem_mutate with the request identified by body (len bytes). */
static mall_code
mutate(mall_rpc_ctx *ctx, mall_rpc_handler fn, const ProtobufCMessage *req, const uint8_t *body,
       size_t len, ProtobufCMessage **reply, mall_status *st)
{
	*reply = NULL;
	mall_db_conn *db = mall_rpc_ctx_worker(ctx);
	const char *key = mall_rpc_ctx_idempotency_key(ctx);
	const char *method = mall_rpc_ctx_method(ctx);
	if (key == NULL || *key == '\0')
		return mall_status_set(st, MALL_INVALID_ARGUMENT,
		                       "method %s changes state and needs an idempotency key",
		                       method);
	if (db == NULL)
		return mall_status_set(st, MALL_INTERNAL,
		                       "method %s cannot record its idempotency key: the "
		                       "worker has no database connection",
		                       method);
	if (sodium_init() < 0)
		return mall_status_set(st, MALL_INTERNAL,
		                       "could not hash request: libsodium failed to initialize");
	unsigned char h[crypto_hash_sha256_BYTES];
	request_hash(ctx, body, len, h);
	const char *hash_hex = bytea_text(mall_rpc_ctx_arena(ctx), h, sizeof(h));

	for (int attempt = 0; attempt < 2; attempt++) {
		if (mall_db_begin(db, st) != MALL_OK)
			return st->code;
		const char *params[3] = {key, method, hash_hex};
		int64_t n = mall_db_exec_cmd(db, st, INSERT_SQL, 3, params);
		if (n < 0) {
			mall_db_rollback(db);
			return st->code;
		}
		if (n == 1)
			return run_new(ctx, db, key, fn, req, reply, st);
		bool vanished = false;
		mall_code rc = answer_recorded(ctx, db, key, hash_hex, reply, st, &vanished);
		mall_db_rollback(db);
		if (!vanished)
			return rc;
	}
	return mall_status_set(st, MALL_ABORTED,
	                       "idempotency record of key %s keeps vanishing: retry", key);
}

mall_code
mall_idem_mutate(mall_rpc_ctx *ctx, mall_rpc_handler fn, const ProtobufCMessage *req,
                 ProtobufCMessage **reply, mall_status *st)
{
	const ProtobufCBinaryData *body = mall_rpc_ctx_body(ctx);
	return mutate(ctx, fn, req, body ? body->data : NULL, body ? body->len : 0, reply, st);
}

mall_code
mall_idem_mutate_secret(mall_rpc_ctx *ctx, mall_rpc_handler fn, const ProtobufCMessage *req,
                        ProtobufCMessage **reply, mall_status *st, const char *const *secret)
{
	*reply = NULL;
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	const ProtobufCMessageDescriptor *d = req->descriptor;
	/* a shallow copy: the emptied fields point at a constant, the rest at req's */
	ProtobufCMessage *copy = mall_arena_alloc(a, d->sizeof_message);
	memcpy(copy, req, d->sizeof_message);
	for (const char *const *name = secret; name != NULL && *name != NULL; name++) {
		const ProtobufCFieldDescriptor *f =
		    protobuf_c_message_descriptor_get_field_by_name(d, *name);
		if (f == NULL || f->type != PROTOBUF_C_TYPE_STRING ||
		    f->label != PROTOBUF_C_LABEL_NONE || (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
			return mall_status_set(st, MALL_INTERNAL,
			                       "%s has no singular string field %s to keep secret",
			                       d->name, *name);
		*(const char **)((char *)copy + f->offset) = "";
	}
	size_t n = protobuf_c_message_get_packed_size(copy);
	uint8_t *buf = mall_arena_alloc(a, n ? n : 1);
	protobuf_c_message_pack(copy, buf);
	return mutate(ctx, fn, req, buf, n, reply, st);
}
