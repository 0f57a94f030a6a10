/*
 * test_events.c: durable events, both halves (lib/outbox.h and
 * lib/consumer.h), on real databases (MALL_TEST_PG_ADMIN).
 *
 * A producer database holds the outbox, served by an in-process RPC server
 * ("producer", ipc transport) that answers the built-in Events.Since, with
 * the relay publishing on an ipc PUB socket; a consumer database, with the
 * runtime tables (event_cursor, inbox) and a table `applied` (name -> times
 * applied, and the order of first application), receives events through
 * mall_consumer.  Event payloads are
 * mall.test.Inner messages whose name says what the handler does.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "support/testdb.h"
#include "consumer.h"
#include "db.h"
#include "metrics.h"
#include "migrate.h"
#include "outbox.h"
#include "rpc.h"
#include "test.pb-c.h"

static mall_testdb pdb, cdb; /* producer's, consumer's */
static char url[128], pub_url[128];
static mall_db *pool;
static mall_db_conn *prod; /* the test's own, on the producer database */
static mall_db_conn *cons; /* the test's own, on the consumer database */
static mall_rpc_server *server;
static mall_rpc_client *client;
static mall_outbox_relay *relay;
static atomic_int failures; /* handler failures so far ("fail-" events) */
static atomic_int meeting;  /* "-meet" events being applied or done */

static void *
worker_init(void *arg, int index)
{
	(void)index;
	return mall_db_acquire(arg);
}

static void
worker_fini(void *state)
{
	mall_db_release(state);
}

static int
migrate(mall_testdb *db, const char *prefix, mall_db_conn **out, const char *extra)
{
	mall_status st;
	mall_status_clear(&st);
	mall_testdb_create(db, prefix);
	mall_db_conn *c = mall_db_conn_new(db->conninfo);
	const mall_migration_set *sets[] = {&mall_migrations_runtime};
	PGconn *pg = mall_db_pg(c, &st);
	if (pg == NULL || mall_migrate(pg, sets, 1, &st) != MALL_OK ||
	    (extra != NULL && mall_db_exec_cmd(c, &st, extra, 0, NULL) < 0)) {
		fprintf(stderr, "could not prepare %s: %s\n", db->name, st.message);
		mall_db_conn_free(c);
		return -1;
	}
	*out = c;
	return 0;
}

