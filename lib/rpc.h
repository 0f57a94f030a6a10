/*
 * rpc.h: request/reply RPC over nng with protobuf-c messages.
 *
 * Wire format: a packed mall.rpc.Request envelope (proto/mall/rpc.proto) whose
 * body is the packed request message, answered by a packed mall.rpc.Reply.
 * Method names are "<package>.<Service>/<Method>", e.g.
 * "mall.catalog.Catalog/ListProducts", taken from protobuf-c service
 * descriptors, so adding a method is a proto line and a handler.
 *
 * Server: a REP socket served by a pool of nng contexts (nng's async demo state
 * machine).  nng callbacks never block: a received request is queued to the
 * server's worker threads, which decode it, run the handler (database, Redis
 * and HTTP work happen there), encode the reply and send it asynchronously.
 * Every server answers the built-in "mall.rpc.Rpc/Ping"; every service
 * (service.h) also the built-in "mall.rpc.Events/Since" (outbox.h).
 *
 * Client: one REQ socket per instance of the peer service (addresses are
 * comma-separated nng URLs; a tcp:// host name that resolves to several
 * addresses counts as several instances and is re-resolved periodically).
 * Each call goes to the healthy instance with the fewest calls outstanding;
 * an instance that fails or times out repeatedly is set aside for a while
 * (outlier ejection).  Every call has a deadline.  A call is re-sent to another
 * instance when its instance dies or times out, if the call is safe to repeat:
 * reads, and mutating calls that carry an idempotency key (the server records
 * key -> result, see idem.h).  Failure is UNAVAILABLE or DEADLINE_EXCEEDED,
 * never a hang.
 *
 * Ownership: decoded requests and replies live in a mall_arena (the RPC's on
 * the server, the caller's on the client); nothing is freed piece by piece.
 */
#ifndef MALL_RPC_H
#define MALL_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "alloc.h"
#include "status.h"

/* ---- server ---- */

typedef struct mall_rpc_server mall_rpc_server;
typedef struct mall_rpc_ctx mall_rpc_ctx; /* one request being served */

/* A handler fills *reply (allocated in the ctx arena, e.g. with mall_pb_new from
 * json_pb.h or the generated __init) and returns MALL_OK, or returns an error
 * code after setting st (message, field errors). */
typedef mall_code (*mall_rpc_handler)(mall_rpc_ctx *ctx, const ProtobufCMessage *req,
                                      ProtobufCMessage **reply, mall_status *st);

/* A mutation hook runs a MALL_RPC_MUTATING handler (see idem.h for the one that
 * records idempotency keys in the service's database). */
typedef mall_code (*mall_rpc_mutation_hook)(mall_rpc_ctx *ctx, mall_rpc_handler fn,
                                            const ProtobufCMessage *req,
                                            ProtobufCMessage **reply, mall_status *st);

enum {
	MALL_RPC_MUTATING = 1 << 0, /* changes state: needs an idempotency key */
};

typedef struct mall_rpc_method {
	const char *name;   /* as in the .proto service block: "ListProducts" */
	mall_rpc_handler fn;
	unsigned flags;     /* MALL_RPC_MUTATING or 0 */
} mall_rpc_method;

typedef struct mall_rpc_server_opts {
	const char *service;   /* short name for logs and Ping: "catalog" */
	const char *listen;    /* nng URL: "tcp://127.0.0.1:7401" */
	int contexts;          /* nng contexts (concurrent requests); default 64 */
	int workers;           /* worker threads; default 4 */
	size_t max_msg;        /* NNG_OPT_RECVMAXSZ; default 4 MiB */
	/* per-worker state, e.g. a database connection: worker_init runs on the
	 * worker thread before it serves; its result is mall_rpc_ctx_worker() */
	void *(*worker_init)(void *arg, int index);
	void (*worker_fini)(void *state);
	void *worker_arg;
	mall_rpc_mutation_hook mutate; /* NULL: mutating handlers are called directly */
} mall_rpc_server_opts;

/* mall_rpc_server_new: a server not yet listening; the caller owns it. */
mall_code mall_rpc_server_new(mall_rpc_server **out, const mall_rpc_server_opts *opts,
                              mall_status *st);
/* mall_rpc_server_add: serves the methods of svc; methods not listed answer
 * UNIMPLEMENTED.  The arrays must outlive the server.  Call before start. */
mall_code mall_rpc_server_add(mall_rpc_server *s, const ProtobufCServiceDescriptor *svc,
                              const mall_rpc_method *methods, size_t nmethods,
                              mall_status *st);
/* mall_rpc_server_start: listens and starts the workers. */
mall_code mall_rpc_server_start(mall_rpc_server *s, mall_status *st);
/* mall_rpc_server_drain: stops taking new requests and waits (up to timeout_ms)
 * for the ones in flight to be answered. */
