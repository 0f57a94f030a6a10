/* Unit tests of lib/ops.c: /healthz, /readyz, /metrics over real HTTP. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "metrics.h"
#include "ops.h"

static int
free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t len = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static int
connect_to(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET,
	                        .sin_port = htons((uint16_t)port),
	                        .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	struct timeval tv = {5, 0};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

typedef struct response {
	int status;
	char type[128];
	char body[65536];
	size_t len;
} response;

/* One request on fd; reads exactly one response (by Content-Length). */
static void
request(int fd, const char *method, const char *path, response *r)
{
	char req[256];
	int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: test\r\n\r\n", method, path);
	assert_int_equal(write(fd, req, (size_t)n), n);
	static char buf[131072];
	size_t have = 0;
	char *end = NULL;
	while (end == NULL) {
		ssize_t k = read(fd, buf + have, sizeof(buf) - 1 - have);
		assert_true(k > 0);
		have += (size_t)k;
		buf[have] = '\0';
		end = strstr(buf, "\r\n\r\n");
	}
	*end = '\0';
	assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &r->status), 1);
	long clen = -1;
	r->type[0] = '\0';
	for (char *l = strstr(buf, "\r\n"); l != NULL; l = strstr(l + 2, "\r\n")) {
		if (strncasecmp(l + 2, "Content-Length:", 15) == 0)
			clen = strtol(l + 17, NULL, 10);
		if (strncasecmp(l + 2, "Content-Type:", 13) == 0) {
			const char *v = l + 15;
			while (*v == ' ')
				v++;
			size_t vl = strcspn(v, "\r");
			snprintf(r->type, sizeof(r->type), "%.*s", (int)vl, v);
		}
	}
	size_t head = (size_t)(end - buf) + 4;
	if (strcmp(method, "HEAD") == 0)
		clen = 0;
	if (clen < 0) { /* no length: the body ends with the connection */
		ssize_t k;
		while ((k = read(fd, buf + have, sizeof(buf) - 1 - have)) > 0)
			have += (size_t)k;
		clen = (long)(have - head);
	}
	while (have - head < (size_t)clen) {
		ssize_t k = read(fd, buf + have, sizeof(buf) - 1 - have);
		assert_true(k > 0);
		have += (size_t)k;
	}
	assert_true((size_t)clen < sizeof(r->body));
	memcpy(r->body, buf + head, (size_t)clen);
	r->body[clen] = '\0';
	r->len = (size_t)clen;
}

static void
get(int port, const char *method, const char *path, response *r)
{
	int fd = connect_to(port);
	request(fd, method, path, r);
	close(fd);
}

static void
test_health_ready_metrics(void **state)
{
	(void)state;
	int port = free_port();
	char listen[64];
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	mall_ops *o;
	mall_status st;
	if (mall_ops_start(&o, listen, "catalog", &st) != MALL_OK)
		fail_msg("%s", st.message);
	static response r;

	get(port, "GET", "/healthz", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"status\":\"ok\"}");
	assert_string_equal(r.type, "application/json");

	/* not ready until told, ready, then not ready again (draining) */
	get(port, "GET", "/readyz", &r);
	assert_int_equal(r.status, 503);
	mall_ops_set_ready(o, true);
	get(port, "GET", "/readyz", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.body, "{\"status\":\"ready\"}");
	mall_ops_set_ready(o, false);
	get(port, "GET", "/readyz", &r);
	assert_int_equal(r.status, 503);
	/* liveness does not depend on readiness */
	get(port, "GET", "/healthz", &r);
	assert_int_equal(r.status, 200);

	mall_metrics_reset();
	mall_metrics_observe("mall_rpc_server", "mall.catalog.Catalog/GetProduct", "OK", 0.002);
	get(port, "GET", "/metrics", &r);
	assert_int_equal(r.status, 200);
	assert_string_equal(r.type, "text/plain; version=0.0.4; charset=utf-8");
	assert_non_null(strstr(r.body, "# TYPE mall_rpc_server_requests_total counter\n"));
	assert_non_null(strstr(r.body, "mall_rpc_server_requests_total{method=\"mall.catalog."
	                               "Catalog/GetProduct\",code=\"OK\"} 1\n"));

	get(port, "HEAD", "/healthz", &r);
	assert_int_equal(r.status, 200);
	get(port, "POST", "/healthz", &r);
	assert_int_equal(r.status, 405);
	get(port, "GET", "/nothing-here", &r);
	assert_int_equal(r.status, 404);
	get(port, "GET", "/healthz/more", &r);
	assert_int_equal(r.status, 404);

	mall_ops_stop(o);
	mall_ops_stop(NULL);
}

static void
test_keep_alive_is_fast(void **state)
{
	(void)state;
	int port = free_port();
	char listen[64];
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	mall_ops *o;
	mall_status st;
	assert_int_equal(mall_ops_start(&o, listen, "catalog", &st), MALL_OK);
	int fd = connect_to(port);
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	static response r;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (int i = 0; i < 50; i++) {
		request(fd, "GET", "/healthz", &r);
		assert_int_equal(r.status, 200);
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
	/* Nagle against delayed ACK would cost ~40 ms a request: 2 s here */
	if (ms > 1000)
		fail_msg("50 keep-alive requests took %.0f ms", ms);
	close(fd);
	mall_ops_stop(o);
}

static void
test_bad_addresses(void **state)
{
	(void)state;
	mall_ops *o = (void *)1;
	mall_status st;
	assert_int_equal(mall_ops_start(&o, "127.0.0.1:0", "catalog", &st), MALL_INVALID_ARGUMENT);
	assert_null(o);
	assert_non_null(strstr(st.message, "127.0.0.1:0"));
	assert_int_equal(mall_ops_start(&o, "nonsense", "catalog", &st), MALL_INVALID_ARGUMENT);
	assert_int_equal(mall_ops_start(&o, "127.0.0.1:http", "catalog", &st),
	                 MALL_INVALID_ARGUMENT);

	/* a port in use: a clear error, not a crash */
	int port = free_port();
	char listen[64];
	snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
	mall_ops *first;
	assert_int_equal(mall_ops_start(&first, listen, "catalog", &st), MALL_OK);
	assert_int_equal(mall_ops_start(&o, listen, "catalog", &st), MALL_UNAVAILABLE);
	assert_null(o);
	assert_non_null(strstr(st.message, "could not start the ops endpoint of catalog on"));
	mall_ops_stop(first);
}

int
main(void)
{
	mall_log_set_level(MALL_LOG_ERROR);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_health_ready_metrics),
	    cmocka_unit_test(test_keep_alive_is_fast),
	    cmocka_unit_test(test_bad_addresses),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
