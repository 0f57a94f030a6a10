/*
 * db.c: PostgreSQL connections and a fixed pool of them (libpq).
 *
 * A connection connects when first used and reconnects on the next use after
 * it broke.  Outside a transaction a statement that failed because the
 * connection died is run once more on a new connection; inside one the
 * transaction is marked gone: every statement and the commit answer
 * UNAVAILABLE until the caller rolls back (which never touches the server), so
 * nothing of a half-lost unit can run in autocommit by accident.
 *
 * Statements are prepared once per connection, named s1, s2, ... and found
 * again by their SQL text in a small open-addressing hash table; the table is
 * emptied whenever the session is replaced, because prepared statements live
 * in the server session.
 */
#include "db.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"

typedef struct stmt {
	char *sql; /* NULL: empty slot */
	uint64_t hash;
	unsigned id;
} stmt;

struct mall_db_conn {
	mall_db *db; /* NULL for a connection outside any pool */
	void (*on_commit)(void); /* mall_db_on_commit, for the open transaction */
	char *conninfo;
	char target[64]; /* the database name, for messages */
	PGconn *pg;
	bool in_tx;
	bool tx_gone; /* the connection died inside the open transaction */
	char sqlstate[6];
	stmt *stmts;
	size_t nstmts, cap;
	unsigned next_id;
};

struct mall_db {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int size;
	mall_db_conn **conns;
	mall_db_conn **free; /* stack of idle connections */
	int nfree;
};

/* ---- statement cache ---- */

