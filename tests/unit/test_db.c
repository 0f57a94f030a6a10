/*
 * test_db.c: the PostgreSQL pool against a real server (MALL_TEST_PG_ADMIN).
 *
 * Each test gets a fresh database mall_t_db_<pid>_<n>, dropped afterwards.
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

#include "support/testdb.h"
#include "db.h"

static mall_testdb tdb;



static int
group_setup(void **state)
{
	if (mall_testdb_admin() == NULL)
		return -1;
	return 0;
}

static int
setup(void **state)
{
	mall_testdb_create(&tdb, "mall_t_db");
	return 0;
}

static int
teardown(void **state)
{
	mall_testdb_drop(&tdb);
	return 0;
}

static void
exec_ok(mall_db_conn *c, const char *sql)
{
	mall_status st;
	mall_status_clear(&st);
	if (mall_db_exec_cmd(c, &st, sql, 0, NULL) < 0)
		fail_msg("%s: %s", sql, st.message);
}

static int64_t
count_rows(mall_db_conn *c, const char *sql)
{
	mall_status st;
	mall_status_clear(&st);
	PGresult *r = mall_db_exec(c, &st, sql, 0, NULL);
	if (r == NULL)
		fail_msg("%s: %s", sql, st.message);
	int64_t n = mall_db_int64(r, 0, 0);
	PQclear(r);
	return n;
}

static int64_t
backend_pid(mall_db_conn *c)
{
	return count_rows(c, "SELECT pg_backend_pid()");
}

/* kill_backend: terminates the backend of pid and waits until it is gone. */
static void
kill_backend(int64_t pid)
{
	char sql[96];
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%lld, 5000)", (long long)pid);
	mall_testdb_admin_exec(sql);
}

static void
test_params_verbatim(void **state)
{
	mall_db_conn *c = mall_db_conn_new(tdb.conninfo);
	mall_status st;
	mall_status_clear(&st);
	exec_ok(c, "CREATE TABLE t (id bigserial PRIMARY KEY, v text, n int, ok boolean)");
	const char *evil = "x'); DROP TABLE t; --";
	const char *p[3] = {evil, NULL, "true"};
	int64_t n = mall_db_exec_cmd(c, &st, "INSERT INTO t (v, n, ok) VALUES ($1, $2, $3)", 3, p);
	assert_int_equal(n, 1);
	const char *p2[3] = {"$1 \\ \" ;", "42", "false"};
	n = mall_db_exec_cmd(c, &st, "INSERT INTO t (v, n, ok) VALUES ($1, $2, $3)", 3, p2);
	assert_int_equal(n, 1);

	PGresult *r = mall_db_exec(c, &st, "SELECT id, v, n, ok FROM t ORDER BY id", 0, NULL);
	assert_non_null(r);
	assert_int_equal(PQntuples(r), 2);
	assert_string_equal(PQgetvalue(r, 0, 1), evil);
	assert_true(PQgetisnull(r, 0, 2));
	assert_true(mall_db_bool(r, 0, 3));
	assert_string_equal(PQgetvalue(r, 1, 1), "$1 \\ \" ;");
	assert_int_equal(mall_db_int64(r, 1, 2), 42);
	assert_false(mall_db_bool(r, 1, 3));
	assert_int_equal(mall_db_int64(r, 1, 0), mall_db_int64(r, 0, 0) + 1);
	PQclear(r);

	/* a NULL parameter compares as SQL NULL, not as the text "NULL" */
	const char *pn[1] = {NULL};
	r = mall_db_exec(c, &st, "SELECT count(*) FROM t WHERE n IS NOT DISTINCT FROM $1::int", 1,
	                 pn);
	assert_non_null(r);
	assert_int_equal(mall_db_int64(r, 0, 0), 1);
	PQclear(r);

	/* the same statement text reuses its prepared statement; rows-affected counts */
	const char *pu[1] = {"7"};
	assert_int_equal(mall_db_exec_cmd(c, &st, "UPDATE t SET n = $1::int", 1, pu), 2);
	assert_int_equal(mall_db_exec_cmd(c, &st, "UPDATE t SET n = $1::int", 1, pu), 2);
	assert_string_equal(mall_db_sqlstate(c), "");
	mall_db_conn_free(c);
}

