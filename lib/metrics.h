/*
 * metrics.h: process-wide request counters and latency histograms, rendered in
 * the Prometheus text format by the ops endpoint (ops.h).
 *
 * A family is the kind of request ("mall_rpc_server", "mall_rpc_client",
 * "mall_http"); it renders as <family>_requests_total{method,code} and
 * <family>_duration_seconds histogram {method} with fixed buckets from 0.5 ms
 * to 10 s.  Thread-safe; cheap enough for every request.
 */
#ifndef MALL_METRICS_H
#define MALL_METRICS_H

#include <stddef.h>

/* mall_metrics_observe: counts one request of method that ended with code (a
 * short string such as "OK" or "200") and took seconds. */
void mall_metrics_observe(const char *family, const char *method, const char *code,
                          double seconds);
/* mall_metrics_gauge_set: the gauge name{label="value"} is v from now on
 * (help: its one-line description, the first caller's kept).  For states
 * rather than requests: how far an event consumer lags behind.  At most
 * MALL_METRICS_MAX_GAUGES series; more are dropped. */
#define MALL_METRICS_MAX_GAUGES 256
void mall_metrics_gauge_set(const char *name, const char *help, const char *label,
                            const char *value, double v);
/* mall_metrics_render: the whole registry as Prometheus text; malloc'd, the
 * caller frees it. */
char *mall_metrics_render(size_t *len);
/* mall_metrics_reset: forget everything (tests). */
void mall_metrics_reset(void);

#endif