static uint64_t
hash_sql(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static void
cache_clear(mall_db_conn *c)
{
	for (size_t i = 0; i < c->cap; i++)
		free(c->stmts[i].sql);
	free(c->stmts);
	c->stmts = NULL;
	c->nstmts = c->cap = 0;
	c->next_id = 0;
}

static stmt *
cache_slot(stmt *tab, size_t cap, const char *sql, uint64_t h)
{
	size_t i = (size_t)h & (cap - 1);
	while (tab[i].sql != NULL && (tab[i].hash != h || strcmp(tab[i].sql, sql) != 0))
		i = (i + 1) & (cap - 1);
	return &tab[i];
}

static stmt *
cache_find(mall_db_conn *c, const char *sql, uint64_t h)
{
	if (c->cap == 0)
		return NULL;
	stmt *s = cache_slot(c->stmts, c->cap, sql, h);
	return s->sql != NULL ? s : NULL;
}

static unsigned
cache_add(mall_db_conn *c, const char *sql, uint64_t h)
{
	if ((c->nstmts + 1) * 2 > c->cap) {
		size_t ncap = c->cap ? c->cap * 2 : 16;
		stmt *tab = mall_xcalloc(ncap, sizeof(*tab));
		for (size_t i = 0; i < c->cap; i++) {
			if (c->stmts[i].sql != NULL)
				*cache_slot(tab, ncap, c->stmts[i].sql, c->stmts[i].hash) =
				    c->stmts[i];
		}
		free(c->stmts);
		c->stmts = tab;
		c->cap = ncap;
	}
	stmt *s = cache_slot(c->stmts, c->cap, sql, h);
	s->sql = mall_xstrdup(sql);
	s->hash = h;
	s->id = ++c->next_id;
	c->nstmts++;
	return s->id;
}

/* ---- connecting ---- */

static void
quiet_notice(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

void
mall_db_first_line(char *out, size_t cap, const char *msg)
{
	if (msg == NULL || *msg == '\0')
		msg = "connection lost";
	size_t n = strcspn(msg, "\n");
	while (n > 0 && (msg[n - 1] == ' ' || msg[n - 1] == '\r'))
		n--;
	snprintf(out, cap, "%.*s", (int)n, msg);
}

static void
drop_session(mall_db_conn *c)
{
	if (c->pg != NULL)
		PQfinish(c->pg);
	c->pg = NULL;
	cache_clear(c);
}

/* ensure: a live session, connecting if there is none or it broke.  Must not be
 * called inside a transaction whose session broke (the caller checks). */
static PGconn *
ensure(mall_db_conn *c, mall_status *st)
{
	if (c->pg != NULL && PQstatus(c->pg) == CONNECTION_OK)
		return c->pg;
	drop_session(c);
	/* keywords before dbname are defaults the conninfo string may override */
	const char *keys[] = {"connect_timeout", "fallback_application_name", "dbname", NULL};
	const char *vals[] = {"3", "mall", c->conninfo, NULL};
	PGconn *pg = PQconnectdbParams(keys, vals, 1);
	if (pg == NULL)
		abort(); /* libpq could not allocate */
	if (PQstatus(pg) != CONNECTION_OK) {
		char why[200];
		mall_db_first_line(why, sizeof(why), PQerrorMessage(pg));
		PQfinish(pg);
		memcpy(c->sqlstate, "08001", 6);
		mall_status_set(st, MALL_UNAVAILABLE, "could not connect to database %s: %s",
		                c->target, why);
		return NULL;
	}
	PQsetNoticeProcessor(pg, quiet_notice, NULL);
	c->pg = pg;
	return pg;
}

static bool
broken(const mall_db_conn *c)
{
	return c->pg == NULL || PQstatus(c->pg) == CONNECTION_BAD;
}

/* lost: whether the last failure means the session is gone; a backend that
 * reported its own termination is dropped even if libpq has not seen EOF yet. */
static bool
lost(mall_db_conn *c)
{
	if (broken(c))
		return true;
	if (strncmp(c->sqlstate, "08", 2) == 0 || strcmp(c->sqlstate, "57P01") == 0 ||
	    strcmp(c->sqlstate, "57P02") == 0) {
		drop_session(c);
		return true;
	}
	return false;
}

static mall_code
code_for(const char *state)
{
	if (strcmp(state, "23505") == 0)
		return MALL_ALREADY_EXISTS;
	if (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0)
		return MALL_ABORTED;
	if (strcmp(state, "23514") == 0 || strcmp(state, "23503") == 0 ||
	    strcmp(state, "23502") == 0)
		return MALL_FAILED_PRECONDITION;
	if (strncmp(state, "08", 2) == 0 || strcmp(state, "57P01") == 0 ||
	    strcmp(state, "57P02") == 0 || strcmp(state, "57P03") == 0 ||
	    strcmp(state, "53300") == 0)
		return MALL_UNAVAILABLE;
	if (strcmp(state, "57014") == 0) /* statement_timeout, cancel */
		return MALL_DEADLINE_EXCEEDED;
	return MALL_INTERNAL;
}

/* fail: records the error of res (may be NULL) and sets st; clears res. */
static void
fail(mall_db_conn *c, mall_status *st, PGresult *res, const char *what)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	char why[220];
	if (primary != NULL)
		mall_db_first_line(why, sizeof(why), primary);
	else if (res != NULL && *PQresultErrorMessage(res) != '\0')
		mall_db_first_line(why, sizeof(why), PQresultErrorMessage(res));
	else
		mall_db_first_line(why, sizeof(why), c->pg ? PQerrorMessage(c->pg) : NULL);
	if (state == NULL || strlen(state) != 5)
		state = broken(c) ? "08006" : "XX000";
	memcpy(c->sqlstate, state, 6);
	mall_code code = broken(c) ? MALL_UNAVAILABLE : code_for(state);
	mall_status_set(st, code, "could not %s on %s: %s", what, c->target, why);
	PQclear(res);
}

static mall_code
tx_lost(mall_db_conn *c, mall_status *st)
{
	c->tx_gone = true;
	memcpy(c->sqlstate, "08006", 6);
	return mall_status_set(st, MALL_UNAVAILABLE,
	                       "the transaction on %s was lost with its connection", c->target);
}

/* ---- connections ---- */

static mall_db_conn *
conn_new(mall_db *db, const char *conninfo)
{
	mall_db_conn *c = mall_xcalloc(1, sizeof(*c));
	c->db = db;
	c->conninfo = mall_xstrdup(conninfo);
	/* name the database in messages as libpq would resolve it */
	const char *name = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, NULL);
	if (opts != NULL) {
		for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
			if (strcmp(o->keyword, "dbname") == 0 && o->val && *o->val)
				name = o->val;
		}
		for (PQconninfoOption *o = opts; name == NULL && o->keyword != NULL; o++) {
			if (strcmp(o->keyword, "user") == 0 && o->val && *o->val)
				name = o->val;
		}
	}
	snprintf(c->target, sizeof(c->target), "%s", name ? name : "the database");
	PQconninfoFree(opts);
	return c;
}

