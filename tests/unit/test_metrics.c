/* Unit tests of lib/metrics.c: counts, histogram buckets, the Prometheus text. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static int
reset(void **state)
{
	(void)state;
	mall_metrics_reset();
	return 0;
}

static void
assert_has(const char *text, const char *line)
{
	if (strstr(text, line) == NULL)
		fail_msg("missing line:\n%s\nin:\n%s", line, text);
}

static void
test_empty_registry_renders_nothing(void **state)
{
	(void)state;
	size_t len = 99;
	char *text = mall_metrics_render(&len);
	assert_int_equal(len, 0);
	assert_string_equal(text, "");
	free(text);
}

static void
test_counts_and_histogram(void **state)
{
	(void)state;
	const char *m = "mall.catalog.Catalog/ListProducts";
	mall_metrics_observe("mall_rpc_server", m, "OK", 0.0003); /* le 0.0005 */
	mall_metrics_observe("mall_rpc_server", m, "OK",
	                     0.0005); /* le 0.0005: bounds are inclusive */
	mall_metrics_observe("mall_rpc_server", m, "OK", 0.004);      /* le 0.005 */
	mall_metrics_observe("mall_rpc_server", m, "NOT_FOUND", 0.2); /* le 0.25 */
	mall_metrics_observe("mall_rpc_server", m, "OK", 12.0);       /* only +Inf */
	size_t len;
	char *text = mall_metrics_render(&len);
	assert_int_equal(len, strlen(text));

	assert_has(text, "# HELP mall_rpc_server_requests_total ");
	assert_has(text, "# TYPE mall_rpc_server_requests_total counter\n");
	assert_has(text, "mall_rpc_server_requests_total{method=\"mall.catalog.Catalog/"
	                 "ListProducts\",code=\"OK\"} 4\n");
	assert_has(text, "mall_rpc_server_requests_total{method=\"mall.catalog.Catalog/"
	                 "ListProducts\",code=\"NOT_FOUND\"} 1\n");
	assert_has(text, "# HELP mall_rpc_server_duration_seconds ");
	assert_has(text, "# TYPE mall_rpc_server_duration_seconds histogram\n");
	const char *p = "mall_rpc_server_duration_seconds_bucket{method=\"mall.catalog.Catalog/"
	                "ListProducts\",le=";
	char line[256];
	struct {
		const char *le;
		int count;
	} want[] = {{"0.0005", 2}, {"0.001", 2}, {"0.0025", 2}, {"0.005", 3}, {"0.01", 3},
	            {"0.025", 3},  {"0.05", 3},  {"0.1", 3},    {"0.25", 4},  {"0.5", 4},
	            {"1", 4},      {"2.5", 4},   {"5", 4},      {"10", 4},    {"+Inf", 5}};
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		snprintf(line, sizeof(line), "%s\"%s\"} %d\n", p, want[i].le, want[i].count);
		assert_has(text, line);
	}
	assert_has(text, "mall_rpc_server_duration_seconds_count{method=\"mall.catalog.Catalog/"
	                 "ListProducts\"} 5\n");
	assert_has(text, "mall_rpc_server_duration_seconds_sum{method=\"mall.catalog.Catalog/"
	                 "ListProducts\"} 12.2048\n");
	/* the TYPE line comes before the samples of its family, once */
	assert_true(strstr(text, "# TYPE mall_rpc_server_requests_total") <
	            strstr(text, "mall_rpc_server_requests_total{"));
	assert_null(strstr(strstr(text, "# TYPE mall_rpc_server_requests_total") + 1,
	                   "# TYPE mall_rpc_server_requests_total"));
	free(text);
}

