/*
 * consumer.c: the consumer runner (consumer.h).
 *
 * One thread per consumer, with its own database connection:
 *
 *   PULL: read the stored cursor (another instance may have moved it), ask
 *         Since for the events after it, apply them one by one in seq order,
 *         page after page until the producer's last_seq is reached;
 *   WAIT: until a SUB message announces a seq past the cursor, poll_ms pass,
 *         or, after an error, the backoff (200 ms doubling up to
 *         max_backoff_ms) passes;
 *
 * and again.  The cursor in memory is only a hint: the one in the database
 * moves in the transaction that applies an event, with GREATEST, so two
 * instances never move it back.  Events that match no type prefix are not
 * applied; the cursor moves past them with one UPDATE per page (or with the
 * next applied event's transaction).
 *
 * With lanes (consumer.h), the PULL copies each matching event onto the
 * queue of its key's lane and goes on (up to QUEUED_MAX events in flight);
 * it asks Since for what follows the last event it dealt, not the stored
 * cursor.  Each lane applies its queue in seq order, one transaction per
 * event without the cursor; an event that fails stays at the head of its
 * lane, retried with backoff, and holds up that lane only.  The stored cursor
 * follows, at most every SETTLE_MS while the lanes work: to just before the
 * oldest event still queued in any lane (each lane's head is its oldest), or
 * to the last one dealt when all are applied.  A crash loses what was queued;
 * the next start pulls it again from the stored cursor and the inbox absorbs
 * what had been applied.
 */
#include "consumer.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "alloc.h"
#include "log.h"
#include "metrics.h"
#include "outbox.h"

#define FIRST_BACKOFF_MS 200
#define CALL_TIMEOUT_MS 3000
/* events dealt to the lanes and not yet applied, at most: the puller waits */
#define QUEUED_MAX 2000
/* how often the stored cursor follows the lanes while they are busy */
#define SETTLE_MS 100

#define CURSOR_SQL "SELECT after_seq FROM event_cursor WHERE source = $1"
#define CURSOR_NEW_SQL                                                                             \
	"INSERT INTO event_cursor (source, after_seq) VALUES ($1, 0) ON CONFLICT (source) DO "     \
	"NOTHING"
#define CURSOR_MOVE_SQL                                                                            \
	"UPDATE event_cursor SET after_seq = GREATEST(after_seq, $2::bigint), updated_at = now() " \
	"WHERE source = $1"
/* the oldest inbox rows of a source behind its cursor, a batch at a time */
#define PRUNE_SQL                                                                                  \
	"DELETE FROM inbox WHERE event_id IN (SELECT i.event_id FROM inbox i, event_cursor c "     \
	"WHERE i.source = $1 AND c.source = $1 AND i.seq <= c.after_seq AND i.applied_at < "     \
	"now() - make_interval(secs => $2::float8 / 1000) ORDER BY i.applied_at LIMIT 5000)"
#define INBOX_SQL                                                                                  \
	"INSERT INTO inbox (event_id, source, seq, type) VALUES ($1::uuid, $2, $3::bigint, $4) "   \
	"ON CONFLICT (event_id) DO NOTHING"

/* A lane: a thread with its own connection, applying the events dealt to it
 * from the page being pulled. */
typedef struct queued {
	int64_t seq;
	uint8_t *buf; /* the packed mall.rpc.Event, malloc'd */
	size_t len;
} queued;

typedef struct lane {
	struct mall_consumer *c;
	pthread_t thread;
	bool started;
	mall_db_conn *conn;
	mall_arena *arena;
	queued *q; /* a ring: head, then n more, in seq order (c->mu) */
	size_t head, n, cap;
} lane;