static int
group_setup(void **state)
{
	(void)state;
	if (mall_testdb_admin() == NULL)
		return -1;
	if (migrate(&pdb, "mall_t_events_p", &prod, NULL) != 0 ||
	    migrate(&cdb, "mall_t_events_c", &cons,
	            "CREATE TABLE applied (name text PRIMARY KEY, seq bigint, n int,"
	            " ord bigint GENERATED ALWAYS AS IDENTITY)") != 0)
		return -1;
	mall_status st;
	mall_status_clear(&st);
	if (mall_db_open(&pool, pdb.conninfo, 4, &st) != MALL_OK)
		return -1;
	snprintf(url, sizeof(url), "ipc:///tmp/mall_t_events_%d.sock", (int)getpid());
	snprintf(pub_url, sizeof(pub_url), "ipc:///tmp/mall_t_events_%d.pub", (int)getpid());
	unlink(url + strlen("ipc://"));
	unlink(pub_url + strlen("ipc://"));
	mall_rpc_server_opts opts = {
	    .service = "producer",
	    .listen = url,
	    .contexts = 8,
	    .workers = 4,
	    .worker_init = worker_init,
	    .worker_fini = worker_fini,
	    .worker_arg = pool,
	};
	if (mall_rpc_server_new(&server, &opts, &st) != MALL_OK ||
	    mall_outbox_serve(server, &st) != MALL_OK ||
	    mall_rpc_server_start(server, &st) != MALL_OK ||
	    mall_rpc_client_new(&client, "producer", url, NULL, &st) != MALL_OK ||
	    mall_outbox_relay_start(&relay, "producer", pdb.conninfo, pub_url, &st) != MALL_OK) {
		fprintf(stderr, "could not start the producer: %s\n", st.message);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	(void)state;
	mall_outbox_relay_stop(relay);
	mall_rpc_client_free(client);
	mall_rpc_server_free(server);
	mall_db_close(pool);
	mall_db_conn_free(prod);
	mall_db_conn_free(cons);
	if (url[0] != '\0') {
		unlink(url + strlen("ipc://"));
		unlink(pub_url + strlen("ipc://"));
	}
	if (pdb.name[0] != '\0')
		mall_testdb_drop(&pdb);
	if (cdb.name[0] != '\0')
		mall_testdb_drop(&cdb);
	return 0;
}

/* ---- helpers ---- */

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
scalar(mall_db_conn *c, const char *sql, const char *param)
{
	mall_status st;
	mall_status_clear(&st);
	const char *p[1] = {param};
	PGresult *r = mall_db_exec(c, &st, sql, param ? 1 : 0, param ? p : NULL);
	if (r == NULL)
		fail_msg("%s: %s", sql, st.message);
	int64_t v = PQgetisnull(r, 0, 0) ? -1 : mall_db_int64(r, 0, 0);
	PQclear(r);
	return v;
}

/* add_on: records event type with payload Inner{name} on c, in its own
 * transaction. */
static void
add_on(mall_db_conn *c, const char *type, const char *name)
{
	mall_status st;
	mall_status_clear(&st);
	mall_arena *a = mall_arena_new();
	Mall__Test__Inner in = MALL__TEST__INNER__INIT;
	in.name = (char *)name;
	assert_int_equal(mall_db_begin(c, &st), MALL_OK);
	if (mall_outbox_add(c, a, type, &in.base, &st) != MALL_OK)
		fail_msg("could not add %s: %s", name, st.message);
	assert_int_equal(mall_db_commit(c, &st), MALL_OK);
	mall_arena_free(a);
}

static void
add(const char *type, const char *name)
{
	add_on(prod, type, name);
}

/* last_seq: the newest pub_seq, once the relay sequenced every committed
 * row. */
static int64_t
last_seq(void)
{
	int64_t until = now_ms() + 10000;
	while (scalar(prod, "SELECT count(*) FROM outbox WHERE pub_seq IS NULL", NULL) > 0) {
		if (now_ms() > until)
			fail_msg("the relay left outbox rows without a pub_seq for 10 s");
		usleep(5 * 1000);
	}
	return scalar(prod, "SELECT coalesce(max(pub_seq), 0) FROM outbox", NULL);
}

/* wait_cursor: until the consumer database's cursor reaches seq. */
static void
wait_cursor(int64_t seq)
{
	int64_t until = now_ms() + 15000, got = -1;
	while (now_ms() < until) {
		got = scalar(
		    cons, "SELECT coalesce(max(after_seq), -1) FROM event_cursor WHERE source = $1",
		    "producer");
		if (got >= seq)
			return;
		usleep(20 * 1000);
	}
	fail_msg("the consumer's cursor is at %lld, not %lld, after 15 s", (long long)got,
	         (long long)seq);
}

static mall_code
call_since(int64_t after, int32_t limit, Mall__Rpc__EventsSinceReply **out, mall_arena *a,
           mall_status *st)
{
	Mall__Rpc__EventsSinceRequest req = MALL__RPC__EVENTS_SINCE_REQUEST__INIT;
	req.after_seq = after;
	req.limit = limit;
	ProtobufCMessage *reply = NULL;
	mall_status_clear(st);
	mall_code rc = mall_rpc_call(client, &mall__rpc__events__descriptor, "Since", &req.base,
	                             &reply, a, NULL, st);
	*out = (Mall__Rpc__EventsSinceReply *)reply;
	return rc;
}

/* The consumer's handler: counts applications of Inner.name in `applied`;
 * a name starting "fail-" fails the first two times. */
static mall_code
apply(mall_db_conn *c, const Mall__Rpc__Event *ev, void *arg, mall_status *st)
{
	(void)arg;
	Mall__Test__Inner *in = mall__test__inner__unpack(NULL, ev->payload.len, ev->payload.data);
	if (in == NULL)
		return mall_status_set(st, MALL_INVALID_ARGUMENT, "not an Inner");
	mall_code rc = MALL_OK;
	if (strstr(in->name, "-meet") != NULL) {
		/* waits (up to 5 s) until another "-meet" event is being applied
		 * at the same time: only lanes can do that */
		atomic_fetch_add(&meeting, 1);
		for (int i = 0; i < 500 && atomic_load(&meeting) < 2; i++)
			usleep(10 * 1000);
		if (atomic_load(&meeting) < 2)
			rc = mall_status_set(st, MALL_FAILED_PRECONDITION,
			                     "%s met nobody: events were not applied at once",
			                     in->name);
	}
	if (rc != MALL_OK) {
		/* the refusal above */
	} else if (strstr(in->name, "fail-") != NULL && atomic_fetch_add(&failures, 1) < 2) {
		rc = mall_status_set(st, MALL_FAILED_PRECONDITION, "%s is refused for now",
		                     in->name);
	} else {
		char seq[24];
		snprintf(seq, sizeof(seq), "%lld", (long long)ev->seq);
		const char *p[] = {in->name, seq};
		if (mall_db_exec_cmd(
		        c, st,
		        "INSERT INTO applied (name, seq, n) VALUES ($1, $2::bigint, 1) "
		        "ON CONFLICT (name) DO UPDATE SET n = applied.n + 1",
		        2, p) < 0)
			rc = st->code;
	}
	mall__test__inner__free_unpacked(in, NULL);
	return rc;
}

/* lane_key: the key of an event named "g<k>-...": k (its group). */
static uint64_t
lane_key(const Mall__Rpc__Event *ev, void *arg)
{
	(void)arg;
	Mall__Test__Inner *in = mall__test__inner__unpack(NULL, ev->payload.len, ev->payload.data);
	uint64_t k = in != NULL && in->name[0] == 'g' ? (uint64_t)atoi(in->name + 1) : 0;
	mall__test__inner__free_unpacked(in, NULL);
	return k;
}

/* consumer_of: a consumer of the producer's events of types, with lanes
 * (keyed by lane_key) when more than 1; inbox_keep_ms 0: the default. */
static mall_consumer *
consumer_of(const char *const *types, int batch, int lanes, int64_t inbox_keep_ms)
{
	mall_status st;
	mall_status_clear(&st);
	mall_consumer *c = NULL;
	mall_consumer_opts o = {
	    .source = "producer",
	    .client = client,
	    .events_addrs = pub_url,
	    .db = cdb.conninfo,
	    .types = types,
	    .apply = apply,
	    .batch = batch,
	    .max_backoff_ms = 400,
	    .lanes = lanes,
	    .key = lanes > 1 ? lane_key : NULL,
	    .inbox_keep_ms = inbox_keep_ms,
	};
	if (mall_consumer_start(&c, &o, &st) != MALL_OK)
		fail_msg("could not start a consumer: %s", st.message);
	return c;
}

static mall_consumer *
consumer(const char *const *types, int batch)
{
	return consumer_of(types, batch, 1, 0);
}

static mall_consumer *
consumer_lanes(const char *const *types, int lanes)
{
	return consumer_of(types, 0, lanes, 0);
}

static int64_t
times_applied(const char *name)
{
	return scalar(cons, "SELECT coalesce(max(n), 0) FROM applied WHERE name = $1", name);
}

/* ---- the outbox ---- */

static void
test_add_needs_a_transaction(void **state)
{
	(void)state;
	mall_status st;
	mall_status_clear(&st);
	mall_arena *a = mall_arena_new();
	Mall__Test__Inner in = MALL__TEST__INNER__INIT;
	assert_int_equal(mall_outbox_add(prod, a, "test.loose", &in.base, &st),
	                 MALL_FAILED_PRECONDITION);
	assert_non_null(strstr(st.message, "no transaction"));
	mall_arena_free(a);
	assert_int_equal(scalar(prod, "SELECT count(*) FROM outbox WHERE type = $1", "test.loose"),
	                 0);
}

static void
test_add_records_the_packed_payload_and_notifies(void **state)
{
	(void)state;
	mall_status st;
	mall_status_clear(&st);
	mall_db_conn *l = mall_db_conn_new(pdb.conninfo);
	assert_true(mall_db_exec_cmd(l, &st, "LISTEN " MALL_OUTBOX_CHANNEL, 0, NULL) >= 0);
	add("test.recorded", "lamp");

	PGresult *r = mall_db_exec(
	    prod, &st, "SELECT payload FROM outbox WHERE type = 'test.recorded'", 0, NULL);
	assert_non_null(r);
	assert_int_equal(PQntuples(r), 1);
	size_t n = 0;
	unsigned char *bin = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 0), &n);
	PQclear(r);
	Mall__Test__Inner *in = mall__test__inner__unpack(NULL, n, bin);
	PQfreemem(bin);
	assert_non_null(in);
	assert_string_equal(in->name, "lamp");
	mall__test__inner__free_unpacked(in, NULL);

	/* the notification arrived at commit */
	PGconn *pg = mall_db_pg(l, &st);
	PGnotify *note = NULL;
	for (int i = 0; i < 100 && note == NULL; i++) {
		PQconsumeInput(pg);
		note = PQnotifies(pg);
		if (note == NULL)
			usleep(10 * 1000);
	}
	assert_non_null(note);
	assert_string_equal(note->relname, MALL_OUTBOX_CHANNEL);
	PQfreemem(note);
	mall_db_conn_free(l);
}

