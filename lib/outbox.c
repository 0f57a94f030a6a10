/*
 * outbox.c: the transactional outbox, Events.Since and the relay (outbox.h).
 *
 * Ordering.  outbox.seq is an identity, taken when the row is inserted; a
 * transaction that inserted seq 7 may commit after one that inserted seq 8,
 * so seq cannot be what readers follow: one that saw 8 and moved its cursor
 * there would never see 7.  Writers therefore only insert (pub_seq NULL), and
 * commit as they like, in parallel (group commit works).  The relay is the
 * sequencer: in a transaction of its own, under
 * pg_advisory_xact_lock(MALL_OUTBOX_LOCK_KEY) (several instances of a
 * service each run a relay; they take turns), it gives the committed rows
 * without one a pub_seq from the outbox_pub_seq sequence, in seq order, and
 * commits.  A reader sees a pub_seq only once its sequencing transaction has
 * committed, with all of that batch, and every later batch takes larger
 * values: "pub_seq > cursor ORDER BY pub_seq" never skips a row.  Since and
 * the published events call pub_seq "seq".
 *
 * The relay is one thread per process with its own connection.  It wakes
 * when a transaction of this process that wrote an outbox row commits (a
 * poke through an eventfd: mall_db_on_commit), when another instance's
 * sequencer NOTIFYs mall_outbox (LISTEN), and every second; it sequences
 * what is committed and publishes the rows after the last one it published
 * on a PUB socket.  Writers do not NOTIFY: PostgreSQL serializes the commits
 * of notifying transactions across the whole cluster, which the sequencer
 * alone can afford (one per batch).  Several instances each publish every
 * row: a subscriber of all of them gets a wake-up more than once, which is
 * harmless.
 */
#include "outbox.h"

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/pub.h>
#include <sodium.h>

#include "log.h"
#include "metrics.h"

#define STR_(x) #x
#define STR(x) STR_(x)

#define LOCK_SQL "SELECT pg_advisory_xact_lock($1::bigint)"
#define INSERT_SQL "INSERT INTO outbox (type, payload) VALUES ($1, $2::bytea)"
/* the committed rows without a pub_seq, numbered in seq order */
#define SEQUENCE_BATCH 1000
#define SEQUENCE_SQL                                                                               \
	"UPDATE outbox o SET pub_seq = n.ps FROM (SELECT seq, nextval('outbox_pub_seq') AS ps "    \
	"FROM (SELECT seq FROM outbox WHERE pub_seq IS NULL ORDER BY seq LIMIT " STR(             \
	    SEQUENCE_BATCH) ") t) n WHERE o.seq = n.seq"
#define NOTIFY_SQL "SELECT pg_notify('" MALL_OUTBOX_CHANNEL "', '')"
#define PENDING_SQL "SELECT EXISTS (SELECT 1 FROM outbox WHERE pub_seq IS NULL)"

#define EVENT_COLUMNS                                                                              \
	"o.pub_seq, o.event_id, o.type, o.payload, "                                               \
	"to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
/* one row even when no event follows after_seq, to carry last_seq */
#define SINCE_SQL                                                                                  \
	"WITH last AS (SELECT coalesce(max(pub_seq), 0) AS seq FROM outbox) "                      \
	"SELECT last.seq, " EVENT_COLUMNS " FROM last LEFT JOIN LATERAL "                          \
	"(SELECT * FROM outbox WHERE pub_seq > $1::bigint ORDER BY pub_seq LIMIT $2::int) o "      \
	"ON true ORDER BY o.pub_seq"
#define RELAY_BATCH 500
#define RELAY_SQL                                                                                  \
	"SELECT " EVENT_COLUMNS " FROM outbox o WHERE o.pub_seq > $1::bigint ORDER BY o.pub_seq "  \
	"LIMIT " STR(RELAY_BATCH)

/* The poke: an eventfd the relay polls, written when a transaction of this
 * process that added an outbox row commits. */
static int poke_fd = -1;
static pthread_once_t poke_once = PTHREAD_ONCE_INIT;

static void
poke_init(void)
{
	poke_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (poke_fd < 0)
		mall_log_warn(NULL,
		              "no eventfd for the outbox relay (%s): events are published "
		              "within a second instead of at once",
		              strerror(errno));
}