static void
test_families_are_separate_and_labels_escaped(void **state)
{
	(void)state;
	mall_metrics_observe("mall_http", "GET /api/v1/products/{id}", "200", 0.01);
	mall_metrics_observe("mall_rpc_client", "weird\"name\\with\nnewline", "UNAVAILABLE", 0.2);
	char *text = mall_metrics_render(NULL);
	assert_has(text, "# TYPE mall_http_requests_total counter\n");
	assert_has(text, "# TYPE mall_rpc_client_requests_total counter\n");
	assert_has(text, "mall_http_requests_total{method=\"GET /api/v1/products/{id}\","
	                 "code=\"200\"} 1\n");
	assert_has(text,
	           "mall_rpc_client_requests_total{method=\"weird\\\"name\\\\with\\nnewline\","
	           "code=\"UNAVAILABLE\"} 1\n");
	assert_null(strstr(text, "mall_http_requests_total{method=\"weird"));
	/* every line is a comment or a sample: no raw newline inside a label */
	for (char *l = text; *l; l = strchr(l, '\n') + 1) {
		assert_true(l[0] == '#' || strncmp(l, "mall_", 5) == 0);
		assert_non_null(strchr(l, '\n'));
	}
	free(text);

	mall_metrics_reset();
	text = mall_metrics_render(NULL);
	assert_string_equal(text, "");
	free(text);
}

#define THREADS 8
#define EACH 20000

static void *
hammer(void *arg)
{
	char method[32];
	snprintf(method, sizeof(method), "m%d", (int)(intptr_t)arg % 2);
	for (int i = 0; i < EACH; i++)
		mall_metrics_observe("mall_rpc_server", method, i % 2 ? "OK" : "INTERNAL", 0.001);
	return NULL;
}

static void
test_thread_safe_counts(void **state)
{
	(void)state;
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, hammer, (void *)(intptr_t)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	char *text = mall_metrics_render(NULL);
	char line[128];
	snprintf(line, sizeof(line),
	         "mall_rpc_server_requests_total{method=\"m0\",code=\"OK\"} %d\n",
	         THREADS / 2 * EACH / 2);
	assert_has(text, line);
	snprintf(line, sizeof(line), "mall_rpc_server_duration_seconds_count{method=\"m1\"} %d\n",
	         THREADS / 2 * EACH);
	assert_has(text, line);
	free(text);
}

static void
test_many_methods_are_capped(void **state)
{
	(void)state;
	char m[32];
	for (int i = 0; i < 5000; i++) {
		snprintf(m, sizeof(m), "method-%d", i);
		mall_metrics_observe("mall_http", m, "404", 0.001);
	}
	char *text = mall_metrics_render(NULL);
	assert_has(text, "mall_http_requests_total{method=\"method-0\",code=\"404\"} 1\n");
	assert_has(text, "mall_http_requests_total{method=\"other\",code=\"404\"} ");
	assert_null(strstr(text, "method=\"method-4999\""));
	free(text);
}

static void
test_gauges_are_set_not_added(void **state)
{
	(void)state;
	mall_metrics_gauge_set("mall_events_consumer_lag", "Events not yet applied.", "source",
	                       "payment", 12);
	mall_metrics_gauge_set("mall_events_consumer_lag", "ignored", "source", "pay\"ment", 1);
	mall_metrics_gauge_set("mall_events_consumer_lag", NULL, "source", "payment", 3);
	char *out = mall_metrics_render(NULL);
	assert_non_null(strstr(out, "# HELP mall_events_consumer_lag Events not yet applied.\n"
	                            "# TYPE mall_events_consumer_lag gauge\n"
	                            "mall_events_consumer_lag{source=\"payment\"} 3\n"
	                            "mall_events_consumer_lag{source=\"pay\\\"ment\"} 1\n"));
	free(out);
	for (int i = 0; i < MALL_METRICS_MAX_GAUGES + 10; i++) {
		char v[16];
		snprintf(v, sizeof(v), "s%d", i);
		mall_metrics_gauge_set("g", "many", "source", v, i);
	}
	out = mall_metrics_render(NULL);
	assert_non_null(strstr(out, "g{source=\"s250\"} 250\n"));
	assert_null(strstr(out, "g{source=\"s260\"}"));
	free(out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup(test_empty_registry_renders_nothing, reset),
	    cmocka_unit_test_setup(test_counts_and_histogram, reset),
	    cmocka_unit_test_setup(test_families_are_separate_and_labels_escaped, reset),
	    cmocka_unit_test_setup(test_thread_safe_counts, reset),
	    cmocka_unit_test_setup(test_many_methods_are_capped, reset),
	    cmocka_unit_test_setup(test_gauges_are_set_not_added, reset),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
