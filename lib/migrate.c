/*
 * migrate.c: applies embedded SQL migrations, each file once.
 *
 * Every instance of a service migrates its database at start, so the work runs
 * under a session-level pg_advisory_lock (advisory locks are per database):
 * the first instance applies, the others wait and then find nothing pending.
 * The checksums of all applied files are verified before anything is applied,
 * so a changed file stops the service without half-applying the rest.  Each
 * pending file runs with its record in one transaction: a failing file leaves
 * nothing behind, and the files before it stay applied.
 */
#include "migrate.h"

#include "db.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "alloc.h"

/* the advisory lock key: "mallmigr" in ASCII */
#define LOCK_SQL "SELECT pg_advisory_lock(7881700035822970738)"
#define UNLOCK_SQL "SELECT pg_advisory_unlock(7881700035822970738)"

typedef struct applied {
	char *name;
	char *checksum;
} applied;

/* why: the primary message of a failed result (or of the connection). */
static void
why(char *out, size_t cap, PGconn *conn, const PGresult *res)
{
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	mall_db_first_line(out, cap, primary ? primary : PQerrorMessage(conn));
}

static mall_code
code_of(PGconn *conn)
{
	return PQstatus(conn) == CONNECTION_OK ? MALL_INTERNAL : MALL_UNAVAILABLE;
}

/* cmd: runs a parameterless statement; on error sets st from what. */
static bool
cmd(PGconn *conn, const char *sql, mall_status *st, const char *what)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType rs = PQresultStatus(res);
	if (rs == PGRES_COMMAND_OK || rs == PGRES_TUPLES_OK) {
		PQclear(res);
		return true;
	}
	char msg[200];
	why(msg, sizeof(msg), conn, res);
	PQclear(res);
	mall_status_set(st, code_of(conn), "could not %s: %s", what, msg);
	return false;
}

static void
checksum(char hex[65], const char *sql, size_t len)
{
	unsigned char h[crypto_hash_sha256_BYTES];
	crypto_hash_sha256(h, (const unsigned char *)sql, len);
	sodium_bin2hex(hex, 65, h, sizeof(h));
}

static const applied *
find(const applied *a, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(a[i].name, name) == 0)
			return &a[i];
	}
	return NULL;
}

/* apply: one file and its record in a transaction. */
static mall_code
apply(PGconn *conn, const mall_migration *m, const char *sum, mall_status *st)
{
	char msg[200];
	if (!cmd(conn, "BEGIN", st, "begin a transaction for migrations"))
		return st->code;
	PGresult *res = PQexec(conn, m->sql);
	ExecStatusType rs = PQresultStatus(res);
	if (rs != PGRES_COMMAND_OK && rs != PGRES_TUPLES_OK && rs != PGRES_EMPTY_QUERY) {
		why(msg, sizeof(msg), conn, res);
		PQclear(res);
		mall_code code = code_of(conn);
		PQclear(PQexec(conn, "ROLLBACK"));
		return mall_status_set(st, code, "could not apply migration %s: %s", m->name, msg);
	}
	PQclear(res);
	if (PQtransactionStatus(conn) != PQTRANS_INTRANS) {
		/* the file ended the transaction itself (COMMIT/ROLLBACK in it) */
		PQclear(PQexec(conn, "ROLLBACK"));
		return mall_status_set(st, MALL_INTERNAL,
		                       "could not apply migration %s: it must not end the "
		                       "transaction it runs in",
		                       m->name);
	}
	const char *params[2] = {m->name, sum};
	res = PQexecParams(conn, "INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)",
	                   2, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		why(msg, sizeof(msg), conn, res);
		PQclear(res);
		mall_code code = code_of(conn);
		PQclear(PQexec(conn, "ROLLBACK"));
		return mall_status_set(st, code, "could not record migration %s: %s", m->name, msg);
	}
	PQclear(res);
	res = PQexec(conn, "COMMIT");
	if (PQresultStatus(res) != PGRES_COMMAND_OK || strcmp(PQcmdStatus(res), "COMMIT") != 0) {
		why(msg, sizeof(msg), conn, res);
		PQclear(res);
		return mall_status_set(st, code_of(conn), "could not commit migration %s: %s",
		                       m->name, msg);
	}
	PQclear(res);
	return MALL_OK;
}

