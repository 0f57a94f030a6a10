/*
 * main.c: mall-catalog, the catalog service.  Wires the runtime: settings,
 * migrations, the database pool, the reply cache, the RPC server and the ops
 * endpoint; then waits for SIGTERM/SIGINT and drains.
 *
 *   mall-catalog            serve
 *   mall-catalog migrate    apply pending migrations and exit
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "catalog.h"
#include "config.h"
#include "idem.h"
#include "log.h"
#include "migrate.h"
#include "ops.h"

extern const mall_migration_set mall_migrations_catalog;

static const mall_rpc_method methods[] = {
    {"ListProducts", catalog_list_products, 0},
    {"GetProduct", catalog_get_product, 0},
    {"ListCategories", catalog_list_categories, 0},
    {"GetStock", catalog_get_stock, 0},
    {"CreateCategory", catalog_create_category, MALL_RPC_MUTATING},
    {"CreateProduct", catalog_create_product, MALL_RPC_MUTATING},
    {"UpdateProduct", catalog_update_product, MALL_RPC_MUTATING},
    {"CreateSku", catalog_create_sku, MALL_RPC_MUTATING},
    {"SetStock", catalog_set_stock, MALL_RPC_MUTATING},
};

typedef struct settings {
	const char *db;
	const char *listen;
	const char *ops_listen;
	int workers;
	int contexts;
	size_t cache_entries;
	int64_t db_wait_ms;
} settings;

static mall_db *pool;

static void *
worker_init(void *arg, int index)
{
	(void)arg;
	(void)index;
	return mall_db_acquire(pool);
}

static void
worker_fini(void *state)
{
	mall_db_release(state);
}

/* Records the idempotency key with the write (lib/idem.c), then, once the write
 * is committed and before the caller hears of it, drops this instance's cache. */
static mall_code
mutate(mall_rpc_ctx *ctx, mall_rpc_handler fn, const ProtobufCMessage *req,
       ProtobufCMessage **reply, mall_status *st)
{
	mall_code code = mall_idem_mutate(ctx, fn, req, reply, st);
	if (code == MALL_OK)
		catalog_cache_invalidate();
	return code;
}

static int
read_settings(settings *s)
{
	mall_config cfg;
	mall_config_init(&cfg);
	s->db = mall_config_str(&cfg, "MALL_CATALOG_DB", NULL);
	if (s->db == NULL)
		mall_config_error(&cfg, "MALL_CATALOG_DB: is required (a libpq conninfo such as "
		                        "\"host=127.0.0.1 port=5432 user=mall_catalog dbname=mall_catalog\")");
	s->listen = mall_config_str(&cfg, "MALL_CATALOG_LISTEN", "tcp://127.0.0.1:7401");
	s->ops_listen = mall_config_listen(&cfg, "MALL_CATALOG_OPS_LISTEN", "127.0.0.1:9401");
	s->workers = (int)mall_config_int(&cfg, "MALL_CATALOG_WORKERS", 8, 1, 256);
	s->contexts = (int)mall_config_int(&cfg, "MALL_CATALOG_CONTEXTS", 64, 1, 4096);
	s->cache_entries =
	    (size_t)mall_config_int(&cfg, "MALL_CATALOG_CACHE_ENTRIES", 4096, 0, 1000000);
	s->db_wait_ms = mall_config_duration_ms(&cfg, "MALL_CATALOG_DB_WAIT", 30000, 0, 3600000);
	return mall_config_check(&cfg);
}

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Applies the migrations, waiting up to db_wait_ms for the database to come up. */
static int
migrate(const settings *s)
{
	mall_db_conn *conn = mall_db_conn_new(s->db);
	int64_t give_up = now_ms() + s->db_wait_ms;
	mall_status st;
	PGconn *pg;
	for (;;) {
		mall_status_clear(&st);
		if ((pg = mall_db_pg(conn, &st)) != NULL || now_ms() >= give_up)
			break;
		mall_log_warn(NULL, "waiting for the catalog database: %s", st.message);
		usleep(500 * 1000);
	}
	if (pg == NULL) {
		mall_log_error(NULL, "could not start: %s", st.message);
		mall_db_conn_free(conn);
		return -1;
	}
	const mall_migration_set *sets[] = {&mall_migrations_runtime, &mall_migrations_catalog};
	mall_code code = mall_migrate(pg, sets, 2, &st);
	mall_db_conn_free(conn);
	if (code != MALL_OK) {
		mall_log_error(NULL, "could not migrate the catalog database: %s", st.message);
		return -1;
	}
	return 0;
}

static int
serve(const settings *s)
{
	mall_status st;
	mall_status_clear(&st);
	mall_ops *ops = NULL;
	mall_rpc_server *srv = NULL;
	int rc = 1;

	if (mall_ops_start(&ops, s->ops_listen, "catalog", &st) != MALL_OK ||
	    mall_db_open(&pool, s->db, s->workers, &st) != MALL_OK ||
	    catalog_cache_start(s->db, s->cache_entries, &st) != MALL_OK)
		goto out;
	mall_rpc_server_opts opts = {
	    .service = "catalog",
	    .listen = s->listen,
	    .contexts = s->contexts,
	    .workers = s->workers,
	    .worker_init = worker_init,
	    .worker_fini = worker_fini,
	    .mutate = mutate,
	};
	if (mall_rpc_server_new(&srv, &opts, &st) != MALL_OK ||
	    mall_rpc_server_add(srv, &mall__catalog__catalog__descriptor, methods,
	                        sizeof(methods) / sizeof(methods[0]), &st) != MALL_OK ||
	    mall_rpc_server_start(srv, &st) != MALL_OK)
		goto out;
	mall_ops_set_ready(ops, true);
	mall_log_info(NULL, "catalog serving rpc on %s, ops on %s, %d workers", s->listen,
	              s->ops_listen, s->workers);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	int sig = 0;
	sigwait(&set, &sig);
	mall_log_info(NULL, "catalog got %s: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	mall_ops_set_ready(ops, false);
	mall_rpc_server_drain(srv, 10000);
	rc = 0;
out:
	if (rc != 0)
		mall_log_error(NULL, "could not start the catalog: %s", st.message);
	mall_rpc_server_free(srv);
	catalog_cache_stop();
	mall_db_close(pool);
	mall_ops_stop(ops);
	if (rc == 0)
		mall_log_info(NULL, "catalog stopped");
	return rc;
}

int
main(int argc, char **argv)
{
	if (mall_log_init("catalog") != 0)
		return 2;
	bool migrate_only = argc == 2 && strcmp(argv[1], "migrate") == 0;
	if (argc > 2 || (argc == 2 && !migrate_only)) {
		fprintf(stderr, "usage: mall-catalog [migrate]\n");
		return 2;
	}
	settings s;
	if (read_settings(&s) != 0)
		return 2;

	/* every thread inherits these: main alone takes the signals, with sigwait */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	if (migrate(&s) != 0)
		return 1;
	if (migrate_only) {
		mall_log_info(NULL, "catalog database is up to date");
		return 0;
	}
	return serve(&s);
}
