/*
 * testdb.h: throwaway databases for unit tests, in the PostgreSQL cluster whose
 * superuser conninfo is MALL_TEST_PG_ADMIN (script/test sets it).  A test that
 * needs one fails, never skips, when the variable is missing.
 */
#ifndef MALL_TESTDB_H
#define MALL_TESTDB_H

#include <stddef.h>

typedef struct mall_testdb {
	char name[64];      /* <prefix>_<pid>_<n> */
	char conninfo[512]; /* the admin conninfo with dbname=name */
} mall_testdb;

/* mall_testdb_admin: MALL_TEST_PG_ADMIN, or NULL after printing why it is needed. */
const char *mall_testdb_admin(void);
/* mall_testdb_admin_exec: runs sql as the superuser; fails the test on error. */
void mall_testdb_admin_exec(const char *sql);
/* mall_testdb_create: a new empty database named after prefix; fails the test
 * on error. */
void mall_testdb_create(mall_testdb *db, const char *prefix);
/* mall_testdb_drop: drops it, closing any session still on it. */
void mall_testdb_drop(const mall_testdb *db);

#endif
