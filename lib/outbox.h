/*
 * outbox.h: the producing half of durable events (docs/architecture.md,
 * "Events"): the transactional outbox, the built-in Events.Since RPC that
 * reads it, and the relay that publishes new rows as wake-ups.
 *
 * A service records an event in the transaction of the change it reports with
 * mall_outbox_add, so both commit or neither does.  Writers do not wait for
 * each other.  Readers follow pub_seq (migrations/runtime/0004), which the
 * relay gives committed rows in a transaction of its own, one relay at a time:
 * a row gets a pub_seq only once it committed, and later batches get larger
 * ones, so a reader never sees a lower pub_seq appear behind its cursor.  A
 * service that writes events must run the relay (mall_service_def.events).
 *
 * Readers need nothing else: Events.Since (mall.rpc.Events/Since, built into
 * every service by lib/service.c) answers rows after a seq from the database,
 * and the relay publishes each new row over an nng PUB socket, as a packed
 * mall.rpc.Event.  PUB drops messages (to a slow subscriber, before one
 * connects), so a published event is only a wake-up: the record is the
 * outbox, and a consumer (consumer.h) reads it with Since.
 */
#ifndef MALL_OUTBOX_H
#define MALL_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "alloc.h"
#include "db.h"
#include "mall/rpc.pb-c.h"
#include "rpc.h"
#include "status.h"

/* The NOTIFY channel a relay signals when it sequenced rows (the other
 * instances' relays publish them too). */
#define MALL_OUTBOX_CHANNEL "mall_outbox"
/* The key of the advisory lock the sequencing relays take turns with:
 * "mallobx" in ASCII.  Nothing else may use it. */
#define MALL_OUTBOX_LOCK_KEY INT64_C(0x6d616c6c6f6278)
/* Events.Since: the default and the largest limit, and the payload bytes past
 * which a reply stops adding events (it always holds at least one). */
#define MALL_EVENTS_SINCE_DEFAULT 100
#define MALL_EVENTS_SINCE_MAX 1000
#define MALL_EVENTS_SINCE_MAX_BYTES ((size_t)1 << 20)

/* mall_outbox_add: records event type ("member.signed_up", lower-case dotted)
 * with payload msg, packed, in the transaction open on conn; once that
 * commits, this process's relay is woken (mall_db_on_commit) to sequence and
 * publish it.  No lock is taken: call it anywhere in the transaction, as many
 * times as it has events.  Scratch memory comes from arena.  Without an open
 * transaction it is FAILED_PRECONDITION. */
mall_code mall_outbox_add(mall_db_conn *conn, mall_arena *arena, const char *type,
                          const ProtobufCMessage *msg, mall_status *st);

/* mall_outbox_since: up to limit events with seq (pub_seq) > after_seq (limit and
 * after_seq as in EventsSinceRequest, checked: INVALID_ARGUMENT with the field
 * afterSeq or limit) read on conn into a reply allocated in arena; source
 * names the service in each event. */
mall_code mall_outbox_since(mall_db_conn *conn, mall_arena *arena, const char *source,
                            int64_t after_seq, int32_t limit, Mall__Rpc__EventsSinceReply **out,
                            mall_status *st);

/* mall_outbox_serve: adds the built-in mall.rpc.Events/Since to srv (before it
 * starts).  Its handler reads on the worker's state, which must be a
 * mall_db_conn * on the service's own database (as lib/service.c's workers
 * hold), and names the events after the server's service. */
mall_code mall_outbox_serve(mall_rpc_server *srv, mall_status *st);

/* ---- the relay ---- */

typedef struct mall_outbox_relay mall_outbox_relay;

/* mall_outbox_relay_start: a thread with its own connection to conninfo that
 * LISTENs on MALL_OUTBOX_CHANNEL and, when a transaction of this process that
 * added an event commits, on every notification and at least every second,
 * sequences the committed rows (gives them their pub_seq) and publishes the
 * rows after the last one it published, each a packed
 * mall.rpc.Event named after source, on a PUB socket listening on listen (an
 * nng URL).  It starts from the newest row present (consumers catch up with
 * Since), waits out a database that is down, and never blocks anything else:
 * PUB drops what a subscriber cannot take.  The caller owns the relay. */
mall_code mall_outbox_relay_start(mall_outbox_relay **out, const char *source, const char *conninfo,
                                  const char *listen, mall_status *st);
/* mall_outbox_relay_stop: stops the thread, closes the socket and frees r.
 * NULL is ok. */
void mall_outbox_relay_stop(mall_outbox_relay *r);

/* mall_events_addrs_from_rpc: the events addresses that go with RPC addresses
 * (comma-separated nng URLs): each tcp://host:port becomes tcp://host:port+1000,
 * each ipc://path ipc://path.events.  Returns 0, or -1 for an address of
 * another kind or a port that would pass 65535 (out is then ""). */
int mall_events_addrs_from_rpc(const char *rpc, char *out, size_t cap);

#endif
