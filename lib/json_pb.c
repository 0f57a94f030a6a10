/*
 * json_pb.c: the one JSON <-> protobuf converter of the API (proto3 JSON
 * mapping), walking protobuf-c descriptors; messages are built in an arena.
 *
 * Choices the header leaves open:
 *   - JSON names: protobuf-c 1.4 descriptors carry no json_name, so the name is
 *     derived as protoc derives it (drop '_', upper-case the next character).
 *   - uint64/fixed64 values above INT64_MAX are written as decimal strings
 *     (jansson integers are long long); on input such values must be strings
 *     too, as jansson's parser rejects integers beyond long long.
 *   - Integer fields accept JSON integers, decimal strings and integral reals
 *     (1e3); float fields accept JSON numbers only.  A float or double that is
 *     NaN or infinite is written as null.
 *   - An enum value with no name (from a newer peer) is written as its number;
 *     numeric enum input is rejected.
 *   - Input null means "field absent"; null inside an array is an error.
 *   - A field given twice (once by JSON name, once by proto name) and two
 *     members of one oneof are field errors.
 *   - Messages may nest at most MAX_DEPTH levels (the top-level object is
 *     level 1); deeper ones are a field error at the deepest allowed path.
 *   - Maps are not special: protobuf-c gives them as repeated entry messages,
 *     so they read and write as arrays of {"key": .., "value": ..}.
 *   - Errors are collected (up to MALL_STATUS_MAX_FIELDS), not stopped at the
 *     first one, so a form can show every wrong field at once.
 */
#include "json_pb.h"

#include <ctype.h>
#include <float.h>
#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_DEPTH 32

/* ---- UTF-8 ---- */

/* utf8_char: length of the valid UTF-8 sequence at p (at most avail bytes), 0 if
 * the bytes there are not one (overlong, surrogate, above U+10FFFF, cut). */
static size_t
utf8_char(const unsigned char *p, size_t avail)
{
	unsigned c = p[0];
	unsigned lo = 0x80, hi = 0xBF;
	size_t n;

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		n = 2;
	else if (c == 0xE0) {
		n = 3;
		lo = 0xA0;
	} else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF)
		n = 3;
	else if (c == 0xED) {
		n = 3;
		hi = 0x9F; /* U+D800..U+DFFF are surrogates */
	} else if (c == 0xF0) {
		n = 4;
		lo = 0x90;
	} else if (c >= 0xF1 && c <= 0xF3)
		n = 4;
	else if (c == 0xF4) {
		n = 4;
		hi = 0x8F;
	} else
		return 0;
	if (avail < n || p[1] < lo || p[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	return n;
}

int
mall_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;
	while (i < len) {
		size_t n = utf8_char(p + i, len - i);
		if (n == 0)
			return 0;
		i += n;
	}
	return 1;
}

/* utf8_repair: s with every byte that is not part of valid UTF-8 replaced by
 * U+FFFD; malloc'd, NUL-terminated, its length in *outlen. */
static char *
utf8_repair(const char *s, size_t len, size_t *outlen)
{
	char *r = mall_xmalloc(len * 3 + 1);
	size_t o = 0, i = 0;
	while (i < len) {
		size_t n = utf8_char((const unsigned char *)s + i, len - i);
		if (n == 0) {
			memcpy(r + o, "\xEF\xBF\xBD", 3);
			o += 3;
			i++;
		} else {
			memcpy(r + o, s + i, n);
			o += n;
			i += n;
		}
	}
	r[o] = '\0';
	*outlen = o;
	return r;
}

/* utf8_cut: the largest length <= max that does not split a character of s. */
static size_t
utf8_cut(const char *s, size_t len, size_t max)
{
	if (len <= max)
		return len;
	size_t n = max;
	while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
		n--;
	return n;
}

/* ---- base64 (standard alphabet on output; standard or URL-safe on input) ---- */

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *
b64_encode(const uint8_t *d, size_t len, size_t *outlen)
{
	char *s = mall_xmalloc((len + 2) / 3 * 4 + 1);
	size_t o = 0, i = 0;
	for (; i + 2 < len; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
		s[o++] = b64chars[v >> 18];
		s[o++] = b64chars[(v >> 12) & 63];
		s[o++] = b64chars[(v >> 6) & 63];
		s[o++] = b64chars[v & 63];
	}
	if (i < len) {
		uint32_t v = (uint32_t)d[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)d[i + 1] << 8;
		s[o++] = b64chars[v >> 18];
		s[o++] = b64chars[(v >> 12) & 63];
		s[o++] = i + 1 < len ? b64chars[(v >> 6) & 63] : '=';
		s[o++] = '=';
	}
	s[o] = '\0';
	*outlen = o;
	return s;
}

static int
b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* b64_decode: s[0..len) into out (data in a); padding is optional but, when
 * present, must complete the last quantum.  False if s is not base64. */
static bool
b64_decode(mall_arena *a, const char *s, size_t len, ProtobufCBinaryData *out)
{
	size_t n = len;
	if (n >= 4 && n % 4 == 0 && s[n - 1] == '=') {
		n--;
		if (s[n - 1] == '=')
			n--;
	}
	if (n % 4 == 1)
		return false;
	size_t outlen = n / 4 * 3 + (n % 4 ? n % 4 - 1 : 0);
	uint8_t *d = outlen ? mall_arena_alloc(a, outlen) : NULL;
	uint32_t acc = 0;
	int bits = 0;
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		int v = b64_value((unsigned char)s[i]);
		if (v < 0)
			return false;
		acc = (acc << 6 | (uint32_t)v) & 0xFFFFFF;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			d[o++] = (uint8_t)(acc >> bits);
		}
	}
	out->len = outlen;
	out->data = d;
	return true;
}

