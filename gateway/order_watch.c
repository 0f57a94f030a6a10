/*
 * order_watch.c: the gateway hears the order service's events, so that a
 * request waiting for an order to change (a payment confirm waiting for the
 * saga to make the order paid) wakes up when it does instead of polling
 * GetOrder (gateway.h, mall_gw_watch_*).
 *
 * One thread with an nng SUB socket dialed to the order service's relays
 * (MALL_ORDER_EVENTS_ADDRS, by default derived from MALL_ORDER_ADDRS as every
 * consumer does: outbox.h).  A waiter registers a ticket for an order number
 * BEFORE it reads the order (so an event that comes between the read and the
 * wait is not missed), reads, and waits on the ticket if it has to.  Each
 * order.status_changed event of the number fires the tickets waiting for it.
 *
 * The relay's PUB drops messages for a slow subscriber and a relay may be
 * down: an event heard is only a reason to read the order again, never the
 * answer, and a waiter reads again at least every MALL_GW_WATCH_RECHECK_MS
 * whatever it hears.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>

#include "gateway.h"
#include "log.h"

#include "mall/order.pb-c.h"
#include "mall/rpc.pb-c.h"

struct mall_gw_watch {
	nng_socket sub;
	pthread_t thread;
	bool running;
	atomic_bool stop;
	pthread_mutex_t mu;
	pthread_cond_t fired; /* broadcast when any ticket fires */
	mall_gw_ticket *tickets; /* a list, mu */
};

/* hear: fires the tickets of the order an event is about. */
static void
hear(mall_gw_watch *w, nng_msg *m, mall_arena *a)
{
	mall_arena_reset(a);
	Mall__Rpc__Event *ev =
	    mall__rpc__event__unpack(mall_arena_pb(a), nng_msg_len(m), nng_msg_body(m));
	if (ev == NULL || strcmp(ev->type, "order.status_changed") != 0)
		return;
	Mall__Order__OrderStatusChanged *c = mall__order__order_status_changed__unpack(
	    mall_arena_pb(a), ev->payload.len, ev->payload.data);
	if (c == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	bool any = false;
	for (mall_gw_ticket *t = w->tickets; t != NULL; t = t->next)
		if (strcmp(t->number, c->number) == 0) {
			t->fired = true;
			any = true;
		}
	if (any)
		pthread_cond_broadcast(&w->fired);
	pthread_mutex_unlock(&w->mu);
}

static void *
watch_main(void *arg)
{
	mall_gw_watch *w = arg;
	mall_arena *a = mall_arena_new();
	while (!atomic_load(&w->stop)) {
		nng_msg *m;
		if (nng_recvmsg(w->sub, &m, 0) != 0)
			continue; /* the receive timeout: look at stop again */
		hear(w, m, a);
		nng_msg_free(m);
	}
	mall_arena_free(a);
	return NULL;
}

mall_code
mall_gw_watch_start(mall_gw_watch **out, const char *addrs, mall_status *st)
{
	*out = NULL;
	mall_gw_watch *w = mall_xcalloc(1, sizeof(*w));
	atomic_init(&w->stop, false);
	pthread_mutex_init(&w->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->fired, &ca);
	pthread_condattr_destroy(&ca);
	int rv;
	if ((rv = nng_sub0_open(&w->sub)) != 0) {
		mall_status_set(st, MALL_INTERNAL, "could not open a socket for order events: %s",
		                nng_strerror(rv));
		goto fail_socket;
	}
	if ((rv = nng_socket_set(w->sub, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0 ||
	    (rv = nng_socket_set_ms(w->sub, NNG_OPT_RECVTIMEO, 200)) != 0 ||
	    (rv = nng_socket_set_ms(w->sub, NNG_OPT_RECONNMINT, 100)) != 0 ||
	    (rv = nng_socket_set_ms(w->sub, NNG_OPT_RECONNMAXT, 2000)) != 0 ||
	    (rv = nng_socket_set_size(w->sub, NNG_OPT_RECVMAXSZ, (size_t)4 << 20)) != 0) {
		mall_status_set(st, MALL_INTERNAL, "could not set up the order events socket: %s",
		                nng_strerror(rv));
		goto fail;
	}
	char *list = mall_xstrdup(addrs);
	char *save = NULL;
	for (char *url = strtok_r(list, ",", &save); url != NULL; url = strtok_r(NULL, ",", &save)) {
		while (*url == ' ')
			url++;
		/* without blocking: an order service that is down is reached
		 * when it comes up */
		if (*url != '\0' && (rv = nng_dial(w->sub, url, NULL, NNG_FLAG_NONBLOCK)) != 0) {
			mall_status_set(st, MALL_INVALID_ARGUMENT,
			                "could not subscribe to order events at %s: %s", url,
			                nng_strerror(rv));
			free(list);
			goto fail;
		}
	}
	free(list);
	if ((rv = pthread_create(&w->thread, NULL, watch_main, w)) != 0) {
		mall_status_set(st, MALL_INTERNAL, "could not start the order watch: %s",
		                strerror(rv));
		goto fail;
	}
	w->running = true;
	*out = w;
	return MALL_OK;
fail:
	nng_close(w->sub);
fail_socket:
	pthread_cond_destroy(&w->fired);
	pthread_mutex_destroy(&w->mu);
	free(w);
	return st->code;
}

void
mall_gw_watch_stop(mall_gw_watch *w)
{
	if (w == NULL)
		return;
	atomic_store(&w->stop, true);
	if (w->running)
		pthread_join(w->thread, NULL);
	nng_close(w->sub);
	pthread_cond_destroy(&w->fired);
	pthread_mutex_destroy(&w->mu);
	free(w);
}

void
mall_gw_watch_begin(mall_gw_watch *w, mall_gw_ticket *t, const char *number)
{
	memset(t, 0, sizeof(*t));
	t->number = number;
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	t->next = w->tickets;
	w->tickets = t;
	pthread_mutex_unlock(&w->mu);
}

bool
mall_gw_watch_wait(mall_gw_watch *w, mall_gw_ticket *t, int64_t ms)
{
	struct timespec until;
	clock_gettime(CLOCK_MONOTONIC, &until);
	int64_t ns = until.tv_nsec + (ms % 1000) * 1000000;
	until.tv_sec += (time_t)(ms / 1000 + ns / 1000000000);
	until.tv_nsec = (long)(ns % 1000000000);
	if (w == NULL) { /* nothing to hear: just the wait */
		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL) == EINTR)
			;
		return false;
	}
	pthread_mutex_lock(&w->mu);
	while (!t->fired && pthread_cond_timedwait(&w->fired, &w->mu, &until) != ETIMEDOUT)
		;
	bool fired = t->fired;
	t->fired = false; /* the next wait waits for the next event */
	pthread_mutex_unlock(&w->mu);
	return fired;
}

void
mall_gw_watch_end(mall_gw_watch *w, mall_gw_ticket *t)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&w->mu);
	for (mall_gw_ticket **p = &w->tickets; *p != NULL; p = &(*p)->next)
		if (*p == t) {
			*p = t->next;
			break;
		}
	pthread_mutex_unlock(&w->mu);
}
