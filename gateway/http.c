/*
 * http.c: error bodies, the body-size decision, request ids and reason
 * phrases (see http.h).
 */
#include "http.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "log.h"

/* Appends a literal to buf (which has room: the caller sized it). */
static size_t
lit(char *buf, size_t len, const char *s)
{
	size_t n = strlen(s);
	memcpy(buf + len, s, n + 1);
	return len + n;
}

char *
mall_gw_error_json(mall_arena *a, const char *slug, const char *message, const mall_status *fields,
                   size_t *len)
{
	/* an escaped byte takes at most 6 bytes (\u00XX, or U+FFFD for 1 byte) */
	int nf = fields ? fields->nfields : 0;
	if (nf > MALL_STATUS_MAX_FIELDS)
		nf = MALL_STATUS_MAX_FIELDS;
	size_t cap = 64 + 6 * (strlen(slug) + strlen(message));
	for (int i = 0; i < nf; i++)
		cap +=
		    8 + 6 * (strlen(fields->fields[i].field) + strlen(fields->fields[i].message));
	int nd = fields ? fields->ndetails : 0;
	if (nd > MALL_STATUS_MAX_DETAILS)
		nd = MALL_STATUS_MAX_DETAILS;
	for (int i = 0; i < nd; i++)
		cap += 32 + 6 * strlen(fields->details[i].key);
	char *buf = mall_arena_alloc(a, cap);
	size_t o = lit(buf, 0, "{\"error\":{\"code\":\"");
	o = mall_json_escape(buf, o, cap, slug);
	o = lit(buf, o, "\",\"message\":\"");
	o = mall_json_escape(buf, o, cap, message);
	o = lit(buf, o, "\"");
	if (nf > 0) {
		o = lit(buf, o, ",\"fields\":{");
		bool first = true;
		for (int i = 0; i < nf; i++) {
			const mall_field_error *f = &fields->fields[i];
			bool dup = false;
			for (int k = 0; k < i; k++)
				if (strcmp(fields->fields[k].field, f->field) == 0)
					dup = true;
			if (dup)
				continue;
			o = lit(buf, o, first ? "\"" : ",\"");
			o = mall_json_escape(buf, o, cap, f->field);
			o = lit(buf, o, "\":\"");
			o = mall_json_escape(buf, o, cap, f->message);
			o = lit(buf, o, "\"");
			first = false;
		}
		o = lit(buf, o, "}");
	}
	if (nd > 0) {
		o = lit(buf, o, ",\"details\":{");
		for (int i = 0; i < nd; i++) {
			o = lit(buf, o, i == 0 ? "\"" : ",\"");
			o = mall_json_escape(buf, o, cap, fields->details[i].key);
			o += (size_t)snprintf(buf + o, cap - o, "\":%lld",
			                      (long long)fields->details[i].value);
		}
		o = lit(buf, o, "}");
	}
	o = lit(buf, o, "}}");
	*len = o;
	return buf;
}

const char *
mall_gw_public_message(const mall_status *st, const char *service, char *buf, size_t cap)
{
	int http = mall_code_http(st->code);
	if (http < 500)
		return st->message[0] ? st->message : mall_code_slug(st->code);
	switch (st->code) {
	case MALL_UNAVAILABLE:
		snprintf(buf, cap, "%s is unavailable, try again later", service);
		break;
	case MALL_DEADLINE_EXCEEDED:
		snprintf(buf, cap, "%s did not answer in time", service);
		break;
	case MALL_UNIMPLEMENTED:
		snprintf(buf, cap, "%s does not implement this request", service);
		break;
	default:
		snprintf(buf, cap, "internal error in %s", service);
		break;
	}
	return buf;
}

mall_gw_body
mall_gw_body_check(long long content_length, const char *transfer_encoding, int64_t limit)
{
	if (transfer_encoding != NULL) {
		/* only plain "chunked" is supported; with a Content-Length as well the
		 * framing is ambiguous (request smuggling): refuse both */
		if (strcasecmp(transfer_encoding, "chunked") != 0 || content_length >= 0)
			return MALL_GW_BODY_BAD;
		return MALL_GW_BODY_CHUNKED;
	}
	if (content_length <= 0)
		return MALL_GW_BODY_NONE;
	if (content_length > limit)
		return MALL_GW_BODY_TOO_LARGE;
	return MALL_GW_BODY_LENGTH;
}

bool
mall_gw_request_id_valid(const char *s)
{
	size_t n = 0;
	for (; s[n]; n++) {
		char c = s[n];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (!ok || n >= 64)
			return false;
	}
	return n > 0;
}

const char *
mall_gw_reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 204:
		return "No Content";
	case 304:
		return "Not Modified";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 409:
		return "Conflict";
	case 413:
		return "Content Too Large";
	case 415:
		return "Unsupported Media Type";
	case 422:
		return "Unprocessable Content";
	case 429:
		return "Too Many Requests";
	case 499:
		return "Client Closed Request";
	case 500:
		return "Internal Server Error";
	case 501:
		return "Not Implemented";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	case 504:
		return "Gateway Timeout";
	default:
		return status < 400 ? "OK" : status < 500 ? "Bad Request" : "Internal Server Error";
	}
}

bool
mall_gw_media_is_json(const char *ct)
{
	if (ct == NULL)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	size_t n = strlen("application/json");
	if (strncasecmp(ct, "application/json", n) != 0)
		return false;
	ct += n;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return *ct == '\0' || *ct == ';';
}

const char *
mall_gw_method_label(const char *method)
{
	static const char *const known[] = {"GET",   "HEAD",   "POST",   "PUT",
	                                    "PATCH", "DELETE", "OPTIONS"};
	for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
		if (strcmp(method, known[i]) == 0)
			return known[i];
	return "OTHER";
}
