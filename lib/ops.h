/*
 * ops.h: the small HTTP ops endpoint every process runs (civetweb).
 *
 *   GET /healthz  200 {"status":"ok"} while the process runs
 *   GET /readyz   200 when ready to take work, 503 before start and while
 *                 draining (SIGTERM)
 *   GET /metrics  Prometheus text (metrics.h)
 */
#ifndef MALL_OPS_H
#define MALL_OPS_H

#include <stdbool.h>

#include "status.h"

typedef struct mall_ops mall_ops;

/* mall_ops_start: listens on "host:port" (port 0 is not allowed); not ready yet. */
mall_code mall_ops_start(mall_ops **out, const char *listen, const char *service,
                         mall_status *st);
void mall_ops_set_ready(mall_ops *o, bool ready);
/* mall_ops_stop: stops serving and frees o. NULL is ok. */
void mall_ops_stop(mall_ops *o);

#endif
