/*
 * db.h: PostgreSQL through libpq.
 *
 * A mall_db is a fixed pool of connections to one database.  A connection that
 * broke (database restart, network) is re-established when next used; a query
 * that fails because the connection died outside a transaction is retried once
 * on the new connection.  Inside a transaction a lost connection is UNAVAILABLE
 * and the transaction is gone (the caller retries the whole unit).
 *
 * Parameterized queries only: parameters are text (NULL is SQL NULL); the SQL is
 * a constant.  Statements are prepared once per connection and cached by their
 * text.  SQLSTATE maps to status codes: unique_violation -> ALREADY_EXISTS,
 * serialization_failure/deadlock -> ABORTED, check/foreign-key/not-null
 * violations -> FAILED_PRECONDITION, connection failures -> UNAVAILABLE, the
 * rest -> INTERNAL.  The SQLSTATE of the last error is kept (mall_db_sqlstate).
 */
#ifndef MALL_DB_H
#define MALL_DB_H

#include <stdbool.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "status.h"

typedef struct mall_db mall_db;
typedef struct mall_db_conn mall_db_conn;

/* mall_db_open: a pool of size connections (opened lazily) to conninfo. */
mall_code mall_db_open(mall_db **out, const char *conninfo, int size, mall_status *st);
/* mall_db_close: closes every connection; none may be acquired. NULL is ok. */
void mall_db_close(mall_db *db);

/* mall_db_acquire: a connection for the caller's exclusive use; waits while all
 * are taken.  Never NULL: a broken connection reconnects on first use. */
mall_db_conn *mall_db_acquire(mall_db *db);
/* mall_db_release: gives it back; an open transaction is rolled back first. */
void mall_db_release(mall_db_conn *c);

/* mall_db_conn_new: one connection outside any pool (LISTEN, migrations); the
 * caller owns it and frees it with mall_db_conn_free. */
mall_db_conn *mall_db_conn_new(const char *conninfo);
void mall_db_conn_free(mall_db_conn *c);

/* mall_db_pg: the underlying PGconn, (re)connected; NULL with st UNAVAILABLE
 * when the database cannot be reached. */
PGconn *mall_db_pg(mall_db_conn *c, mall_status *st);

/* mall_db_exec: runs sql with nparams text parameters.  Returns a result with
 * PGRES_TUPLES_OK or PGRES_COMMAND_OK that the caller PQclear()s, or NULL with
 * st set. */
PGresult *mall_db_exec(mall_db_conn *c, mall_status *st, const char *sql, int nparams,
                       const char *const *params);
/* mall_db_exec_cmd: as mall_db_exec for statements whose result is not needed;
 * returns the rows affected, or -1 with st set. */
int64_t mall_db_exec_cmd(mall_db_conn *c, mall_status *st, const char *sql, int nparams,
                         const char *const *params);

/* mall_db_on_commit: fn runs once the transaction open on c has committed
 * (not after a rollback or a failed commit); one per transaction, the last
 * set wins.  outbox.c wakes its relay with it. */
void mall_db_on_commit(mall_db_conn *c, void (*fn)(void));
/* Transactions. begin fails if one is open; commit reports a failed commit
 * (e.g. serialization) as its status; rollback never fails. */
mall_code mall_db_begin(mall_db_conn *c, mall_status *st);
mall_code mall_db_commit(mall_db_conn *c, mall_status *st);
void mall_db_rollback(mall_db_conn *c);
bool mall_db_in_tx(const mall_db_conn *c);

/* mall_db_sqlstate: the SQLSTATE of the last failed statement ("" if none). */
const char *mall_db_sqlstate(const mall_db_conn *c);

/* mall_db_first_line: the first line of a libpq message (trailing blanks cut),
 * or "connection lost" for none, into out. */
void mall_db_first_line(char *out, size_t cap, const char *msg);

/* Helpers to read results: the value of row r, column c, parsed. */
int64_t mall_db_int64(const PGresult *res, int row, int col);
bool mall_db_bool(const PGresult *res, int row, int col);

#endif
