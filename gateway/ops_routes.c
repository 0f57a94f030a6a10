/*
 * ops_routes.c: the routes that call no service: /healthz (liveness, and the
 * ceiling of what the server can answer), /readyz (false before start and
 * while shutting down), /metrics (Prometheus text) and the OpenAPI document.
 */
#include <stdlib.h>

#include "gateway.h"
#include "metrics.h"
#include "openapi.h"

void
mall_gw_handle_healthz(mall_gw_req *r)
{
	static const char body[] = "{\"status\":\"ok\"}";
	mall_gw_respond(r, 200, MALL_GW_JSON, body, sizeof(body) - 1);
}

void
mall_gw_handle_readyz(mall_gw_req *r)
{
	static const char body[] = "{\"status\":\"ready\"}";
	if (!atomic_load(&r->gw->ready)) {
		mall_gw_respond_error(r, 503, "unavailable",
		                      "gateway is not ready or is shutting down", NULL);
		return;
	}
	mall_gw_respond(r, 200, MALL_GW_JSON, body, sizeof(body) - 1);
}

void
mall_gw_handle_metrics(mall_gw_req *r)
{
	size_t len;
	char *text = mall_metrics_render(&len);
	mall_gw_respond(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
	free(text);
}

void
mall_gw_handle_openapi(mall_gw_req *r)
{
	mall_gw_respond(r, 200, MALL_GW_JSON, mall_gw_openapi_json, mall_gw_openapi_json_len);
}
