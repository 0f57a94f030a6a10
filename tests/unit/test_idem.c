/*
 * test_idem.c: idempotency records through a real in-process RPC server and
 * client (ipc transport) on a real database (MALL_TEST_PG_ADMIN).
 *
 * The test service "mall.test.Things" (descriptor built here from test.proto's
 * Inner) has one mutating method, Create, whose handler inserts a row into
 * things and counts its runs; the name "fail" makes it insert and then fail.
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
#include <unistd.h>

#include "support/testdb.h"
#include "db.h"
#include "idem.h"
#include "migrate.h"
#include "rpc.h"
#include "test.pb-c.h"

static const ProtobufCMethodDescriptor things_methods[] = {
    {"Create", &mall__test__inner__descriptor, &mall__test__inner__descriptor},
};
static const unsigned things_by_name[] = {0};
static const ProtobufCServiceDescriptor things_svc = {
    PROTOBUF_C__SERVICE_DESCRIPTOR_MAGIC,
    "mall.test.Things",
    "Things",
    "Mall__Test__Things",
    "mall.test",
    1,
    things_methods,
    things_by_name,
};

static mall_testdb tdb;
static char url[128];
static mall_db *pool;       /* one connection per server worker */
static mall_db_conn *check; /* the test's own, to look at the tables */
static mall_rpc_server *server;
static mall_rpc_client *client;
static atomic_int runs;
static atomic_int runs_outside_tx;


static mall_code
create_thing(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
             mall_status *st)
{
	const Mall__Test__Inner *in = (const Mall__Test__Inner *)req;
	mall_db_conn *c = mall_rpc_ctx_worker(ctx);
	atomic_fetch_add(&runs, 1);
	if (!mall_db_in_tx(c))
		atomic_fetch_add(&runs_outside_tx, 1);
	/* slow enough that a concurrent duplicate arrives while this one runs */
	const char *p[1] = {in->name};
	PGresult *r = mall_db_exec(
	    c, st, "INSERT INTO things (name) SELECT $1 FROM pg_sleep(0.2) RETURNING id", 1, p);
	if (r == NULL)
		return st->code;
	int32_t id = (int32_t)mall_db_int64(r, 0, 0);
	PQclear(r);
	if (strcmp(in->name, "fail") == 0)
		return mall_status_set(st, MALL_FAILED_PRECONDITION, "thing fail is refused");
	mall_arena *a = mall_rpc_ctx_arena(ctx);
	Mall__Test__Inner *out = mall_arena_alloc(a, sizeof(*out));
	mall__test__inner__init(out);
	out->name = mall_arena_strdup(a, in->name);
	out->count = id;
	*reply = &out->base;
	return MALL_OK;
}

static const mall_rpc_method things_impl[] = {
    {"Create", create_thing, MALL_RPC_MUTATING},
};

static void *
worker_init(void *arg, int index)
{
	return mall_db_acquire(arg);
}

static void
worker_fini(void *state)
{
	mall_db_release(state);
}

static int
group_setup(void **state)
{
	if (mall_testdb_admin() == NULL)
		return -1;
	mall_testdb_create(&tdb, "mall_t_idem");

	mall_status st;
	mall_status_clear(&st);
	mall_db_conn *c = mall_db_conn_new(tdb.conninfo);
	const mall_migration_set *sets[] = {&mall_migrations_runtime};
	PGconn *pg = mall_db_pg(c, &st);
	if (pg == NULL || mall_migrate(pg, sets, 1, &st) != MALL_OK ||
	    mall_db_exec_cmd(c, &st, "CREATE TABLE things (id serial PRIMARY KEY, name text)", 0,
	                     NULL) < 0) {
		fprintf(stderr, "could not prepare %s: %s\n", tdb.name, st.message);
		return -1;
	}
	check = c;

	if (mall_db_open(&pool, tdb.conninfo, 4, &st) != MALL_OK)
		return -1;
	snprintf(url, sizeof(url), "ipc:///tmp/mall_t_idem_%d.sock", (int)getpid());
	unlink(url + strlen("ipc://"));
	mall_rpc_server_opts opts = {
	    .service = "things",
	    .listen = url,
	    .contexts = 8,
	    .workers = 4,
	    .worker_init = worker_init,
	    .worker_fini = worker_fini,
	    .worker_arg = pool,
	    .mutate = mall_idem_mutate,
	};
	if (mall_rpc_server_new(&server, &opts, &st) != MALL_OK ||
	    mall_rpc_server_add(server, &things_svc, things_impl, 1, &st) != MALL_OK ||
	    mall_rpc_server_start(server, &st) != MALL_OK ||
	    mall_rpc_client_new(&client, "things", url, NULL, &st) != MALL_OK) {
		fprintf(stderr, "could not start the test server: %s\n", st.message);
		return -1;
	}
	return 0;
}

static int
group_teardown(void **state)
{
	mall_rpc_client_free(client);
	mall_rpc_server_free(server);
	mall_db_close(pool);
	mall_db_conn_free(check);
	if (url[0] != '\0')
		unlink(url + strlen("ipc://")); /* nng leaves the socket file behind */
	if (tdb.name[0] != '\0')
		mall_testdb_drop(&tdb);
	return 0;
}

/* create: calls Create(name) with key (NULL: no key at all); the reply's name
 * and count (the row id) go to *id_out. */
static mall_code
create(const char *key, const char *name, int32_t *id_out, mall_status *st)
{
	mall_arena *a = mall_arena_new();
	Mall__Test__Inner req = MALL__TEST__INNER__INIT;
	req.name = (char *)name;
	mall_rpc_call_opts o = {.idempotency_key = key};
	if (key != NULL)
		o.flags = MALL_RPC_CALL_MUTATING;
	ProtobufCMessage *reply = NULL;
	mall_status_clear(st);
	mall_code rc = mall_rpc_call(client, &things_svc, "Create", &req.base, &reply, a, &o, st);
	if (rc == MALL_OK) {
		const Mall__Test__Inner *r = (const Mall__Test__Inner *)reply;
		assert_string_equal(r->name, name);
		*id_out = r->count;
	}
	mall_arena_free(a);
	return rc;
}

