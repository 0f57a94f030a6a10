/*
 * query.c: percent-decoding, query-string parsing and query parameter checks
 * (see query.h).  Input comes straight from the network: every function here
 * bounds its work by the input length and refuses what it cannot decode.
 */
#include "query.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "json_pb.h"

static int
hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

mall_gw_decode_err
mall_gw_percent_decode(const char *src, size_t len, bool plus_space, bool no_control, char *dst,
                       size_t *out_len)
{
	size_t o = 0;
	mall_gw_decode_err err = MALL_GW_DECODE_OK;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)src[i];
		if (c == '%') {
			if (len - i < 3 || hexval((unsigned char)src[i + 1]) < 0 ||
			    hexval((unsigned char)src[i + 2]) < 0) {
				err = MALL_GW_DECODE_ESCAPE;
				break;
			}
			c = (unsigned char)(hexval((unsigned char)src[i + 1]) * 16 +
			                    hexval((unsigned char)src[i + 2]));
			i += 2;
		} else if (c == '+' && plus_space) {
			c = ' ';
		}
		if (c == '\0') {
			err = MALL_GW_DECODE_NUL;
			break;
		}
		if (no_control && (c < 0x20 || c == 0x7f) && err == MALL_GW_DECODE_OK)
			err = MALL_GW_DECODE_CONTROL; /* keep decoding: a NUL or bad escape wins */
		dst[o++] = (char)c;
	}
	dst[o] = '\0';
	*out_len = o;
	if (err != MALL_GW_DECODE_OK)
		return err;
	if (!mall_utf8_valid(dst, o))
		return MALL_GW_DECODE_UTF8;
	return MALL_GW_DECODE_OK;
}

const char *
mall_gw_decode_err_text(mall_gw_decode_err e)
{
	switch (e) {
	case MALL_GW_DECODE_OK:
		return "ok";
	case MALL_GW_DECODE_ESCAPE:
		return "malformed percent-encoding";
	case MALL_GW_DECODE_NUL:
		return "must not contain NUL characters";
	case MALL_GW_DECODE_UTF8:
		return "must be valid UTF-8";
	case MALL_GW_DECODE_CONTROL:
		return "must not contain control characters";
	}
	return "cannot be decoded";
}

mall_code
mall_gw_query_parse(const char *qs, mall_arena *a, mall_gw_param **out, size_t *n, mall_status *st)
{
	*out = NULL;
	*n = 0;
	if (qs == NULL || *qs == '\0')
		return MALL_OK;

	size_t count = 0;
	for (const char *p = qs; *p; p++)
		if (*p == '&')
			count++;
	count++;
	if (count > MALL_GW_MAX_PARAMS * 4) {
		/* do not even allocate for a flood of separators */
		return mall_status_field(st, "query", "too many parameters (at most %d)",
		                         MALL_GW_MAX_PARAMS);
	}
	mall_gw_param *params = mall_arena_alloc(a, count * sizeof(*params));
	size_t np = 0;
	bool bad = false;

	const char *p = qs;
	while (*p) {
		const char *amp = strchr(p, '&');
		size_t plen = amp ? (size_t)(amp - p) : strlen(p);
		const char *eq = memchr(p, '=', plen);
		size_t nlen = eq ? (size_t)(eq - p) : plen;
		if (plen == 0)
			goto next; /* "a&&b" or a trailing '&' */

		char *name = mall_arena_alloc(a, nlen + 1);
		size_t dlen;
		mall_gw_decode_err e = mall_gw_percent_decode(p, nlen, true, true, name, &dlen);
		if (e != MALL_GW_DECODE_OK) {
			mall_status_field(st, "query", "parameter name: %s",
			                  mall_gw_decode_err_text(e));
			bad = true;
			goto next;
		}
		if (dlen == 0) {
			mall_status_field(st, "query", "parameter without a name");
			bad = true;
			goto next;
		}
		const char *vsrc = eq ? eq + 1 : p + plen;
		size_t vlen = eq ? plen - nlen - 1 : 0;
		char *value = mall_arena_alloc(a, vlen + 1);
		e = mall_gw_percent_decode(vsrc, vlen, true, true, value, &dlen);
		if (e != MALL_GW_DECODE_OK) {
			mall_status_field(st, name, "%s", mall_gw_decode_err_text(e));
			bad = true;
			goto next;
		}
		if (np == MALL_GW_MAX_PARAMS) {
			mall_status_field(st, "query", "too many parameters (at most %d)",
			                  MALL_GW_MAX_PARAMS);
			bad = true;
			break;
		}
		params[np].name = name;
		params[np].value = value;
		np++;
	next:
		if (amp == NULL)
			break;
		p = amp + 1;
	}
	*out = params;
	*n = np;
	return bad ? MALL_INVALID_ARGUMENT : MALL_OK;
}

