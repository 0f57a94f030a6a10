/*
 * rpc_client.c: the calling half of rpc.h.
 *
 * One REQ socket per instance of the peer service.  An instance is one nng URL;
 * a tcp:// address whose host is a name is resolved with getaddrinfo into one
 * instance per address, re-resolved every resolve_ms by a background thread
 * that adds and removes instances.
 *
 * Health of an instance comes from two sources:
 *  - its connection, tracked with nng pipe notifications.  When the connection
 *    goes away (the process died), the calls in flight on it are cancelled at
 *    once and retried elsewhere instead of waiting for their timeout.
 *  - outcomes of calls.  EJECT_AFTER consecutive failures or timeouts set the
 *    instance aside for eject_ms, doubling up to 30 s; when that expires, one
 *    probe call at a time goes there until one succeeds.  If every connected
 *    instance is ejected they are used anyway: better slow than nothing.
 *
 * A call goes to the healthy instance with the fewest calls outstanding (a
 * frozen instance accumulates outstanding calls and stops being chosen long
 * before it is ejected).  Each attempt bounds send and receive with
 * nng_aio_set_timeout, since aio operations ignore socket timeouts.
 * NNG_OPT_REQ_RESENDTIME is far above any deadline, so nng itself never
 * re-sends: every retry is our decision, and goes to another instance when
 * there is one.
 *
 * The hot path: an attempt runs on a channel, a context of the instance's
 * socket with the aio that drives it, taken from the instance's idle list and
 * put back after a good reply (opening and closing a context per call
 * serialises every caller on nng's global locks).  Reuse is safe with nng's
 * REQ: a context keeps no state once its reply has arrived, and a new send
 * abandons whatever request it had.  A channel whose attempt failed, timed out
 * or was cancelled is closed all the same, so nothing of an abandoned request
 * can meet a later call.  The request envelope is packed straight into the
 * nng message, the body into a stack buffer or the caller's arena.
 *
 * When no instance is connected, a call re-dials them at once ("kicks" them,
 * at most every KICK_WAIT_MS each; nng's own reconnect backs off up to 2 s) and
 * waits up to KICK_WAIT_MS for a connection, then fails with UNAVAILABLE: a
 * peer that is down costs a caller at most that long, never its deadline, and
 * a peer that just came up is reached by the next call.  Calls in the first
 * FIRST_DIAL_WAIT_MS of an instance that never connected yet (a client just
 * made, on a busy machine) wait until then: its first dial may still be under
 * way.
 *
 * Locking: c->mu protects the instance list and every instance's state; it is
 * never held across an nng call that can wait for a pipe callback (close,
 * dialer close), since those callbacks take it.  A call's own mutex orders
 * "start an aio operation" against "cancel it because the connection died".
 */
#include "rpc.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <sodium.h>

#include "log.h"
#include "mall/rpc.pb-c.h"
#include "metrics.h"

#define DEFAULT_TIMEOUT_MS 3000
#define DEFAULT_TRY_TIMEOUT_MS 1000
#define DEFAULT_MAX_TRIES 3
#define DEFAULT_MAX_MSG ((size_t)4 << 20)
#define DEFAULT_EJECT_MS 1000
#define DEFAULT_RESOLVE_MS 10000
#define MAX_EJECT_MS 30000
#define EJECT_AFTER 3           /* consecutive failures that eject an instance */
#define KICK_WAIT_MS 200        /* how long calls wait for a re-dial to connect */
#define FIRST_DIAL_WAIT_MS 1000 /* ... and for the first connection of an instance */
#define RESOLVE_RETRY_MS 1000   /* re-resolution period while a name has no address */
#define RESEND_MS (3600 * 1000) /* NNG_OPT_REQ_RESENDTIME: above any deadline */
#define MAX_PIPES 8
#define MAX_TRACKED_TRIES 16
#define MAX_IDLE_CHANS 256 /* idle channels kept per instance */
#define BODY_STACK 1024    /* request bodies up to this size are packed on the stack */
#define ID_POOL 1024       /* random bytes drawn at once for ids (a getrandom call each) */

typedef struct call call;
typedef struct instance instance;

typedef struct chan chan;

struct call {
	call *prev, *next; /* in the instance's list of calls in flight */
	pthread_mutex_t mu;
	bool cancelled; /* the instance's connection went away */
	nng_aio *aio;   /* of the channel in use; NULL between operations */
};

/* A channel: one context of an instance's socket and the aio that drives it,
 * used by one attempt at a time and kept for the next while it is healthy. */
struct chan {
	chan *next; /* in the instance's idle list */
	nng_ctx ctx;
	nng_aio *aio;
};

struct instance {
	instance *next;
	mall_rpc_client *c;
	char *url;
	int source; /* index in c->sources */
	nng_socket sock;
	nng_dialer dialer;
	bool closed;  /* socket closed (removed by re-resolution) */
	bool removed; /* no longer resolved: closed once idle */
	bool kicking;
	int64_t last_kick; /* monotonic ms of the last dial */
	bool ever_connected; /* some pipe was added once */
	int64_t created_ms;  /* monotonic ms */
	int npipes;
	int pipes[MAX_PIPES];
	int outstanding;
	int failures; /* consecutive */
	int ejections;
	int64_t ejected_until; /* 0: not ejected */
	int64_t recovered_at;  /* when the last ejection ended with a good probe */
	bool probing;          /* a probe call is in flight after an ejection */
	call *calls;
	chan *idle; /* channels ready for the next attempt */
	int nidle;
	char why[128]; /* the last trouble, for error messages */
};

