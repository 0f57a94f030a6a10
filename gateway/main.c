/*
 * main.c: mall-gateway, the HTTP front of mall: reads its settings, starts
 * the server (server.c) and waits for SIGTERM or SIGINT, on which readiness
 * goes false, civetweb stops (requests in flight finish) and it exits 0.
 * Bad settings exit 2 with every error logged.
 */
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config.h"
#include "gateway.h"
#include "log.h"

#ifndef MALL_GATEWAY_DEFAULT_WEB_ROOT
#error "MALL_GATEWAY_DEFAULT_WEB_ROOT must be defined (gateway/CMakeLists.txt)"
#endif

#define KiB (INT64_C(1024))
#define MiB (KiB * 1024)
#define GiB (MiB * 1024)

int
main(void)
{
	if (mall_log_init("gateway") != 0)
		return 2;

	mall_config cfg;
	mall_config_init(&cfg);
	mall_gw_config gc;
	memset(&gc, 0, sizeof(gc));
	gc.listen = mall_config_listen(&cfg, "MALL_GATEWAY_LISTEN", "127.0.0.1:8080");
	gc.catalog_addrs = mall_config_str(&cfg, "MALL_CATALOG_ADDRS", "tcp://127.0.0.1:7401");
	gc.member_addrs = mall_config_str(&cfg, "MALL_MEMBER_ADDRS", "tcp://127.0.0.1:7411");
	gc.cart_addrs = mall_config_str(&cfg, "MALL_CART_ADDRS", "tcp://127.0.0.1:7421");
	gc.order_addrs = mall_config_str(&cfg, "MALL_ORDER_ADDRS", "tcp://127.0.0.1:7431");
	gc.payment_addrs = mall_config_str(&cfg, "MALL_PAYMENT_ADDRS", "tcp://127.0.0.1:7441");
	/* public by design: the browser's payment window is opened with it */
	gc.pg_client_key = mall_config_str(&cfg, "MALL_PAYMENT_PG_CLIENT_KEY", "test_ck_sandbox");
	gc.pg_window_url = mall_config_str(&cfg, "MALL_GATEWAY_PG_WINDOW_URL",
	                                   "http://127.0.0.1:8091/sandbox/pay");
	const char *root =
	    mall_config_str(&cfg, "MALL_GATEWAY_WEB_ROOT", MALL_GATEWAY_DEFAULT_WEB_ROOT);
	gc.max_body = mall_config_size(&cfg, "MALL_GATEWAY_MAX_BODY", 1 * MiB, 1, 1 * GiB);
	gc.max_upload = mall_config_size(&cfg, "MALL_GATEWAY_MAX_UPLOAD", 50 * MiB, 1, 16 * GiB);
	gc.threads = (int)mall_config_int(&cfg, "MALL_GATEWAY_THREADS", 32, 1, 4096);
	gc.request_timeout_ms =
	    mall_config_duration_ms(&cfg, "MALL_GATEWAY_REQUEST_TIMEOUT", 10000, 100, 3600 * 1000);
	gc.rpc_timeout_ms = mall_config_duration_ms(&cfg, "MALL_RPC_TIMEOUT", 3000, 10, 600 * 1000);
	gc.confirm_wait_ms =
	    mall_config_duration_ms(&cfg, "MALL_GATEWAY_CONFIRM_WAIT", 2000, 0, 60 * 1000);
	gc.confirm_recheck_ms =
	    mall_config_duration_ms(&cfg, "MALL_GATEWAY_CONFIRM_RECHECK", 250, 10, 60 * 1000);
	gc.order_events_addrs = mall_config_str(&cfg, "MALL_ORDER_EVENTS_ADDRS", "");

	gc.redis_addr = mall_config_str(&cfg, "MALL_REDIS_ADDR", "127.0.0.1:6379");
	gc.session_ttl_ms = mall_config_duration_ms(&cfg, "MALL_GATEWAY_SESSION_TTL", 30 * 60000,
	                                            1000, 365LL * 24 * 3600 * 1000);
	gc.secure_cookies = mall_config_bool(&cfg, "MALL_GATEWAY_SECURE_COOKIES", false);
	gc.login_max_per_ip =
	    mall_config_int(&cfg, "MALL_GATEWAY_LOGIN_MAX_PER_IP", 20, 1, 1000000);
	gc.login_max_per_account =
	    mall_config_int(&cfg, "MALL_GATEWAY_LOGIN_MAX_PER_ACCOUNT", 5, 1, 1000000);
	gc.login_window_ms = mall_config_duration_ms(&cfg, "MALL_GATEWAY_LOGIN_WINDOW", 10 * 60000,
	                                             1000, 24LL * 3600 * 1000);

	char root_real[PATH_MAX];
	struct stat sb;
	if (realpath(root, root_real) == NULL || stat(root_real, &sb) != 0 || !S_ISDIR(sb.st_mode))
		mall_config_error(
		    &cfg, "MALL_GATEWAY_WEB_ROOT: \"%s\" is not an existing directory", root);
	gc.web_root = root_real;
	if (strncmp(gc.pg_window_url, "http://", 7) != 0 &&
	    strncmp(gc.pg_window_url, "https://", 8) != 0)
		mall_config_error(&cfg, "MALL_GATEWAY_PG_WINDOW_URL: \"%s\" is not an http(s) URL",
		                  gc.pg_window_url);
	if (mall_config_check(&cfg) != 0)
		return 2;

	/* SIGTERM and SIGINT are taken by sigwait below: block them before any
	 * thread starts so that every thread inherits the mask */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGTERM);
	sigaddset(&stop, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	/* a process started in the background by a shell inherits SIGINT ignored,
	 * and sigwait never sees an ignored signal: take both back */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	signal(SIGPIPE, SIG_IGN);

	mall_status st;
	mall_status_clear(&st);
	mall_gw *gw;
	if (mall_gw_start(&gw, &gc, &st) != MALL_OK) {
		mall_log_error(NULL, "could not start the gateway: %s", st.message);
		return st.code == MALL_INVALID_ARGUMENT ? 2 : 1;
	}
	mall_gw_set_ready(gw, true);
	mall_log_info(NULL,
	              "listening on %s (web root %s, catalog %s, member %s, cart %s, order %s, "
	              "payment %s, %d threads, body limit %lld bytes)",
	              gc.listen, gc.web_root, gc.catalog_addrs, gc.member_addrs, gc.cart_addrs,
	              gc.order_addrs, gc.payment_addrs, gc.threads, (long long)gc.max_body);

	int sig = 0;
	while (sigwait(&stop, &sig) != 0)
		;
	mall_log_info(NULL, "received %s: stopping", sig == SIGTERM ? "SIGTERM" : "SIGINT");
	mall_gw_set_ready(gw, false);
	mall_gw_stop(gw);
	mall_log_info(NULL, "stopped");
	return 0;
}
