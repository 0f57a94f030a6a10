/*
 * testdb.c: throwaway databases for unit tests (see testdb.h).
 */
#include "testdb.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>
#include <libpq-fe.h>

const char *
mall_testdb_admin(void)
{
	const char *admin = getenv("MALL_TEST_PG_ADMIN");
	if (admin == NULL || *admin == '\0') {
		fprintf(stderr, "MALL_TEST_PG_ADMIN is not set: it must be the libpq conninfo of "
		                "a PostgreSQL superuser (script/test sets it)\n");
		return NULL;
	}
	return admin;
}

void
mall_testdb_admin_exec(const char *sql)
{
	const char *admin = mall_testdb_admin();
	if (admin == NULL)
		fail_msg("MALL_TEST_PG_ADMIN is not set");
	PGconn *a = PQconnectdb(admin);
	if (PQstatus(a) != CONNECTION_OK)
		fail_msg("could not connect with MALL_TEST_PG_ADMIN: %s", PQerrorMessage(a));
	PGresult *r = PQexec(a, sql);
	if (PQresultStatus(r) != PGRES_COMMAND_OK && PQresultStatus(r) != PGRES_TUPLES_OK)
		fail_msg("admin query %s failed: %s", sql, PQerrorMessage(a));
	PQclear(r);
	PQfinish(a);
}

void
mall_testdb_create(mall_testdb *db, const char *prefix)
{
	static int seq;
	char sql[160];
	snprintf(db->name, sizeof(db->name), "%s_%d_%d", prefix, (int)getpid(), ++seq);
	snprintf(sql, sizeof(sql), "CREATE DATABASE %s", db->name);
	mall_testdb_admin_exec(sql);
	snprintf(db->conninfo, sizeof(db->conninfo), "%s dbname=%s", mall_testdb_admin(), db->name);
}

void
mall_testdb_drop(const mall_testdb *db)
{
	char sql[160];
	snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", db->name);
	mall_testdb_admin_exec(sql);
}