typedef struct source {
	char *spec; /* as configured: "tcp://catalog:7401" */
	char *host; /* DNS name to resolve, NULL for a literal address */
	char *port;
	char error[128]; /* why the last resolution failed */
} source;

struct mall_rpc_client {
	char *service;
	char *addresses;
	mall_rpc_client_opts o;
	source *sources;
	int nsources;
	bool has_dns;

	pthread_mutex_t mu;
	pthread_cond_t changed; /* a connection came up, or the resolver must wake */
	instance *insts;
	instance *retired; /* closed instances, freed with the client */
	uint32_t tie;      /* xorshift state: breaks ties between instances */
	bool stopping;
	pthread_t resolver;
	bool resolver_started;
};

static pthread_once_t sodium_once = PTHREAD_ONCE_INIT;
static atomic_uint fork_gen; /* moves in a forked child: its pools are its parent's */

static void
after_fork(void)
{
	atomic_fetch_add(&fork_gen, 1);
}

static void
init_sodium(void)
{
	if (sodium_init() < 0)
		abort();
	pthread_atfork(NULL, NULL, after_fork);
}

/* Random bytes for ids, drawn ID_POOL at a time per thread: libsodium's
 * randombytes_buf is a getrandom system call, one per call otherwise. */
static _Thread_local struct {
	unsigned char buf[ID_POOL];
	size_t used;
	unsigned gen;
	bool filled;
} id_pool;

void
mall_rpc_new_id(char buf[33])
{
	unsigned char raw[16];
	pthread_once(&sodium_once, init_sodium);
	unsigned gen = atomic_load(&fork_gen);
	if (!id_pool.filled || id_pool.gen != gen || id_pool.used + sizeof(raw) > ID_POOL) {
		randombytes_buf(id_pool.buf, ID_POOL);
		id_pool.used = 0;
		id_pool.gen = gen;
		id_pool.filled = true;
	}
	memcpy(raw, id_pool.buf + id_pool.used, sizeof(raw));
	id_pool.used += sizeof(raw);
	sodium_bin2hex(buf, 33, raw, sizeof(raw));
}

static int64_t
mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t
unix_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits on c->changed until the monotonic time until_ms (c->mu held). */
static void
wait_until(mall_rpc_client *c, int64_t until_ms)
{
	struct timespec ts = {.tv_sec = until_ms / 1000,
	                      .tv_nsec = (long)(until_ms % 1000) * 1000000};
	pthread_cond_timedwait(&c->changed, &c->mu, &ts);
}

/* ---- instances ---- */

static void
cancel_calls(instance *in)
{
	for (call *k = in->calls; k != NULL; k = k->next) {
		pthread_mutex_lock(&k->mu);
		k->cancelled = true;
		if (k->aio != NULL)
			nng_aio_cancel(k->aio);
		pthread_mutex_unlock(&k->mu);
	}
}

/* pipe_cb: nng tells us a connection of an instance came or went.  Runs on an
 * nng thread: takes c->mu briefly and never blocks otherwise. */
static void
pipe_cb(nng_pipe p, nng_pipe_ev ev, void *arg)
{
	instance *in = arg;
	mall_rpc_client *c = in->c;
	int id = nng_pipe_id(p);

	pthread_mutex_lock(&c->mu);
	if (ev == NNG_PIPE_EV_ADD_POST) {
		in->ever_connected = true;
		if (in->npipes < MAX_PIPES)
			in->pipes[in->npipes++] = id;
		/* a new connection is a fresh start (often a new process) */
		in->failures = 0;
		in->ejections = 0;
		in->ejected_until = 0;
		in->why[0] = '\0';
		pthread_cond_broadcast(&c->changed);
	} else if (ev == NNG_PIPE_EV_REM_POST) {
		for (int i = 0; i < in->npipes; i++) {
			if (in->pipes[i] == id) {
				in->pipes[i] = in->pipes[--in->npipes];
				if (in->npipes == 0) {
					snprintf(in->why, sizeof(in->why), "connection lost");
					cancel_calls(in);
				}
				break;
			}
		}
	}
	pthread_mutex_unlock(&c->mu);
}

/* instance_new: a socket dialing url without blocking. */
static instance *
instance_new(mall_rpc_client *c, const char *url, int source, mall_status *st)
{
	instance *in = mall_xcalloc(1, sizeof(*in));
	in->c = c;
	in->url = mall_xstrdup(url);
	in->source = source;
	in->last_kick = mono_ms();
	in->created_ms = in->last_kick;
	snprintf(in->why, sizeof(in->why), "no connection");
	int rv;
	if ((rv = nng_req0_open(&in->sock)) != 0) {
		mall_status_set(st, MALL_INTERNAL, "could not open rpc socket for %s: %s",
		                c->service, nng_strerror(rv));
		free(in->url);
		free(in);
		return NULL;
	}
	/* dialers copy these from the socket when they are created */
	if ((rv = nng_socket_set_ms(in->sock, NNG_OPT_REQ_RESENDTIME, RESEND_MS)) != 0 ||
	    (rv = nng_socket_set_size(in->sock, NNG_OPT_RECVMAXSZ, c->o.max_msg)) != 0 ||
	    (rv = nng_socket_set_ms(in->sock, NNG_OPT_RECONNMINT, 100)) != 0 ||
	    (rv = nng_socket_set_ms(in->sock, NNG_OPT_RECONNMAXT, 2000)) != 0 ||
	    (rv = nng_pipe_notify(in->sock, NNG_PIPE_EV_ADD_POST, pipe_cb, in)) != 0 ||
	    (rv = nng_pipe_notify(in->sock, NNG_PIPE_EV_REM_POST, pipe_cb, in)) != 0 ||
	    (rv = nng_dial(in->sock, url, &in->dialer, NNG_FLAG_NONBLOCK)) != 0) {
		mall_status_set(st, MALL_INVALID_ARGUMENT, "could not dial %s at %s: %s",
		                c->service, url, nng_strerror(rv));
		nng_close(in->sock);
		free(in->url);
		free(in);
		return NULL;
	}
	return in;
}