struct mall_consumer {
	char *source;
	mall_rpc_client *client;
	char *db;
	char **types; /* NULL-terminated, or NULL: everything */
	mall_consumer_apply apply;
	mall_consumer_applied applied;
	void *arg;
	int batch;
	int64_t poll_ms;
	int64_t max_backoff_ms;
	nng_socket sub;
	bool sub_open;
	pthread_t thread;
	atomic_bool stop;
	bool ahead_warned; /* the producer's outbox ended before our cursor */
	mall_consumer_key key;
	int nlanes; /* 1: the consumer's thread applies, no lane threads */
	lane *lanes;
	/* the lanes' queues: mu guards them, queued and dispatched (the last
	 * event dealt or passed over); work wakes the lanes, room the puller */
	pthread_mutex_t mu;
	pthread_cond_t work, room;
	size_t queued;
	int64_t dispatched;
	bool positioned; /* dispatched was read from the stored cursor */
	/* upkeep (the consumer's thread) */
	int64_t inbox_keep_ms;
	int64_t prune_every_ms, next_prune;
	int64_t producer_last; /* the producer's last seq, from the last pull */
};

bool
mall_consumer_matches(const char *const *types, const char *type)
{
	if (types == NULL)
		return true;
	for (; *types != NULL; types++)
		if (strncmp(type, *types, strlen(*types)) == 0)
			return true;
	return false;
}

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- the database side ---- */

/* read_cursor: the stored cursor of c's source (made 0 when there is none). */
static mall_code
read_cursor(mall_consumer *c, mall_db_conn *conn, int64_t *cursor, mall_status *st)
{
	const char *params[] = {c->source};
	for (int attempt = 0; attempt < 2; attempt++) {
		PGresult *res = mall_db_exec(conn, st, CURSOR_SQL, 1, params);
		if (res == NULL)
			return st->code;
		int rows = PQntuples(res);
		if (rows == 1)
			*cursor = mall_db_int64(res, 0, 0);
		PQclear(res);
		if (rows == 1)
			return MALL_OK;
		if (mall_db_exec_cmd(conn, st, CURSOR_NEW_SQL, 1, params) < 0)
			return st->code;
	}
	return mall_status_set(st, MALL_INTERNAL, "the event cursor of %s vanished", c->source);
}

static mall_code
move_cursor(mall_consumer *c, mall_db_conn *conn, mall_arena *a, int64_t seq, mall_status *st)
{
	const char *params[] = {c->source, mall_arena_printf(a, "%lld", (long long)seq)};
	if (mall_db_exec_cmd(conn, st, CURSOR_MOVE_SQL, 2, params) < 0)
		return st->code;
	return MALL_OK;
}

/* apply_one: ev's inbox row, its handler and (move) the cursor, in one
 * transaction. */
static mall_code
apply_one(mall_consumer *c, mall_db_conn *conn, mall_arena *a, const Mall__Rpc__Event *ev,
          bool move, mall_status *st)
{
	const char *seq = mall_arena_printf(a, "%lld", (long long)ev->seq);
	const char *params[] = {ev->event_id, c->source, seq, ev->type};
	if (mall_db_begin(conn, st) != MALL_OK)
		return st->code;
	int64_t n = mall_db_exec_cmd(conn, st, INBOX_SQL, 4, params);
	if (n < 0)
		goto fail;
	bool ran = n == 1;
	if (ran) { /* new: a duplicate (0) was applied before */
		mall_code rc = c->apply(conn, ev, c->arg, st);
		if (rc != MALL_OK) {
			if (st->code == MALL_OK)
				mall_status_set(st, rc, "the handler failed: %s",
				                mall_code_slug(rc));
			goto fail;
		}
		if (!mall_db_in_tx(conn)) {
			mall_status_set(st, MALL_INTERNAL,
			                "the handler ended the transaction it was given");
			goto fail;
		}
	}
	if ((move && move_cursor(c, conn, a, ev->seq, st) != MALL_OK) ||
	    mall_db_commit(conn, st) != MALL_OK)
		goto fail;
	if (ran && c->applied != NULL)
		c->applied(ev, c->arg);
	return MALL_OK;
fail:
	mall_db_rollback(conn);
	mall_code code = st->code != MALL_OK ? st->code : MALL_INTERNAL;
	char why[sizeof(st->message)];
	snprintf(why, sizeof(why), "%s", st->message);
	return mall_status_set(st, code, "could not apply event %s %s (seq %lld): %s", ev->type,
	                       ev->event_id, (long long)ev->seq, why);
}

