/*
 * test_migrate.c: migrations against a real server (MALL_TEST_PG_ADMIN).
 *
 * Migration sets are built by hand here; each test gets a fresh database
 * mall_t_migrate_<pid>_<n>, dropped afterwards.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sodium.h>

#include "support/testdb.h"
#include "migrate.h"

/* advisory locks held in this test's database (other tests run beside it) */
#define OUR_ADVISORY_LOCKS                                                                     \
	"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "            \
	"(SELECT oid FROM pg_database WHERE datname = current_database())"

static mall_testdb tdb;

#define M(n, s)                                                                                    \
	{                                                                                          \
		n, s, sizeof(s) - 1                                                                \
	}


static int
group_setup(void **state)
{
	if (mall_testdb_admin() == NULL)
		return -1;
	return sodium_init() < 0 ? -1 : 0;
}

static int
setup(void **state)
{
	mall_testdb_create(&tdb, "mall_t_migrate");
	return 0;
}

static int
teardown(void **state)
{
	mall_testdb_drop(&tdb);
	return 0;
}

static PGconn *
connect_db(void)
{
	PGconn *c = PQconnectdb(tdb.conninfo);
	if (PQstatus(c) != CONNECTION_OK)
		fail_msg("could not connect to %s: %s", tdb.name, PQerrorMessage(c));
	PQclear(PQexec(c, "SET client_min_messages = warning"));
	return c;
}