/* chan_new: a channel on in's socket, or NULL with the nng error in *rv. */
static chan *
chan_new(instance *in, int *rv)
{
	chan *ch = mall_xcalloc(1, sizeof(*ch));
	if ((*rv = nng_aio_alloc(&ch->aio, NULL, NULL)) != 0) {
		free(ch);
		return NULL;
	}
	if ((*rv = nng_ctx_open(&ch->ctx, in->sock)) != 0) {
		nng_aio_free(ch->aio);
		free(ch);
		return NULL;
	}
	return ch;
}

/* chan_free: closes the context (unless its socket is closed, which closed
 * it) and frees the channel.  No operation may be running on it. */
static void
chan_free(chan *ch, bool sock_closed)
{
	if (!sock_closed)
		nng_ctx_close(ch->ctx);
	nng_aio_free(ch->aio);
	free(ch);
}

static void
chans_free(chan *list, bool sock_closed)
{
	while (list != NULL) {
		chan *ch = list;
		list = ch->next;
		chan_free(ch, sock_closed);
	}
}

/* instance_free: after its socket is closed. */
static void
instance_free(instance *in)
{
	chans_free(in->idle, true);
	free(in->url);
	free(in);
}

/* kick: re-dials an instance now rather than when nng's back-off says.  The
 * caller set in->kicking under c->mu; runs without it. */
static void
kick(mall_rpc_client *c, instance *in)
{
	nng_dialer d;
	nng_dialer_close(in->dialer);
	int rv = nng_dial(in->sock, in->url, &d, NNG_FLAG_NONBLOCK);
	pthread_mutex_lock(&c->mu);
	if (rv == 0)
		in->dialer = d;
	else
		snprintf(in->why, sizeof(in->why), "%s", nng_strerror(rv));
	in->kicking = false;
	in->last_kick = mono_ms();
	pthread_cond_broadcast(&c->changed);
	pthread_mutex_unlock(&c->mu);
}

/* ---- address resolution ---- */

/* parse_source: splits "tcp://host:port" when host is a name to resolve. */
static void
parse_source(source *src)
{
	const char *spec = src->spec;
	if (strncmp(spec, "tcp://", 6) != 0)
		return;
	const char *hp = spec + 6;
	if (hp[0] == '[') /* IPv6 literal */
		return;
	const char *colon = strrchr(hp, ':');
	if (colon == NULL || colon == hp)
		return;
	char host[256];
	size_t n = (size_t)(colon - hp);
	if (n >= sizeof(host))
		return;
	memcpy(host, hp, n);
	host[n] = '\0';
	unsigned char buf[sizeof(struct in6_addr)];
	if (inet_pton(AF_INET, host, buf) == 1 || strcmp(host, "*") == 0)
		return;
	src->host = mall_xstrdup(host);
	src->port = mall_xstrdup(colon + 1);
}

/* resolve: the URLs of every address of src->host (NULL-terminated, malloc'd),
 * or NULL with src->error set. */
static char **
resolve(source *src, char *error, size_t cap)
{
	struct addrinfo hints = {
	    .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	int rv = getaddrinfo(src->host, src->port, &hints, &res);
	if (rv != 0) {
		snprintf(error, cap, "could not resolve %s: %s", src->host, gai_strerror(rv));
		return NULL;
	}
	size_t n = 0;
	for (struct addrinfo *a = res; a != NULL; a = a->ai_next)
		n++;
	char **urls = mall_xcalloc(n + 1, sizeof(char *));
	size_t k = 0;
	for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
		char ip[INET6_ADDRSTRLEN], url[INET6_ADDRSTRLEN + 32];
		if (a->ai_family == AF_INET) {
			inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)a->ai_addr)->sin_addr,
			          ip, sizeof(ip));
			snprintf(url, sizeof(url), "tcp://%s:%s", ip, src->port);
		} else if (a->ai_family == AF_INET6) {
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)(void *)a->ai_addr)->sin6_addr,
			          ip, sizeof(ip));
			snprintf(url, sizeof(url), "tcp://[%s]:%s", ip, src->port);
		} else {
			continue;
		}
		bool dup = false;
		for (size_t j = 0; j < k && !dup; j++)
			dup = strcmp(urls[j], url) == 0;
		if (!dup)
			urls[k++] = mall_xstrdup(url);
	}
	freeaddrinfo(res);
	if (k == 0) {
		free(urls);
		snprintf(error, cap, "could not resolve %s: no address", src->host);
		return NULL;
	}
	return urls;
}

static void
free_urls(char **urls)
{
	if (urls == NULL)
		return;
	for (char **u = urls; *u != NULL; u++)
		free(*u);
	free(urls);
}

