/*
 * main.c: mall-member, the member service.  Wires the runtime: settings,
 * migrations, the database pool, the RPC server and the ops endpoint; then
 * waits for SIGTERM/SIGINT and drains.
 *
 *   mall-member            serve
 *   mall-member migrate    apply pending migrations and exit
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config.h"
#include "idem.h"
#include "log.h"
#include "migrate.h"
#include "member.h"
#include "ops.h"

extern const mall_migration_set mall_migrations_member;

/* VerifyLogin writes only the login time (a repeat is harmless), so it needs
 * no idempotency key, and none of its requests, which carry a password, is
 * ever recorded. */
static const mall_rpc_method methods[] = {
    {"SignUp", member_sign_up, MALL_RPC_MUTATING},
    {"VerifyLogin", member_verify_login, 0},
    {"GetMember", member_get, 0},
    {"UpdateMember", member_update, MALL_RPC_MUTATING},
    {"ListAddresses", member_list_addresses, 0},
    {"AddAddress", member_add_address, MALL_RPC_MUTATING},
    {"UpdateAddress", member_update_address, MALL_RPC_MUTATING},
    {"DeleteAddress", member_delete_address, MALL_RPC_MUTATING},
    {"ListGrades", member_list_grades, 0},
};

typedef struct settings {
	const char *db;
	const char *listen;
	const char *ops_listen;
	int workers;
	int contexts;
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

/* Records the idempotency key with the write (lib/idem.c).  A signup carries
 * a password, which must not reach the idempotency record even as a hash. */
static mall_code
mutate(mall_rpc_ctx *ctx, mall_rpc_handler fn, const ProtobufCMessage *req,
       ProtobufCMessage **reply, mall_status *st)
{
	static const char *const secret[] = {"password", NULL};
	if (req->descriptor == &mall__member__sign_up_request__descriptor)
		return mall_idem_mutate_secret(ctx, fn, req, reply, st, secret);
	return mall_idem_mutate(ctx, fn, req, reply, st);
}

static int
read_settings(settings *s)
{
	mall_config cfg;
	mall_config_init(&cfg);
	s->db = mall_config_str(&cfg, "MALL_MEMBER_DB", NULL);
	if (s->db == NULL)
		mall_config_error(
		    &cfg, "MALL_MEMBER_DB: is required (a libpq conninfo such as "
		          "\"host=127.0.0.1 port=5432 user=mall_member dbname=mall_member\")");
	s->listen = mall_config_str(&cfg, "MALL_MEMBER_LISTEN", "tcp://127.0.0.1:7411");
	s->ops_listen = mall_config_listen(&cfg, "MALL_MEMBER_OPS_LISTEN", "127.0.0.1:9411");
	/* each password hash takes 64 MiB while it runs, one per worker */
	s->workers = (int)mall_config_int(&cfg, "MALL_MEMBER_WORKERS", 4, 1, 64);
	s->contexts = (int)mall_config_int(&cfg, "MALL_MEMBER_CONTEXTS", 64, 1, 4096);
	s->db_wait_ms = mall_config_duration_ms(&cfg, "MALL_MEMBER_DB_WAIT", 30000, 0, 3600000);
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
		mall_log_warn(NULL, "waiting for the member database: %s", st.message);
		usleep(500 * 1000);
	}
	if (pg == NULL) {
		mall_log_error(NULL, "could not start: %s", st.message);
		mall_db_conn_free(conn);
		return -1;
	}
	const mall_migration_set *sets[] = {&mall_migrations_runtime, &mall_migrations_member};
	mall_code code = mall_migrate(pg, sets, 2, &st);
	mall_db_conn_free(conn);
	if (code != MALL_OK) {
		mall_log_error(NULL, "could not migrate the member database: %s", st.message);
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

	if (member_account_init() != 0) {
		mall_status_set(&st, MALL_INTERNAL, "libsodium could not start");
		goto out;
	}
	if (mall_ops_start(&ops, s->ops_listen, "member", &st) != MALL_OK ||
	    mall_db_open(&pool, s->db, s->workers, &st) != MALL_OK)
		goto out;
	mall_rpc_server_opts opts = {
	    .service = "member",
	    .listen = s->listen,
	    .contexts = s->contexts,
	    .workers = s->workers,
	    .worker_init = worker_init,
	    .worker_fini = worker_fini,
	    .mutate = mutate,
	};
	if (mall_rpc_server_new(&srv, &opts, &st) != MALL_OK ||
	    mall_rpc_server_add(srv, &mall__member__member__descriptor, methods,
	                        sizeof(methods) / sizeof(methods[0]), &st) != MALL_OK ||
	    mall_rpc_server_start(srv, &st) != MALL_OK)
		goto out;
	mall_ops_set_ready(ops, true);
	mall_log_info(NULL, "member serving rpc on %s, ops on %s, %d workers", s->listen,
	              s->ops_listen, s->workers);

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	int sig = 0;
	sigwait(&set, &sig);
	mall_log_info(NULL, "member got %s: draining", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	mall_ops_set_ready(ops, false);
	mall_rpc_server_drain(srv, 10000);
	rc = 0;
out:
	if (rc != 0)
		mall_log_error(NULL, "could not start the member service: %s", st.message);
	mall_rpc_server_free(srv);
	mall_db_close(pool);
	mall_ops_stop(ops);
	if (rc == 0)
		mall_log_info(NULL, "member stopped");
	return rc;
}

int
main(int argc, char **argv)
{
	if (mall_log_init("member") != 0)
		return 2;
	bool migrate_only = argc == 2 && strcmp(argv[1], "migrate") == 0;
	if (argc > 2 || (argc == 2 && !migrate_only)) {
		fprintf(stderr, "usage: mall-member [migrate]\n");
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
		mall_log_info(NULL, "member database is up to date");
		return 0;
	}
	return serve(&s);
}