/* ---- names and paths ---- */

/* json_name_eq: whether key is the lowerCamelCase JSON name of proto name. */
static bool
json_name_eq(const char *proto, const char *key, size_t keylen)
{
	size_t k = 0;
	bool upper = false;
	for (; *proto != '\0'; proto++) {
		char ch = *proto;
		if (ch == '_') {
			upper = true;
			continue;
		}
		if (upper) {
			ch = (char)toupper((unsigned char)ch);
			upper = false;
		}
		if (k >= keylen || key[k] != ch)
			return false;
		k++;
	}
	return k == keylen;
}

/* json_name: the JSON name of proto name, in buf (size at least strlen + 1). */
static size_t
json_name(const char *proto, char *buf)
{
	size_t k = 0;
	bool upper = false;
	for (; *proto != '\0'; proto++) {
		if (*proto == '_') {
			upper = true;
			continue;
		}
		buf[k++] = upper ? (char)toupper((unsigned char)*proto) : *proto;
		upper = false;
	}
	buf[k] = '\0';
	return k;
}

static const ProtobufCFieldDescriptor *
find_field(const ProtobufCMessageDescriptor *desc, const char *key, size_t keylen)
{
	for (unsigned i = 0; i < desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[i];
		if (json_name_eq(f->name, key, keylen) ||
		    (strlen(f->name) == keylen && memcmp(f->name, key, keylen) == 0))
			return f;
	}
	return NULL;
}

typedef struct path {
	char buf[320];
	size_t len;
} path;

static void
path_append(path *p, const char *s, size_t n)
{
	size_t room = sizeof(p->buf) - 1 - p->len;
	if (n > room)
		n = room;
	memcpy(p->buf + p->len, s, n);
	p->len += n;
	p->buf[p->len] = '\0';
}

/* path_push_name: appends ".name" (or "name" at the top); control characters
 * and bytes that are not UTF-8 become '?' so the path is printable.  Returns
 * the length to restore with path_pop. */
static size_t
path_push_name(path *p, const char *s, size_t n)
{
	size_t saved = p->len;
	if (p->len > 0)
		path_append(p, ".", 1);
	size_t i = 0;
	while (i < n) {
		size_t c = utf8_char((const unsigned char *)s + i, n - i);
		if (c == 0 || (c == 1 && ((unsigned char)s[i] < 0x20 || s[i] == 0x7F))) {
			path_append(p, "?", 1);
			i++;
		} else {
			path_append(p, s + i, c);
			i += c;
		}
	}
	return saved;
}

static size_t
path_push_field(path *p, const ProtobufCFieldDescriptor *f)
{
	size_t n = strlen(f->name);
	char small[128];
	char *buf = n < sizeof(small) ? small : mall_xmalloc(n + 1);
	size_t saved = path_push_name(p, buf, json_name(f->name, buf));
	if (buf != small)
		free(buf);
	return saved;
}

static size_t
path_push_index(path *p, size_t i)
{
	size_t saved = p->len;
	char b[32];
	int n = snprintf(b, sizeof(b), "[%zu]", i);
	path_append(p, b, (size_t)n);
	return saved;
}

static void
path_pop(path *p, size_t saved)
{
	p->len = saved;
	p->buf[saved] = '\0';
}

/* ---- JSON -> protobuf ---- */

typedef struct conv {
	mall_arena *a;
	mall_status *st;
	path path;
} conv;

/* field_error: a field error at the current path; always returns false. */
static bool field_error(conv *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static bool
field_error(conv *c, const char *fmt, ...)
{
	char name[sizeof(((mall_field_error *)0)->field)];
	char msg[sizeof(((mall_field_error *)0)->message)];
	va_list ap;

	size_t n = utf8_cut(c->path.buf, c->path.len, sizeof(name) - 1);
	memcpy(name, c->path.buf, n);
	name[n] = '\0';
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	mall_status_field(c->st, name, "%s", msg);
	return false;
}

static bool
is_signed_int(ProtobufCType t)
{
	return t == PROTOBUF_C_TYPE_INT32 || t == PROTOBUF_C_TYPE_SINT32 ||
	       t == PROTOBUF_C_TYPE_SFIXED32 || t == PROTOBUF_C_TYPE_INT64 ||
	       t == PROTOBUF_C_TYPE_SINT64 || t == PROTOBUF_C_TYPE_SFIXED64;
}

static bool
is_64bit_int(ProtobufCType t)
{
	return t == PROTOBUF_C_TYPE_INT64 || t == PROTOBUF_C_TYPE_SINT64 ||
	       t == PROTOBUF_C_TYPE_SFIXED64 || t == PROTOBUF_C_TYPE_UINT64 ||
	       t == PROTOBUF_C_TYPE_FIXED64;
}

static size_t
elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return sizeof(int32_t);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return sizeof(uint32_t);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return sizeof(int64_t);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return sizeof(uint64_t);
	case PROTOBUF_C_TYPE_FLOAT:
		return sizeof(float);
	case PROTOBUF_C_TYPE_DOUBLE:
		return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM:
		return sizeof(int); /* protobuf-c forces enums to int size */
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return sizeof(void *);
}

/* An integer of any proto type: sign and magnitude cover int64 and uint64. */
typedef struct wide {
	bool neg;
	uint64_t mag;
} wide;

typedef enum numres { NUM_OK, NUM_TYPE, NUM_RANGE } numres;