void mall_rpc_server_drain(mall_rpc_server *s, int64_t timeout_ms);
/* mall_rpc_server_free: stops every aio before freeing anything. NULL is ok. */
void mall_rpc_server_free(mall_rpc_server *s);

/* Accessors for handlers. Strings are "" when absent; all live as long as ctx. */
mall_arena *mall_rpc_ctx_arena(mall_rpc_ctx *ctx);
void *mall_rpc_ctx_worker(mall_rpc_ctx *ctx);
const char *mall_rpc_ctx_method(const mall_rpc_ctx *ctx);       /* full name */
const char *mall_rpc_ctx_service(const mall_rpc_ctx *ctx);      /* the server's: "member" */
const char *mall_rpc_ctx_trace_id(const mall_rpc_ctx *ctx);
const char *mall_rpc_ctx_idempotency_key(const mall_rpc_ctx *ctx);
int64_t mall_rpc_ctx_member_id(const mall_rpc_ctx *ctx);
int64_t mall_rpc_ctx_admin_id(const mall_rpc_ctx *ctx);
bool mall_rpc_ctx_has_role(const mall_rpc_ctx *ctx, const char *role);
/* the raw packed request body and the reply's descriptor (for idem.h) */
const ProtobufCBinaryData *mall_rpc_ctx_body(const mall_rpc_ctx *ctx);
const ProtobufCMessageDescriptor *mall_rpc_ctx_reply_desc(const mall_rpc_ctx *ctx);

/* mall_rpc_ctx_set_packed_reply: the reply is these bytes (already a packed
 * message of the method's reply type); the handler then returns MALL_OK with
 * *reply left NULL. The bytes must live as long as ctx (e.g. in its arena).
 * They go out as they are, unchecked; under a mutation hook (MALL_RPC_MUTATING)
 * the hook gets them unpacked as *reply, so idem.c records them as usual. */
void mall_rpc_ctx_set_packed_reply(mall_rpc_ctx *ctx, const uint8_t *data, size_t len);

/* ---- client ---- */

typedef struct mall_rpc_client mall_rpc_client;

typedef struct mall_rpc_client_opts {
	int64_t timeout_ms;        /* whole-call deadline; default 3000 */
	int64_t try_timeout_ms;    /* one attempt on one instance; default 1000 */
	int max_tries;             /* attempts on distinct instances; default 3 */
	size_t max_msg;            /* default 4 MiB */
	int64_t eject_ms;          /* first ejection of a failing instance; default 1000, doubles up to 30 s */
	int64_t resolve_ms;        /* DNS re-resolution period; default 10000 */
} mall_rpc_client_opts;

typedef struct mall_rpc_call_opts {
	int64_t timeout_ms;          /* 0: the client's default */
	const char *trace_id;        /* NULL: a new random one */
	const char *idempotency_key; /* NULL: generated for MALL_RPC_CALL_MUTATING */
	int64_t member_id;
	int64_t admin_id;
	const char *const *roles;    /* NULL-terminated, or NULL */
	unsigned flags;
} mall_rpc_call_opts;

enum {
	MALL_RPC_CALL_MUTATING = 1 << 0, /* carries an idempotency key, kept across retries */
};

/* mall_rpc_client_new: sockets to every instance in addresses ("tcp://h:p,..."),
 * dialed without blocking: a peer that is down now is reached when it comes up.
 * service names the peer in errors and metrics.  opts may be NULL. */
mall_code mall_rpc_client_new(mall_rpc_client **out, const char *service, const char *addresses,
                              const mall_rpc_client_opts *opts, mall_status *st);
void mall_rpc_client_free(mall_rpc_client *c);

/* mall_rpc_call: calls method of svc (e.g. &mall__catalog__catalog__descriptor,
 * "ListProducts") with req and decodes the reply into arena.  Thread-safe.  On
 * error, *reply is NULL and st holds the remote status (with field errors) or
 * UNAVAILABLE / DEADLINE_EXCEEDED naming the service. opts may be NULL. */
mall_code mall_rpc_call(mall_rpc_client *c, const ProtobufCServiceDescriptor *svc,
                        const char *method, const ProtobufCMessage *req,
                        ProtobufCMessage **reply, mall_arena *arena,
                        const mall_rpc_call_opts *opts, mall_status *st);

/* mall_rpc_ping: calls the built-in Ping of one instance set (for mallctl). */
mall_code mall_rpc_ping(mall_rpc_client *c, char *service_out, size_t service_cap,
                        int64_t *pid_out, mall_status *st);

/* mall_rpc_new_id: 32 random hex characters into buf (33 bytes), for trace ids
 * and idempotency keys. */
void mall_rpc_new_id(char buf[33]);

#endif
