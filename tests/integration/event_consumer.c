/*
 * event_consumer: a tiny consumer process for the integration tests of
 * durable events (test_events.py): it follows a member service's member.*
 * events into a database of its own with lib/consumer.h.
 *
 *   event_consumer --db CONNINFO [--delay-ms N] [--poll-ms N]
 *
 * The producer is found as a real consumer finds it: MALL_MEMBER_ADDRS (its
 * RPC, for Events.Since) and MALL_MEMBER_EVENTS_ADDRS (its relays, SUB;
 * default: MALL_MEMBER_ADDRS with port + 1000).  At start it applies the
 * runtime migrations (event_cursor, inbox) and its own table to CONNINFO:
 *
 *   signed_up (event_id uuid PRIMARY KEY, seq, member_id, email,
 *              applications int, first_applied_at)
 *
 * Each application of a member.signed_up event adds 1 to its row's
 * applications, inside the consumer's transaction, so a test sees any event
 * applied twice (2) or lost (no row).  --delay-ms makes each application
 * take that long (pg_sleep in the transaction), so a test can kill the
 * process mid-stream.  --poll-ms sets how often it pulls without a wake-up
 * (default 1000), so a test can tell a wake-up from a pull.  SIGTERM or SIGINT stops it cleanly (status 0); bad
 * arguments exit 2, a failure to start 1.  Logs: JSON lines on stdout.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consumer.h"
#include "db.h"
#include "log.h"
#include "mall/member.pb-c.h"
#include "migrate.h"
#include "outbox.h"

#define SIGNED_UP_SQL                                                                              \
	"CREATE TABLE signed_up (event_id uuid PRIMARY KEY, seq bigint NOT NULL,"                  \
	" member_id bigint NOT NULL, email text NOT NULL, applications int NOT NULL,"              \
	" first_applied_at timestamptz NOT NULL DEFAULT now());"

static const mall_migration items[] = {
    {"event_consumer/0001_signed_up.sql", SIGNED_UP_SQL, sizeof(SIGNED_UP_SQL) - 1},
};
static const mall_migration_set own = {"event_consumer", items, 1};

static long delay_ms;
static long poll_ms = 1000;

static mall_code
apply(mall_db_conn *conn, const Mall__Rpc__Event *ev, void *arg, mall_status *st)
{
	(void)arg;
	if (strcmp(ev->type, "member.signed_up") != 0)
		return MALL_OK;
	Mall__Member__MemberSignedUp *m =
	    mall__member__member_signed_up__unpack(NULL, ev->payload.len, ev->payload.data);
	if (m == NULL)
		return mall_status_set(st, MALL_INVALID_ARGUMENT,
		                       "event %s is not a mall.member.MemberSignedUp",
		                       ev->event_id);
	char seq[24], id[24], delay[24];
	snprintf(seq, sizeof(seq), "%lld", (long long)ev->seq);
	snprintf(id, sizeof(id), "%lld", (long long)m->member_id);
	snprintf(delay, sizeof(delay), "%.3f", (double)delay_ms / 1000.0);
	const char *params[] = {ev->event_id, seq, id, m->email, delay};
	int64_t n = mall_db_exec_cmd(
	    conn, st,
	    "INSERT INTO signed_up (event_id, seq, member_id, email, applications)"
	    " SELECT $1::uuid, $2::bigint, $3::bigint, $4, 1 FROM pg_sleep($5::float8)"
	    " ON CONFLICT (event_id) DO UPDATE SET applications = signed_up.applications + 1",
	    5, params);
	mall__member__member_signed_up__free_unpacked(m, NULL);
	return n < 0 ? st->code : MALL_OK;
}

static int
usage(void)
{
	fprintf(stderr, "usage: event_consumer --db CONNINFO [--delay-ms N] [--poll-ms N]\n");
	return 2;
}

int
main(int argc, char **argv)
{
	const char *db = NULL;
	for (int i = 1; i < argc; i++) {
		bool more = i + 1 < argc;
		if (strcmp(argv[i], "--db") == 0 && more)
			db = argv[++i];
		else if (strcmp(argv[i], "--delay-ms") == 0 && more)
			delay_ms = strtol(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--poll-ms") == 0 && more)
			poll_ms = strtol(argv[++i], NULL, 10);
		else
			return usage();
	}
	if (db == NULL || delay_ms < 0 || poll_ms <= 0)
		return usage();
	if (mall_log_init("event_consumer") != 0)
		return 2;
	const char *addrs = getenv("MALL_MEMBER_ADDRS");
	const char *events = getenv("MALL_MEMBER_EVENTS_ADDRS");
	char derived[1024];
	if (addrs == NULL || *addrs == '\0') {
		fprintf(stderr, "event_consumer: MALL_MEMBER_ADDRS is required\n");
		return 2;
	}
	if ((events == NULL || *events == '\0') &&
	    mall_events_addrs_from_rpc(addrs, derived, sizeof(derived)) == 0)
		events = derived;

	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);

	mall_status st;
	mall_status_clear(&st);
	int rc = 1;
	mall_rpc_client *client = NULL;
	mall_consumer *consumer = NULL;
	mall_db_conn *conn = mall_db_conn_new(db);
	PGconn *pg = mall_db_pg(conn, &st);
	const mall_migration_set *sets[] = {&mall_migrations_runtime, &own};
	if (pg == NULL || mall_migrate(pg, sets, 2, &st) != MALL_OK) {
		mall_log_error(NULL, "could not migrate the consumer's database: %s", st.message);
		goto out;
	}
	static const char *const types[] = {"member.", NULL};
	if (mall_rpc_client_new(&client, "member", addrs, NULL, &st) != MALL_OK)
		goto fail;
	mall_consumer_opts opts = {
	    .source = "member",
	    .client = client,
	    .events_addrs = events,
	    .db = db,
	    .types = types,
	    .apply = apply,
	    .batch = 20, /* several pages in the tests' streams */
	    .poll_ms = poll_ms,
	};
	if (mall_consumer_start(&consumer, &opts, &st) != MALL_OK)
		goto fail;
	mall_log_info(NULL, "event_consumer ready");
	int sig = 0;
	sigwait(&set, &sig);
	mall_log_info(NULL, "event_consumer stopping");
	rc = 0;
	goto out;
fail:
	mall_log_error(NULL, "could not start: %s", st.message);
out:
	mall_consumer_stop(consumer);
	mall_rpc_client_free(client);
	mall_db_conn_free(conn);
	return rc;
}