/* pub_seq_of: the pub_seq of the test.order row whose payload names name
 * (-1 while it has none, or there is no such row). */
static int64_t
pub_seq_of(mall_db_conn *c, const char *name)
{
	return scalar(c,
	              "SELECT pub_seq FROM outbox WHERE type = 'test.order' AND "
	              "position(convert_to($1, 'UTF8') in payload) > 0",
	              name);
}

static void
test_writers_do_not_wait_and_readers_never_skip(void **state)
{
	(void)state;
	mall_status st;
	mall_status_clear(&st);
	mall_arena *a = mall_arena_new();
	Mall__Test__Inner in = MALL__TEST__INNER__INIT;
	in.name = "first";
	assert_int_equal(mall_db_begin(prod, &st), MALL_OK);
	assert_int_equal(mall_outbox_add(prod, a, "test.order", &in.base, &st), MALL_OK);

	/* a second writer, with a later seq, commits while the first is open:
	 * nothing makes it wait (this would hang otherwise) */
	mall_db_conn *other = mall_db_conn_new(pdb.conninfo);
	add_on(other, "test.order", "second");
	int64_t until = now_ms() + 10000;
	while (pub_seq_of(other, "second") < 0 && now_ms() < until)
		usleep(10 * 1000);
	int64_t second = pub_seq_of(other, "second");
	assert_true(second > 0);
	/* the first row is not visible yet, so it has no pub_seq, and Since
	 * answers the second without it */
	Mall__Rpc__EventsSinceReply *r;
	assert_int_equal(call_since(second - 1, 10, &r, a, &st), MALL_OK);
	assert_int_equal(r->n_events, 1);
	assert_int_equal(r->events[0]->seq, second);

	/* committed, the first gets a pub_seq after the second's: a reader whose
	 * cursor passed the second still sees it */
	assert_int_equal(mall_db_commit(prod, &st), MALL_OK);
	until = now_ms() + 10000;
	while (pub_seq_of(other, "first") < 0 && now_ms() < until)
		usleep(10 * 1000);
	int64_t first = pub_seq_of(other, "first");
	assert_true(first > second);
	assert_int_equal(call_since(second, 10, &r, a, &st), MALL_OK);
	assert_true(r->n_events >= 1);
	assert_int_equal(r->events[0]->seq, first);
	/* while their insertion order stays in seq */
	assert_true(scalar(other, "SELECT seq FROM outbox WHERE pub_seq = $1::bigint",
	                   mall_arena_printf(a, "%lld", (long long)first)) <
	            scalar(other, "SELECT seq FROM outbox WHERE pub_seq = $1::bigint",
	                   mall_arena_printf(a, "%lld", (long long)second)));
	mall_db_conn_free(other);
	mall_arena_free(a);
}