/* parse_int_text: strict decimal: optional '-', digits, nothing else. */
static numres
parse_int_text(const char *s, size_t len, wide *w)
{
	size_t i = 0;
	bool overflow = false;
	w->neg = false;
	w->mag = 0;
	if (len > 0 && s[0] == '-') {
		w->neg = true;
		i = 1;
	}
	if (i == len)
		return NUM_TYPE;
	for (; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return NUM_TYPE;
		unsigned d = (unsigned)(s[i] - '0');
		if (w->mag > (UINT64_MAX - d) / 10)
			overflow = true;
		else
			w->mag = w->mag * 10 + d;
	}
	return overflow ? NUM_RANGE : NUM_OK;
}

/* store_int: range-checks w for type t and stores it at dst. */
static bool
store_int(conv *c, ProtobufCType t, numres r, wide w, void *dst)
{
	bool sgn = is_signed_int(t), is64 = is_64bit_int(t);
	uint64_t posmax = sgn ? (is64 ? (uint64_t)INT64_MAX : (uint64_t)INT32_MAX)
	                      : (is64 ? UINT64_MAX : (uint64_t)UINT32_MAX);
	uint64_t negmax = sgn ? posmax + 1 : 0;

	if (r == NUM_TYPE)
		return field_error(c, "must be an integer");
	if (r == NUM_RANGE || (w.neg ? w.mag > negmax : w.mag > posmax))
		return field_error(c, "must be an integer between %s%" PRIu64 " and %" PRIu64,
		                   negmax ? "-" : "", negmax, posmax);
	if (sgn) {
		int64_t v;
		if (!w.neg)
			v = (int64_t)w.mag;
		else if (w.mag == (uint64_t)INT64_MAX + 1)
			v = INT64_MIN;
		else
			v = -(int64_t)w.mag;
		if (is64)
			*(int64_t *)dst = v;
		else
			*(int32_t *)dst = (int32_t)v;
	} else if (is64)
		*(uint64_t *)dst = w.mag;
	else
		*(uint32_t *)dst = (uint32_t)w.mag;
	return true;
}

static bool
int_from_json(conv *c, ProtobufCType t, const json_t *v, void *dst)
{
	wide w = {false, 0};
	numres r = NUM_OK;

	if (json_is_integer(v)) {
		json_int_t x = json_integer_value(v);
		w.neg = x < 0;
		w.mag = x < 0 ? (uint64_t)(-(x + 1)) + 1 : (uint64_t)x;
	} else if (json_is_real(v)) {
		double d = json_real_value(v);
		if (d != trunc(d))
			r = NUM_TYPE;
		else if (fabs(d) >= 18446744073709551616.0)
			r = NUM_RANGE;
		else {
			w.neg = d < 0;
			w.mag = (uint64_t)fabs(d);
		}
	} else if (json_is_string(v))
		r = parse_int_text(json_string_value(v), json_string_length(v), &w);
	else
		r = NUM_TYPE;
	return store_int(c, t, r, w, dst);
}

/* store_real: stores d (finite) as float or double, range-checking floats. */
static bool
store_real(conv *c, ProtobufCType t, double d, void *dst)
{
	if (!isfinite(d))
		return field_error(c, "must be a finite number");
	if (t == PROTOBUF_C_TYPE_FLOAT) {
		/* values up to half an ulp above FLT_MAX round to it (the shortest
		 * decimal of FLT_MAX, 3.4028235e38, is such a value) */
		if (fabs(d) >= 0x1.ffffffp+127)
			return field_error(c, "must be a number within the range of float");
		*(float *)dst = (float)d;
	} else
		*(double *)dst = d;
	return true;
}

static bool
enum_from_name(conv *c, const ProtobufCEnumDescriptor *ed, const char *s, size_t len, void *dst)
{
	for (unsigned i = 0; i < ed->n_value_names; i++) {
		const char *name = ed->values_by_name[i].name;
		if (strlen(name) == len && strncasecmp(name, s, len) == 0) {
			*(int *)dst = ed->values[ed->values_by_name[i].index].value;
			return true;
		}
	}
	char list[160];
	size_t o = 0;
	for (unsigned i = 0; i < ed->n_values; i++) {
		if (i > 0 && o + 2 < sizeof(list)) {
			list[o++] = ',';
			list[o++] = ' ';
		}
		for (const char *p = ed->values[i].name; *p != '\0' && o + 1 < sizeof(list); p++)
			list[o++] = (char)tolower((unsigned char)*p);
	}
	list[o] = '\0';
	return field_error(c, "must be one of %s", list);
}

/* string_check: a string field value must be UTF-8 without NUL characters. */
static bool
string_check(conv *c, const char *s, size_t len)
{
	if (!mall_utf8_valid(s, len))
		return field_error(c, "must be valid UTF-8");
	if (memchr(s, '\0', len) != NULL)
		return field_error(c, "must not contain NUL characters");
	return true;
}

static ProtobufCMessage *msg_from_json(conv *c, const ProtobufCMessageDescriptor *desc,
                                       const json_t *obj, int depth);

/* value_from_json: one value of field f (an element, for a repeated field)
 * from v into dst. */
