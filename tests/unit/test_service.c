/* Unit tests of lib/service.c: usage, settings errors, and `migrate` against a
 * throwaway database (serving is covered by every integration test). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <libpq-fe.h>

#include "support/testdb.h"

#include "service.h"

#define M(n, s) {n, s, sizeof(s) - 1}

static const mall_migration items[] = {
    M("svctest/0001_things.sql", "CREATE TABLE things (id int PRIMARY KEY);"),
    M("svctest/0002_more.sql", "ALTER TABLE things ADD COLUMN name text;"),
};
static const mall_migration_set svctest_migrations = {"svctest", items, 2};

static int read_settings_calls;
static int64_t extra;

static void
read_settings(mall_config *cfg)
{
	read_settings_calls++;
	extra = mall_config_int(cfg, "MALL_SVCTEST_EXTRA", 7, 0, 10);
}

static const mall_service_def def = {
    .name = "svctest",
    .default_listen = "tcp://127.0.0.1:1",
    .default_ops_listen = "127.0.0.1:1",
    .default_workers = 2,
    .max_workers = 4,
    .migrations = &svctest_migrations,
    .read_settings = read_settings,
};

static void
clear_env(void)
{
	const char *vars[] = {"MALL_SVCTEST_DB",         "MALL_SVCTEST_WORKERS",
	                      "MALL_SVCTEST_EXTRA",      "MALL_SVCTEST_DB_WAIT",
	                      "MALL_SVCTEST_OPS_LISTEN", "MALL_SVCTEST_LISTEN",
	                      "MALL_SVCTEST_EVENTS_LISTEN"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
}

static void
test_usage(void **state)
{
	(void)state;
	clear_env();
	char *argv[] = {"mall-svctest", "serve-everything", NULL};
	assert_int_equal(mall_service_main(&def, 2, argv), 2);
	char *argv3[] = {"mall-svctest", "migrate", "now", NULL};
	assert_int_equal(mall_service_main(&def, 3, argv3), 2);
}

static void
test_bad_settings_exit_2(void **state)
{
	(void)state;
	clear_env();
	read_settings_calls = 0;
	char *argv[] = {"mall-svctest", "migrate", NULL};
	/* no database at all */
	assert_int_equal(mall_service_main(&def, 2, argv), 2);
	/* workers above the service's maximum, and the service's own setting bad */
	setenv("MALL_SVCTEST_DB", "host=127.0.0.1 port=1", 1);
	setenv("MALL_SVCTEST_WORKERS", "5", 1);
	setenv("MALL_SVCTEST_EXTRA", "eleven", 1);
	assert_int_equal(mall_service_main(&def, 2, argv), 2);
	assert_int_equal(read_settings_calls, 2);
	clear_env();
}

static void
test_unreachable_database_exits_1(void **state)
{
	(void)state;
	clear_env();
	setenv("MALL_SVCTEST_DB", "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=1", 1);
	setenv("MALL_SVCTEST_DB_WAIT", "0", 1);
	char *argv[] = {"mall-svctest", "migrate", NULL};
	assert_int_equal(mall_service_main(&def, 2, argv), 1);
	clear_env();
}

static void
test_events_listen_defaults_from_the_rpc_address(void **state)
{
	(void)state;
	clear_env();
	mall_service_def events_def = def;
	events_def.events = true;
	char *argv[] = {"mall-svctest", "migrate", NULL};
	setenv("MALL_SVCTEST_DB", "host=127.0.0.1 port=1 dbname=nowhere connect_timeout=1", 1);
	setenv("MALL_SVCTEST_DB_WAIT", "0", 1);
	/* tcp: port + 1000 is the default, so the settings pass (1: no database) */
	setenv("MALL_SVCTEST_LISTEN", "tcp://127.0.0.1:7499", 1);
	assert_int_equal(mall_service_main(&events_def, 2, argv), 1);
	/* no room for port + 1000, no default: the setting is required */
	setenv("MALL_SVCTEST_LISTEN", "tcp://127.0.0.1:65000", 1);
	assert_int_equal(mall_service_main(&events_def, 2, argv), 2);
	setenv("MALL_SVCTEST_LISTEN", "inproc://svctest", 1);
	assert_int_equal(mall_service_main(&events_def, 2, argv), 2);
	setenv("MALL_SVCTEST_EVENTS_LISTEN", "inproc://svctest-events", 1);
	assert_int_equal(mall_service_main(&events_def, 2, argv), 1);
	/* a service that writes no events never asks */
	unsetenv("MALL_SVCTEST_EVENTS_LISTEN");
	assert_int_equal(mall_service_main(&def, 2, argv), 1);
	clear_env();
}

static void
test_migrate_applies_runtime_then_service(void **state)
{
	(void)state;
	clear_env();
	assert_non_null(mall_testdb_admin());
	mall_testdb db;
	mall_testdb_create(&db, "mall_t_service");
	setenv("MALL_SVCTEST_DB", db.conninfo, 1);
	setenv("MALL_SVCTEST_EXTRA", "3", 1);
	char *argv[] = {"mall-svctest", "migrate", NULL};
	assert_int_equal(mall_service_main(&def, 2, argv), 0);
	assert_int_equal(extra, 3);
	assert_int_equal(mall_service_main(&def, 2, argv), 0); /* again: nothing to do */

	PGconn *c = PQconnectdb(db.conninfo);
	assert_int_equal(PQstatus(c), CONNECTION_OK);
	PGresult *r = PQexec(c, "SELECT name FROM schema_migrations ORDER BY applied_at, name");
	assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
	int n = PQntuples(r);
	assert_true(n >= 3);
	/* the runtime set first, the service's last, in order */
	assert_non_null(strstr(PQgetvalue(r, 0, 0), "runtime/"));
	assert_string_equal(PQgetvalue(r, n - 2, 0), "svctest/0001_things.sql");
	assert_string_equal(PQgetvalue(r, n - 1, 0), "svctest/0002_more.sql");
	PQclear(r);
	r = PQexec(c, "INSERT INTO things (id, name) VALUES (1, 'x')");
	assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
	PQclear(r);
	PQfinish(c);
	mall_testdb_drop(&db);
	clear_env();
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_usage),
	    cmocka_unit_test(test_bad_settings_exit_2),
	    cmocka_unit_test(test_unreachable_database_exits_1),
	    cmocka_unit_test(test_events_listen_defaults_from_the_rpc_address),
	    cmocka_unit_test(test_migrate_applies_runtime_then_service),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
