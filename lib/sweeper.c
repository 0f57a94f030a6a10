/*
 * sweeper.c: the periodic pass thread (sweeper.h).
 */
#include "sweeper.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "alloc.h"
#include "log.h"

struct mall_sweeper {
	char *name;
	char *conninfo;
	int64_t interval_ms;
	mall_sweep_pass pass;
	void *arg;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* on CLOCK_MONOTONIC */
	bool stop;
};

static void *
sweep_main(void *arg)
{
	mall_sweeper *s = arg;
	mall_db_conn *db = mall_db_conn_new(s->conninfo);
	while (!mall_sweeper_stopping(s)) {
		int n = s->pass(db, s->arg);
		if (n > 0)
			mall_log_info(NULL, "%s sweep handled %d", s->name, n);
		struct timespec until;
		clock_gettime(CLOCK_MONOTONIC, &until);
		int64_t ns = (int64_t)until.tv_nsec + (s->interval_ms % 1000) * 1000000;
		until.tv_sec += (time_t)(s->interval_ms / 1000 + ns / 1000000000);
		until.tv_nsec = (long)(ns % 1000000000);
		pthread_mutex_lock(&s->mu);
		while (!s->stop && pthread_cond_timedwait(&s->cv, &s->mu, &until) != ETIMEDOUT)
			;
		pthread_mutex_unlock(&s->mu);
	}
	mall_db_conn_free(db);
	return NULL;
}

mall_code
mall_sweeper_start(mall_sweeper **out, const char *name, const char *conninfo,
                   int64_t interval_ms, mall_sweep_pass pass, void *arg, mall_status *st)
{
	*out = NULL;
	mall_sweeper *s = mall_xcalloc(1, sizeof(*s));
	s->name = mall_xstrdup(name);
	s->conninfo = mall_xstrdup(conninfo);
	s->interval_ms = interval_ms > 0 ? interval_ms : 1000;
	s->pass = pass;
	s->arg = arg;
	pthread_mutex_init(&s->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&s->cv, &ca);
	pthread_condattr_destroy(&ca);
	int rv = pthread_create(&s->thread, NULL, sweep_main, s);
	if (rv != 0) {
		mall_status_set(st, MALL_INTERNAL, "could not start the %s sweep thread: %s", name,
		                strerror(rv));
		pthread_cond_destroy(&s->cv);
		pthread_mutex_destroy(&s->mu);
		free(s->conninfo);
		free(s->name);
		free(s);
		return st->code;
	}
	*out = s;
	return MALL_OK;
}

bool
mall_sweeper_stopping(mall_sweeper *s)
{
	if (s == NULL)
		return false;
	pthread_mutex_lock(&s->mu);
	bool stop = s->stop;
	pthread_mutex_unlock(&s->mu);
	return stop;
}

void
mall_sweeper_stop(mall_sweeper *s)
{
	if (s == NULL)
		return;
	pthread_mutex_lock(&s->mu);
	s->stop = true;
	pthread_cond_signal(&s->cv);
	pthread_mutex_unlock(&s->mu);
	pthread_join(s->thread, NULL);
	pthread_cond_destroy(&s->cv);
	pthread_mutex_destroy(&s->mu);
	free(s->conninfo);
	free(s->name);
	free(s);
}