static bool
value_from_json(conv *c, const ProtobufCFieldDescriptor *f, const json_t *v, void *dst, int depth)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return int_from_json(c, f->type, v, dst);
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
		if (!json_is_number(v))
			return field_error(c, "must be a number");
		return store_real(c, f->type, json_number_value(v), dst);
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_is_boolean(v))
			return field_error(c, "must be true or false");
		*(protobuf_c_boolean *)dst = json_is_true(v);
		return true;
	case PROTOBUF_C_TYPE_ENUM:
		if (!json_is_string(v))
			return field_error(c, "must be a string naming a value");
		return enum_from_name(c, f->descriptor, json_string_value(v), json_string_length(v),
		                      dst);
	case PROTOBUF_C_TYPE_STRING: {
		if (!json_is_string(v))
			return field_error(c, "must be a string");
		const char *s = json_string_value(v);
		size_t len = json_string_length(v);
		if (!string_check(c, s, len))
			return false;
		*(char **)dst = mall_arena_strndup(c->a, s, len);
		return true;
	}
	case PROTOBUF_C_TYPE_BYTES:
		if (!json_is_string(v))
			return field_error(c, "must be a base64 string");
		if (!b64_decode(c->a, json_string_value(v), json_string_length(v), dst))
			return field_error(c, "must be base64");
		return true;
	case PROTOBUF_C_TYPE_MESSAGE: {
		if (!json_is_object(v))
			return field_error(c, "must be an object");
		ProtobufCMessage *sub = msg_from_json(c, f->descriptor, v, depth + 1);
		if (sub == NULL)
			return false;
		*(ProtobufCMessage **)dst = sub;
		return true;
	}
	}
	return field_error(c, "has a type the converter does not know");
}

static const ProtobufCFieldDescriptor *
field_by_id(const ProtobufCMessageDescriptor *desc, uint32_t id)
{
	for (unsigned i = 0; i < desc->n_fields; i++)
		if (desc->fields[i].id == id)
			return &desc->fields[i];
	return NULL;
}

/* member_from_json: field f of m from v (not null); the path names f. */
static bool
member_from_json(conv *c, ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, const json_t *v,
                 int depth)
{
	char *base = (char *)m;
	void *member = base + f->offset;

	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		if (!json_is_array(v))
			return field_error(c, "must be an array");
		size_t n = json_array_size(v), sz = elem_size(f->type);
		char *arr = n ? mall_arena_alloc(c->a, n * sz) : NULL;
		bool ok = true;
		for (size_t i = 0; i < n; i++) {
			size_t saved = path_push_index(&c->path, i);
			const json_t *e = json_array_get(v, i);
			if (json_is_null(e))
				ok = field_error(c, "must not be null") && ok;
			else
				ok = value_from_json(c, f, e, arr + i * sz, depth) && ok;
			path_pop(&c->path, saved);
		}
		if (!ok)
			return false;
		*(size_t *)(base + f->quantifier_offset) = n;
		*(void **)member = arr;
		return true;
	}
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		uint32_t *ocase = (uint32_t *)(base + f->quantifier_offset);
		if (*ocase != 0) {
			const ProtobufCFieldDescriptor *other = field_by_id(m->descriptor, *ocase);
			char buf[128] = "";
			if (other != NULL && strlen(other->name) < sizeof(buf))
				json_name(other->name, buf);
			return field_error(c, "cannot be set together with %s (one of them only)",
			                   buf);
		}
		if (!value_from_json(c, f, v, member, depth))
			return false;
		*ocase = f->id;
		return true;
	}
	if (!value_from_json(c, f, v, member, depth))
		return false;
	if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
	    f->type != PROTOBUF_C_TYPE_MESSAGE)
		*(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
	return true;
}

static ProtobufCMessage *
msg_from_json(conv *c, const ProtobufCMessageDescriptor *desc, const json_t *obj, int depth)
{
	if (depth > MAX_DEPTH) {
		field_error(c, "nests deeper than %d levels", MAX_DEPTH);
		return NULL;
	}
	ProtobufCMessage *m = mall_pb_new(desc, c->a);
	unsigned char *seen = mall_arena_alloc(c->a, desc->n_fields);
	bool ok = true;
	json_t *o = (json_t *)obj; /* jansson's iterators take non-const */

	for (void *it = json_object_iter(o); it != NULL; it = json_object_iter_next(o, it)) {
		const char *key = json_object_iter_key(it);
		size_t keylen = json_object_iter_key_len(it);
		const json_t *v = json_object_iter_value(it);
		const ProtobufCFieldDescriptor *f = find_field(desc, key, keylen);
		size_t saved;

		if (f == NULL) {
			saved = path_push_name(&c->path, key, keylen);
			if (!mall_utf8_valid(key, keylen))
				field_error(c, "field name must be valid UTF-8");
			else
				field_error(c, "unknown field");
			ok = false;
		} else {
			saved = path_push_field(&c->path, f);
			size_t idx = (size_t)(f - desc->fields);
			if (seen[idx]) {
				field_error(c, "is given more than once");
				ok = false;
			} else if (!json_is_null(v)) {
				seen[idx] = 1;
				ok = member_from_json(c, m, f, v, depth) && ok;
			}
		}
		path_pop(&c->path, saved);
	}
	return ok ? m : NULL;
}

ProtobufCMessage *
mall_pb_new(const ProtobufCMessageDescriptor *desc, mall_arena *a)
{
	ProtobufCMessage *m = mall_arena_alloc(a, desc->sizeof_message);
	protobuf_c_message_init(desc, m);
	return m;
}

static const char *
json_type_name(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "an object";
	case JSON_ARRAY:
		return "an array";
	case JSON_STRING:
		return "a string";
	case JSON_INTEGER:
	case JSON_REAL:
		return "a number";
	case JSON_TRUE:
	case JSON_FALSE:
		return "a boolean";
	case JSON_NULL:
		return "null";
	}
	return "a value";
}

mall_code
mall_json_obj_to_pb(const json_t *obj, const ProtobufCMessageDescriptor *desc, mall_arena *a,
                    ProtobufCMessage **out, mall_status *st)
{
	*out = NULL;
	mall_status_clear(st);
	if (obj == NULL || !json_is_object(obj))
		return mall_status_set(st, MALL_INVALID_ARGUMENT,
		                       "JSON value must be an object, not %s",
		                       obj ? json_type_name(obj) : "nothing");
	conv c = {.a = a, .st = st};
	ProtobufCMessage *m = msg_from_json(&c, desc, obj, 1);
	if (m == NULL || !mall_status_ok(st)) {
		if (mall_status_ok(st)) /* not reached: every failure adds an error */
			mall_status_set(st, MALL_INVALID_ARGUMENT, "invalid request");
		return st->code;
	}
	*out = m;
	return MALL_OK;
}