static long
count(const char *sql, const char *param)
{
	mall_status st;
	const char *p[1] = {param};
	PGresult *r = mall_db_exec(check, &st, sql, param ? 1 : 0, param ? p : NULL);
	if (r == NULL)
		fail_msg("%s: %s", sql, st.message);
	long n = atol(PQgetvalue(r, 0, 0));
	PQclear(r);
	return n;
}

static void
test_repeat_answers_recorded_reply(void **state)
{
	mall_status st;
	int32_t id = 0, again = 0;
	int before = atomic_load(&runs);
	assert_int_equal(create("key-repeat", "lamp", &id, &st), MALL_OK);
	assert_true(id > 0);
	assert_int_equal(atomic_load(&runs), before + 1);
	assert_int_equal(atomic_load(&runs_outside_tx), 0);
	assert_int_equal(count("SELECT count(*) FROM rpc_idempotency WHERE key = $1 AND "
	                       "method = 'mall.test.Things/Create' AND reply IS NOT NULL",
	                       "key-repeat"),
	                 1);

	/* the same request again: the stored reply, the handler not run */
	assert_int_equal(create("key-repeat", "lamp", &again, &st), MALL_OK);
	assert_int_equal(again, id);
	assert_int_equal(create("key-repeat", "lamp", &again, &st), MALL_OK);
	assert_int_equal(again, id);
	assert_int_equal(atomic_load(&runs), before + 1);
	assert_int_equal(count("SELECT count(*) FROM things WHERE name = $1", "lamp"), 1);

	/* another key is another request */
	assert_int_equal(create("key-repeat-2", "lamp", &again, &st), MALL_OK);
	assert_int_not_equal(again, id);
	assert_int_equal(atomic_load(&runs), before + 2);
}

static void
test_key_reused_for_other_request(void **state)
{
	mall_status st;
	int32_t id = 0;
	assert_int_equal(create("key-reused", "chair", &id, &st), MALL_OK);
	int before = atomic_load(&runs);
	assert_int_equal(create("key-reused", "table", &id, &st), MALL_INVALID_ARGUMENT);
	assert_string_equal(st.message,
	                    "idempotency key key-reused was used for a different request");
	assert_string_equal(st.reason, MALL_IDEM_KEY_REUSED);
	assert_int_equal(atomic_load(&runs), before);
	assert_int_equal(count("SELECT count(*) FROM things WHERE name = $1", "table"), 0);
}

static void
test_missing_key(void **state)
{
	mall_status st;
	int32_t id = 0;
	int before = atomic_load(&runs);
	assert_int_equal(create(NULL, "stool", &id, &st), MALL_INVALID_ARGUMENT);
	assert_non_null(strstr(st.message, "idempotency key"));
	assert_int_equal(atomic_load(&runs), before);
}

static void
test_handler_error_rolls_back(void **state)
{
	mall_status st;
	int32_t id = 0;
	int before = atomic_load(&runs);
	assert_int_equal(create("key-fail", "fail", &id, &st), MALL_FAILED_PRECONDITION);
	assert_string_equal(st.message, "thing fail is refused");
	assert_int_equal(atomic_load(&runs), before + 1);
	/* neither the handler's row nor a record survived */
	assert_int_equal(count("SELECT count(*) FROM things WHERE name = $1", "fail"), 0);
	assert_int_equal(count("SELECT count(*) FROM rpc_idempotency WHERE key = $1", "key-fail"),
	                 0);
	/* so the same key runs the handler again */
	assert_int_equal(create("key-fail", "fail", &id, &st), MALL_FAILED_PRECONDITION);
	assert_int_equal(atomic_load(&runs), before + 2);
}

typedef struct racer {
	mall_code rc;
	int32_t id;
	char message[256];
} racer;

static void *
race(void *arg)
{
	racer *r = arg;
	mall_status st;
	mall_arena *a = mall_arena_new();
	Mall__Test__Inner req = MALL__TEST__INNER__INIT;
	req.name = "sofa";
	mall_rpc_call_opts o = {.idempotency_key = "key-race", .flags = MALL_RPC_CALL_MUTATING};
	ProtobufCMessage *reply = NULL;
	mall_status_clear(&st);
	r->rc = mall_rpc_call(client, &things_svc, "Create", &req.base, &reply, a, &o, &st);
	if (r->rc == MALL_OK)
		r->id = ((const Mall__Test__Inner *)reply)->count;
	snprintf(r->message, sizeof(r->message), "%s", st.message);
	mall_arena_free(a);
	return NULL;
}

static void
test_concurrent_duplicates_run_once(void **state)
{
	int before = atomic_load(&runs);
	pthread_t th[3];
	racer r[3];
	memset(r, 0, sizeof(r));
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, race, &r[i]);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 3; i++) {
		if (r[i].rc != MALL_OK)
			fail_msg("call %d: %s", i, r[i].message);
		assert_int_equal(r[i].id, r[0].id);
	}
	assert_int_equal(atomic_load(&runs), before + 1);
	assert_int_equal(count("SELECT count(*) FROM things WHERE name = $1", "sofa"), 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_repeat_answers_recorded_reply),
	    cmocka_unit_test(test_key_reused_for_other_request),
	    cmocka_unit_test(test_missing_key),
	    cmocka_unit_test(test_handler_error_rolls_back),
	    cmocka_unit_test(test_concurrent_duplicates_run_once),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