/* ---- Events.Since ---- */

static void
test_since_checks_its_arguments(void **state)
{
	(void)state;
	mall_status st;
	mall_arena *a = mall_arena_new();
	Mall__Rpc__EventsSinceReply *r;
	assert_int_equal(call_since(0, 1001, &r, a, &st), MALL_INVALID_ARGUMENT);
	assert_int_equal(st.nfields, 1);
	assert_string_equal(st.fields[0].field, "limit");
	assert_int_equal(call_since(0, -1, &r, a, &st), MALL_INVALID_ARGUMENT);
	assert_string_equal(st.fields[0].field, "limit");
	assert_int_equal(call_since(-5, 10, &r, a, &st), MALL_INVALID_ARGUMENT);
	assert_string_equal(st.fields[0].field, "afterSeq");
	mall_arena_free(a);
}

static void
test_since_pages_in_seq_order(void **state)
{
	(void)state;
	int64_t start = last_seq();
	const char *names[] = {"p1", "p2", "p3", "p4", "p5"};
	for (int i = 0; i < 5; i++)
		add("test.page", names[i]);
	(void)last_seq(); /* sequenced by the relay */
	mall_status st;
	mall_arena *a = mall_arena_new();
	Mall__Rpc__EventsSinceReply *r;

	/* 0: the default limit, which covers these */
	assert_int_equal(call_since(start, 0, &r, a, &st), MALL_OK);
	assert_int_equal(r->n_events, 5);
	assert_int_equal(r->last_seq, last_seq());

	int64_t after = start;
	int pages = 0, seen = 0;
	for (;;) {
		assert_int_equal(call_since(after, 2, &r, a, &st), MALL_OK);
		assert_int_equal(r->last_seq, last_seq());
		if (r->n_events == 0)
			break;
		pages++;
		for (size_t i = 0; i < r->n_events; i++) {
			const Mall__Rpc__Event *ev = r->events[i];
			assert_true(ev->seq > after);
			after = ev->seq;
			assert_string_equal(ev->type, "test.page");
			assert_string_equal(ev->source, "producer");
			assert_int_equal(strlen(ev->event_id), 36);
			assert_non_null(strchr(ev->created_at, 'T'));
			Mall__Test__Inner *in =
			    mall__test__inner__unpack(NULL, ev->payload.len, ev->payload.data);
			assert_non_null(in);
			assert_string_equal(in->name, names[seen]);
			mall__test__inner__free_unpacked(in, NULL);
			seen++;
		}
		mall_arena_reset(a);
	}
	assert_int_equal(pages, 3);
	assert_int_equal(seen, 5);
	assert_int_equal(after, r->last_seq);
	mall_arena_free(a);
}