static void
poke(void)
{
	pthread_once(&poke_once, poke_init);
	uint64_t one = 1;
	if (poke_fd >= 0 && write(poke_fd, &one, sizeof(one)) < 0) {
		/* EAGAIN: the counter is full of pokes already */
	}
}

/* ---- writing ---- */

mall_code
mall_outbox_add(mall_db_conn *conn, mall_arena *arena, const char *type,
                const ProtobufCMessage *msg, mall_status *st)
{
	if (!mall_db_in_tx(conn))
		return mall_status_set(st, MALL_FAILED_PRECONDITION,
		                       "could not record event %s: no transaction is open (the "
		                       "event must commit with its change)",
		                       type);
	size_t n = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = mall_arena_alloc(arena, n ? n : 1);
	protobuf_c_message_pack(msg, buf);
	char *hex = mall_arena_alloc(arena, 2 * n + 3);
	hex[0] = '\\';
	hex[1] = 'x';
	sodium_bin2hex(hex + 2, 2 * n + 1, buf, n);

	const char *params[] = {type, hex};
	if (mall_db_exec_cmd(conn, st, INSERT_SQL, 2, params) < 0)
		return st->code;
	mall_db_on_commit(conn, poke);
	return MALL_OK;
}

/* ---- reading ---- */

/* fill_event: ev from row r of a result whose columns c.. are EVENT_COLUMNS,
 * in arena. */
static void
fill_event(Mall__Rpc__Event *ev, mall_arena *a, const PGresult *res, int r, int c,
           const char *source)
{
	mall__rpc__event__init(ev);
	ev->seq = mall_db_int64(res, r, c);
	ev->event_id = mall_arena_strdup(a, PQgetvalue(res, r, c + 1));
	ev->type = mall_arena_strdup(a, PQgetvalue(res, r, c + 2));
	size_t n = 0;
	unsigned char *bin = PQunescapeBytea((const unsigned char *)PQgetvalue(res, r, c + 3), &n);
	if (bin == NULL)
		abort(); /* libpq could not allocate */
	ev->payload.len = n;
	ev->payload.data = mall_arena_alloc(a, n ? n : 1);
	memcpy(ev->payload.data, bin, n);
	PQfreemem(bin);
	ev->created_at = mall_arena_strdup(a, PQgetvalue(res, r, c + 4));
	ev->source = (char *)source;
}

mall_code
mall_outbox_since(mall_db_conn *conn, mall_arena *arena, const char *source, int64_t after_seq,
                  int32_t limit, Mall__Rpc__EventsSinceReply **out, mall_status *st)
{
	*out = NULL;
	if (after_seq < 0)
		mall_status_field(st, "afterSeq", "must not be negative");
	if (limit < 0 || limit > MALL_EVENTS_SINCE_MAX)
		mall_status_field(st, "limit", "must be 1..%d (0: %d)", MALL_EVENTS_SINCE_MAX,
		                  MALL_EVENTS_SINCE_DEFAULT);
	if (st->code != MALL_OK)
		return st->code;
	if (limit == 0)
		limit = MALL_EVENTS_SINCE_DEFAULT;
	const char *params[] = {mall_arena_printf(arena, "%lld", (long long)after_seq),
	                        mall_arena_printf(arena, "%d", (int)limit)};
	PGresult *res = mall_db_exec(conn, st, SINCE_SQL, 2, params);
	if (res == NULL)
		return st->code;
	int rows = PQntuples(res);
	Mall__Rpc__EventsSinceReply *r = mall_arena_alloc(arena, sizeof(*r));
	mall__rpc__events_since_reply__init(r);
	r->last_seq = rows > 0 ? mall_db_int64(res, 0, 0) : 0;
	size_t n = rows > 0 && !PQgetisnull(res, 0, 1) ? (size_t)rows : 0;
	source = mall_arena_strdup(arena, source ? source : "");
	if (n > 0) {
		r->events = mall_arena_alloc(arena, n * sizeof(*r->events));
		Mall__Rpc__Event *evs = mall_arena_alloc(arena, n * sizeof(*evs));
		size_t bytes = 0;
		for (size_t i = 0; i < n; i++) {
			/* keep the reply well under the RPC size limit */
			if (i > 0 && bytes + (size_t)PQgetlength(res, (int)i, 4) / 2 >
			                 MALL_EVENTS_SINCE_MAX_BYTES)
				break;
			fill_event(&evs[i], arena, res, (int)i, 1, source);
			bytes += evs[i].payload.len;
			r->events[i] = &evs[i];
			r->n_events = i + 1;
		}
	}
	PQclear(res);
	*out = r;
	return MALL_OK;
}