mall_db_conn *
mall_db_conn_new(const char *conninfo)
{
	return conn_new(NULL, conninfo);
}

void
mall_db_conn_free(mall_db_conn *c)
{
	if (c == NULL)
		return;
	drop_session(c);
	free(c->conninfo);
	free(c);
}

PGconn *
mall_db_pg(mall_db_conn *c, mall_status *st)
{
	if (c->in_tx && (c->tx_gone || broken(c))) {
		tx_lost(c, st);
		return NULL;
	}
	return ensure(c, st);
}

/* run: one attempt at sql on the current session. */
static PGresult *
run(mall_db_conn *c, mall_status *st, const char *sql, int nparams, const char *const *params)
{
	PGconn *pg = c->pg;
	uint64_t h = hash_sql(sql);
	stmt *s = cache_find(c, sql, h);
	char name[16];
	if (s == NULL) {
		snprintf(name, sizeof(name), "s%u", c->next_id + 1);
		PGresult *res = PQprepare(pg, name, sql, 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			fail(c, st, res, "prepare query");
			return NULL;
		}
		PQclear(res);
		cache_add(c, sql, h);
	} else {
		snprintf(name, sizeof(name), "s%u", s->id);
	}
	PGresult *res = PQexecPrepared(pg, name, nparams, params, NULL, NULL, 0);
	ExecStatusType rs = PQresultStatus(res);
	if (rs == PGRES_TUPLES_OK || rs == PGRES_COMMAND_OK) {
		c->sqlstate[0] = '\0';
		return res;
	}
	fail(c, st, res, "run query");
	return NULL;
}

PGresult *
mall_db_exec(mall_db_conn *c, mall_status *st, const char *sql, int nparams,
             const char *const *params)
{
	for (int attempt = 0;; attempt++) {
		if (mall_db_pg(c, st) == NULL)
			return NULL;
		PGresult *res = run(c, st, sql, nparams, params);
		if (res != NULL || !lost(c))
			return res;
		if (c->in_tx) {
			tx_lost(c, st);
			return NULL;
		}
		if (attempt == 1)
			return NULL; /* st says UNAVAILABLE */
	}
}

int64_t
mall_db_exec_cmd(mall_db_conn *c, mall_status *st, const char *sql, int nparams,
                 const char *const *params)
{
	PGresult *res = mall_db_exec(c, st, sql, nparams, params);
	if (res == NULL)
		return -1;
	int64_t n = strtoll(PQcmdTuples(res), NULL, 10);
	PQclear(res);
	return n;
}

/* simple: a parameterless utility statement (BEGIN, COMMIT, ROLLBACK). */
static PGresult *
simple(mall_db_conn *c, mall_status *st, const char *sql, const char *what)
{
	PGresult *res = PQexec(c->pg, sql);
	if (PQresultStatus(res) == PGRES_COMMAND_OK)
		return res;
	fail(c, st, res, what);
	return NULL;
}

mall_code
mall_db_begin(mall_db_conn *c, mall_status *st)
{
	if (c->in_tx)
		return mall_status_set(st, MALL_FAILED_PRECONDITION,
		                       "could not begin a transaction on %s: one is open already",
		                       c->target);
	for (int attempt = 0;; attempt++) {
		if (ensure(c, st) == NULL)
			return st->code;
		PGresult *res = simple(c, st, "BEGIN", "begin a transaction");
		if (res != NULL) {
			PQclear(res);
			c->in_tx = true;
			c->tx_gone = false;
			c->on_commit = NULL;
			return MALL_OK;
		}
		if (!lost(c) || attempt == 1)
			return st->code;
	}
}

