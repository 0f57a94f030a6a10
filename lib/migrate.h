/*
 * migrate.h: numbered SQL migrations embedded in the binary.
 *
 * A service's migrations are migrations/<service>/NNNN_what.sql, compiled in by
 * cmake/EmbedMigrations.cmake as `mall_migrations_<service>`; the runtime set
 * (migrations/runtime/, the tables libmall needs) goes first.  mall_migrate
 * takes pg_advisory_lock so concurrent instances apply each file once, applies
 * each pending file in its own transaction, and records its name and SHA-256 in
 * schema_migrations.  An applied file whose checksum changed stops the service:
 * the error names the file.
 */
#ifndef MALL_MIGRATE_H
#define MALL_MIGRATE_H

#include <stddef.h>

#include <libpq-fe.h>

#include "status.h"

typedef struct mall_migration {
	const char *name; /* "catalog/0001_init.sql" */
	const char *sql;  /* NUL-terminated */
	size_t len;
} mall_migration;

typedef struct mall_migration_set {
	const char *name;
	const mall_migration *items;
	size_t count;
} mall_migration_set;

extern const mall_migration_set mall_migrations_runtime;

/* mall_migrate: applies the pending migrations of sets, in order.  Returns
 * MALL_OK, or FAILED_PRECONDITION for a changed applied file, or the error of
 * the failing statement, naming the file. */
mall_code mall_migrate(PGconn *conn, const mall_migration_set *const *sets, size_t nsets,
                       mall_status *st);

#endif
