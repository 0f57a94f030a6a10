/*
 * test_redis.c: the Redis connection against a real server (MALL_TEST_REDIS).
 *
 * Keys are prefixed mall_t_redis_<pid>: and deleted at the end.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "redis.h"

static const char *addr;
static char prefix[64];

static int
group_setup(void **state)
{
	addr = getenv("MALL_TEST_REDIS");
	if (addr == NULL || *addr == '\0') {
		fprintf(stderr, "MALL_TEST_REDIS is not set: it must be host:port of a Redis "
		                "server (script/test sets it)\n");
		return -1;
	}
	snprintf(prefix, sizeof(prefix), "mall_t_redis_%d:", (int)getpid());
	return 0;
}

static int
group_teardown(void **state)
{
	if (addr == NULL || *addr == '\0')
		return 0;
	mall_redis *r = mall_redis_new(addr, 1000);
	mall_status st;
	redisReply *keys = mall_redis_command(r, &st, "KEYS %s*", prefix);
	for (size_t i = 0; keys != NULL && i < keys->elements; i++)
		freeReplyObject(mall_redis_command(r, &st, "DEL %s", keys->element[i]->str));
	freeReplyObject(keys);
	mall_redis_free(r);
	return 0;
}

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long long
client_id(mall_redis *r)
{
	mall_status st;
	mall_status_clear(&st);
	redisReply *rep = mall_redis_command(r, &st, "CLIENT ID");
	if (rep == NULL)
		fail_msg("CLIENT ID: %s", st.message);
	long long id = rep->integer;
	freeReplyObject(rep);
	return id;
}

static void
test_set_get(void **state)
{
	mall_redis *r = mall_redis_new(addr, 1000);
	mall_status st;
	mall_status_clear(&st);
	char key[128];
	snprintf(key, sizeof(key), "%sgreeting", prefix);
	redisReply *rep = mall_redis_command(r, &st, "SET %s %s", key, "hello world");
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_STATUS);
	assert_string_equal(rep->str, "OK");
	freeReplyObject(rep);

	rep = mall_redis_command(r, &st, "GET %s", key);
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_STRING);
	assert_string_equal(rep->str, "hello world");
	freeReplyObject(rep);

	/* binary-safe through argv: an embedded NUL survives */
	const char bin[] = {'a', '\0', 'b'};
	const char *argv[] = {"SET", key, bin};
	size_t lens[] = {3, strlen(key), sizeof(bin)};
	rep = mall_redis_argv(r, &st, 3, argv, lens);
	assert_non_null(rep);
	freeReplyObject(rep);
	rep = mall_redis_command(r, &st, "GET %s", key);
	assert_non_null(rep);
	assert_int_equal(rep->len, 3);
	assert_memory_equal(rep->str, bin, 3);
	freeReplyObject(rep);

	snprintf(key, sizeof(key), "%smissing", prefix);
	rep = mall_redis_command(r, &st, "GET %s", key);
	assert_non_null(rep);
	assert_int_equal(rep->type, REDIS_REPLY_NIL);
	freeReplyObject(rep);
	mall_redis_free(r);
}

static void
test_error_reply(void **state)
{
	mall_redis *r = mall_redis_new(addr, 1000);
	mall_status st;
	mall_status_clear(&st);
	char key[128];
	snprintf(key, sizeof(key), "%stext", prefix);
	freeReplyObject(mall_redis_command(r, &st, "SET %s notanumber", key));
	assert_null(mall_redis_command(r, &st, "INCR %s", key));
	assert_int_equal(st.code, MALL_INTERNAL);
	assert_non_null(strstr(st.message, "not an integer"));
	assert_non_null(strstr(st.message, addr));

	const char *argv[] = {"NOSUCHCOMMAND"};
	assert_null(mall_redis_argv(r, &st, 1, argv, NULL));
	assert_int_equal(st.code, MALL_INTERNAL);
	assert_non_null(strstr(st.message, "unknown command"));

	/* an error reply leaves the connection usable */
	long long id = client_id(r);
	assert_int_equal(client_id(r), id);
	mall_redis_free(r);
}

