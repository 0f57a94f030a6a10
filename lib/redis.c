/*
 * redis.c: one Redis connection shared under a mutex (hiredis 0.14).
 *
 * hiredis leaves a context unusable after any I/O error (including a
 * timeout), so such a context is freed and the command is sent once more on a
 * fresh connection.  A second failure is UNAVAILABLE naming the address.
 */
#include "redis.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include "alloc.h"

struct mall_redis {
	pthread_mutex_t mu;
	char *addr; /* as given, for messages */
	char *host; /* NULL when addr does not parse */
	int port;
	int64_t timeout_ms;
	struct timeval timeout;
	redisContext *c;
};

/* parse: "host:port" or "[v6]:port" into r->host and r->port. */
static void
parse(mall_redis *r, const char *addr)
{
	const char *colon = strrchr(addr, ':');
	if (colon == NULL || colon == addr)
		return;
	char *end = NULL;
	long port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || port < 1 || port > 65535)
		return;
	const char *h = addr;
	size_t n = (size_t)(colon - addr);
	if (h[0] == '[' && n >= 2 && h[n - 1] == ']') {
		h++;
		n -= 2;
	}
	r->host = mall_xstrndup(h, n);
	r->port = (int)port;
}

mall_redis *
mall_redis_new(const char *addr, int64_t timeout_ms)
{
	mall_redis *r = mall_xcalloc(1, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	r->addr = mall_xstrdup(addr);
	parse(r, addr);
	if (timeout_ms <= 0)
		timeout_ms = 1000;
	r->timeout_ms = timeout_ms;
	r->timeout.tv_sec = (time_t)(timeout_ms / 1000);
	r->timeout.tv_usec = (suseconds_t)(timeout_ms % 1000) * 1000;
	return r;
}

void
mall_redis_free(mall_redis *r)
{
	if (r == NULL)
		return;
	if (r->c != NULL)
		redisFree(r->c);
	pthread_mutex_destroy(&r->mu);
	free(r->host);
	free(r->addr);
	free(r);
}

static mall_code
unreachable(mall_redis *r, mall_status *st, const char *why)
{
	return mall_status_set(st, MALL_UNAVAILABLE, "could not reach redis at %s: %s", r->addr,
	                       why && *why ? why : "connection lost");
}

/* ensure: a connected context, or NULL with st set.  Called under r->mu. */
static redisContext *
ensure(mall_redis *r, mall_status *st)
{
	if (r->c != NULL)
		return r->c;
	if (r->host == NULL) {
		unreachable(r, st, "the address is not host:port");
		return NULL;
	}
	redisContext *c = redisConnectWithTimeout(r->host, r->port, r->timeout);
	if (c == NULL) {
		unreachable(r, st, "out of memory");
		return NULL;
	}
	if (c->err) {
		unreachable(r, st, c->errstr);
		redisFree(c);
		return NULL;
	}
	if (redisSetTimeout(c, r->timeout) != REDIS_OK) {
		unreachable(r, st, c->errstr);
		redisFree(c);
		return NULL;
	}
	redisEnableKeepAlive(c);
	r->c = c;
	return c;
}

/* finish: turns a reply (or its absence) into the result; under r->mu.  Returns
 * true when the command should be sent again on a new connection. */
static bool
finish(mall_redis *r, redisReply **reply, mall_status *st, int attempt)
{
	if (*reply == NULL) {
		char why[128];
		if (r->c->err == REDIS_ERR_IO && strcmp(r->c->errstr, strerror(EAGAIN)) == 0)
			snprintf(why, sizeof(why), "no answer within %lld ms",
			         (long long)r->timeout_ms);
		else
			snprintf(why, sizeof(why), "%s", r->c->errstr);
		redisFree(r->c);
		r->c = NULL;
		if (attempt == 0)
			return true;
		unreachable(r, st, why);
		return false;
	}
	if ((*reply)->type == REDIS_REPLY_ERROR) {
		mall_status_set(st, MALL_INTERNAL, "could not run redis command at %s: %.*s",
		                r->addr, (int)(*reply)->len, (*reply)->str);
		freeReplyObject(*reply);
		*reply = NULL;
	}
	return false;
}

redisReply *
mall_redis_command(mall_redis *r, mall_status *st, const char *fmt, ...)
{
	redisReply *reply = NULL;
	pthread_mutex_lock(&r->mu);
	for (int attempt = 0; attempt < 2; attempt++) {
		redisContext *c = ensure(r, st);
		if (c == NULL)
			break;
		va_list ap;
		va_start(ap, fmt);
		reply = redisvCommand(c, fmt, ap);
		va_end(ap);
		if (!finish(r, &reply, st, attempt))
			break;
	}
	pthread_mutex_unlock(&r->mu);
	return reply;
}

redisReply *
mall_redis_argv(mall_redis *r, mall_status *st, int argc, const char **argv, const size_t *argvlen)
{
	redisReply *reply = NULL;
	pthread_mutex_lock(&r->mu);
	for (int attempt = 0; attempt < 2; attempt++) {
		redisContext *c = ensure(r, st);
		if (c == NULL)
			break;
		reply = redisCommandArgv(c, argc, argv, argvlen);
		if (!finish(r, &reply, st, attempt))
			break;
	}
	pthread_mutex_unlock(&r->mu);
	return reply;
}