static void
test_since_keeps_replies_under_a_mebibyte(void **state)
{
	(void)state;
	int64_t start = last_seq();
	char *big = malloc(600 * 1024 + 1);
	memset(big, 'x', 600 * 1024);
	big[600 * 1024] = '\0';
	for (int i = 0; i < 3; i++) {
		big[0] = (char)('a' + i);
		add("test.big", big);
	}
	free(big);
	mall_status st;
	mall_arena *a = mall_arena_new();
	Mall__Rpc__EventsSinceReply *r;
	int64_t after = start;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(call_since(after, 10, &r, a, &st), MALL_OK);
		assert_int_equal(r->n_events, 1); /* a second would pass 1 MiB */
		after = r->events[0]->seq;
		mall_arena_reset(a);
	}
	assert_int_equal(call_since(after, 10, &r, a, &st), MALL_OK);
	assert_int_equal(r->n_events, 0);
	mall_arena_free(a);
}

/* ---- the relay ---- */

static void
test_relay_publishes_new_rows(void **state)
{
	(void)state;
	nng_socket sub;
	assert_int_equal(nng_sub0_open(&sub), 0);
	assert_int_equal(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0), 0);
	assert_int_equal(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 200), 0);
	assert_int_equal(nng_dial(sub, pub_url, NULL, 0), 0);
	usleep(200 * 1000); /* PUB sends nothing to a subscriber not yet connected */

	add("test.published", "bell");
	int64_t seq = last_seq();
	bool got = false;
	int64_t until = now_ms() + 5000;
	while (!got && now_ms() < until) {
		nng_msg *m;
		if (nng_recvmsg(sub, &m, 0) != 0)
			continue;
		Mall__Rpc__Event *ev =
		    mall__rpc__event__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
		nng_msg_free(m);
		assert_non_null(ev);
		if (ev->seq == seq) {
			assert_string_equal(ev->type, "test.published");
			assert_string_equal(ev->source, "producer");
			got = true;
		}
		mall__rpc__event__free_unpacked(ev, NULL);
	}
	nng_close(sub);
	assert_true(got);
}

/* ---- the consumer ---- */

static void
test_consumer_applies_matching_events_once(void **state)
{
	(void)state;
	add("test.applied.one", "c1");
	add("test.other", "skipped-1");
	add("test.applied.two", "c2");
	add("test.other", "skipped-2");
	int64_t last = last_seq();
	static const char *const types[] = {"test.applied.", "test.page", NULL};
	mall_consumer *c = consumer(types, 2);
	wait_cursor(last);
	mall_consumer_stop(c);

	assert_int_equal(times_applied("c1"), 1);
	assert_int_equal(times_applied("c2"), 1);
	assert_int_equal(times_applied("p3"), 1); /* from the paging test */
	assert_int_equal(times_applied("skipped-1"), 0);
	assert_int_equal(times_applied("skipped-2"), 0);
	assert_int_equal(times_applied("lamp"), 0);
	/* the inbox holds applied events only; the cursor passed the rest */
	assert_int_equal(scalar(cons, "SELECT count(*) FROM inbox", NULL),
	                 scalar(cons, "SELECT count(*) FROM applied", NULL));
	assert_int_equal(scalar(cons, "SELECT count(*) FROM inbox WHERE type = 'test.other'", NULL),
	                 0);
	assert_int_equal(scalar(cons, "SELECT after_seq FROM event_cursor", NULL), last);

	/* a new consumer starts from the cursor: nothing is applied again */
	add("test.applied.three", "c3");
	c = consumer(types, 0);
	wait_cursor(last_seq());
	mall_consumer_stop(c);
	assert_int_equal(times_applied("c1"), 1);
	assert_int_equal(times_applied("c3"), 1);
	assert_int_equal(scalar(cons, "SELECT max(n) FROM applied", NULL), 1);
}

