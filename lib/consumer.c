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
#include "outbox.h"

#define FIRST_BACKOFF_MS 200
#define CALL_TIMEOUT_MS 3000

#define CURSOR_SQL "SELECT after_seq FROM event_cursor WHERE source = $1"
#define CURSOR_NEW_SQL                                                                             \
	"INSERT INTO event_cursor (source, after_seq) VALUES ($1, 0) ON CONFLICT (source) DO "     \
	"NOTHING"
#define CURSOR_MOVE_SQL                                                                            \
	"UPDATE event_cursor SET after_seq = GREATEST(after_seq, $2::bigint), updated_at = now() " \
	"WHERE source = $1"
#define INBOX_SQL                                                                                  \
	"INSERT INTO inbox (event_id, source, seq, type) VALUES ($1::uuid, $2, $3::bigint, $4) "   \
	"ON CONFLICT (event_id) DO NOTHING"

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

/* apply_one: ev's inbox row, its handler and the cursor, in one transaction. */
static mall_code
apply_one(mall_consumer *c, mall_db_conn *conn, mall_arena *a, const Mall__Rpc__Event *ev,
          mall_status *st)
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
	if (move_cursor(c, conn, a, ev->seq, st) != MALL_OK || mall_db_commit(conn, st) != MALL_OK)
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
			if (apply_one(c, conn, a, ev, st) != MALL_OK) {
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
	while (!atomic_load(&c->stop)) {
		mall_status st;
		mall_status_clear(&st);
		if (pull(c, conn, a, &cursor, &st) != MALL_OK) {
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
		wait_wakeup(c, c->poll_ms, cursor, true);
	}
	mall_arena_free(a);
	mall_db_conn_free(conn);
	return NULL;
}

/* ---- life ---- */

static void
consumer_free(mall_consumer *c)
{
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
	if (o->batch < 0 || o->batch > MALL_EVENTS_SINCE_MAX || o->poll_ms < 0 ||
	    o->max_backoff_ms < 0)
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
	mall_log_info(NULL, "consuming %s events (wake-ups from %s)", c->source,
	              c->sub_open ? o->events_addrs : "nowhere: pulling only");
	*out = c;
	return MALL_OK;
}

void
mall_consumer_stop(mall_consumer *c)
{
	if (c == NULL)
		return;
	atomic_store(&c->stop, true);
	pthread_join(c->thread, NULL);
	consumer_free(c);
}
