/*
 * test_gateway_openapi.c: the OpenAPI document embedded in the gateway
 * (docs/openapi.json) describes exactly the routes of gateway/routes.c: every
 * route is in it and nothing else is, the list's query parameters carry the
 * limits the gateway enforces, every $ref resolves.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "openapi.h"
#include "routes.h"

static json_t *doc;

static int
setup(void **state)
{
	(void)state;
	json_error_t e;
	doc =
	    json_loadb(mall_gw_openapi_json, mall_gw_openapi_json_len, JSON_REJECT_DUPLICATES, &e);
	if (doc == NULL) {
		fprintf(stderr, "docs/openapi.json: line %d: %s\n", e.line, e.text);
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	json_decref(doc);
	return 0;
}

/* The value a local "#/a/b" reference names, or NULL. */
static json_t *
deref(const char *ref)
{
	if (strncmp(ref, "#/", 2) != 0)
		return NULL;
	json_t *cur = doc;
	char key[128];
	const char *p = ref + 2;
	while (*p && cur != NULL) {
		size_t n = strcspn(p, "/");
		if (n >= sizeof(key))
			return NULL;
		memcpy(key, p, n);
		key[n] = '\0';
		cur = json_object_get(cur, key);
		p += n;
		if (*p == '/')
			p++;
	}
	return cur;
}

static json_t *
resolve(json_t *v)
{
	json_t *ref = json_object_get(v, "$ref");
	return ref ? deref(json_string_value(ref)) : v;
}

static void
test_document(void **state)
{
	(void)state;
	assert_int_equal(strlen(mall_gw_openapi_json), mall_gw_openapi_json_len);
	assert_string_equal(json_string_value(json_object_get(doc, "openapi")), "3.1.0");
	json_t *info = json_object_get(doc, "info");
	assert_non_null(json_string_value(json_object_get(info, "title")));
	assert_non_null(json_string_value(json_object_get(info, "version")));
	assert_true(json_array_size(json_object_get(doc, "servers")) > 0);
	const char *schemas[] = {"Money",       "ProductSummary", "Product",  "Sku",
	                         "OptionValue", "Image",          "Category", "Error"};
	json_t *comp = json_object_get(json_object_get(doc, "components"), "schemas");
	for (size_t i = 0; i < sizeof(schemas) / sizeof(schemas[0]); i++)
		if (!json_is_object(json_object_get(comp, schemas[i])))
			fail_msg("components/schemas/%s is missing", schemas[i]);
}

static void
check_refs(json_t *v, const char *where)
{
	if (json_is_object(v)) {
		const char *k;
		json_t *x;
		json_object_foreach(v, k, x)
		{
			if (strcmp(k, "$ref") == 0) {
				if (!json_is_string(x) || deref(json_string_value(x)) == NULL)
					fail_msg("unresolved $ref %s in %s",
					         json_is_string(x) ? json_string_value(x) : "?",
					         where);
			} else {
				check_refs(x, k);
			}
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x) check_refs(x, where);
	}
}

static void
test_refs_resolve(void **state)
{
	(void)state;
	check_refs(doc, "document");
}

static void
lower(const char *s, char *out, size_t cap)
{
	size_t i = 0;
	for (; s[i] && i + 1 < cap; i++)
		out[i] = (char)tolower((unsigned char)s[i]);
	out[i] = '\0';
}