/* sync_source: makes the instances of source index si match urls. */
static void
sync_source(mall_rpc_client *c, int si, char **urls)
{
	/* create the new instances first, outside the lock (dialing may take it) */
	instance *fresh = NULL;
	for (char **u = urls; *u != NULL; u++) {
		bool known = false;
		pthread_mutex_lock(&c->mu);
		for (instance *in = c->insts; in != NULL && !known; in = in->next)
			known = in->source == si && !in->removed && strcmp(in->url, *u) == 0;
		pthread_mutex_unlock(&c->mu);
		if (known)
			continue;
		mall_status st;
		instance *in = instance_new(c, *u, si, &st);
		if (in == NULL) {
			mall_log_warn(NULL, "%s", st.message);
			continue;
		}
		in->next = fresh;
		fresh = in;
		mall_log_info(NULL, "rpc client for %s: instance %s added", c->service, *u);
	}
	pthread_mutex_lock(&c->mu);
	for (instance *in = c->insts; in != NULL; in = in->next) {
		if (in->source != si || in->removed)
			continue;
		bool keep = false;
		for (char **u = urls; *u != NULL && !keep; u++)
			keep = strcmp(in->url, *u) == 0;
		if (!keep) {
			in->removed = true;
			mall_log_info(NULL, "rpc client for %s: instance %s removed", c->service,
			              in->url);
		}
	}
	while (fresh != NULL) {
		instance *in = fresh;
		fresh = in->next;
		in->next = c->insts;
		c->insts = in;
	}
	pthread_mutex_unlock(&c->mu);
}

/* close_removed: closes instances that re-resolution removed, once no call
 * uses them; they are freed with the client. */
static void
close_removed(mall_rpc_client *c)
{
	for (;;) {
		instance *victim = NULL;
		pthread_mutex_lock(&c->mu);
		for (instance **pp = &c->insts; *pp != NULL; pp = &(*pp)->next) {
			instance *in = *pp;
			if (in->removed && in->outstanding == 0 && !in->kicking) {
				*pp = in->next;
				victim = in;
				break;
			}
		}
		pthread_mutex_unlock(&c->mu);
		if (victim == NULL)
			return;
		nng_close(victim->sock);
		/* unlinked and idle: nobody else reaches its channels */
		chans_free(victim->idle, true);
		victim->idle = NULL;
		victim->nidle = 0;
		pthread_mutex_lock(&c->mu);
		victim->closed = true;
		victim->next = c->retired;
		c->retired = victim;
		pthread_mutex_unlock(&c->mu);
	}
}

static void
resolve_all(mall_rpc_client *c)
{
	for (int si = 0; si < c->nsources; si++) {
		source *src = &c->sources[si];
		if (src->host == NULL)
			continue;
		char err[128];
		char **urls = resolve(src, err, sizeof(err));
		if (urls != NULL) {
			sync_source(c, si, urls);
			free_urls(urls);
			err[0] = '\0';
		} else {
			mall_log_warn(NULL, "rpc client for %s: %s", c->service, err);
		}
		pthread_mutex_lock(&c->mu);
		snprintf(src->error, sizeof(src->error), "%s", err);
		pthread_mutex_unlock(&c->mu);
	}
	close_removed(c);
}

/* resolver_main: re-resolves DNS names every resolve_ms (every second while a
 * name has no address). */
static void *
resolver_main(void *arg)
{
	mall_rpc_client *c = arg;
	pthread_mutex_lock(&c->mu);
	while (!c->stopping) {
		int64_t period = c->o.resolve_ms;
		for (int si = 0; si < c->nsources; si++)
			if (c->sources[si].host != NULL && c->sources[si].error[0] != '\0' &&
			    period > RESOLVE_RETRY_MS)
				period = RESOLVE_RETRY_MS;
		int64_t until = mono_ms() + period;
		while (!c->stopping && mono_ms() < until)
			wait_until(c, until);
		if (c->stopping)
			break;
		pthread_mutex_unlock(&c->mu);
		resolve_all(c);
		pthread_mutex_lock(&c->mu);
	}
	pthread_mutex_unlock(&c->mu);
	return NULL;
}

/* ---- client ---- */

