/*
 * service.c: the process life every service shares (see service.h).
 */
#include "service.h"

#include <ctype.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "idem.h"
#include "log.h"
#include "ops.h"
#include "outbox.h"

typedef struct settings {
	const char *db;
	const char *listen;
	const char *ops_listen;
	int workers;
	int contexts;
	int64_t db_wait_ms;
	const char *events_listen; /* NULL: the service writes no events */
	char events_default[600];
} settings;

static mall_db *pool; /* one connection per worker */

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

/* MALL_<NAME>_<what> into buf. */
static const char *
var(char *buf, size_t cap, const char *name, const char *what)
{
	int n = snprintf(buf, cap, "MALL_%s_%s", name, what);
	for (int i = 5; i < n && buf[i] != '\0'; i++)
		buf[i] = (char)toupper((unsigned char)buf[i]);
	return buf;
}

static int
read_settings(const mall_service_def *def, settings *s)
{
	mall_config cfg;
	mall_config_init(&cfg);
	char v[64];
	s->events_listen = NULL;
	s->db = mall_config_str(&cfg, var(v, sizeof(v), def->name, "DB"), NULL);
	if (s->db == NULL)
		mall_config_error(&cfg,
		                  "%s: is required (a libpq conninfo such as \"host=127.0.0.1 "
		                  "port=5432 user=mall_%s dbname=mall_%s\")",
		                  v, def->name, def->name);
	s->listen = mall_config_str(&cfg, var(v, sizeof(v), def->name, "LISTEN"),
	                            def->default_listen);
	s->ops_listen = mall_config_listen(&cfg, var(v, sizeof(v), def->name, "OPS_LISTEN"),
	                                   def->default_ops_listen);
	s->workers = (int)mall_config_int(&cfg, var(v, sizeof(v), def->name, "WORKERS"),
	                                  def->default_workers, 1, def->max_workers);
	s->contexts =
	    (int)mall_config_int(&cfg, var(v, sizeof(v), def->name, "CONTEXTS"), 64, 1, 4096);
	s->db_wait_ms = mall_config_duration_ms(&cfg, var(v, sizeof(v), def->name, "DB_WAIT"),
	                                        30000, 0, 3600000);
	if (def->events) {
		const char *dflt = NULL;
		if (mall_events_addrs_from_rpc(s->listen, s->events_default,
		                               sizeof(s->events_default)) == 0 &&
		    strchr(s->events_default, ',') == NULL)
			dflt = s->events_default;
		char lv[64];
		var(lv, sizeof(lv), def->name, "LISTEN");
		s->events_listen =
		    mall_config_str(&cfg, var(v, sizeof(v), def->name, "EVENTS_LISTEN"), dflt);
		if (s->events_listen == NULL)
			mall_config_error(&cfg,
			                  "%s: is required (an nng URL to publish events on) when %s "
			                  "is not a tcp:// address below port 64536 or an ipc:// one",
			                  v, lv);
	}
	if (def->read_settings != NULL)
		def->read_settings(&cfg);
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
migrate(const mall_service_def *def, const settings *s)
{
	mall_db_conn *conn = mall_db_conn_new(s->db);
	int64_t give_up = now_ms() + s->db_wait_ms;
	mall_status st;
	PGconn *pg;
	for (;;) {
		mall_status_clear(&st);
		if ((pg = mall_db_pg(conn, &st)) != NULL || now_ms() >= give_up)
			break;
		mall_log_warn(NULL, "waiting for the %s database: %s", def->name, st.message);
		usleep(500 * 1000);
	}
	if (pg == NULL) {
		mall_log_error(NULL, "could not start: %s", st.message);
		mall_db_conn_free(conn);
		return -1;
	}
	const mall_migration_set *sets[] = {&mall_migrations_runtime, def->migrations};
	mall_code code = mall_migrate(pg, sets, 2, &st);
	mall_db_conn_free(conn);
	if (code != MALL_OK) {
		mall_log_error(NULL, "could not migrate the %s database: %s", def->name, st.message);
		return -1;
	}
	return 0;
}

static int
serve(const mall_service_def *def, const settings *s)
{
	mall_status st;
	mall_status_clear(&st);
	mall_ops *ops = NULL;
	mall_rpc_server *srv = NULL;
	mall_outbox_relay *relay = NULL;
	bool started = false;
	int rc = 1;

	if (mall_ops_start(&ops, s->ops_listen, def->name, &st) != MALL_OK ||
	    mall_db_open(&pool, s->db, s->workers, &st) != MALL_OK)
		goto out;
	if (def->start != NULL) {
		if (def->start(s->db, &st) != MALL_OK)
			goto out;
		started = true;
	}
	if (s->events_listen != NULL &&
	    mall_outbox_relay_start(&relay, def->name, s->db, s->events_listen, &st) != MALL_OK)
		goto out;
	mall_rpc_server_opts opts = {
	    .service = def->name,
	    .listen = s->listen,
	    .contexts = s->contexts,
	    .workers = s->workers,
	    .worker_init = worker_init,
	    .worker_fini = worker_fini,
	    .mutate = def->mutate != NULL ? def->mutate : mall_idem_mutate,
	};
	if (mall_rpc_server_new(&srv, &opts, &st) != MALL_OK ||
	    mall_outbox_serve(srv, &st) != MALL_OK ||
	    mall_rpc_server_add(srv, def->rpc, def->methods, def->nmethods, &st) != MALL_OK ||
	    mall_rpc_server_start(srv, &st) != MALL_OK)
		goto out;
	mall_ops_set_ready(ops, true);
	mall_log_info(NULL, "%s serving rpc on %s, ops on %s, %d workers", def->name, s->listen,
	              s->ops_listen, s->workers);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	int sig = 0;
	sigwait(&set, &sig);
	mall_log_info(NULL, "%s got %s: draining", def->name, sig == SIGTERM ? "SIGTERM" : "SIGINT");
	mall_ops_set_ready(ops, false);
	mall_rpc_server_drain(srv, 10000);
	rc = 0;
out:
	if (rc != 0)
		mall_log_error(NULL, "could not start the %s service: %s", def->name, st.message);
	mall_rpc_server_free(srv);
	mall_outbox_relay_stop(relay);
	if (started && def->stop != NULL)
		def->stop();
	mall_db_close(pool);
	pool = NULL;
	mall_ops_stop(ops);
	if (rc == 0)
		mall_log_info(NULL, "%s stopped", def->name);
	return rc;
}

int
mall_service_main(const mall_service_def *def, int argc, char **argv)
{
	if (mall_log_init(def->name) != 0)
		return 2;
	bool migrate_only = argc == 2 && strcmp(argv[1], "migrate") == 0;
	if (argc > 2 || (argc == 2 && !migrate_only)) {
		fprintf(stderr, "usage: mall-%s [migrate]\n", def->name);
		return 2;
	}
	settings s;
	if (read_settings(def, &s) != 0)
		return 2;

	/* every thread inherits these: main alone takes the signals, with sigwait */
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* a process started in the background by a shell inherits SIGINT ignored,
	 * and sigwait never sees an ignored signal: take both back */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);

	if (migrate(def, &s) != 0)
		return 1;
	if (migrate_only) {
		mall_log_info(NULL, "%s database is up to date", def->name);
		return 0;
	}
	return serve(def, &s);
}