static void
test_reconnect(void **state)
{
	mall_redis *r = mall_redis_new(addr, 1000);
	mall_redis *killer = mall_redis_new(addr, 1000);
	mall_status st;
	mall_status_clear(&st);
	char key[128];
	snprintf(key, sizeof(key), "%scounter", prefix);
	long long before = client_id(r);

	/* kill just our connection: other tests may share this server */
	redisReply *rep = mall_redis_command(killer, &st, "CLIENT KILL ID %lld", before);
	assert_non_null(rep);
	assert_int_equal(rep->integer, 1);
	freeReplyObject(rep);

	/* the killed connection is noticed and the command sent again */
	rep = mall_redis_command(r, &st, "INCR %s", key);
	assert_non_null(rep);
	assert_int_equal(rep->integer, 1);
	freeReplyObject(rep);
	long long second = client_id(r);
	assert_int_not_equal(second, before);

	/* killed again, the argv form recovers too */
	rep = mall_redis_command(killer, &st, "CLIENT KILL ID %lld", second);
	assert_non_null(rep);
	assert_int_equal(rep->integer, 1);
	freeReplyObject(rep);
	const char *argv[] = {"INCR", key};
	rep = mall_redis_argv(r, &st, 2, argv, NULL);
	assert_non_null(rep);
	assert_int_equal(rep->integer, 2);
	freeReplyObject(rep);
	mall_redis_free(killer);
	mall_redis_free(r);
}

static void
test_unreachable(void **state)
{
	mall_status st;
	mall_status_clear(&st);
	/* port 1 on loopback: nothing listens there */
	mall_redis *r = mall_redis_new("127.0.0.1:1", 500);
	int64_t t0 = now_ms();
	assert_null(mall_redis_command(r, &st, "PING"));
	assert_true(now_ms() - t0 < 1000);
	assert_int_equal(st.code, MALL_UNAVAILABLE);
	assert_non_null(strstr(st.message, "could not reach redis at 127.0.0.1:1: "));
	/* and again: no hang, no crash on the freed context */
	assert_null(mall_redis_argv(r, &st, 1, (const char *[]){"PING"}, NULL));
	assert_int_equal(st.code, MALL_UNAVAILABLE);
	mall_redis_free(r);

	r = mall_redis_new("no-port-here", 500);
	assert_null(mall_redis_command(r, &st, "PING"));
	assert_int_equal(st.code, MALL_UNAVAILABLE);
	assert_non_null(strstr(st.message, "no-port-here"));
	mall_redis_free(r);
}

static void
test_timeout(void **state)
{
	mall_redis *r = mall_redis_new(addr, 200);
	mall_status st;
	mall_status_clear(&st);
	char key[128];
	snprintf(key, sizeof(key), "%sempty_list", prefix);
	/* the server would block 5 s; the connection gives up after its timeout
	 * (twice: the command is retried once on a new connection) */
	int64_t t0 = now_ms();
	assert_null(mall_redis_command(r, &st, "BLPOP %s 5", key));
	int64_t took = now_ms() - t0;
	assert_true(took >= 350 && took < 2000);
	assert_int_equal(st.code, MALL_UNAVAILABLE);
	assert_non_null(strstr(st.message, addr));
	assert_non_null(strstr(st.message, "no answer within 200 ms"));
	/* and it works again afterwards */
	assert_true(client_id(r) > 0);
	mall_redis_free(r);
}

#define THREADS 4
#define ROUNDS 200

static mall_redis *shared;
static char shared_key[128];
static int thread_errors;
static pthread_mutex_t err_mu = PTHREAD_MUTEX_INITIALIZER;

static void *
incr_thread(void *arg)
{
	for (int i = 0; i < ROUNDS; i++) {
		mall_status st;
		redisReply *rep = mall_redis_command(shared, &st, "INCR %s", shared_key);
		if (rep == NULL) {
			pthread_mutex_lock(&err_mu);
			thread_errors++;
			pthread_mutex_unlock(&err_mu);
		}
		freeReplyObject(rep);
	}
	return NULL;
}

static void
test_shared_by_threads(void **state)
{
	shared = mall_redis_new(addr, 1000);
	snprintf(shared_key, sizeof(shared_key), "%sshared", prefix);
	pthread_t th[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&th[i], NULL, incr_thread, NULL);
	for (int i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(thread_errors, 0);
	mall_status st;
	redisReply *rep = mall_redis_command(shared, &st, "GET %s", shared_key);
	assert_non_null(rep);
	assert_int_equal(atoi(rep->str), THREADS * ROUNDS);
	freeReplyObject(rep);
	mall_redis_free(shared);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_set_get),   cmocka_unit_test(test_error_reply),
	    cmocka_unit_test(test_reconnect), cmocka_unit_test(test_unreachable),
	    cmocka_unit_test(test_timeout),   cmocka_unit_test(test_shared_by_threads),
	};
	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