static void
test_routes_match_paths(void **state)
{
	(void)state;
	size_t n;
	const mall_gw_route *routes = mall_gw_routes(&n);
	json_t *paths = json_object_get(doc, "paths");
	assert_true(json_is_object(paths));

	/* every route is documented, with its responses */
	for (size_t i = 0; i < n; i++) {
		const mall_gw_route *r = &routes[i];
		if (r->id == MALL_GW_ROUTE_STATIC)
			continue;
		char m[16];
		lower(r->method, m, sizeof(m));
		json_t *op = json_object_get(json_object_get(paths, r->pattern), m);
		if (!json_is_object(op))
			fail_msg("%s %s is not in docs/openapi.json", r->method, r->pattern);
		json_t *resp = json_object_get(op, "responses");
		/* a success (200, or 201 for a route that creates) and 413 */
		bool success = false;
		const char *code;
		json_t *x;
		json_object_foreach(resp, code, x)
		{
			if (code[0] == '2' && strlen(code) == 3)
				success = true;
		}
		if (!success)
			fail_msg("%s %s documents no 2xx response", r->method, r->pattern);
		if (json_object_get(resp, "413") == NULL)
			fail_msg("%s %s documents no 413 response", r->method, r->pattern);
		/* routes that check their query or call a service say so */
		if (!(r->flags & MALL_GW_ROUTE_ANY_QUERY) &&
		    (json_object_get(resp, "400") == NULL || json_object_get(resp, "503") == NULL))
			fail_msg("%s %s documents no 400 or 503", r->method, r->pattern);
		/* a path parameter is declared */
		if (strchr(r->pattern, '{') != NULL) {
			json_t *params = json_object_get(op, "parameters");
			size_t k;
			json_t *p;
			bool found = false;
			json_array_foreach(params, k, p)
			{
				p = resolve(p);
				if (strcmp(json_string_value(json_object_get(p, "in")), "path") ==
				    0)
					found = true;
			}
			assert_true(found);
			assert_non_null(json_object_get(resp, "404"));
		}
	}

	/* and nothing else is */
	const char *path;
	json_t *item;
	json_object_foreach(paths, path, item)
	{
		const char *method;
		json_t *op;
		json_object_foreach(item, method, op)
		{
			bool found = false;
			for (size_t i = 0; i < n; i++) {
				char m[16];
				lower(routes[i].method, m, sizeof(m));
				if (strcmp(routes[i].pattern, path) == 0 && strcmp(m, method) == 0)
					found = true;
			}
			if (!found)
				fail_msg("docs/openapi.json documents %s %s, which is no route",
				         method, path);
		}
	}
}

static void
test_list_parameters(void **state)
{
	(void)state;
	mall_gw_match m;
	mall_gw_route_match("GET", "/api/v1/products", &m);
	assert_int_equal(m.result, MALL_GW_MATCH_OK);
	const mall_gw_route *r = m.route;
	json_t *params = json_object_get(
	    json_object_get(json_object_get(json_object_get(doc, "paths"), r->pattern), "get"),
	    "parameters");
	assert_int_equal(json_array_size(params), r->nparams);

	for (size_t i = 0; i < r->nparams; i++) {
		const mall_gw_param_spec *sp = &r->params[i];
		json_t *p = NULL, *x;
		size_t k;
		json_array_foreach(params, k, x)
		{
			x = resolve(x);
			if (strcmp(json_string_value(json_object_get(x, "name")), sp->name) == 0)
				p = x;
		}
		if (p == NULL)
			fail_msg("query parameter %s is not documented", sp->name);
		assert_string_equal(json_string_value(json_object_get(p, "in")), "query");
		json_t *schema = json_object_get(p, "schema");
		switch (sp->type) {
		case MALL_GW_PARAM_INT:
			assert_string_equal(json_string_value(json_object_get(schema, "type")),
			                    "integer");
			assert_int_equal(json_integer_value(json_object_get(schema, "minimum")),
			                 sp->min);
			assert_int_equal(json_integer_value(json_object_get(schema, "maximum")),
			                 sp->max);
			break;
		case MALL_GW_PARAM_STRING:
			assert_string_equal(json_string_value(json_object_get(schema, "type")),
			                    "string");
			assert_int_equal(json_integer_value(json_object_get(schema, "minLength")),
			                 sp->min);
			assert_int_equal(json_integer_value(json_object_get(schema, "maxLength")),
			                 sp->max);
			break;
		case MALL_GW_PARAM_ENUM: {
			json_t *e = json_object_get(schema, "enum");
			size_t nv = 0;
			for (const char *const *v = sp->values; *v; v++, nv++)
				assert_string_equal(json_string_value(json_array_get(e, nv)), *v);
			assert_int_equal(json_array_size(e), nv);
			break;
		}
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_document),
	    cmocka_unit_test(test_refs_resolve),
	    cmocka_unit_test(test_routes_match_paths),
	    cmocka_unit_test(test_list_parameters),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