static void
test_consumer_retries_a_failing_event_and_keeps_order(void **state)
{
	(void)state;
	atomic_store(&failures, 0);
	static const char *const types[] = {"test.retry", NULL};
	mall_consumer *c = consumer(types, 0);
	add("test.retry", "fail-once-or-twice");
	add("test.retry", "after-the-failure");
	wait_cursor(last_seq());
	mall_consumer_stop(c);
	assert_int_equal(atomic_load(&failures), 3); /* 2 refused, then applied */
	assert_int_equal(times_applied("fail-once-or-twice"), 1);
	assert_int_equal(times_applied("after-the-failure"), 1);
	/* not skipped: the later event was applied after it */
	assert_true(
	    scalar(cons, "SELECT ord FROM applied WHERE name = 'fail-once-or-twice'", NULL) <
	    scalar(cons, "SELECT ord FROM applied WHERE name = 'after-the-failure'", NULL));
}

static void
test_two_consumers_apply_each_event_once(void **state)
{
	(void)state;
	static const char *const types[] = {"test.pair", NULL};
	mall_consumer *a = consumer(types, 3);
	mall_consumer *b = consumer(types, 3);
	char name[32];
	for (int i = 0; i < 30; i++) {
		snprintf(name, sizeof(name), "pair-%d", i);
		add("test.pair", name);
	}
	wait_cursor(last_seq());
	mall_consumer_stop(a);
	mall_consumer_stop(b);
	assert_int_equal(
	    scalar(cons, "SELECT count(*) FROM applied WHERE name LIKE 'pair-%'", NULL), 30);
	assert_int_equal(scalar(cons, "SELECT max(n) FROM applied", NULL), 1);
	assert_int_equal(scalar(cons, "SELECT count(*) FROM inbox WHERE type = 'test.pair'", NULL),
	                 30);
}

static void
test_lanes_apply_each_event_once_in_order_per_key(void **state)
{
	(void)state;
	atomic_store(&failures, 0);
	atomic_store(&meeting, 0);
	static const char *const types[] = {"test.lanes", NULL};
	mall_consumer *c = consumer_lanes(types, 4);
	char name[32];
	/* two that can only be applied side by side, then 8 groups of 10, one
	 * of whose events fails twice before it is applied */
	add("test.lanes", "g100-meet");
	add("test.lanes", "g101-meet");
	for (int i = 0; i < 10; i++)
		for (int g = 0; g < 8; g++) {
			if (g == 3 && i == 4)
				snprintf(name, sizeof(name), "g%d-fail-%02d", g, i);
			else
				snprintf(name, sizeof(name), "g%d-%02d", g, i);
			add("test.lanes", name);
		}
	wait_cursor(last_seq());
	mall_consumer_stop(c);

	assert_int_equal(times_applied("g100-meet"), 1);
	assert_int_equal(times_applied("g101-meet"), 1);
	assert_int_equal(
	    scalar(cons, "SELECT count(*) FROM applied WHERE name ~ '^g[0-7]-'", NULL), 80);
	assert_int_equal(scalar(cons, "SELECT max(n) FROM applied", NULL), 1);
	assert_int_equal(atomic_load(&failures), 3);
	/* within a group, applied in the order produced, the failure included */
	assert_int_equal(scalar(cons,
	                        "SELECT count(*) FROM (SELECT name, seq, ord, "
	                        "lag(ord) OVER (PARTITION BY split_part(name, '-', 1) "
	                        "ORDER BY seq) AS before FROM applied WHERE name ~ '^g[0-7]-') x "
	                        "WHERE before > ord",
	                        NULL),
	                 0);
}

