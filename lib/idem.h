/*
 * idem.h: server-side idempotency records for mutating RPCs.
 *
 * mall_idem_mutate is a mall_rpc_mutation_hook.  It needs the server's worker
 * state to be a mall_db_conn * (db.h) on the service's own database, which
 * holds the rpc_idempotency table (migrations/runtime).  For a call with
 * idempotency key K it opens a transaction and inserts K with the method and a
 * hash of the request; if K is new it runs the handler inside that same
 * transaction (the handler's statements use the same connection and must not
 * begin or commit), stores the packed reply, and commits: the change and its
 * record land together or not at all.  If K was recorded already (a retry, or a
 * concurrent duplicate, which waits on the unique index) it answers the stored
 * reply without running the handler; if K was recorded for a different request
 * it answers INVALID_ARGUMENT with the reason MALL_IDEM_KEY_REUSED (the
 * gateway answers that 422).  A handler error rolls everything back, so a
 * failed call can be retried with the same key.  A call without a key is
 * INVALID_ARGUMENT.
 */
#ifndef MALL_IDEM_H
#define MALL_IDEM_H

#include "rpc.h"

/* The reason of the INVALID_ARGUMENT answered for a key recorded with a
 * different request. */
#define MALL_IDEM_KEY_REUSED "idempotency_key_reused"

mall_code mall_idem_mutate(mall_rpc_ctx *ctx, mall_rpc_handler fn, const ProtobufCMessage *req,
                           ProtobufCMessage **reply, mall_status *st);

/* mall_idem_mutate_secret: as mall_idem_mutate for a request that carries a
 * secret (a password) in the singular string fields named in secret (proto
 * names, NULL-terminated).  The request is identified by its packed form with
 * those fields emptied: a plain SHA-256 of a body holding a password, kept in
 * the table, would let whoever reads it test guesses at hash speed, bypassing
 * the slow password hash.  So a repeat of the key that differs only in a
 * secret gets the stored reply.  A name that is not such a field of req is
 * INTERNAL. */
mall_code mall_idem_mutate_secret(mall_rpc_ctx *ctx, mall_rpc_handler fn,
                                  const ProtobufCMessage *req, ProtobufCMessage **reply,
                                  mall_status *st, const char *const *secret);

#endif