/* Parses a strict decimal integer (digits, an optional leading '-'; no
 * spaces, no '+', no fraction). Returns 0, or -1 when s is not one or does not
 * fit in int64. */
static int
parse_int(const char *s, int64_t *out)
{
	const char *p = s;
	bool neg = false;
	if (*p == '-') {
		neg = true;
		p++;
	}
	if (*p == '\0')
		return -1;
	uint64_t v = 0;
	for (; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	if (!neg && v > (uint64_t)INT64_MAX)
		return -1;
	if (neg && v > (uint64_t)INT64_MAX + 1)
		return -1;
	*out = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

/* Checks one value against its spec; false (with a field error) if it is bad. */
static bool
check_value(const mall_gw_param *p, const mall_gw_param_spec *sp, mall_status *st)
{
	size_t len = strlen(p->value);
	switch (sp->type) {
	case MALL_GW_PARAM_STRING: {
		size_t chars = mall_utf8_chars(p->value, len);
		if ((int64_t)chars >= sp->min && (int64_t)chars <= sp->max)
			return true;
		mall_status_field(st, sp->name,
		                  "must be %" PRId64 " to %" PRId64 " characters long", sp->min,
		                  sp->max);
		return false;
	}
	case MALL_GW_PARAM_INT: {
		int64_t v;
		if (parse_int(p->value, &v) != 0) {
			mall_status_field(st, sp->name, "must be an integer");
			return false;
		}
		if (v >= sp->min && v <= sp->max)
			return true;
		mall_status_field(st, sp->name, "must be between %" PRId64 " and %" PRId64, sp->min,
		                  sp->max);
		return false;
	}
	case MALL_GW_PARAM_ENUM: {
		for (const char *const *v = sp->values; *v; v++)
			if (strcmp(*v, p->value) == 0)
				return true;
		char list[160];
		size_t o = 0;
		list[0] = '\0';
		for (const char *const *v = sp->values; *v && o < sizeof(list); v++) {
			int k = snprintf(list + o, sizeof(list) - o, "%s%s", o ? ", " : "", *v);
			if (k < 0)
				break;
			o += (size_t)k;
		}
		mall_status_field(st, sp->name, "must be one of %s", list);
		return false;
	}
	}
	return false;
}

mall_code
mall_gw_params_check(const mall_gw_param *params, size_t n, const mall_gw_param_spec *spec,
                     size_t nspec, mall_status *st)
{
	bool bad = false;
	for (size_t i = 0; i < n; i++) {
		const mall_gw_param *p = &params[i];
		const mall_gw_param_spec *sp = NULL;
		for (size_t k = 0; k < nspec; k++) {
			if (strcmp(spec[k].name, p->name) == 0) {
				sp = &spec[k];
				break;
			}
		}
		if (sp == NULL) {
			mall_status_field(st, p->name, "unknown parameter");
			bad = true;
			continue;
		}
		bool repeated = false;
		for (size_t k = 0; k < i; k++)
			if (strcmp(params[k].name, p->name) == 0)
				repeated = true;
		if (repeated) {
			mall_status_field(st, p->name, "must be given at most once");
			bad = true;
			continue;
		}
		if (p->value[0] == '\0')
			continue;
		if (!check_value(p, sp, st))
			bad = true;
	}
	return bad ? MALL_INVALID_ARGUMENT : MALL_OK;
}