static void
test_lanes_survive_a_restart_without_applying_twice(void **state)
{
	(void)state;
	static const char *const types[] = {"test.relanes", NULL};
	char name[32];
	mall_consumer *c = consumer_lanes(types, 3);
	for (int i = 0; i < 40; i++) {
		snprintf(name, sizeof(name), "g%d-re-%02d", i % 5, i);
		add("test.relanes", name);
		if (i == 20) { /* stopped mid-stream, then started again */
			mall_consumer_stop(c);
			c = consumer_lanes(types, 3);
		}
	}
	wait_cursor(last_seq());
	mall_consumer_stop(c);
	assert_int_equal(scalar(cons, "SELECT count(*) FROM applied WHERE name ~ '-re-'", NULL),
	                 40);
	assert_int_equal(scalar(cons, "SELECT max(n) FROM applied", NULL), 1);
}

static void
test_inbox_is_pruned_behind_the_cursor_and_lag_shown(void **state)
{
	(void)state;
	static const char *const types[] = {"test.prune", NULL};
	add("test.prune", "prune-1");
	add("test.prune", "prune-2");
	int64_t old = last_seq();
	mall_consumer *c = consumer_of(types, 0, 1, 1000); /* pruned every second */
	wait_cursor(old);
	char seq[24];
	snprintf(seq, sizeof(seq), "%lld", (long long)old);
	assert_int_equal(
	    scalar(cons, "SELECT count(*) FROM inbox WHERE type = 'test.prune' AND seq <= $1::bigint",
	           seq),
	    2);
	usleep(1200 * 1000);
	add("test.prune", "prune-3");
	wait_cursor(last_seq());
	int64_t until = now_ms() + 10000, left = -1;
	while (now_ms() < until) {
		left = scalar(cons,
		              "SELECT count(*) FROM inbox WHERE type = 'test.prune' AND seq <= "
		              "$1::bigint",
		              seq);
		if (left == 0)
			break;
		usleep(50 * 1000);
	}
	assert_int_equal(left, 0);
	/* applied once each; the newest row is young and stays */
	assert_int_equal(times_applied("prune-1"), 1);
	assert_int_equal(times_applied("prune-3"), 1);

	char *m = mall_metrics_render(NULL);
	assert_non_null(strstr(m, "mall_events_consumer_lag{source=\"producer\"} 0\n"));
	assert_non_null(strstr(m, "mall_events_relay_published_seq{source=\"producer\"}"));
	free(m);
	mall_consumer_stop(c);
}

/* terminate: ends every session on db but the admin's own, as a database
 * restart would. */
static void
terminate(const mall_testdb *db)
{
	char sql[256];
	snprintf(sql, sizeof(sql),
	         "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
	         "WHERE datname = '%s' AND pid <> pg_backend_pid()",
	         db->name);
	mall_testdb_admin_exec(sql);
}

static void
test_relay_and_consumer_survive_lost_connections(void **state)
{
	(void)state;
	static const char *const types[] = {"test.lost", NULL};
	nng_socket sub;
	assert_int_equal(nng_sub0_open(&sub), 0);
	assert_int_equal(nng_socket_set(sub, NNG_OPT_SUB_SUBSCRIBE, "", 0), 0);
	assert_int_equal(nng_socket_set_ms(sub, NNG_OPT_RECVTIMEO, 200), 0);
	assert_int_equal(nng_dial(sub, pub_url, NULL, 0), 0);
	mall_consumer *c = consumer(types, 0);
	add("test.lost", "before");
	wait_cursor(last_seq());

	terminate(&pdb);
	terminate(&cdb);
	usleep(300 * 1000);
	add("test.lost", "after");
	int64_t seq = last_seq();
	wait_cursor(seq);
	mall_consumer_stop(c);
	assert_int_equal(times_applied("before"), 1);
	assert_int_equal(times_applied("after"), 1);

	/* the relay listens again: the row was published */
	bool got = false;
	int64_t until = now_ms() + 5000;
	while (!got && now_ms() < until) {
		nng_msg *m;
		if (nng_recvmsg(sub, &m, 0) != 0)
			continue;
		Mall__Rpc__Event *ev =
		    mall__rpc__event__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
		nng_msg_free(m);
		got = ev != NULL && ev->seq == seq;
		mall__rpc__event__free_unpacked(ev, NULL);
	}
	nng_close(sub);
	assert_true(got);
}