static mall_code
since(mall_rpc_ctx *ctx, const ProtobufCMessage *req_, ProtobufCMessage **reply, mall_status *st)
{
	const Mall__Rpc__EventsSinceRequest *req = (const void *)req_;
	mall_db_conn *conn = mall_rpc_ctx_worker(ctx);
	if (conn == NULL)
		return mall_status_set(st, MALL_INTERNAL,
		                       "%s cannot read its outbox: the worker has no database "
		                       "connection",
		                       mall_rpc_ctx_service(ctx));
	Mall__Rpc__EventsSinceReply *r;
	if (mall_outbox_since(conn, mall_rpc_ctx_arena(ctx), mall_rpc_ctx_service(ctx),
	                      req->after_seq, req->limit, &r, st) != MALL_OK)
		return st->code;
	*reply = &r->base;
	return MALL_OK;
}

static const mall_rpc_method since_methods[] = {{"Since", since, 0}};

mall_code
mall_outbox_serve(mall_rpc_server *srv, mall_status *st)
{
	return mall_rpc_server_add(srv, &mall__rpc__events__descriptor, since_methods, 1, st);
}

/* ---- the relay ---- */

struct mall_outbox_relay {
	char *source;
	char *conninfo;
	char *listen;
	nng_socket sock;
	pthread_t thread;
	atomic_bool stop;
	int64_t last; /* the last seq published (the thread's) */
};

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* pause: sleeps about ms, returning early when the relay is told to stop. */
static void
pause_ms(mall_outbox_relay *r, int ms)
{
	for (int i = 0; i < ms && !atomic_load(&r->stop); i += 50)
		usleep(50 * 1000);
}

/* sequence: gives the committed rows without one their pub_seq (outbox.c's
 * head), batch after batch, waking the other instances' relays when it did;
 * false if the database failed. */
static bool
sequence(mall_outbox_relay *r, mall_db_conn *conn, mall_arena *a, mall_status *st)
{
	(void)r;
	/* most passes (the timer's, other instances' notifications) find
	 * nothing: ask first, without a transaction */
	PGresult *any = mall_db_exec(conn, st, PENDING_SQL, 0, NULL);
	if (any == NULL)
		return false;
	bool pending = mall_db_bool(any, 0, 0);
	PQclear(any);
	if (!pending)
		return true;
	for (;;) {
		mall_arena_reset(a);
		const char *key[] = {mall_arena_printf(a, "%lld", (long long)MALL_OUTBOX_LOCK_KEY)};
		if (mall_db_begin(conn, st) != MALL_OK)
			return false;
		PGresult *res = mall_db_exec(conn, st, LOCK_SQL, 1, key);
		if (res == NULL)
			goto fail;
		PQclear(res);
		int64_t n = mall_db_exec_cmd(conn, st, SEQUENCE_SQL, 0, NULL);
		if (n < 0)
			goto fail;
		if (n > 0 && (res = mall_db_exec(conn, st, NOTIFY_SQL, 0, NULL)) == NULL)
			goto fail;
		if (n > 0)
			PQclear(res);
		if (mall_db_commit(conn, st) != MALL_OK)
			return false;
		if (n < SEQUENCE_BATCH)
			return true;
	}
fail:
	mall_db_rollback(conn);
	return false;
}