mall_code
mall_rpc_client_new(mall_rpc_client **out, const char *service, const char *addresses,
                    const mall_rpc_client_opts *opts, mall_status *st)
{
	*out = NULL;
	mall_rpc_client *c = mall_xcalloc(1, sizeof(*c));
	c->service = mall_xstrdup(service && service[0] ? service : "peer");
	c->addresses = mall_xstrdup(addresses ? addresses : "");
	if (opts != NULL)
		c->o = *opts;
	if (c->o.timeout_ms <= 0)
		c->o.timeout_ms = DEFAULT_TIMEOUT_MS;
	if (c->o.try_timeout_ms <= 0)
		c->o.try_timeout_ms = DEFAULT_TRY_TIMEOUT_MS;
	if (c->o.max_tries <= 0)
		c->o.max_tries = DEFAULT_MAX_TRIES;
	if (c->o.max_msg == 0)
		c->o.max_msg = DEFAULT_MAX_MSG;
	if (c->o.eject_ms <= 0)
		c->o.eject_ms = DEFAULT_EJECT_MS;
	if (c->o.resolve_ms <= 0)
		c->o.resolve_ms = DEFAULT_RESOLVE_MS;

	pthread_mutex_init(&c->mu, NULL);
	pthread_once(&sodium_once, init_sodium);
	randombytes_buf(&c->tie, sizeof(c->tie));
	c->tie |= 1; /* xorshift must not start at 0 */
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&c->changed, &ca);
	pthread_condattr_destroy(&ca);

	/* "tcp://a:1, tcp://b:2" -> sources */
	char *list = mall_xstrdup(c->addresses), *save = NULL;
	for (char *tok = strtok_r(list, ",", &save); tok != NULL;
	     tok = strtok_r(NULL, ",", &save)) {
		while (*tok == ' ' || *tok == '\t')
			tok++;
		size_t n = strlen(tok);
		while (n > 0 && (tok[n - 1] == ' ' || tok[n - 1] == '\t'))
			tok[--n] = '\0';
		if (n == 0)
			continue;
		c->sources = mall_xrealloc(c->sources, (size_t)(c->nsources + 1) * sizeof(source));
		source *src = &c->sources[c->nsources++];
		memset(src, 0, sizeof(*src));
		src->spec = mall_xstrdup(tok);
		parse_source(src);
		if (src->host != NULL)
			c->has_dns = true;
	}
	free(list);
	if (c->nsources == 0) {
		mall_rpc_client_free(c);
		return mall_status_set(st, MALL_INVALID_ARGUMENT, "no address given for %s",
		                       service ? service : "peer");
	}
	for (int si = 0; si < c->nsources; si++) {
		if (c->sources[si].host != NULL)
			continue;
		instance *in = instance_new(c, c->sources[si].spec, si, st);
		if (in == NULL) {
			mall_code code = st->code;
			mall_rpc_client_free(c);
			return code;
		}
		in->next = c->insts;
		c->insts = in;
	}
	if (c->has_dns) {
		resolve_all(c);
		int rv = pthread_create(&c->resolver, NULL, resolver_main, c);
		if (rv != 0) {
			mall_rpc_client_free(c);
			return mall_status_set(st, MALL_INTERNAL,
			                       "could not start the resolver of %s: %s", service,
			                       strerror(rv));
		}
		c->resolver_started = true;
	}
	*out = c;
	return MALL_OK;
}

void
mall_rpc_client_free(mall_rpc_client *c)
{
	if (c == NULL)
		return;
	pthread_mutex_lock(&c->mu);
	c->stopping = true;
	pthread_cond_broadcast(&c->changed);
	pthread_mutex_unlock(&c->mu);
	if (c->resolver_started)
		pthread_join(c->resolver, NULL);
	/* close without holding c->mu: closing runs the pipe callbacks */
	for (instance *in = c->insts; in != NULL; in = in->next)
		nng_close(in->sock);
	while (c->insts != NULL) {
		instance *in = c->insts;
		c->insts = in->next;
		instance_free(in);
	}
	while (c->retired != NULL) {
		instance *in = c->retired;
		c->retired = in->next;
		instance_free(in);
	}
	for (int i = 0; i < c->nsources; i++) {
		free(c->sources[i].spec);
		free(c->sources[i].host);
		free(c->sources[i].port);
	}
	free(c->sources);
	pthread_cond_destroy(&c->changed);
	pthread_mutex_destroy(&c->mu);
	free(c->service);
	free(c->addresses);
	free(c);
}

/* choose: the connected instance for the next attempt (c->mu held): healthy
 * before ejected, not yet tried by this call before tried, then the fewest
 * calls outstanding, ties broken at random.  *probe: the attempt is the one
 * trial of an instance whose ejection has expired. */
static instance *
choose(mall_rpc_client *c, int64_t now, instance *const *tried, int ntried, bool *probe)
{
	unsigned n = 0;
	for (instance *in = c->insts; in != NULL; in = in->next)
		n++;
	/* a pseudo-random start: a plain rotation can fall in step with the
	 * retries and send every first attempt to the same instance */
	c->tie ^= c->tie << 13;
	c->tie ^= c->tie >> 17;
	c->tie ^= c->tie << 5;
	unsigned start = n ? c->tie % n : 0;
	instance *best = NULL;
	int best_cls = 0, best_out = 0;
	unsigned best_rot = 0, idx = 0;
	for (instance *in = c->insts; in != NULL; in = in->next, idx++) {
		if (in->removed || in->npipes == 0 || in->kicking)
			continue;
		bool was_tried = false;
		for (int i = 0; i < ntried && !was_tried; i++)
			was_tried = tried[i] == in;
		bool ejected = in->ejected_until != 0 && (now < in->ejected_until || in->probing);
		int cls = (ejected ? 2 : 0) + (was_tried ? 1 : 0);
		unsigned rot = (idx + n - start) % n;
		if (best == NULL || cls < best_cls ||
		    (cls == best_cls && (in->outstanding < best_out ||
		                         (in->outstanding == best_out && rot < best_rot)))) {
			best = in;
			best_cls = cls;
			best_out = in->outstanding;
			best_rot = rot;
		}
	}
	*probe = best != NULL && best->ejected_until != 0 && now >= best->ejected_until &&
	         !best->probing;
	return best;
}

/* eject: sets a failing instance aside (c->mu held). */
static void
eject(mall_rpc_client *c, instance *in, int64_t now)
{
	if (in->recovered_at != 0 && now - in->recovered_at > MAX_EJECT_MS)
		in->ejections = 0; /* healthy for a good while: start over */
	int64_t ms = c->o.eject_ms;
	for (int i = 0; i < in->ejections && ms < MAX_EJECT_MS; i++)
		ms *= 2;
	if (ms > MAX_EJECT_MS)
		ms = MAX_EJECT_MS;
	in->ejections++;
	in->ejected_until = now + ms;
	in->failures = 0;
	mall_log_warn(NULL, "rpc client for %s: instance %s set aside for %lld ms (%s)", c->service,
	              in->url, (long long)ms, in->why);
}

