/*
 * ops.c: the ops HTTP endpoint of ops.h on civetweb.
 *
 * Three tiny in-memory handlers on a couple of civetweb threads: liveness,
 * readiness (a flag the service flips on start and on SIGTERM) and the
 * Prometheus rendering of metrics.h.  tcp_nodelay is on: without it civetweb
 * answers keep-alive requests ~40 ms late (Nagle against delayed ACK).
 */
#include "ops.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <civetweb.h>

#include "alloc.h"
#include "log.h"
#include "metrics.h"

struct mall_ops {
	struct mg_context *mg;
	char *service;
	char *listen;
	atomic_bool ready;
};

static pthread_once_t init_once = PTHREAD_ONCE_INIT;

static void
init_library(void)
{
	mg_init_library(0);
}

static int
is_get(const struct mg_request_info *ri)
{
	return strcmp(ri->request_method, "GET") == 0 || strcmp(ri->request_method, "HEAD") == 0;
}

static int
reply(struct mg_connection *conn, int status, const char *type, const char *body, size_t len)
{
	const struct mg_request_info *ri = mg_get_request_info(conn);
	char clen[32];
	snprintf(clen, sizeof(clen), "%zu", len);
	mg_response_header_start(conn, status);
	mg_response_header_add(conn, "Content-Type", type, -1);
	mg_response_header_add(conn, "Content-Length", clen, -1);
	mg_response_header_add(conn, "Cache-Control", "no-store", -1);
	if (status == 405)
		mg_response_header_add(conn, "Allow", "GET, HEAD", -1);
	mg_response_header_send(conn);
	if (strcmp(ri->request_method, "HEAD") != 0 && len > 0)
		mg_write(conn, body, len);
	return status;
}

static int
not_allowed(struct mg_connection *conn)
{
	static const char body[] = "{\"status\":\"method not allowed\"}";
	return reply(conn, 405, "application/json", body, sizeof(body) - 1);
}

static int
healthz(struct mg_connection *conn, void *arg)
{
	static const char body[] = "{\"status\":\"ok\"}";
	if (!is_get(mg_get_request_info(conn)))
		return not_allowed(conn);
	return reply(conn, 200, "application/json", body, sizeof(body) - 1);
}

static int
readyz(struct mg_connection *conn, void *arg)
{
	static const char yes[] = "{\"status\":\"ready\"}";
	static const char no[] = "{\"status\":\"not ready\"}";
	mall_ops *o = arg;
	if (!is_get(mg_get_request_info(conn)))
		return not_allowed(conn);
	if (atomic_load(&o->ready))
		return reply(conn, 200, "application/json", yes, sizeof(yes) - 1);
	return reply(conn, 503, "application/json", no, sizeof(no) - 1);
}

static int
metrics(struct mg_connection *conn, void *arg)
{
	if (!is_get(mg_get_request_info(conn)))
		return not_allowed(conn);
	size_t len;
	char *text = mall_metrics_render(&len);
	int rv = reply(conn, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
	return rv;
}

static int
log_message(const struct mg_connection *conn, const char *message)
{
	mall_log_warn(NULL, "ops endpoint: %s", message);
	return 1; /* handled: civetweb prints nothing itself */
}

mall_code
mall_ops_start(mall_ops **out, const char *listen, const char *service, mall_status *st)
{
	*out = NULL;
	const char *colon = listen ? strrchr(listen, ':') : NULL;
	char *end = NULL;
	long port = colon ? strtol(colon + 1, &end, 10) : 0;
	if (colon == NULL || colon == listen || end == colon + 1 || *end != '\0' || port <= 0 ||
	    port > 65535)
		return mall_status_set(
		    st, MALL_INVALID_ARGUMENT,
		    "invalid ops address \"%s\" for %s: want host:port with a port "
		    "from 1 to 65535",
		    listen ? listen : "", service ? service : "?");
	pthread_once(&init_once, init_library);

	mall_ops *o = mall_xcalloc(1, sizeof(*o));
	o->service = mall_xstrdup(service ? service : "mall");
	o->listen = mall_xstrdup(listen);
	atomic_init(&o->ready, false);

	/* clang-format off */
	const char *options[] = {
	    "listening_ports", o->listen,
	    "num_threads", "2",
	    "tcp_nodelay", "1",
	    "enable_keep_alive", "yes",
	    "request_timeout_ms", "10000",
	    "keep_alive_timeout_ms", "10000",
	    NULL,
	};
	/* clang-format on */
	struct mg_callbacks cb;
	memset(&cb, 0, sizeof(cb));
	cb.log_message = log_message;
	struct mg_init_data init = {
	    .callbacks = &cb, .user_data = o, .configuration_options = options};
	char err[256] = "";
	unsigned errcode = 0;
	struct mg_error_data error = {
	    .code = &errcode, .text = err, .text_buffer_size = sizeof(err)};
	o->mg = mg_start2(&init, &error);
	if (o->mg == NULL) {
		mall_status_set(st, MALL_UNAVAILABLE,
		                "could not start the ops endpoint of %s on %s: %s", o->service,
		                listen, err[0] ? err : "unknown error");
		free(o->service);
		free(o->listen);
		free(o);
		return st->code;
	}
	mg_set_request_handler(o->mg, "/healthz$", healthz, o);
	mg_set_request_handler(o->mg, "/readyz$", readyz, o);
	mg_set_request_handler(o->mg, "/metrics$", metrics, o);
	*out = o;
	return MALL_OK;
}

void
mall_ops_set_ready(mall_ops *o, bool ready)
{
	if (o != NULL)
		atomic_store(&o->ready, ready);
}

void
mall_ops_stop(mall_ops *o)
{
	if (o == NULL)
		return;
	mg_stop(o->mg);
	free(o->service);
	free(o->listen);
	free(o);
}