static void
test_error_codes(void **state)
{
	mall_db_conn *c = mall_db_conn_new(tdb.conninfo);
	mall_status st;
	mall_status_clear(&st);
	exec_ok(c, "CREATE TABLE u (k text PRIMARY KEY, q int NOT NULL CHECK (q > 0))");
	const char *p[2] = {"sku-1", "1"};
	assert_int_equal(mall_db_exec_cmd(c, &st, "INSERT INTO u VALUES ($1, $2)", 2, p), 1);

	assert_int_equal(mall_db_exec_cmd(c, &st, "INSERT INTO u VALUES ($1, $2)", 2, p), -1);
	assert_int_equal(st.code, MALL_ALREADY_EXISTS);
	assert_string_equal(mall_db_sqlstate(c), "23505");
	assert_non_null(strstr(st.message, tdb.name));
	assert_non_null(strstr(st.message, "u_pkey"));

	const char *bad[2] = {"sku-2", "0"};
	assert_null(mall_db_exec(c, &st, "INSERT INTO u VALUES ($1, $2)", 2, bad));
	assert_int_equal(st.code, MALL_FAILED_PRECONDITION);
	assert_string_equal(mall_db_sqlstate(c), "23514");

	const char *nul[2] = {"sku-3", NULL};
	assert_null(mall_db_exec(c, &st, "INSERT INTO u VALUES ($1, $2)", 2, nul));
	assert_int_equal(st.code, MALL_FAILED_PRECONDITION);
	assert_string_equal(mall_db_sqlstate(c), "23502");

	assert_null(mall_db_exec(c, &st, "SELECT * FROM no_such_table", 0, NULL));
	assert_int_equal(st.code, MALL_INTERNAL);
	assert_string_equal(mall_db_sqlstate(c), "42P01");
	assert_non_null(strstr(st.message, "no_such_table"));

	/* the connection is still good after errors */
	assert_int_equal(count_rows(c, "SELECT count(*) FROM u"), 1);
	mall_db_conn_free(c);
}

static void
test_transactions(void **state)
{
	mall_db *db = NULL;
	mall_status st;
	mall_status_clear(&st);
	assert_int_equal(mall_db_open(&db, tdb.conninfo, 2, &st), MALL_OK);
	mall_db_conn *a = mall_db_acquire(db);
	mall_db_conn *b = mall_db_acquire(db);
	assert_ptr_not_equal(a, b);
	exec_ok(a, "CREATE TABLE t (v text)");

	assert_int_equal(mall_db_begin(a, &st), MALL_OK);
	assert_true(mall_db_in_tx(a));
	assert_int_equal(mall_db_begin(a, &st), MALL_FAILED_PRECONDITION);
	exec_ok(a, "INSERT INTO t VALUES ('committed')");
	assert_int_equal(count_rows(b, "SELECT count(*) FROM t"), 0);
	assert_int_equal(mall_db_commit(a, &st), MALL_OK);
	assert_false(mall_db_in_tx(a));
	assert_int_equal(count_rows(b, "SELECT count(*) FROM t"), 1);

	assert_int_equal(mall_db_begin(a, &st), MALL_OK);
	exec_ok(a, "INSERT INTO t VALUES ('rolled back')");
	assert_int_equal(count_rows(a, "SELECT count(*) FROM t"), 2);
	mall_db_rollback(a);
	assert_false(mall_db_in_tx(a));
	assert_int_equal(count_rows(a, "SELECT count(*) FROM t"), 1);

	/* a transaction with a failed statement does not commit */
	assert_int_equal(mall_db_begin(a, &st), MALL_OK);
	exec_ok(a, "INSERT INTO t VALUES ('doomed')");
	assert_null(mall_db_exec(a, &st, "SELECT 1/0", 0, NULL));
	assert_int_not_equal(mall_db_commit(a, &st), MALL_OK);
	assert_false(mall_db_in_tx(a));
	assert_int_equal(count_rows(b, "SELECT count(*) FROM t"), 1);

	/* release rolls back an open transaction */
	assert_int_equal(mall_db_begin(a, &st), MALL_OK);
	exec_ok(a, "INSERT INTO t VALUES ('abandoned')");
	mall_db_release(a);
	mall_db_conn *again = mall_db_acquire(db);
	assert_false(mall_db_in_tx(again));
	assert_int_equal(count_rows(again, "SELECT count(*) FROM t"), 1);
	assert_int_equal(count_rows(b, "SELECT count(*) FROM t"), 1);
	mall_db_release(again);
	mall_db_release(b);
	mall_db_close(db);
}

static void
test_survives_restart(void **state)
{
	mall_db_conn *c = mall_db_conn_new(tdb.conninfo);
	mall_status st;
	mall_status_clear(&st);
	exec_ok(c, "CREATE TABLE t (v int)");
	const char *sql = "INSERT INTO t VALUES ($1::int)";
	const char *p[1] = {"1"};
	assert_int_equal(mall_db_exec_cmd(c, &st, sql, 1, p), 1);
	int64_t pid = backend_pid(c);

	kill_backend(pid);
	/* the same statement again: the dead session is replaced, the statement
	 * prepared anew on it, and the insert happens once */
	p[0] = "2";
	assert_int_equal(mall_db_exec_cmd(c, &st, sql, 1, p), 1);
	assert_int_not_equal(backend_pid(c), pid);
	assert_int_equal(count_rows(c, "SELECT count(*) FROM t"), 2);

	/* a transaction can begin right after a loss, too */
	kill_backend(backend_pid(c));
	assert_int_equal(mall_db_begin(c, &st), MALL_OK);
	assert_int_equal(mall_db_commit(c, &st), MALL_OK);
	mall_db_conn_free(c);
}