/* run_op: starts a send (or receive) on ch for call k unless the call was
 * cancelled, and waits for it.  Returns 0 or an nng error. */
static int
run_op(call *k, chan *ch, bool send)
{
	int rv = 0;
	pthread_mutex_lock(&k->mu);
	if (k->cancelled) {
		rv = NNG_ECANCELED;
	} else {
		k->aio = ch->aio;
		if (send)
			nng_ctx_send(ch->ctx, ch->aio);
		else
			nng_ctx_recv(ch->ctx, ch->aio);
	}
	pthread_mutex_unlock(&k->mu);
	if (rv != 0)
		return rv;
	nng_aio_wait(ch->aio);
	return nng_aio_result(ch->aio);
}

/* attempt: one request/reply on one instance within try_ms, on the channel
 * *chp (opened here when NULL).  The envelope env, size bytes packed, is
 * packed straight into the message.  Returns 0 with the reply in *out, or an
 * nng error (NNG_ECANCELED when the instance's connection went away); either
 * way the channel, if any, is left in *chp for the caller to keep or close. */
static int
attempt(instance *in, call *k, chan **chp, const Mall__Rpc__Request *env, size_t size,
        int64_t try_ms, nng_msg **out)
{
	int64_t end = mono_ms() + try_ms;
	nng_msg *m;
	int rv;

	*out = NULL;
	if (*chp == NULL && (*chp = chan_new(in, &rv)) == NULL)
		return rv;
	chan *ch = *chp;
	if ((rv = nng_msg_alloc(&m, size)) != 0)
		return rv;
	mall__rpc__request__pack(env, nng_msg_body(m));
	nng_aio_set_msg(ch->aio, m);
	nng_aio_set_timeout(ch->aio, (nng_duration)try_ms);
	if ((rv = run_op(k, ch, true)) != 0) {
		/* a failed send leaves the message with us */
		nng_msg *left = nng_aio_get_msg(ch->aio);
		if (left != NULL)
			nng_msg_free(left);
		nng_aio_set_msg(ch->aio, NULL);
		return rv;
	}
	nng_aio_set_msg(ch->aio, NULL);

	int64_t left = end - mono_ms();
	if (left <= 0)
		return NNG_ETIMEDOUT;
	nng_aio_set_timeout(ch->aio, (nng_duration)left);
	if ((rv = run_op(k, ch, false)) != 0)
		return rv;
	*out = nng_aio_get_msg(ch->aio);
	nng_aio_set_msg(ch->aio, NULL);
	return 0;
}

/* unreachable: the reason no attempt could be made (c->mu held). */
static void
unreachable(mall_rpc_client *c, mall_status *st)
{
	const instance *only = NULL;
	int live = 0;
	for (const instance *in = c->insts; in != NULL; in = in->next)
		if (!in->removed) {
			live++;
			only = in;
		}
	const char *why = "no instance is connected";
	if (live == 1)
		why = only->why;
	for (int si = 0; live == 0 && si < c->nsources; si++)
		if (c->sources[si].error[0] != '\0')
			why = c->sources[si].error;
	mall_status_set(st, MALL_UNAVAILABLE, "could not reach %s at %s: %s", c->service,
	                live == 1 ? only->url : c->addresses, why);
}

static void
link_call(instance *in, call *k)
{
	k->prev = NULL;
	k->next = in->calls;
	if (in->calls != NULL)
		in->calls->prev = k;
	in->calls = k;
}

static void
unlink_call(instance *in, call *k)
{
	if (k->prev != NULL)
		k->prev->next = k->next;
	else
		in->calls = k->next;
	if (k->next != NULL)
		k->next->prev = k->prev;
	k->prev = k->next = NULL;
}

/* exchange: sends the envelope (size bytes packed) until an instance answers,
 * the tries run out or the deadline passes.  Returns MALL_OK with the reply in
 * *out, or the failure in st. */