mall_code
mall_db_commit(mall_db_conn *c, mall_status *st)
{
	if (!c->in_tx)
		return mall_status_set(st, MALL_FAILED_PRECONDITION,
		                       "could not commit on %s: no transaction is open", c->target);
	if (c->tx_gone || broken(c)) {
		c->in_tx = c->tx_gone = false;
		c->on_commit = NULL;
		memcpy(c->sqlstate, "08006", 6);
		return mall_status_set(st, MALL_UNAVAILABLE,
		                       "the transaction on %s was lost with its connection",
		                       c->target);
	}
	bool failed = PQtransactionStatus(c->pg) == PQTRANS_INERROR;
	PGresult *res = simple(c, st, "COMMIT", "commit");
	c->in_tx = false;
	void (*hook)(void) = c->on_commit;
	c->on_commit = NULL;
	if (res == NULL) {
		if (!broken(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
			PQclear(PQexec(c->pg, "ROLLBACK"));
		return st->code;
	}
	/* COMMIT of a transaction that had an error answers ROLLBACK */
	if (failed || strcmp(PQcmdStatus(res), "ROLLBACK") == 0) {
		PQclear(res);
		memcpy(c->sqlstate, "25P02", 6);
		return mall_status_set(st, MALL_ABORTED,
		                       "could not commit on %s: the transaction was aborted by an "
		                       "earlier error",
		                       c->target);
	}
	PQclear(res);
	if (hook != NULL)
		hook();
	return MALL_OK;
}

void
mall_db_on_commit(mall_db_conn *c, void (*fn)(void))
{
	if (c->in_tx)
		c->on_commit = fn;
}

void
mall_db_rollback(mall_db_conn *c)
{
	bool gone = c->tx_gone;
	c->on_commit = NULL;
	c->in_tx = c->tx_gone = false;
	if (gone || broken(c))
		return;
	if (PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		PQclear(PQexec(c->pg, "ROLLBACK"));
}

bool
mall_db_in_tx(const mall_db_conn *c)
{
	return c->in_tx;
}

const char *
mall_db_sqlstate(const mall_db_conn *c)
{
	return c->sqlstate;
}

int64_t
mall_db_int64(const PGresult *res, int row, int col)
{
	return strtoll(PQgetvalue(res, row, col), NULL, 10);
}

bool
mall_db_bool(const PGresult *res, int row, int col)
{
	const char *v = PQgetvalue(res, row, col);
	return v[0] == 't' || v[0] == '1';
}

/* ---- the pool ---- */

mall_code
mall_db_open(mall_db **out, const char *conninfo, int size, mall_status *st)
{
	*out = NULL;
	if (size < 1)
		return mall_status_set(st, MALL_INVALID_ARGUMENT,
		                       "could not open a database pool of %d connections", size);
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
	if (opts == NULL) {
		char why[200];
		mall_db_first_line(why, sizeof(why), err ? err : "out of memory");
		PQfreemem(err);
		return mall_status_set(st, MALL_INVALID_ARGUMENT,
		                       "invalid database connection string: %s", why);
	}
	PQconninfoFree(opts);
	mall_db *db = mall_xcalloc(1, sizeof(*db));
	pthread_mutex_init(&db->mu, NULL);
	pthread_cond_init(&db->cv, NULL);
	db->size = size;
	db->conns = mall_xcalloc((size_t)size, sizeof(*db->conns));
	db->free = mall_xcalloc((size_t)size, sizeof(*db->free));
	for (int i = 0; i < size; i++)
		db->conns[i] = conn_new(db, conninfo);
	for (int i = 0; i < size; i++)
		db->free[i] = db->conns[size - 1 - i];
	db->nfree = size;
	*out = db;
	return MALL_OK;
}

void
mall_db_close(mall_db *db)
{
	if (db == NULL)
		return;
	for (int i = 0; i < db->size; i++)
		mall_db_conn_free(db->conns[i]);
	free(db->conns);
	free(db->free);
	pthread_cond_destroy(&db->cv);
	pthread_mutex_destroy(&db->mu);
	free(db);
}

mall_db_conn *
mall_db_acquire(mall_db *db)
{
	pthread_mutex_lock(&db->mu);
	while (db->nfree == 0)
		pthread_cond_wait(&db->cv, &db->mu);
	mall_db_conn *c = db->free[--db->nfree];
	pthread_mutex_unlock(&db->mu);
	return c;
}

void
mall_db_release(mall_db_conn *c)
{
	if (c == NULL)
		return;
	mall_db_rollback(c);
	/* a transaction begun by hand (exec "BEGIN") must not leak either */
	if (!broken(c) && PQtransactionStatus(c->pg) != PQTRANS_IDLE)
		PQclear(PQexec(c->pg, "ROLLBACK"));
	c->sqlstate[0] = '\0';
	mall_db *db = c->db;
	if (db == NULL)
		return;
	pthread_mutex_lock(&db->mu);
	db->free[db->nfree++] = c;
	pthread_cond_signal(&db->cv);
	pthread_mutex_unlock(&db->mu);
}