static void
test_consumer_start_checks_its_options(void **state)
{
	(void)state;
	mall_status st;
	mall_status_clear(&st);
	mall_consumer *c = (mall_consumer *)1;
	mall_consumer_opts o = {.source = "producer", .client = client, .db = cdb.conninfo};
	assert_int_equal(mall_consumer_start(&c, &o, &st), MALL_INVALID_ARGUMENT); /* no apply */
	assert_null(c);
	o.apply = apply;
	o.batch = 1001;
	assert_int_equal(mall_consumer_start(&c, &o, &st), MALL_INVALID_ARGUMENT);
	o.batch = 0;
	o.lanes = 4; /* without a key */
	assert_int_equal(mall_consumer_start(&c, &o, &st), MALL_INVALID_ARGUMENT);
	o.key = lane_key;
	o.lanes = MALL_CONSUMER_LANES_MAX + 1;
	assert_int_equal(mall_consumer_start(&c, &o, &st), MALL_INVALID_ARGUMENT);
	o.lanes = 0;
	o.events_addrs = "nonsense://x";
	assert_int_equal(mall_consumer_start(&c, &o, &st), MALL_INVALID_ARGUMENT);
	assert_null(c);
}

/* ---- pure helpers ---- */

static void
test_events_addrs_from_rpc(void **state)
{
	(void)state;
	char out[256];
	assert_int_equal(mall_events_addrs_from_rpc("tcp://127.0.0.1:7411", out, sizeof(out)), 0);
	assert_string_equal(out, "tcp://127.0.0.1:8411");
	assert_int_equal(mall_events_addrs_from_rpc("tcp://a:7411,tcp://b:7412", out, sizeof(out)),
	                 0);
	assert_string_equal(out, "tcp://a:8411,tcp://b:8412");
	assert_int_equal(mall_events_addrs_from_rpc("tcp://[::1]:7411", out, sizeof(out)), 0);
	assert_string_equal(out, "tcp://[::1]:8411");
	assert_int_equal(mall_events_addrs_from_rpc("ipc:///tmp/m.sock", out, sizeof(out)), 0);
	assert_string_equal(out, "ipc:///tmp/m.sock.events");
	assert_int_equal(mall_events_addrs_from_rpc("tcp://h:64600", out, sizeof(out)), -1);
	assert_string_equal(out, "");
	assert_int_equal(mall_events_addrs_from_rpc("inproc://x", out, sizeof(out)), -1);
	assert_int_equal(mall_events_addrs_from_rpc("tcp://h", out, sizeof(out)), -1);
	assert_int_equal(mall_events_addrs_from_rpc("", out, sizeof(out)), -1);
	assert_int_equal(mall_events_addrs_from_rpc("tcp://h:1", out, 8), -1);
}

static void
test_matches(void **state)
{
	(void)state;
	static const char *const member[] = {"member.", "order.placed", NULL};
	static const char *const none[] = {NULL};
	assert_true(mall_consumer_matches(NULL, "anything.at_all"));
	assert_true(mall_consumer_matches(member, "member.signed_up"));
	assert_true(mall_consumer_matches(member, "order.placed"));
	assert_false(mall_consumer_matches(member, "order.cancelled"));
	assert_false(mall_consumer_matches(member, "membership.x"));
	assert_false(mall_consumer_matches(none, "member.signed_up"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_events_addrs_from_rpc),
	    cmocka_unit_test(test_matches),
	    cmocka_unit_test(test_add_needs_a_transaction),
	    cmocka_unit_test(test_add_records_the_packed_payload_and_notifies),
	    cmocka_unit_test(test_writers_do_not_wait_and_readers_never_skip),
	    cmocka_unit_test(test_since_checks_its_arguments),
	    cmocka_unit_test(test_since_pages_in_seq_order),
	    cmocka_unit_test(test_since_keeps_replies_under_a_mebibyte),
	    cmocka_unit_test(test_relay_publishes_new_rows),
	    cmocka_unit_test(test_consumer_applies_matching_events_once),
	    cmocka_unit_test(test_consumer_retries_a_failing_event_and_keeps_order),
	    cmocka_unit_test(test_two_consumers_apply_each_event_once),
	    cmocka_unit_test(test_lanes_apply_each_event_once_in_order_per_key),
	    cmocka_unit_test(test_lanes_survive_a_restart_without_applying_twice),
	    cmocka_unit_test(test_inbox_is_pruned_behind_the_cursor_and_lag_shown),
	    cmocka_unit_test(test_relay_and_consumer_survive_lost_connections),
	    cmocka_unit_test(test_consumer_start_checks_its_options),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