/* migrate_locked: the work done while holding the advisory lock. */
static mall_code
migrate_locked(PGconn *conn, const mall_migration_set *const *sets, size_t nsets, mall_status *st)
{
	if (!cmd(conn,
	         "CREATE TABLE IF NOT EXISTS schema_migrations ("
	         "name text PRIMARY KEY, checksum text NOT NULL, "
	         "applied_at timestamptz NOT NULL DEFAULT now())",
	         st, "create table schema_migrations"))
		return st->code;
	PGresult *res = PQexec(conn, "SELECT name, checksum FROM schema_migrations");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		char msg[200];
		why(msg, sizeof(msg), conn, res);
		PQclear(res);
		return mall_status_set(st, code_of(conn),
		                       "could not read table schema_migrations: %s", msg);
	}
	size_t napplied = (size_t)PQntuples(res);
	applied *done = mall_xcalloc(napplied ? napplied : 1, sizeof(*done));
	for (size_t i = 0; i < napplied; i++) {
		done[i].name = mall_xstrdup(PQgetvalue(res, (int)i, 0));
		done[i].checksum = mall_xstrdup(PQgetvalue(res, (int)i, 1));
	}
	PQclear(res);

	mall_code rc = MALL_OK;
	char sum[65];
	/* verify every applied file first: a changed one stops everything */
	for (size_t s = 0; s < nsets && rc == MALL_OK; s++) {
		for (size_t i = 0; i < sets[s]->count && rc == MALL_OK; i++) {
			const mall_migration *m = &sets[s]->items[i];
			const applied *a = find(done, napplied, m->name);
			if (a == NULL)
				continue;
			checksum(sum, m->sql, m->len);
			if (strcmp(a->checksum, sum) != 0)
				rc = mall_status_set(
				    st, MALL_FAILED_PRECONDITION,
				    "migration %s was changed after it was applied (recorded "
				    "checksum %.12s..., file has %.12s...): restore the file and "
				    "add a new migration instead",
				    m->name, a->checksum, sum);
		}
	}
	for (size_t s = 0; s < nsets && rc == MALL_OK; s++) {
		for (size_t i = 0; i < sets[s]->count && rc == MALL_OK; i++) {
			const mall_migration *m = &sets[s]->items[i];
			if (find(done, napplied, m->name) != NULL)
				continue;
			checksum(sum, m->sql, m->len);
			rc = apply(conn, m, sum, st);
		}
	}
	for (size_t i = 0; i < napplied; i++) {
		free(done[i].name);
		free(done[i].checksum);
	}
	free(done);
	return rc;
}

mall_code
mall_migrate(PGconn *conn, const mall_migration_set *const *sets, size_t nsets, mall_status *st)
{
	if (sodium_init() < 0)
		return mall_status_set(st, MALL_INTERNAL,
		                       "could not migrate: libsodium failed to initialize");
	if (conn == NULL || PQstatus(conn) != CONNECTION_OK)
		return mall_status_set(st, MALL_UNAVAILABLE,
		                       "could not migrate: no connection to the database");
	if (PQtransactionStatus(conn) != PQTRANS_IDLE)
		return mall_status_set(st, MALL_FAILED_PRECONDITION,
		                       "could not migrate database %s: a transaction is open",
		                       PQdb(conn));
	if (!cmd(conn, LOCK_SQL, st, "take the migration lock"))
		return st->code;
	mall_code rc = migrate_locked(conn, sets, nsets, st);
	if (PQstatus(conn) == CONNECTION_OK) {
		if (PQtransactionStatus(conn) != PQTRANS_IDLE)
			PQclear(PQexec(conn, "ROLLBACK"));
		PQclear(PQexec(conn, UNLOCK_SQL));
	}
	if (rc == MALL_OK)
		mall_status_clear(st);
	return rc;
}