mall_code
mall_json_to_pb(const char *text, size_t len, const ProtobufCMessageDescriptor *desc, mall_arena *a,
                ProtobufCMessage **out, mall_status *st)
{
	json_error_t err;
	json_t *obj = json_loadb(text ? text : "", text ? len : 0, JSON_REJECT_DUPLICATES, &err);

	*out = NULL;
	if (obj == NULL) {
		char msg[sizeof(st->message)];
		size_t n, rlen;
		/* jansson quotes the input near the error: keep it valid UTF-8 */
		char *t = utf8_repair(err.text, strnlen(err.text, sizeof(err.text)), &rlen);
		snprintf(msg, sizeof(msg), "malformed JSON: %s at line %d column %d", t, err.line,
		         err.column);
		free(t);
		n = utf8_cut(msg, strlen(msg), sizeof(msg) - 1);
		msg[n] = '\0';
		mall_status_clear(st);
		return mall_status_set(st, MALL_INVALID_ARGUMENT, "%s", msg);
	}
	mall_code code = mall_json_obj_to_pb(obj, desc, a, out, st);
	json_decref(obj);
	return code;
}

/* ---- protobuf -> JSON ----
 *
 * Two writers share the rules of what is written (emitted, float_value): the
 * jansson tree (mall_pb_to_json) and the text writer (mall_pb_to_json_text),
 * which appends straight into one growing buffer.  The text writer's output is
 * exactly json_dumps(mall_pb_to_json(m), JSON_COMPACT) of jansson 2.14
 * (tests/unit/test_json_pb.c compares the two): UTF-8 kept as is, '/' and
 * DEL not escaped, other control characters as \b \f \n \r \t or \u00XX
 * (upper-case hex), reals as "%.17g" with ".0" added to integral values and
 * the exponent without '+' or leading zeros.  Two fields with one JSON name
 * (foo_bar and fooBar) would be written twice by the text writer where
 * jansson keeps one key; protoc rejects such fields in proto3. */

/* emitted: whether field f of m is written: every repeated field; a oneof
 * member only when it is the case; a proto2 optional scalar only when its has_
 * flag is set; a sub-message (and a proto2 optional string) only when set. */
static bool
emitted(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *f)
{
	const char *base = (const char *)m;
	const void *q = base + f->quantifier_offset;

	if (f->label == PROTOBUF_C_LABEL_REPEATED)
		return true;
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
		if (*(const uint32_t *)q != f->id)
			return false;
	} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
	           f->type != PROTOBUF_C_TYPE_MESSAGE) {
		if (!*(const protobuf_c_boolean *)q)
			return false;
	}
	if ((f->type == PROTOBUF_C_TYPE_MESSAGE ||
	     (f->type == PROTOBUF_C_TYPE_STRING && f->label == PROTOBUF_C_LABEL_OPTIONAL)) &&
	    *(const void *const *)(base + f->offset) == NULL)
		return false;
	return true;
}

/* float_value: the double written for float f (finite): the shortest decimal
 * that reads back as f, so 0.1f is 0.1 and not 0.100000001490116. */
static double
float_value(float f)
{
	char buf[48];
	for (int prec = 1; prec <= 9; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, (double)f);
		if (strtof(buf, NULL) == f)
			break;
	}
	return strtod(buf, NULL);
}

/* ---- the jansson tree ---- */

static json_t *
need(json_t *v)
{
	if (v == NULL) {
		fprintf(stderr, "{\"level\":\"fatal\",\"msg\":\"out of memory building JSON\"}\n");
		abort();
	}
	return v;
}

static json_t *
string_to_json(const char *s, size_t len)
{
	if (mall_utf8_valid(s, len))
		return need(json_stringn(s, len));
	/* a peer sent bytes that are not UTF-8: never emit invalid JSON */
	size_t rlen;
	char *r = utf8_repair(s, len, &rlen);
	json_t *v = need(json_stringn(r, rlen));
	free(r);
	return v;
}

static json_t *msg_to_json(const ProtobufCMessage *m);

static json_t *
value_to_json(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		return need(json_integer(*(const int32_t *)p));
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		return need(json_integer(*(const int64_t *)p));
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		return need(json_integer(*(const uint32_t *)p));
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64: {
		uint64_t v = *(const uint64_t *)p;
		if (v <= (uint64_t)INT64_MAX)
			return need(json_integer((json_int_t)v));
		char buf[32];
		snprintf(buf, sizeof(buf), "%" PRIu64, v);
		return need(json_string(buf));
	}
	case PROTOBUF_C_TYPE_FLOAT: {
		float v = *(const float *)p;
		return need(isfinite(v) ? json_real(float_value(v)) : json_null());
	}
	case PROTOBUF_C_TYPE_DOUBLE: {
		double d = *(const double *)p;
		return need(isfinite(d) ? json_real(d) : json_null());
	}
	case PROTOBUF_C_TYPE_BOOL:
		return need(json_boolean(*(const protobuf_c_boolean *)p));
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)p;
		const ProtobufCEnumValue *ev =
		    protobuf_c_enum_descriptor_get_value(f->descriptor, v);
		if (ev == NULL)
			return need(json_integer(v));
		size_t n = strlen(ev->name);
		char *lower = mall_xmalloc(n + 1);
		for (size_t i = 0; i <= n; i++)
			lower[i] = (char)tolower((unsigned char)ev->name[i]);
		json_t *j = string_to_json(lower, n);
		free(lower);
		return j;
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(const char *const *)p;
		return s ? string_to_json(s, strlen(s)) : need(json_string(""));
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		size_t n;
		char *s = b64_encode(b->data, b->data ? b->len : 0, &n);
		json_t *j = need(json_stringn(s, n));
		free(s);
		return j;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
		return sub ? msg_to_json(sub) : need(json_null());
	}
	}
	return need(json_null());
}