static void
test_lost_in_transaction(void **state)
{
	mall_db_conn *c = mall_db_conn_new(tdb.conninfo);
	mall_status st;
	mall_status_clear(&st);
	exec_ok(c, "CREATE TABLE t (v int)");
	assert_int_equal(mall_db_begin(c, &st), MALL_OK);
	exec_ok(c, "INSERT INTO t VALUES (1)");
	kill_backend(backend_pid(c));

	assert_int_equal(mall_db_exec_cmd(c, &st, "INSERT INTO t VALUES (2)", 0, NULL), -1);
	assert_int_equal(st.code, MALL_UNAVAILABLE);
	assert_non_null(strstr(st.message, tdb.name));
	/* the unit is gone: later statements must not run outside it */
	assert_true(mall_db_in_tx(c));
	mall_status_clear(&st);
	assert_int_equal(mall_db_exec_cmd(c, &st, "INSERT INTO t VALUES (3)", 0, NULL), -1);
	assert_int_equal(st.code, MALL_UNAVAILABLE);
	assert_null(mall_db_pg(c, &st));
	assert_int_equal(mall_db_commit(c, &st), MALL_UNAVAILABLE);
	mall_db_rollback(c);
	assert_false(mall_db_in_tx(c));

	assert_int_equal(count_rows(c, "SELECT count(*) FROM t"), 0);
	mall_db_conn_free(c);
}

static void
test_unreachable(void **state)
{
	mall_db_conn *c = mall_db_conn_new("host=127.0.0.1 port=1 dbname=mall_nowhere user=x");
	mall_status st;
	mall_status_clear(&st);
	assert_null(mall_db_exec(c, &st, "SELECT 1", 0, NULL));
	assert_int_equal(st.code, MALL_UNAVAILABLE);
	assert_non_null(strstr(st.message, "could not connect to database mall_nowhere"));
	assert_null(mall_db_pg(c, &st));
	assert_int_equal(mall_db_begin(c, &st), MALL_UNAVAILABLE);
	assert_false(mall_db_in_tx(c));
	mall_db_conn_free(c);

	mall_db *db = NULL;
	assert_int_equal(mall_db_open(&db, "host=127.0.0.1 nonsense", 2, &st),
	                 MALL_INVALID_ARGUMENT);
	assert_null(db);
}

#define POOL 3
#define THREADS 8
#define ROUNDS 25

static mall_db *pool;
static atomic_int holding, max_holding, errors;

static void *
worker(void *arg)
{
	char id[16];
	snprintf(id, sizeof(id), "%d", (int)(intptr_t)arg);
	for (int i = 0; i < ROUNDS; i++) {
		mall_db_conn *c = mall_db_acquire(pool);
		int now = atomic_fetch_add(&holding, 1) + 1;
		int seen = atomic_load(&max_holding);
		while (now > seen && !atomic_compare_exchange_weak(&max_holding, &seen, now))
			;
		mall_status st;
		mall_status_clear(&st);
		const char *p[1] = {id};
		if (mall_db_exec_cmd(c, &st,
		                     "INSERT INTO t (thread, backend) "
		                     "VALUES ($1::int, pg_backend_pid())",
		                     1, p) != 1) {
			/* cmocka's assertions are not for other threads: count */
			fprintf(stderr, "insert: %s\n", st.message);
			atomic_fetch_add(&errors, 1);
		}
		atomic_fetch_sub(&holding, 1);
		mall_db_release(c);
	}
	return NULL;
}

static void
test_pool_threads(void **state)
{
	mall_status st;
	mall_status_clear(&st);
	assert_int_equal(mall_db_open(&pool, tdb.conninfo, POOL, &st), MALL_OK);
	mall_db_conn *c = mall_db_acquire(pool);
	exec_ok(c, "CREATE TABLE t (thread int, backend int)");
	mall_db_release(c);
	atomic_store(&holding, 0);
	atomic_store(&max_holding, 0);
	atomic_store(&errors, 0);

	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, worker, (void *)(intptr_t)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);

	assert_int_equal(atomic_load(&errors), 0);
	c = mall_db_acquire(pool);
	assert_int_equal(count_rows(c, "SELECT count(*) FROM t"), THREADS * ROUNDS);
	assert_int_equal(count_rows(c, "SELECT count(DISTINCT thread) FROM t"), THREADS);
	/* never more sessions than the pool has */
	assert_true(count_rows(c, "SELECT count(DISTINCT backend) FROM t") <= POOL);
	assert_true(atomic_load(&max_holding) <= POOL);
	mall_db_release(c);
	mall_db_close(pool);
	pool = NULL;
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_params_verbatim, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_error_codes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_transactions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_survives_restart, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_lost_in_transaction, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pool_threads, setup, teardown),
	    cmocka_unit_test(test_unreachable),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