/* publish: sends every row after r->last; false if the database failed. */
static bool
publish(mall_outbox_relay *r, mall_db_conn *conn, mall_arena *a, mall_status *st)
{
	for (;;) {
		mall_arena_reset(a);
		const char *params[] = {mall_arena_printf(a, "%lld", (long long)r->last)};
		PGresult *res = mall_db_exec(conn, st, RELAY_SQL, 1, params);
		if (res == NULL)
			return false;
		int rows = PQntuples(res);
		for (int i = 0; i < rows; i++) {
			Mall__Rpc__Event ev;
			fill_event(&ev, a, res, i, 0, r->source);
			size_t n = mall__rpc__event__get_packed_size(&ev);
			nng_msg *m;
			if (nng_msg_alloc(&m, n) != 0)
				abort(); /* nng could not allocate */
			mall__rpc__event__pack(&ev, nng_msg_body(m));
			/* PUB never waits for a subscriber: it drops instead */
			if (nng_sendmsg(r->sock, m, NNG_FLAG_NONBLOCK) != 0)
				nng_msg_free(m);
			r->last = ev.seq;
		}
		PQclear(res);
		mall_metrics_gauge_set("mall_events_relay_published_seq",
		                       "The seq of the last event this relay published.", "source",
		                       r->source, (double)r->last);
		if (rows < RELAY_BATCH)
			return true;
	}
}

/* listen_on: LISTEN on conn and, the first time, start after the newest row;
 * false if the database failed. */
static bool
listen_on(mall_outbox_relay *r, mall_db_conn *conn, bool *positioned, mall_status *st)
{
	if (mall_db_exec_cmd(conn, st, "LISTEN " MALL_OUTBOX_CHANNEL, 0, NULL) < 0)
		return false;
	if (*positioned)
		return true;
	PGresult *res =
	    mall_db_exec(conn, st, "SELECT coalesce(max(pub_seq), 0) FROM outbox", 0, NULL);
	if (res == NULL)
		return false;
	r->last = mall_db_int64(res, 0, 0);
	PQclear(res);
	*positioned = true;
	return true;
}

static void *
relay_main(void *arg)
{
	mall_outbox_relay *r = arg;
	mall_db_conn *conn = mall_db_conn_new(r->conninfo);
	mall_arena *a = mall_arena_new();
	bool listening = false, positioned = false, due = false, down = false;
	int64_t next_pass = 0;
	PGconn *listener = NULL; /* the session that LISTENs */
	while (!atomic_load(&r->stop)) {
		mall_status st;
		mall_status_clear(&st);
		if (!listening) {
			if (!listen_on(r, conn, &positioned, &st)) {
				if (!down)
					mall_log_warn(
					    NULL,
					    "%s event relay: could not listen for outbox rows "
					    "(trying again every second): %s",
					    r->source, st.message);
				down = true;
				pause_ms(r, 1000);
				continue;
			}
			if (down)
				mall_log_info(NULL,
				              "%s event relay: listening for outbox rows again",
				              r->source);
			down = false;
			listening = true;
			listener = mall_db_pg(conn, &st);
			due = true; /* rows may have come while nobody listened */
		}
		PGconn *pg = mall_db_pg(conn, &st);
		if (pg == NULL || pg != listener) {
			/* a query reconnected behind our back: the new session
			 * does not listen yet */
			listening = false;
			continue;
		}
		PGnotify *n;
		while ((n = PQnotifies(pg)) != NULL) {
			due = true;
			PQfreemem(n);
		}
		if (due || now_ms() >= next_pass) {
			due = false;
			next_pass = now_ms() + 1000;
			if (!sequence(r, conn, a, &st) || !publish(r, conn, a, &st)) {
				if (!down)
					mall_log_warn(
					    NULL, "%s event relay: could not read the outbox: %s",
					    r->source, st.message);
				down = true;
				listening = false;
				continue;
			}
			continue; /* notifications may have come during the reads */
		}
		pthread_once(&poke_once, poke_init);
		struct pollfd pfd[2] = {{.fd = PQsocket(pg), .events = POLLIN},
		                        {.fd = poke_fd, .events = POLLIN}};
		int64_t wait = next_pass - now_ms();
		int rc = poll(pfd, poke_fd >= 0 ? 2 : 1,
		              (int)(wait < 0 ? 0 : wait > 100 ? 100 : wait));
		if (rc < 0 && errno != EINTR)
			pause_ms(r, 100);
		if (rc > 0 && poke_fd >= 0 && (pfd[1].revents & POLLIN)) {
			uint64_t pokes;
			if (read(poke_fd, &pokes, sizeof(pokes)) > 0)
				due = true;
		}
		if (rc > 0 && (pfd[0].revents & (POLLIN | POLLERR | POLLHUP)) &&
		    (PQconsumeInput(pg) == 0 || PQstatus(pg) != CONNECTION_OK)) {
			char why[200];
			mall_db_first_line(why, sizeof(why), PQerrorMessage(pg));
			mall_log_warn(NULL, "%s event relay: lost its database connection: %s",
			              r->source, why);
			down = true;
			listening = false; /* the next statement reconnects */
		}
	}
	mall_arena_free(a);
	mall_db_conn_free(conn);
	return NULL;
}