static void
set_member(json_t *o, const ProtobufCFieldDescriptor *f, json_t *v)
{
	size_t n = strlen(f->name);
	char small[128];
	char *buf = n < sizeof(small) ? small : mall_xmalloc(n + 1);
	size_t len = json_name(f->name, buf);
	if (json_object_setn_new(o, buf, len, v) != 0)
		need(NULL);
	if (buf != small)
		free(buf);
}

static json_t *
msg_to_json(const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *desc = m->descriptor;
	const char *base = (const char *)m;
	json_t *o = need(json_object());

	for (unsigned i = 0; i < desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[i];
		const char *member = base + f->offset;

		if (!emitted(m, f))
			continue;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			size_t sz = elem_size(f->type);
			const char *arr = *(const char *const *)member;
			json_t *a = need(json_array());
			for (size_t k = 0; arr != NULL && k < n; k++)
				if (json_array_append_new(a, value_to_json(f, arr + k * sz)) != 0)
					need(NULL);
			set_member(o, f, a);
		} else
			set_member(o, f, value_to_json(f, member));
	}
	return o;
}

json_t *
mall_pb_to_json(const ProtobufCMessage *m)
{
	return msg_to_json(m);
}

/* ---- the text writer ---- */

typedef struct jw {
	char *buf;
	size_t len, cap;
	const mall_pb_json_opts *opts;
} jw;

static void jw_grow(jw *w, size_t n) __attribute__((noinline));

/* jw_grow: room for n more bytes, doubling the buffer (1 KiB at first). */
static void
jw_grow(jw *w, size_t n)
{
	size_t cap = w->cap ? w->cap : 1024;
	while (cap - w->len < n)
		cap *= 2;
	w->buf = mall_xrealloc(w->buf, cap);
	w->cap = cap;
}

/* jw_room: room for n more bytes; returns where they go. */
static inline char *
jw_room(jw *w, size_t n)
{
	if (w->cap - w->len < n)
		jw_grow(w, n);
	return w->buf + w->len;
}

static inline void
jw_put(jw *w, const void *s, size_t n)
{
	memcpy(jw_room(w, n), s, n);
	w->len += n;
}

static inline void
jw_ch(jw *w, char c)
{
	*jw_room(w, 1) = c;
	w->len++;
}

static const char digit_pairs[] = "00010203040506070809101112131415161718192021222324"
                                  "25262728293031323334353637383940414243444546474849"
                                  "50515253545556575859606162636465666768697071727374"
                                  "75767778798081828384858687888990919293949596979899";

static void
jw_u64(jw *w, uint64_t v)
{
	char b[20];
	char *q = b + sizeof(b);
	while (v >= 100) {
		unsigned d = (unsigned)(v % 100) * 2;
		v /= 100;
		*--q = digit_pairs[d + 1];
		*--q = digit_pairs[d];
	}
	if (v >= 10) {
		*--q = digit_pairs[v * 2 + 1];
		*--q = digit_pairs[v * 2];
	} else
		*--q = (char)('0' + v);
	jw_put(w, q, (size_t)(b + sizeof(b) - q));
}

static void
jw_i64(jw *w, int64_t v)
{
	if (v < 0) {
		jw_ch(w, '-');
		jw_u64(w, (uint64_t)0 - (uint64_t)v);
	} else
		jw_u64(w, (uint64_t)v);
}

/* jw_real: d (finite) as jansson writes a real. */
static void
jw_real(jw *w, double d)
{
	char b[40];
	int n = snprintf(b, sizeof(b), "%.17g", d);
	if (n <= 0 || (size_t)n >= sizeof(b))
		need(NULL); /* not reached: %.17g of a finite double fits */
	const char *point = localeconv()->decimal_point;
	if (*point != '.') {
		char *p = strchr(b, *point);
		if (p != NULL)
			*p = '.';
	}
	char *e = strchr(b, 'e');
	if (e == NULL) {
		jw_put(w, b, (size_t)n);
		if (strchr(b, '.') == NULL)
			jw_put(w, ".0", 2);
		return;
	}
	/* the exponent without '+' and leading zeros: 1e+308 is 1e308 */
	char *x = e + 1;
	jw_put(w, b, (size_t)(x - b));
	if (*x == '-')
		jw_ch(w, *x++);
	else if (*x == '+')
		x++;
	while (*x == '0' && x[1] != '\0')
		x++;
	jw_put(w, x, strlen(x));
}

/* plain: whether byte c goes into a JSON string as it is (ASCII but for
 * control characters, '"' and '\\'; DEL and '/' are plain). */
static inline bool
plain(unsigned char c)
{
	return c >= 0x20 && c < 0x80 && c != '"' && c != '\\';
}

/* jw_string: s[0..len) as a JSON string; bytes that are not part of valid
 * UTF-8 become U+FFFD, as utf8_repair makes them. */