static mall_code
exchange(mall_rpc_client *c, const char *full, const Mall__Rpc__Request *env, size_t size,
         int64_t start, int64_t deadline, bool safe, nng_msg **out, mall_status *st)
{
	call k;
	memset(&k, 0, sizeof(k));
	pthread_mutex_init(&k.mu, NULL);
	int rv;

	instance *tried[MAX_TRACKED_TRIES];
	int ntried = 0, tries = 0;
	int64_t wait_end = -1; /* end of this call's wait for a connection */
	char last[192] = "";
	mall_code code = MALL_OK;

	pthread_mutex_lock(&c->mu);
	for (;;) {
		int64_t now = mono_ms();
		if (now >= deadline) {
			code = mall_status_set(st, MALL_DEADLINE_EXCEEDED,
			                       "call of %s to %s timed out after %lld ms%s%s", full,
			                       c->service, (long long)(now - start),
			                       last[0] ? " at " : "", last);
			break;
		}
		if (tries >= c->o.max_tries) {
			code = mall_status_set(st, MALL_UNAVAILABLE, "could not reach %s at %s",
			                       c->service, last);
			break;
		}
		bool probe = false;
		instance *in = choose(c, now, tried, ntried, &probe);
		if (in == NULL) {
			/* nothing is connected: re-dial once, wait a little, give up */
			if (wait_end < 0) {
				instance *kicks[8];
				int nk = 0;
				for (instance *i = c->insts; i != NULL; i = i->next)
					if (!i->removed && !i->kicking &&
					    now >= i->last_kick + KICK_WAIT_MS && nk < 8) {
						i->kicking = true;
						kicks[nk++] = i;
					}
				if (nk > 0) {
					pthread_mutex_unlock(&c->mu);
					for (int j = 0; j < nk; j++)
						kick(c, kicks[j]);
					pthread_mutex_lock(&c->mu);
					now = mono_ms();
				}
				wait_end = now;
				for (instance *i = c->insts; i != NULL; i = i->next) {
					int64_t e = i->kicking ? now + KICK_WAIT_MS
					                       : i->last_kick + KICK_WAIT_MS;
					if (!i->ever_connected &&
					    e < i->created_ms + FIRST_DIAL_WAIT_MS)
						e = i->created_ms + FIRST_DIAL_WAIT_MS;
					if (!i->removed && e > wait_end)
						wait_end = e;
				}
				continue;
			}
			if (now < wait_end) {
				wait_until(c, wait_end < deadline ? wait_end : deadline);
				continue;
			}
			if (last[0] != '\0')
				mall_status_set(st, MALL_UNAVAILABLE, "could not reach %s at %s",
				                c->service, last);
			else
				unreachable(c, st);
			code = MALL_UNAVAILABLE;
			break;
		}
		in->outstanding++;
		if (probe)
			in->probing = true;
		k.cancelled = false;
		k.aio = NULL;
		link_call(in, &k);
		if (ntried < MAX_TRACKED_TRIES)
			tried[ntried++] = in;
		tries++;
		chan *ch = in->idle;
		if (ch != NULL) {
			in->idle = ch->next;
			in->nidle--;
			ch->next = NULL;
		}
		pthread_mutex_unlock(&c->mu);

		int64_t try_ms = c->o.try_timeout_ms;
		if (deadline - now < try_ms)
			try_ms = deadline - now;
		rv = attempt(in, &k, &ch, env, size, try_ms, out);

		pthread_mutex_lock(&c->mu);
		unlink_call(in, &k); /* from here no cancellation reaches ch */
		k.aio = NULL;
		if (ch != NULL && rv == 0 && !in->removed && in->nidle < MAX_IDLE_CHANS) {
			ch->next = in->idle;
			in->idle = ch;
			in->nidle++;
		} else if (ch != NULL) {
			/* failed (or not wanted): closed, never reused.  The call still
			 * counts as outstanding, so the socket stays open meanwhile. */
			pthread_mutex_unlock(&c->mu);
			chan_free(ch, false);
			pthread_mutex_lock(&c->mu);
		}
		in->outstanding--;
		now = mono_ms();
		if (probe)
			in->probing = false;
		if (rv == 0) {
			in->failures = 0;
			if (probe) {
				in->ejected_until = 0;
				in->recovered_at = now;
			}
			break;
		}
		if (k.cancelled) {
			/* the instance went away: not its own failure, it is down */
			snprintf(last, sizeof(last), "%s: connection lost", in->url);
		} else {
			if (rv == NNG_ETIMEDOUT)
				snprintf(in->why, sizeof(in->why), "no reply within %lld ms",
				         (long long)try_ms);
			else
				snprintf(in->why, sizeof(in->why), "%s", nng_strerror(rv));
			snprintf(last, sizeof(last), "%s: %s", in->url, in->why);
			/* failures while set aside do not extend the ejection */
			if (probe || (in->ejected_until == 0 && ++in->failures >= EJECT_AFTER))
				eject(c, in, now);
		}
		if (!safe) {
			code = mall_status_set(
			    st, rv == NNG_ETIMEDOUT ? MALL_DEADLINE_EXCEEDED : MALL_UNAVAILABLE,
			    "call of %s to %s failed at %s and is not safe to repeat", full,
			    c->service, last);
			break;
		}
	}
	pthread_mutex_unlock(&c->mu);
	pthread_mutex_destroy(&k.mu);
	return code;
}

static void
copy_status(mall_status *st, const Mall__Rpc__Status *rs)
{
	mall_code code = (int)rs->code >= 0 && (int)rs->code <= MALL_CODE_MAX ? (mall_code)rs->code
	                                                                      : MALL_UNKNOWN;
	mall_status_set(st, code, "%s", rs->message ? rs->message : "");
	st->nfields = 0;
	for (size_t i = 0; i < rs->n_fields && st->nfields < MALL_STATUS_MAX_FIELDS; i++) {
		mall_field_error *f = &st->fields[st->nfields++];
		snprintf(f->field, sizeof(f->field), "%s",
		         rs->fields[i]->field ? rs->fields[i]->field : "");
		snprintf(f->message, sizeof(f->message), "%s",
		         rs->fields[i]->message ? rs->fields[i]->message : "");
	}
	snprintf(st->reason, sizeof(st->reason), "%s", rs->reason ? rs->reason : "");
	for (size_t i = 0; i < rs->n_details; i++)
		mall_status_detail(st, rs->details[i]->key ? rs->details[i]->key : "",
		                   rs->details[i]->value);
}