mall_code
mall_outbox_relay_start(mall_outbox_relay **out, const char *source, const char *conninfo,
                        const char *listen, mall_status *st)
{
	*out = NULL;
	if (listen == NULL || *listen == '\0')
		return mall_status_set(st, MALL_INVALID_ARGUMENT,
		                       "the %s event relay needs an address to publish on", source);
	mall_outbox_relay *r = mall_xcalloc(1, sizeof(*r));
	r->source = mall_xstrdup(source);
	r->conninfo = mall_xstrdup(conninfo);
	r->listen = mall_xstrdup(listen);
	atomic_init(&r->stop, false);
	int rv;
	if ((rv = nng_pub0_open(&r->sock)) != 0) {
		mall_status_set(st, MALL_INTERNAL, "could not open the %s event socket: %s", source,
		                nng_strerror(rv));
		goto fail;
	}
	/* room for a burst per subscriber before PUB starts dropping */
	(void)nng_socket_set_int(r->sock, NNG_OPT_SENDBUF, 1024);
	if ((rv = nng_listen(r->sock, listen, NULL, 0)) != 0) {
		mall_status_set(st, MALL_UNAVAILABLE, "could not publish %s events on %s: %s",
		                source, listen, nng_strerror(rv));
		nng_close(r->sock);
		goto fail;
	}
	if ((rv = pthread_create(&r->thread, NULL, relay_main, r)) != 0) {
		mall_status_set(st, MALL_INTERNAL, "could not start the %s event relay: %s", source,
		                strerror(rv));
		nng_close(r->sock);
		goto fail;
	}
	mall_log_info(NULL, "%s publishes events on %s", source, listen);
	*out = r;
	return MALL_OK;
fail:
	free(r->source);
	free(r->conninfo);
	free(r->listen);
	free(r);
	return st->code;
}

void
mall_outbox_relay_stop(mall_outbox_relay *r)
{
	if (r == NULL)
		return;
	atomic_store(&r->stop, true);
	pthread_join(r->thread, NULL);
	nng_close(r->sock);
	free(r->source);
	free(r->conninfo);
	free(r->listen);
	free(r);
}

/* ---- addresses ---- */

int
mall_events_addrs_from_rpc(const char *rpc, char *out, size_t cap)
{
	size_t len = 0;
	if (cap == 0)
		return -1;
	out[0] = '\0';
	const char *p = rpc ? rpc : "";
	while (*p != '\0') {
		size_t n = strcspn(p, ",");
		char one[512], conv[540];
		if (n == 0 || n >= sizeof(one))
			goto bad;
		memcpy(one, p, n);
		one[n] = '\0';
		if (strncmp(one, "ipc://", 6) == 0) {
			snprintf(conv, sizeof(conv), "%s.events", one);
		} else if (strncmp(one, "tcp", 3) == 0 && strstr(one, "://") != NULL) {
			char *colon = strrchr(one, ':');
			char *end;
			if (colon == NULL || colon < strstr(one, "://") + 3)
				goto bad;
			long port = strtol(colon + 1, &end, 10);
			if (*end != '\0' || end == colon + 1 || port < 1 || port + 1000 > 65535)
				goto bad;
			*colon = '\0';
			snprintf(conv, sizeof(conv), "%s:%ld", one, port + 1000);
		} else {
			goto bad;
		}
		int w = snprintf(out + len, cap - len, "%s%s", len ? "," : "", conv);
		if (w < 0 || (size_t)w >= cap - len)
			goto bad;
		len += (size_t)w;
		p += n;
		if (*p == ',')
			p++;
	}
	return len > 0 ? 0 : -1;
bad:
	out[0] = '\0';
	return -1;
}