static void
jw_string(jw *w, const char *s, size_t len)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	jw_room(w, len + 2);
	w->buf[w->len++] = '"';
	while (i < len) {
		size_t start = i;
		/* a run of bytes copied as they are: plain ASCII and valid UTF-8 */
		for (;;) {
			if (i < len && plain(p[i])) {
				i++;
				continue;
			}
			if (i < len && p[i] >= 0x80) {
				size_t n = utf8_char(p + i, len - i);
				if (n != 0) {
					i += n;
					continue;
				}
			}
			break;
		}
		jw_put(w, p + start, i - start);
		if (i == len)
			break;
		unsigned c = p[i++];
		char *o = jw_room(w, 6);
		size_t n = 2;
		o[0] = '\\';
		switch (c) {
		case '"':
		case '\\':
			o[1] = (char)c;
			break;
		case '\b':
			o[1] = 'b';
			break;
		case '\f':
			o[1] = 'f';
			break;
		case '\n':
			o[1] = 'n';
			break;
		case '\r':
			o[1] = 'r';
			break;
		case '\t':
			o[1] = 't';
			break;
		default:
			if (c < 0x20) {
				memcpy(o + 1, "u00", 3);
				o[4] = hex[c >> 4];
				o[5] = hex[c & 15];
				n = 6;
			} else { /* a byte that is not UTF-8 */
				memcpy(o, "\xEF\xBF\xBD", 3);
				n = 3;
			}
		}
		w->len += n;
	}
	jw_ch(w, '"');
}

/* jw_key: "jsonName": for field f. */
static void
jw_key(jw *w, const ProtobufCFieldDescriptor *f)
{
	const char *s = f->name;
	char *o = jw_room(w, strlen(s) + 3);
	size_t k = 0;
	bool upper = false;

	o[k++] = '"';
	for (; *s != '\0'; s++) {
		if (*s == '_') {
			upper = true;
			continue;
		}
		o[k++] = upper ? (char)toupper((unsigned char)*s) : *s;
		upper = false;
	}
	o[k++] = '"';
	o[k++] = ':';
	w->len += k;
}

static void jw_msg(jw *w, const ProtobufCMessage *m);

static void
jw_value(jw *w, const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		jw_i64(w, *(const int32_t *)p);
		return;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		jw_i64(w, *(const int64_t *)p);
		return;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		jw_u64(w, *(const uint32_t *)p);
		return;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64: {
		uint64_t v = *(const uint64_t *)p;
		if (v > (uint64_t)INT64_MAX)
			jw_ch(w, '"');
		jw_u64(w, v);
		if (v > (uint64_t)INT64_MAX)
			jw_ch(w, '"');
		return;
	}
	case PROTOBUF_C_TYPE_FLOAT: {
		float v = *(const float *)p;
		if (isfinite(v))
			jw_real(w, float_value(v));
		else
			jw_put(w, "null", 4);
		return;
	}
	case PROTOBUF_C_TYPE_DOUBLE: {
		double d = *(const double *)p;
		if (isfinite(d))
			jw_real(w, d);
		else
			jw_put(w, "null", 4);
		return;
	}
	case PROTOBUF_C_TYPE_BOOL:
		if (*(const protobuf_c_boolean *)p)
			jw_put(w, "true", 4);
		else
			jw_put(w, "false", 5);
		return;
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)p;
		const ProtobufCEnumValue *ev =
		    protobuf_c_enum_descriptor_get_value(f->descriptor, v);
		if (ev == NULL) {
			jw_i64(w, v);
			return;
		}
		size_t n = strlen(ev->name);
		char small[64];
		char *lower = n < sizeof(small) ? small : mall_xmalloc(n + 1);
		for (size_t i = 0; i < n; i++)
			lower[i] = (char)tolower((unsigned char)ev->name[i]);
		jw_string(w, lower, n);
		if (lower != small)
			free(lower);
		return;
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(const char *const *)p;
		jw_string(w, s ? s : "", s ? strlen(s) : 0);
		return;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = p;
		size_t n = b->data ? b->len : 0;
		char *o = jw_room(w, (n + 2) / 3 * 4 + 3);
		size_t k = 0, i = 0;
		o[k++] = '"';
		for (; i + 2 < n; i += 3) {
			uint32_t v = (uint32_t)b->data[i] << 16 | (uint32_t)b->data[i + 1] << 8 |
			             b->data[i + 2];
			o[k++] = b64chars[v >> 18];
			o[k++] = b64chars[(v >> 12) & 63];
			o[k++] = b64chars[(v >> 6) & 63];
			o[k++] = b64chars[v & 63];
		}
		if (i < n) {
			uint32_t v = (uint32_t)b->data[i] << 16;
			if (i + 1 < n)
				v |= (uint32_t)b->data[i + 1] << 8;
			o[k++] = b64chars[v >> 18];
			o[k++] = b64chars[(v >> 12) & 63];
			o[k++] = i + 1 < n ? b64chars[(v >> 6) & 63] : '=';
			o[k++] = '=';
		}
		o[k++] = '"';
		w->len += k;
		return;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sub = *(const ProtobufCMessage *const *)p;
		if (sub != NULL)
			jw_msg(w, sub);
		else
			jw_put(w, "null", 4);
		return;
	}
	}
	jw_put(w, "null", 4);
}

static void
jw_msg(jw *w, const ProtobufCMessage *m)
{
	const ProtobufCMessageDescriptor *desc = m->descriptor;
	const char *base = (const char *)m;
	const mall_pb_json_opts *opts = w->opts;
	bool first = true;

	jw_ch(w, '{');
	for (unsigned i = 0; i < desc->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[i];
		const char *member = base + f->offset;

		if (!emitted(m, f) ||
		    (opts != NULL && opts->skip != NULL && opts->skip(f, desc, opts->arg)))
			continue;
		if (!first)
			jw_ch(w, ',');
		first = false;
		jw_key(w, f);
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			size_t sz = elem_size(f->type);
			const char *arr = *(const char *const *)member;
			jw_ch(w, '[');
			for (size_t k = 0; arr != NULL && k < n; k++) {
				if (k > 0)
					jw_ch(w, ',');
				jw_value(w, f, arr + k * sz);
			}
			jw_ch(w, ']');
		} else
			jw_value(w, f, member);
	}
	jw_ch(w, '}');
}

