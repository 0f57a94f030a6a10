/*
 * fuzz_json_pb.c: libFuzzer target for the JSON <-> protobuf converter.
 *
 * The input is JSON text for mall.test.Everything (every field kind, a oneof
 * and a recursive message).  Beyond "no crash, no sanitizer report" it checks
 * properties a caller relies on:
 *   - a failure leaves no message and names valid-UTF-8 fields and messages;
 *   - a message that was accepted converts back to valid UTF-8 JSON, packs,
 *     unpacks, and its JSON reads back into a message with the same wire bytes;
 *   - the same bytes as a query-string value for some field never crash and
 *     leave a message that still packs.
 * Run: fuzz_json_pb -max_total_time=60 [corpus dir]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_pb.h"
#include "test.pb-c.h"

#define EVERYTHING (&mall__test__everything__descriptor)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "property violated: %s\n", what);
		abort();
	}
}

static uint8_t *
pack(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(*len ? *len : 1);
	check(buf != NULL, "malloc");
	check(protobuf_c_message_pack(m, buf) == *len, "pack writes the packed size");
	return buf;
}

static void
check_failure(const mall_status *st, const ProtobufCMessage *m)
{
	check(m == NULL, "a failure leaves *out NULL");
	check(st->code == MALL_INVALID_ARGUMENT, "a failure is INVALID_ARGUMENT");
	check(mall_utf8_valid(st->message, strlen(st->message)), "status message is UTF-8");
	for (int i = 0; i < st->nfields; i++) {
		check(mall_utf8_valid(st->fields[i].field, strlen(st->fields[i].field)),
		      "field name is UTF-8");
		check(mall_utf8_valid(st->fields[i].message, strlen(st->fields[i].message)),
		      "field message is UTF-8");
	}
}

static void
json_round_trip(mall_arena *a, const uint8_t *data, size_t size)
{
	mall_status st;
	ProtobufCMessage *m = (ProtobufCMessage *)&st;
	mall_code code = mall_json_to_pb((const char *)data, size, EVERYTHING, a, &m, &st);
	if (code != MALL_OK) {
		check_failure(&st, m);
		return;
	}
	check(m != NULL, "success gives a message");

	size_t tlen;
	char *text = mall_pb_to_json_text(m, &tlen);
	check(mall_utf8_valid(text, tlen), "output JSON is UTF-8");

	size_t len1, len2;
	uint8_t *wire1 = pack(m, &len1);
	ProtobufCMessage *u = protobuf_c_message_unpack(EVERYTHING, mall_arena_pb(a), len1, wire1);
	check(u != NULL, "packed message unpacks");
	free(mall_pb_to_json_text(u, NULL));

	ProtobufCMessage *again = NULL;
	code = mall_json_to_pb(text, tlen, EVERYTHING, a, &again, &st);
	if (code != MALL_OK)
		fprintf(stderr, "output that does not read back: %s\n%s\n", st.message, text);
	check(code == MALL_OK, "output JSON reads back");
	uint8_t *wire2 = pack(again, &len2);
	check(len1 == len2 && memcmp(wire1, wire2, len1) == 0, "read-back message is the same");
	free(wire1);
	free(wire2);
	free(text);
}

static void
query_value(mall_arena *a, const uint8_t *data, size_t size)
{
	if (size == 0)
		return;
	const ProtobufCFieldDescriptor *f = &EVERYTHING->fields[data[0] % EVERYTHING->n_fields];
	char *value = mall_arena_strndup(a, (const char *)data + 1, size - 1);
	mall_status st;
	mall_status_clear(&st);
	ProtobufCMessage *m = mall_pb_new(EVERYTHING, a);
	mall_code code = mall_pb_set_from_string(m, a, f->name, value, &st);
	if (code != MALL_OK) {
		check_failure(&st, NULL);
		check(st.nfields == 1, "a bad value is one field error");
	}
	size_t len;
	free(pack(m, &len));
	free(mall_pb_to_json_text(m, NULL));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static mall_arena *a;
	if (a == NULL)
		a = mall_arena_new();
	json_round_trip(a, data, size);
	mall_arena_reset(a);
	query_value(a, data, size);
	mall_arena_reset(a);
	return 0;
}