/* ---- lanes ---- */

/* lane_wait: sleeps up to ms on c->work (woken early by stop); c->mu held. */
static void
lane_wait(mall_consumer *c, int64_t ms)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	int64_t ns = until.tv_nsec + (ms % 1000) * 1000000;
	until.tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
	until.tv_nsec = (long)(ns % 1000000000);
	pthread_cond_timedwait(&c->work, &c->mu, &until);
}

static void *
lane_main(void *arg)
{
	lane *l = arg;
	mall_consumer *c = l->c;
	int64_t backoff = 0;
	pthread_mutex_lock(&c->mu);
	while (!atomic_load(&c->stop)) {
		if (l->n == 0) {
			pthread_cond_wait(&c->work, &c->mu);
			continue;
		}
		/* the head stays queued while it is applied: the cursor must not
		 * pass it */
		queued q = l->q[l->head]; /* a copy: dispatch may grow the ring */
		pthread_mutex_unlock(&c->mu);

		mall_arena_reset(l->arena);
		mall_status st;
		mall_status_clear(&st);
		Mall__Rpc__Event *ev =
		    mall__rpc__event__unpack(mall_arena_pb(l->arena), q.len, q.buf);
		mall_code rc = ev == NULL ? mall_status_set(&st, MALL_INTERNAL,
		                                            "a queued event did not unpack")
		                          : apply_one(c, l->conn, l->arena, ev, false, &st);

		pthread_mutex_lock(&c->mu);
		if (rc != MALL_OK) {
			/* this lane goes no further until it applies: the events
			 * of one key keep their order */
			backoff = backoff == 0 ? FIRST_BACKOFF_MS
			                       : (backoff * 2 > c->max_backoff_ms ? c->max_backoff_ms
			                                                          : backoff * 2);
			mall_log_warn(NULL, "%s events: %s; retrying in %lld ms", c->source,
			              st.message, (long long)backoff);
			int64_t until = now_ms() + backoff;
			while (!atomic_load(&c->stop) && now_ms() < until)
				lane_wait(c, until - now_ms());
			continue;
		}
		if (backoff != 0)
			mall_log_info(NULL, "%s events: applying again", c->source);
		backoff = 0;
		free(q.buf);
		l->head = (l->head + 1) % l->cap;
		l->n--;
		c->queued--;
		pthread_cond_broadcast(&c->room);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* lane_of: the lane of ev, by its key. */
static lane *
lane_of(mall_consumer *c, const Mall__Rpc__Event *ev)
{
	uint64_t k = c->key(ev, c->arg);
	/* spread keys that differ only in their high bits too */
	k ^= k >> 33;
	k *= UINT64_C(0xff51afd7ed558ccd);
	k ^= k >> 33;
	return &c->lanes[k % (uint64_t)c->nlanes];
}

/* dispatch: queues a copy of ev on its lane, waiting while the lanes hold
 * QUEUED_MAX events already.  false: the consumer is stopping. */
static bool
dispatch(mall_consumer *c, const Mall__Rpc__Event *ev)
{
	lane *l = lane_of(c, ev);
	size_t len = mall__rpc__event__get_packed_size(ev);
	uint8_t *buf = mall_xmalloc(len ? len : 1);
	mall__rpc__event__pack(ev, buf);
	pthread_mutex_lock(&c->mu);
	while (c->queued >= QUEUED_MAX && !atomic_load(&c->stop))
		pthread_cond_wait(&c->room, &c->mu);
	if (atomic_load(&c->stop)) {
		pthread_mutex_unlock(&c->mu);
		free(buf);
		return false;
	}
	if (l->n == l->cap) { /* grow the ring, unrolled to start at 0 */
		size_t cap = l->cap ? 2 * l->cap : 16;
		queued *q = mall_xcalloc(cap, sizeof(*q));
		for (size_t i = 0; i < l->n; i++)
			q[i] = l->q[(l->head + i) % l->cap];
		free(l->q);
		l->q = q;
		l->cap = cap;
		l->head = 0;
	}
	l->q[(l->head + l->n) % l->cap] = (queued){.seq = ev->seq, .buf = buf, .len = len};
	l->n++;
	c->queued++;
	pthread_cond_broadcast(&c->work);
	pthread_mutex_unlock(&c->mu);
	return true;
}

/* done_upto: every event up to this seq is applied (or was passed over):
 * just before the oldest one still queued, else the last one dispatched. */
static int64_t
done_upto(mall_consumer *c)
{
	pthread_mutex_lock(&c->mu);
	int64_t upto = c->dispatched;
	for (int i = 0; i < c->nlanes; i++) {
		const lane *l = &c->lanes[i];
		if (l->n > 0 && l->q[l->head].seq - 1 < upto)
			upto = l->q[l->head].seq - 1;
	}
	pthread_mutex_unlock(&c->mu);
	return upto;
}

/* settle: moves the stored cursor to what the lanes are done with, when that
 * is past *cursor (the last one stored). */
static mall_code
settle(mall_consumer *c, mall_db_conn *conn, mall_arena *a, int64_t *cursor, mall_status *st)
{
	int64_t upto = done_upto(c);
	if (upto <= *cursor)
		return MALL_OK;
	if (move_cursor(c, conn, a, upto, st) != MALL_OK)
		return st->code;
	*cursor = upto;
	return MALL_OK;
}

/* pull_lanes: deals every event after the last one dispatched to the lanes,
 * page by page, until the producer's newest is reached, without waiting for
 * them to be applied; then stores the cursor the lanes allow. */
static mall_code
pull_lanes(mall_consumer *c, mall_db_conn *conn, mall_arena *a, int64_t *cursor, mall_status *st)
{
	if (!c->positioned) {
		if (read_cursor(c, conn, cursor, st) != MALL_OK)
			return st->code;
		c->dispatched = *cursor; /* only this thread writes it */
		c->positioned = true;
	}
	while (!atomic_load(&c->stop)) {
		mall_arena_reset(a);
		Mall__Rpc__EventsSinceRequest req = MALL__RPC__EVENTS_SINCE_REQUEST__INIT;
		req.after_seq = c->dispatched;
		req.limit = c->batch;
		ProtobufCMessage *reply = NULL;
		mall_rpc_call_opts opts = {.timeout_ms = CALL_TIMEOUT_MS};
		if (mall_rpc_call(c->client, &mall__rpc__events__descriptor, "Since", &req.base,
		                  &reply, a, &opts, st) != MALL_OK)
			return st->code;
		const Mall__Rpc__EventsSinceReply *r = (const Mall__Rpc__EventsSinceReply *)reply;
		c->producer_last = r->last_seq;
		for (size_t i = 0; i < r->n_events; i++) {
			const Mall__Rpc__Event *ev = r->events[i];
			if (ev->seq <= c->dispatched)
				continue; /* cannot happen with an honest producer */
			if (mall_consumer_matches((const char *const *)c->types, ev->type) &&
			    !dispatch(c, ev))
				return MALL_OK; /* stopping */
			pthread_mutex_lock(&c->mu);
			c->dispatched = ev->seq;
			pthread_mutex_unlock(&c->mu);
		}
		if (r->n_events == 0 || c->dispatched >= r->last_seq)
			break;
	}
	return settle(c, conn, a, cursor, st);
}

/* lanes_busy: whether an event is queued or being applied. */
static bool
lanes_busy(mall_consumer *c)
{
	pthread_mutex_lock(&c->mu);
	bool busy = c->queued > 0;
	pthread_mutex_unlock(&c->mu);
	return busy;
}

/* pull: applies every event after the stored cursor, page by page, until the
 * producer's newest is reached; *cursor follows. */
static mall_code
pull(mall_consumer *c, mall_db_conn *conn, mall_arena *a, int64_t *cursor, mall_status *st)
{
	int64_t stored = 0;
	if (read_cursor(c, conn, &stored, st) != MALL_OK)
		return st->code;
	*cursor = stored; /* the database's is the truth: another instance moves it too */
	while (!atomic_load(&c->stop)) {
		mall_arena_reset(a);
		Mall__Rpc__EventsSinceRequest req = MALL__RPC__EVENTS_SINCE_REQUEST__INIT;
		req.after_seq = *cursor;
		req.limit = c->batch;
		ProtobufCMessage *reply = NULL;
		mall_rpc_call_opts opts = {.timeout_ms = CALL_TIMEOUT_MS};
		if (mall_rpc_call(c->client, &mall__rpc__events__descriptor, "Since", &req.base,
		                  &reply, a, &opts, st) != MALL_OK)
			return st->code;
		const Mall__Rpc__EventsSinceReply *r = (const Mall__Rpc__EventsSinceReply *)reply;
		c->producer_last = r->last_seq;
		if (r->last_seq < *cursor && !c->ahead_warned) {
			mall_log_error(NULL,
			               "%s events: the producer's outbox ends at seq %lld, before "
			               "this consumer's cursor %lld (was its database replaced?): "
			               "nothing new will be applied until it passes the cursor",
			               c->source, (long long)r->last_seq, (long long)*cursor);
			c->ahead_warned = true;
		}
		int64_t skipped = 0; /* the last event passed over by the filter */
		for (size_t i = 0; i < r->n_events && !atomic_load(&c->stop); i++) {
			const Mall__Rpc__Event *ev = r->events[i];
			if (ev->seq <= *cursor)
				continue; /* cannot happen with an honest producer */
			if (!mall_consumer_matches((const char *const *)c->types, ev->type)) {
				skipped = ev->seq;
				continue;
			}
			if (apply_one(c, conn, a, ev, true, st) != MALL_OK) {
				/* the events passed over before this one are done with */
				mall_status keep = *st;
				if (skipped > *cursor &&
				    move_cursor(c, conn, a, skipped, st) == MALL_OK)
					*cursor = skipped;
				*st = keep;
				return st->code;
			}
			*cursor = ev->seq;
		}
		if (skipped > *cursor) {
			if (move_cursor(c, conn, a, skipped, st) != MALL_OK)
				return st->code;
			*cursor = skipped;
		}
		if (r->n_events == 0 || *cursor >= r->last_seq)
			return MALL_OK;
	}
	return MALL_OK;
}

/* ---- upkeep ---- */

/* show: the lag and cursor gauges (metrics.h). */
static void
show(mall_consumer *c, int64_t cursor)
{
	int64_t lag = c->producer_last > cursor ? c->producer_last - cursor : 0;
	mall_metrics_gauge_set("mall_events_consumer_lag",
	                       "Events the producer has that this consumer has not applied yet.",
	                       "source", c->source, (double)lag);
	mall_metrics_gauge_set("mall_events_consumer_cursor",
	                       "The seq of the last event this consumer is done with.", "source",
	                       c->source, (double)cursor);
}

/* prune: when due, deletes the inbox rows behind the cursor older than
 * inbox_keep_ms, batch after batch; failures wait for the next time. */
static void
prune(mall_consumer *c, mall_db_conn *conn, mall_arena *a)
{
	if (now_ms() < c->next_prune)
		return;
	c->next_prune = now_ms() + c->prune_every_ms;
	const char *params[] = {c->source,
	                        mall_arena_printf(a, "%lld", (long long)c->inbox_keep_ms)};
	int64_t total = 0, n;
	mall_status st;
	do {
		mall_status_clear(&st);
		n = mall_db_exec_cmd(conn, &st, PRUNE_SQL, 2, params);
		if (n > 0)
			total += n;
	} while (n >= 5000 && !atomic_load(&c->stop));
	if (n < 0)
		mall_log_warn(NULL, "%s events: could not prune the inbox: %s", c->source,
		              st.message);
	else if (total > 0)
		mall_log_info(NULL, "%s events: %lld inbox rows pruned", c->source,
		              (long long)total);
}

/* ---- waiting ---- */

/* wait_wakeup: until a SUB message names a seq past cursor (true), ms pass or
 * the consumer stops (false).  wake false: SUB messages are read and dropped
 * (a backoff must not be cut short). */
static bool
wait_wakeup(mall_consumer *c, int64_t ms, int64_t cursor, bool wake)
{
	int64_t until = now_ms() + ms;
	mall_arena *a = NULL;
	bool woken = false;
	while (!woken && !atomic_load(&c->stop)) {
		int64_t left = until - now_ms();
		if (left <= 0)
			break;
		if (!c->sub_open) {
			usleep((useconds_t)(left > 50 ? 50 : left) * 1000);
			continue;
		}
		(void)nng_socket_set_ms(c->sub, NNG_OPT_RECVTIMEO, left > 100 ? 100 : left);
		nng_msg *m;
		if (nng_recvmsg(c->sub, &m, 0) != 0)
			continue;
		if (wake) {
			if (a == NULL)
				a = mall_arena_new();
			Mall__Rpc__Event *ev = mall__rpc__event__unpack(
			    mall_arena_pb(a), nng_msg_len(m), nng_msg_body(m));
			woken = ev != NULL && ev->seq > cursor;
			mall_arena_reset(a);
		}
		nng_msg_free(m);
	}
	mall_arena_free(a);
	return woken;
}

static void *
consumer_main(void *arg)
{
	mall_consumer *c = arg;
	mall_db_conn *conn = mall_db_conn_new(c->db);
	mall_arena *a = mall_arena_new();
	int64_t cursor = 0, backoff = 0;
	bool lanes = c->nlanes > 1;
	while (!atomic_load(&c->stop)) {
		mall_status st;
		mall_status_clear(&st);
		if ((lanes ? pull_lanes(c, conn, a, &cursor, &st) : pull(c, conn, a, &cursor, &st)) !=
		    MALL_OK) {
			backoff = backoff == 0
			              ? FIRST_BACKOFF_MS
			              : (backoff * 2 > c->max_backoff_ms ? c->max_backoff_ms
			                                                 : backoff * 2);
			mall_log_warn(NULL, "%s events: %s; retrying in %lld ms", c->source,
			              st.message, (long long)backoff);
			wait_wakeup(c, backoff, cursor, false);
			continue;
		}
		if (backoff != 0)
			mall_log_info(NULL, "%s events: applying again (cursor %lld)", c->source,
			              (long long)cursor);
		backoff = 0;
		show(c, cursor);
		prune(c, conn, a);
		if (!lanes) {
			wait_wakeup(c, c->poll_ms, cursor, true);
			continue;
		}
		/* while the lanes work, the stored cursor follows them */
		int64_t until = now_ms() + c->poll_ms;
		while (!atomic_load(&c->stop) && lanes_busy(c) && now_ms() < until) {
			if (wait_wakeup(c, SETTLE_MS, c->dispatched, true))
				break;
			if (settle(c, conn, a, &cursor, &st) != MALL_OK)
				break; /* the next pull tries again */
			show(c, cursor);
		}
		if (!atomic_load(&c->stop) && !lanes_busy(c)) {
			mall_status_clear(&st);
			if (settle(c, conn, a, &cursor, &st) == MALL_OK)
				show(c, cursor);
			if (now_ms() < until)
				wait_wakeup(c, until - now_ms(), c->dispatched, true);
		}
	}
	mall_arena_free(a);
	mall_db_conn_free(conn);
	return NULL;
}

/* ---- life ---- */

/* wake_all: after stop was set, wakes the lanes and a puller waiting for
 * room. */
static void
wake_all(mall_consumer *c)
{
	pthread_mutex_lock(&c->mu);
	pthread_cond_broadcast(&c->work);
	pthread_cond_broadcast(&c->room);
	pthread_mutex_unlock(&c->mu);
}

static void
consumer_free(mall_consumer *c)
{
	if (c->lanes != NULL) {
		wake_all(c);
		for (int i = 0; i < c->nlanes; i++) {
			lane *l = &c->lanes[i];
			if (l->started)
				pthread_join(l->thread, NULL);
			mall_db_conn_free(l->conn);
			mall_arena_free(l->arena);
			for (size_t j = 0; j < l->n; j++) /* left unapplied: pulled again */
				free(l->q[(l->head + j) % l->cap].buf);
			free(l->q);
		}
		free(c->lanes);
		pthread_mutex_destroy(&c->mu);
		pthread_cond_destroy(&c->work);
		pthread_cond_destroy(&c->room);
	}
	if (c->sub_open)
		nng_close(c->sub);
	if (c->types != NULL)
		for (char **t = c->types; *t != NULL; t++)
			free(*t);
	free(c->types);
	free(c->source);
	free(c->db);
	free(c);
}

/* open_sub: a SUB socket taking everything, dialing each of addrs. */
static mall_code
open_sub(mall_consumer *c, const char *addrs, mall_status *st)
{
	int rv;
	if ((rv = nng_sub0_open(&c->sub)) != 0)
		return mall_status_set(st, MALL_INTERNAL,
		                       "could not open a socket for %s events: %s", c->source,
		                       nng_strerror(rv));
	c->sub_open = true;
	if ((rv = nng_socket_set(c->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0 ||
	    (rv = nng_socket_set_ms(c->sub, NNG_OPT_RECONNMINT, 100)) != 0 ||
	    (rv = nng_socket_set_ms(c->sub, NNG_OPT_RECONNMAXT, 2000)) != 0 ||
	    (rv = nng_socket_set_size(c->sub, NNG_OPT_RECVMAXSZ, (size_t)4 << 20)) != 0)
		return mall_status_set(st, MALL_INTERNAL,
		                       "could not set up the %s events socket: %s", c->source,
		                       nng_strerror(rv));
	char *list = mall_xstrdup(addrs);
	char *save = NULL;
	mall_code code = MALL_OK;
	for (char *url = strtok_r(list, ",", &save); url != NULL;
	     url = strtok_r(NULL, ",", &save)) {
		while (*url == ' ')
			url++;
		if (*url == '\0')
			continue;
		if ((rv = nng_dial(c->sub, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
			code = mall_status_set(st, MALL_INVALID_ARGUMENT,
			                       "could not subscribe to %s events at %s: %s",
			                       c->source, url, nng_strerror(rv));
			break;
		}
	}
	free(list);
	return code;
}

mall_code
mall_consumer_start(mall_consumer **out, const mall_consumer_opts *o, mall_status *st)
{
	*out = NULL;
	if (o == NULL || o->source == NULL || o->source[0] == '\0' || o->client == NULL ||
	    o->db == NULL || o->apply == NULL)
		return mall_status_set(
		    st, MALL_INVALID_ARGUMENT,
		    "an event consumer needs a source, an rpc client, a database "
		    "and a handler");
	if (o->lanes < 0 || o->lanes > MALL_CONSUMER_LANES_MAX || (o->lanes > 1 && o->key == NULL))
		return mall_status_set(st, MALL_INVALID_ARGUMENT,
		                       "consumer of %s events: lanes must be 1..%d, and more than "
		                       "one needs a key function",
		                       o->source, MALL_CONSUMER_LANES_MAX);
	if (o->batch < 0 || o->batch > MALL_EVENTS_SINCE_MAX || o->poll_ms < 0 ||
	    o->max_backoff_ms < 0 || o->inbox_keep_ms < 0)
		return mall_status_set(st, MALL_INVALID_ARGUMENT,
		                       "consumer of %s events: batch must be 1..%d, times positive",
		                       o->source, MALL_EVENTS_SINCE_MAX);
	mall_consumer *c = mall_xcalloc(1, sizeof(*c));
	c->source = mall_xstrdup(o->source);
	c->client = o->client;
	c->db = mall_xstrdup(o->db);
	if (o->types != NULL) {
		size_t n = 0;
		while (o->types[n] != NULL)
			n++;
		c->types = mall_xcalloc(n + 1, sizeof(char *));
		for (size_t i = 0; i < n; i++)
			c->types[i] = mall_xstrdup(o->types[i]);
	}
	c->apply = o->apply;
	c->applied = o->applied;
	c->arg = o->arg;
	c->batch = o->batch > 0 ? o->batch : MALL_EVENTS_SINCE_DEFAULT;
	c->poll_ms = o->poll_ms > 0 ? o->poll_ms : 1000;
	c->max_backoff_ms = o->max_backoff_ms > 0 ? o->max_backoff_ms : 10000;
	if (c->max_backoff_ms < FIRST_BACKOFF_MS)
		c->max_backoff_ms = FIRST_BACKOFF_MS;
	atomic_init(&c->stop, false);
	c->key = o->key;
	c->inbox_keep_ms = o->inbox_keep_ms > 0 ? o->inbox_keep_ms : 7LL * 24 * 3600 * 1000;
	c->prune_every_ms = c->inbox_keep_ms / 4;
	if (c->prune_every_ms < 1000)
		c->prune_every_ms = 1000;
	if (c->prune_every_ms > 3600 * 1000)
		c->prune_every_ms = 3600 * 1000;
	c->next_prune = 0; /* at the first pull */
	c->nlanes = o->lanes > 1 ? o->lanes : 1;
	if (c->nlanes > 1) {
		pthread_mutex_init(&c->mu, NULL);
		pthread_cond_init(&c->work, NULL);
		pthread_cond_init(&c->room, NULL);
		c->lanes = mall_xcalloc((size_t)c->nlanes, sizeof(*c->lanes));
		for (int i = 0; i < c->nlanes; i++) {
			lane *l = &c->lanes[i];
			l->c = c;
			l->conn = mall_db_conn_new(c->db);
			l->arena = mall_arena_new();
		}
		for (int i = 0; i < c->nlanes; i++) {
			int rv = pthread_create(&c->lanes[i].thread, NULL, lane_main, &c->lanes[i]);
			if (rv != 0) {
				mall_status_set(st, MALL_INTERNAL,
				                "could not start the lanes of the %s events: %s",
				                c->source, strerror(rv));
				consumer_free(c);
				return st->code;
			}
			c->lanes[i].started = true;
		}
	}
	if (o->events_addrs != NULL && o->events_addrs[0] != '\0' &&
	    open_sub(c, o->events_addrs, st) != MALL_OK) {
		consumer_free(c);
		return st->code;
	}
	int rv = pthread_create(&c->thread, NULL, consumer_main, c);
	if (rv != 0) {
		mall_status_set(st, MALL_INTERNAL, "could not start the consumer of %s events: %s",
		                c->source, strerror(rv));
		consumer_free(c);
		return st->code;
	}
	mall_log_info(NULL, "consuming %s events (wake-ups from %s; %d lane%s)", c->source,
	              c->sub_open ? o->events_addrs : "nowhere: pulling only", c->nlanes,
	              c->nlanes > 1 ? "s" : "");
	*out = c;
	return MALL_OK;
}

void
mall_consumer_stop(mall_consumer *c)
{
	if (c == NULL)
		return;
	atomic_store(&c->stop, true);
	if (c->lanes != NULL)
		wake_all(c);
	pthread_join(c->thread, NULL);
	consumer_free(c);
}