char *
mall_pb_to_json_text_opts(const ProtobufCMessage *m, const mall_pb_json_opts *opts, size_t *len)
{
	jw w = {.opts = opts};
	jw_grow(&w, 1024);
	jw_msg(&w, m);
	jw_ch(&w, '\0');
	if (len != NULL)
		*len = w.len - 1;
	return w.buf;
}

char *
mall_pb_to_json_text(const ProtobufCMessage *m, size_t *len)
{
	return mall_pb_to_json_text_opts(m, NULL, len);
}

/* ---- query strings ---- */

/* is_decimal: -?digits(.digits)?([eE][+-]?digits)?, the JSON number grammar
 * without its leading-zero rule. */
static bool
is_decimal(const char *s)
{
	size_t i = 0, d;
	if (s[i] == '-')
		i++;
	for (d = i; isdigit((unsigned char)s[i]); i++)
		;
	if (i == d)
		return false;
	if (s[i] == '.') {
		for (d = ++i; isdigit((unsigned char)s[i]); i++)
			;
		if (i == d)
			return false;
	}
	if (s[i] == 'e' || s[i] == 'E') {
		i++;
		if (s[i] == '+' || s[i] == '-')
			i++;
		for (d = i; isdigit((unsigned char)s[i]); i++)
			;
		if (i == d)
			return false;
	}
	return s[i] == '\0';
}

static bool
value_from_text(conv *c, const ProtobufCFieldDescriptor *f, const char *s, void *dst)
{
	size_t len = strlen(s);

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64: {
		wide w;
		numres r = parse_int_text(s, len, &w);
		return store_int(c, f->type, r, w, dst);
	}
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE:
		if (!is_decimal(s))
			return field_error(c, "must be a number");
		return store_real(c, f->type, strtod(s, NULL), dst);
	case PROTOBUF_C_TYPE_BOOL:
		if (strcasecmp(s, "true") == 0 || strcmp(s, "1") == 0)
			*(protobuf_c_boolean *)dst = 1;
		else if (strcasecmp(s, "false") == 0 || strcmp(s, "0") == 0)
			*(protobuf_c_boolean *)dst = 0;
		else
			return field_error(c, "must be true or false");
		return true;
	case PROTOBUF_C_TYPE_ENUM:
		return enum_from_name(c, f->descriptor, s, len, dst);
	case PROTOBUF_C_TYPE_STRING:
		if (!string_check(c, s, len))
			return false;
		*(char **)dst = mall_arena_strndup(c->a, s, len);
		return true;
	case PROTOBUF_C_TYPE_BYTES:
		if (!b64_decode(c->a, s, len, dst))
			return field_error(c, "must be base64");
		return true;
	case PROTOBUF_C_TYPE_MESSAGE:
		return field_error(c, "cannot be given as a single value");
	}
	return field_error(c, "has a type the converter does not know");
}

mall_code
mall_pb_set_from_string(ProtobufCMessage *m, mall_arena *a, const char *name, const char *value,
                        mall_status *st)
{
	const ProtobufCMessageDescriptor *desc = m->descriptor;
	const ProtobufCFieldDescriptor *f = find_field(desc, name, strlen(name));
	conv c = {.a = a, .st = st};
	char *base = (char *)m;
	union {
		int32_t i32;
		int64_t i64;
		uint32_t u32;
		uint64_t u64;
		float f;
		double d;
		protobuf_c_boolean b;
		int e;
		char *s;
		ProtobufCBinaryData bin;
		ProtobufCMessage *m;
	} tmp;

	if (f == NULL) {
		path_push_name(&c.path, name, strlen(name));
		field_error(&c, "unknown field");
		return MALL_INVALID_ARGUMENT;
	}
	path_push_field(&c.path, f);
	memset(&tmp, 0, sizeof(tmp));
	if (!value_from_text(&c, f, value, &tmp))
		return MALL_INVALID_ARGUMENT;

	size_t sz = elem_size(f->type);
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		size_t *np = (size_t *)(base + f->quantifier_offset);
		char **arrp = (char **)(base + f->offset);
		char *arr = mall_arena_alloc(a, (*np + 1) * sz);
		if (*np > 0)
			memcpy(arr, *arrp, *np * sz);
		memcpy(arr + *np * sz, &tmp, sz);
		*arrp = arr;
		(*np)++;
		return MALL_OK;
	}
	memcpy(base + f->offset, &tmp, sz);
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		*(uint32_t *)(base + f->quantifier_offset) = f->id;
	else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
	         f->type != PROTOBUF_C_TYPE_MESSAGE)
		*(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
	return MALL_OK;
}

size_t
mall_utf8_chars(const char *s, size_t len)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xC0) != 0x80)
			n++;
	return n;
}

mall_code
mall_update_mask_parse(char *const *mask, size_t n, const char *const *allowed, size_t nallowed,
                       bool *set, mall_status *st)
{
	if (n == 0)
		mall_status_field(st, "updateMask", "must name at least one field");
	for (size_t i = 0; i < n; i++) {
		size_t k = 0;
		while (k < nallowed && strcmp(mask[i], allowed[k]) != 0)
			k++;
		if (k < nallowed)
			set[k] = true;
		else
			mall_status_field(st, "updateMask", "%.100s cannot be updated", mask[i]);
	}
	return st->code;
}
