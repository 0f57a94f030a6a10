/*
 * consumer.h: the consuming half of durable events (outbox.h is the
 * producing half; docs/architecture.md, "Events").
 *
 * A mall_consumer follows one producer (a source: "member") into the
 * consumer's own database.  It keeps a cursor there (event_cursor: source ->
 * after_seq, migrations/runtime/0003_inbox.sql), pulls the producer's events
 * after it with Events.Since (at start, on every wake-up the producer's relay
 * publishes, at least every poll_ms, and after an error with a growing
 * backoff), and applies each event in ONE transaction:
 *
 *   INSERT INTO inbox (event_id, ...) ON CONFLICT DO NOTHING
 *     -> nothing inserted: applied already, the handler is not run
 *   the handler, on the same connection
 *   UPDATE event_cursor SET after_seq = GREATEST(after_seq, seq)
 *   COMMIT
 *
 * so an event's effect, its inbox row and the cursor commit together: a
 * crash, a repeat delivery or a second instance of the consumer on the same
 * database (the inbox key makes it wait, then skip) never applies an event
 * twice.  A handler error rolls the event back; it is logged and retried, and
 * the consumer goes no further until it succeeds (order is kept; a poisoned
 * event stops its source's stream and says so in the log every retry).
 * Events whose type matches none of the prefixes are not applied and not
 * recorded in the inbox; the cursor moves past them.
 *
 * Upkeep.  Inbox rows behind the stored cursor and older than inbox_keep_ms
 * are deleted, a batch at a time, every inbox_keep_ms / 4 (1 s to 1 h): a
 * repeat can only come from the cursor on, or from an instance that pulled
 * before the cursor moved, and neither is days late.  The ops endpoint shows
 * mall_events_consumer_lag{source} (events the producer has that are not yet
 * applied here) and mall_events_consumer_cursor{source}.
 *
 * Lanes.  One thread applying one event after another is as fast as one
 * commit plus whatever the handler calls, per event.  A consumer whose events
 * are independent but for a key (the payment events of one order) says so
 * with a key function and a number of lanes: pulled events are dealt to the
 * lanes by key, each lane (its own thread and database connection) applies
 * its queue in seq order, so the events of one key keep their order, and an
 * event that fails holds up its lane only.  The cursor follows to just
 * before the oldest event not yet applied.  The inbox row still commits with
 * each event, so what a crash makes the consumer pull again is absorbed.
 * With lanes the handler and the applied hook run on several threads at
 * once.
 *
 * A service starts its consumers in its def->start hook (service.h), which
 * gets its own database's conninfo, with an rpc client to each producer
 * (MALL_<SOURCE>_ADDRS) and its relays' addresses (MALL_<SOURCE>_EVENTS_ADDRS;
 * default mall_events_addrs_from_rpc of the former, outbox.h), and stops them
 * in def->stop.
 */
#ifndef MALL_CONSUMER_H
#define MALL_CONSUMER_H

#include <stdint.h>

#include "db.h"
#include "mall/rpc.pb-c.h"
#include "rpc.h"
#include "status.h"

typedef struct mall_consumer mall_consumer;

/* An apply handler runs inside the consumer's transaction on conn: it must
 * not begin, commit or roll back.  It returns MALL_OK, or an error code after
 * setting st (the event is then rolled back and retried later).  ev and
 * everything in it live only for the call. */
typedef mall_code (*mall_consumer_apply)(mall_db_conn *conn, const Mall__Rpc__Event *ev, void *arg,
                                         mall_status *st);

/* An applied hook runs on the consumer's thread after the transaction of an
 * event whose handler ran has committed: for work that must follow the commit
 * (calls to other services that should only see a committed change).  It is
 * not run for a repeat the inbox absorbed, nor after a rollback, and nothing
 * retries it: a crash between the commit and the hook loses it. */
typedef void (*mall_consumer_applied)(const Mall__Rpc__Event *ev, void *arg);

/* A key function names what an event must stay in order with (a hash of its
 * order number): events of one key are applied one at a time, in seq order.
 * It runs on the consumer's thread, for events that matched the types. */
typedef uint64_t (*mall_consumer_key)(const Mall__Rpc__Event *ev, void *arg);

#define MALL_CONSUMER_LANES_MAX 32

typedef struct mall_consumer_opts {
	const char *source;       /* the producer: "member"; the cursor's key */
	mall_rpc_client *client;  /* to the producer, for Events.Since; not owned,
	                           * must outlive the consumer */
	const char *events_addrs; /* the producer's relays (SUB), comma-separated nng
	                           * URLs (MALL_<SOURCE>_EVENTS_ADDRS); NULL or "":
	                           * pull only */
	const char *db;           /* conninfo of the consumer's own database, which
	                           * has the runtime migrations */
	const char *const *types; /* NULL-terminated type prefixes ("member."); NULL:
	                           * every event */
	mall_consumer_apply apply;
	mall_consumer_applied applied; /* NULL: none */
	void *arg;                     /* given to apply and applied */
	int batch;                     /* events a pull asks for; default 100 (1..1000) */
	int64_t poll_ms;               /* pull at least this often; default 1000 */
	int64_t max_backoff_ms;        /* longest wait after errors; default 10000 */
	int64_t inbox_keep_ms;         /* inbox rows of events this old and behind the
	                                * cursor are deleted (a repeat that late is not
	                                * expected); default 7 days */
	int lanes;                     /* threads applying at once; default 1 (1..
	                                * MALL_CONSUMER_LANES_MAX); more than one needs
	                                * key, and handlers safe on several threads */
	mall_consumer_key key;         /* NULL: one lane */
} mall_consumer_opts;

/* mall_consumer_start: checks opts, dials the relays (without blocking: a
 * producer that is down is reached when it comes up) and starts the
 * consumer's thread, which has its own database connection.  The strings and
 * the types array are copied.  The caller owns the consumer. */
mall_code mall_consumer_start(mall_consumer **out, const mall_consumer_opts *opts, mall_status *st);

/* mall_consumer_stop: stops the thread (an event being applied finishes
 * first, or is rolled back if it cannot), closes the socket and frees c.
 * NULL is ok. */
void mall_consumer_stop(mall_consumer *c);

/* mall_consumer_matches: whether type starts with one of the prefixes (NULL:
 * everything matches). */
bool mall_consumer_matches(const char *const *types, const char *type);

#endif