/* query1: the single value of sql ("" for no row), copied into buf. */
static const char *
query1(PGconn *c, const char *sql, char *buf, size_t cap)
{
	PGresult *r = PQexec(c, sql);
	if (PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	snprintf(buf, cap, "%s", PQntuples(r) ? PQgetvalue(r, 0, 0) : "");
	PQclear(r);
	return buf;
}

static long
count(PGconn *c, const char *sql)
{
	char buf[32];
	return atol(query1(c, sql, buf, sizeof(buf)));
}

static bool
table_exists(PGconn *c, const char *name)
{
	char sql[160], buf[8];
	snprintf(sql, sizeof(sql), "SELECT to_regclass('%s') IS NOT NULL", name);
	return strcmp(query1(c, sql, buf, sizeof(buf)), "t") == 0;
}

static void
sha256_hex(char out[65], const char *s)
{
	unsigned char h[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(h, (const unsigned char *)s, strlen(s));
	sodium_bin2hex(out, 65, h, sizeof(h));
}

static const mall_migration shop_items[] = {
    M("shop/0001_items.sql", "CREATE TABLE items (id int PRIMARY KEY, name text);\n"
                             "INSERT INTO items VALUES (1, 'first');\n"),
    M("shop/0002_price.sql", "ALTER TABLE items ADD COLUMN price bigint NOT NULL DEFAULT 0;\n"
                             "UPDATE items SET price = 100;\n"),
};
static const mall_migration_set shop = {"shop", shop_items, 2};

static const mall_migration more_items[] = {
    M("more/0001_tags.sql", "CREATE TABLE tags (item int REFERENCES items (id), tag text);"),
};
static const mall_migration_set more = {"more", more_items, 1};

static void
test_applies_in_order(void **state)
{
	PGconn *c = connect_db();
	mall_status st;
	mall_status_clear(&st);
	const mall_migration_set *sets[] = {&mall_migrations_runtime, &shop, &more};
	assert_int_equal(mall_migrate(c, sets, 3, &st), MALL_OK);
	assert_int_equal(st.code, MALL_OK);

	assert_true(table_exists(c, "rpc_idempotency"));
	assert_true(table_exists(c, "tags"));
	assert_int_equal(count(c, "SELECT count(*) FROM items WHERE price = 100"), 1);
	long nruntime = (long)mall_migrations_runtime.count;
	assert_int_equal(count(c, "SELECT count(*) FROM schema_migrations"), nruntime + 3);

	char want[65], buf[80];
	sha256_hex(want, shop_items[1].sql);
	assert_string_equal(query1(c,
	                           "SELECT checksum FROM schema_migrations "
	                           "WHERE name = 'shop/0002_price.sql'",
	                           buf, sizeof(buf)),
	                    want);
	/* applied in the order given: runtime, then shop, then more */
	assert_string_equal(query1(c,
	                           "SELECT string_agg(name, ',' ORDER BY applied_at, name) "
	                           "FROM schema_migrations WHERE name NOT LIKE 'runtime/%'",
	                           buf, sizeof(buf)),
	                    "shop/0001_items.sql,shop/0002_price.sql,more/0001_tags.sql");

	/* a second run applies nothing new: the INSERT of 0001 would add a row */
	assert_int_equal(mall_migrate(c, sets, 3, &st), MALL_OK);
	assert_int_equal(count(c, "SELECT count(*) FROM items"), 1);
	assert_int_equal(count(c, "SELECT count(*) FROM schema_migrations"), nruntime + 3);
	assert_int_equal(count(c, OUR_ADVISORY_LOCKS), 0);
	PQfinish(c);
}

static void
test_incremental(void **state)
{
	/* 0002 needs 0001's table: applied out of order it would fail */
	PGconn *c = connect_db();
	mall_status st;
	mall_status_clear(&st);
	const mall_migration_set *sets[] = {&shop};
	assert_int_equal(mall_migrate(c, sets, 1, &st), MALL_OK);
	/* a later set run on top of an earlier one */
	const mall_migration_set *both[] = {&shop, &more};
	assert_int_equal(mall_migrate(c, both, 2, &st), MALL_OK);
	assert_true(table_exists(c, "tags"));
	PQfinish(c);
}

static const mall_migration slow_items[] = {
    M("slow/0001_once.sql", "CREATE TABLE once (v int);\n"
                            "INSERT INTO once VALUES (1);\n"
                            "SELECT pg_sleep(0.3);\n"),
    M("slow/0002_twice.sql", "INSERT INTO once VALUES (2);\n"),
};
static const mall_migration_set slow = {"slow", slow_items, 2};

static void *
migrate_thread(void *arg)
{
	mall_status *st = arg;
	PGconn *c = PQconnectdb(tdb.conninfo);
	const mall_migration_set *sets[] = {&slow};
	if (PQstatus(c) != CONNECTION_OK) {
		mall_status_set(st, MALL_UNAVAILABLE, "%s", PQerrorMessage(c));
	} else {
		PQclear(PQexec(c, "SET client_min_messages = warning"));
		mall_migrate(c, sets, 1, st);
	}
	PQfinish(c);
	return NULL;
}

static void
test_concurrent_once(void **state)
{
	pthread_t th[3];
	mall_status st[3];
	for (int i = 0; i < 3; i++) {
		mall_status_clear(&st[i]);
		pthread_create(&th[i], NULL, migrate_thread, &st[i]);
	}
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	for (int i = 0; i < 3; i++)
		assert_int_equal(st[i].code, MALL_OK);
	PGconn *c = connect_db();
	assert_int_equal(count(c, "SELECT count(*) FROM once"), 2);
	assert_int_equal(count(c, "SELECT count(*) FROM schema_migrations"), 2);
	PQfinish(c);
}

static void
test_changed_file(void **state)
{
	PGconn *c = connect_db();
	mall_status st;
	mall_status_clear(&st);
	const mall_migration_set *sets[] = {&shop};
	assert_int_equal(mall_migrate(c, sets, 1, &st), MALL_OK);

	static const mall_migration edited_items[] = {
	    M("shop/0001_items.sql", "CREATE TABLE items (id int PRIMARY KEY, name text);\n"
	                             "INSERT INTO items VALUES (1, 'edited');\n"),
	    M("shop/0002_price.sql",
	      "ALTER TABLE items ADD COLUMN price bigint NOT NULL DEFAULT 0;\n"
	      "UPDATE items SET price = 100;\n"),
	    M("shop/0003_new.sql", "CREATE TABLE newer (v int);"),
	};
	static const mall_migration_set edited = {"shop", edited_items, 3};
	const mall_migration_set *esets[] = {&edited};
	assert_int_equal(mall_migrate(c, esets, 1, &st), MALL_FAILED_PRECONDITION);
	assert_non_null(strstr(st.message, "migration shop/0001_items.sql was changed after it "
	                                   "was applied"));
	char sum[65], prefix[16];
	sha256_hex(sum, edited_items[0].sql);
	snprintf(prefix, sizeof(prefix), "%.12s", sum);
	assert_non_null(strstr(st.message, prefix));
	/* nothing more was applied, and the lock is free again */
	assert_false(table_exists(c, "newer"));
	assert_int_equal(count(c, OUR_ADVISORY_LOCKS), 0);
	PQfinish(c);
}

static void
test_failing_file(void **state)
{
	static const mall_migration items[] = {
	    M("bad/0001_ok.sql", "CREATE TABLE fine (v int);"),
	    M("bad/0002_broken.sql", "CREATE TABLE half (v int);\n"
	                             "INSERT INTO half VALUES (1);\n"
	                             "INSERT INTO nowhere VALUES (1);\n"),
	    M("bad/0003_after.sql", "CREATE TABLE after (v int);"),
	};
	static const mall_migration_set bad = {"bad", items, 3};
	PGconn *c = connect_db();
	mall_status st;
	mall_status_clear(&st);
	const mall_migration_set *sets[] = {&bad};
	assert_int_not_equal(mall_migrate(c, sets, 1, &st), MALL_OK);
	assert_int_not_equal(st.code, MALL_OK);
	assert_non_null(strstr(st.message, "bad/0002_broken.sql"));
	assert_non_null(strstr(st.message, "nowhere"));

	assert_true(table_exists(c, "fine"));
	assert_false(table_exists(c, "half"));
	assert_false(table_exists(c, "after"));
	assert_int_equal(count(c, "SELECT count(*) FROM schema_migrations"), 1);
	assert_int_equal(count(c, OUR_ADVISORY_LOCKS), 0);
	assert_int_equal(PQtransactionStatus(c), PQTRANS_IDLE);

	/* fixed, it applies on the next run */
	static const mall_migration fixed_items[] = {
	    M("bad/0001_ok.sql", "CREATE TABLE fine (v int);"),
	    M("bad/0002_broken.sql", "CREATE TABLE half (v int);\n"),
	    M("bad/0003_after.sql", "CREATE TABLE after (v int);"),
	};
	static const mall_migration_set fixed = {"bad", fixed_items, 3};
	const mall_migration_set *fsets[] = {&fixed};
	assert_int_equal(mall_migrate(c, fsets, 1, &st), MALL_OK);
	assert_true(table_exists(c, "after"));
	PQfinish(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_applies_in_order, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_incremental, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_concurrent_once, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_changed_file, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_failing_file, setup, teardown),
	};
	return cmocka_run_group_tests(tests, group_setup, NULL);
}