mall_code
mall_rpc_call(mall_rpc_client *c, const ProtobufCServiceDescriptor *svc, const char *method,
              const ProtobufCMessage *req, ProtobufCMessage **reply, mall_arena *arena,
              const mall_rpc_call_opts *opts, mall_status *st)
{
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	*reply = NULL;
	mall_status_clear(st);

	const ProtobufCMethodDescriptor *md =
	    svc ? protobuf_c_service_descriptor_get_method_by_name(svc, method) : NULL;
	if (md == NULL)
		return mall_status_set(st, MALL_INTERNAL, "service %s has no method %s",
		                       svc ? svc->name : "(null)", method);
	if (req == NULL || req->descriptor != md->input)
		return mall_status_set(st, MALL_INTERNAL, "%s/%s takes a %s, not a %s", svc->name,
		                       method, md->input->name,
		                       req ? req->descriptor->name : "null message");
	char full[256];
	snprintf(full, sizeof(full), "%s/%s", svc->name, method);

	int64_t timeout = opts && opts->timeout_ms > 0 ? opts->timeout_ms : c->o.timeout_ms;
	if (timeout > RESEND_MS)
		timeout = RESEND_MS; /* nng must never re-send on its own */
	int64_t start = mono_ms();
	int64_t deadline = start + timeout;

	char trace[33], key[33];
	if (opts && opts->trace_id && opts->trace_id[0])
		snprintf(trace, sizeof(trace), "%s", opts->trace_id);
	else
		mall_rpc_new_id(trace);
	const char *idem = "";
	bool mutating = opts && (opts->flags & MALL_RPC_CALL_MUTATING);
	if (opts && opts->idempotency_key && opts->idempotency_key[0]) {
		idem = opts->idempotency_key;
	} else if (mutating) {
		mall_rpc_new_id(key);
		idem = key;
	}
	/* reads are safe to repeat by contract; writes because of the key */
	bool safe = !mutating || idem[0] != '\0';

	Mall__Rpc__Request env = MALL__RPC__REQUEST__INIT;
	Mall__Rpc__Caller caller = MALL__RPC__CALLER__INIT;
	env.method = full;
	env.trace_id = trace;
	env.idempotency_key = (char *)idem;
	if (opts && (opts->member_id || opts->admin_id || opts->roles)) {
		caller.member_id = opts->member_id;
		caller.admin_id = opts->admin_id;
		size_t nroles = 0;
		while (opts->roles && opts->roles[nroles])
			nroles++;
		caller.n_roles = nroles;
		caller.roles = (char **)opts->roles;
		env.caller = &caller;
	}
	env.deadline_unix_ms = unix_ms() + timeout;
	uint8_t stack_body[BODY_STACK];
	size_t blen = protobuf_c_message_get_packed_size(req);
	uint8_t *body = blen <= sizeof(stack_body) ? stack_body : mall_arena_alloc(arena, blen);
	env.body.len = protobuf_c_message_pack(req, body);
	env.body.data = body;
	size_t size = mall__rpc__request__get_packed_size(&env);
	mall_code code;
	nng_msg *rmsg = NULL;
	if (size > c->o.max_msg) {
		code = mall_status_set(st, MALL_RESOURCE_EXHAUSTED,
		                       "request %s to %s is %zu bytes, over the limit of %zu bytes",
		                       full, c->service, size, c->o.max_msg);
		goto out;
	}

	code = exchange(c, full, &env, size, start, deadline, safe, &rmsg, st);
	if (code != MALL_OK)
		goto out;

	ProtobufCAllocator *pa = mall_arena_pb(arena);
	Mall__Rpc__Reply *rep = mall__rpc__reply__unpack(pa, nng_msg_len(rmsg), nng_msg_body(rmsg));
	nng_msg_free(rmsg);
	if (rep == NULL) {
		code =
		    mall_status_set(st, MALL_INTERNAL, "could not decode the reply of %s from %s",
		                    full, c->service);
		goto out;
	}
	if (rep->status != NULL && rep->status->code != MALL__RPC__CODE__OK) {
		copy_status(st, rep->status);
		code = st->code;
		goto out;
	}
	*reply = protobuf_c_message_unpack(md->output, pa, rep->body.len, rep->body.data);
	if (*reply == NULL) {
		code = mall_status_set(st, MALL_INTERNAL,
		                       "could not decode the reply of %s from %s as %s", full,
		                       c->service, md->output->name);
		goto out;
	}
	code = MALL_OK;
out:;
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	mall_metrics_observe("mall_rpc_client", full, mall_code_name(code),
	                     (double)(t1.tv_sec - t0.tv_sec) +
	                         (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
	if (code != MALL_OK && mall_log_enabled(MALL_LOG_DEBUG))
		mall_log_debug(trace, "%s: %s", full, st->message);
	return code;
}

mall_code
mall_rpc_ping(mall_rpc_client *c, char *service_out, size_t service_cap, int64_t *pid_out,
              mall_status *st)
{
	mall_arena *a = mall_arena_new();
	Mall__Rpc__PingRequest req = MALL__RPC__PING_REQUEST__INIT;
	ProtobufCMessage *rep = NULL;
	mall_code code =
	    mall_rpc_call(c, &mall__rpc__rpc__descriptor, "Ping", &req.base, &rep, a, NULL, st);
	if (code == MALL_OK) {
		const Mall__Rpc__PingReply *pr = (const Mall__Rpc__PingReply *)rep;
		if (service_out != NULL && service_cap > 0)
			snprintf(service_out, service_cap, "%s", pr->service);
		if (pid_out != NULL)
			*pid_out = pr->pid;
	}
	mall_arena_free(a);
	return code;
}
