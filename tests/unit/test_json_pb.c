/*
 * test_json_pb.c: the JSON <-> protobuf converter (lib/json_pb.c) on the test
 * messages of tests/unit/proto/test.proto and on the catalog API messages.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_pb.h"
#include "mall/catalog.pb-c.h"
#include "test.pb-c.h"

#define EVERYTHING (&mall__test__everything__descriptor)

typedef Mall__Test__Everything Everything;

static mall_arena *A;

static int
setup(void **state)
{
	(void)state;
	A = mall_arena_new();
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	mall_arena_free(A);
	return 0;
}

static void
print_status(const mall_status *st)
{
	print_error("status %s: %s\n", mall_code_name(st->code), st->message);
	for (int i = 0; i < st->nfields; i++)
		print_error("  field %s: %s\n", st->fields[i].field, st->fields[i].message);
}

static Everything *
parse_ok(const char *json)
{
	mall_status st;
	ProtobufCMessage *m = NULL;
	mall_code code = mall_json_to_pb(json, strlen(json), EVERYTHING, A, &m, &st);
	if (code != MALL_OK)
		print_status(&st);
	assert_int_equal(code, MALL_OK);
	assert_true(mall_status_ok(&st));
	assert_non_null(m);
	return (Everything *)m;
}

/* expect_field_in: converting json fails with exactly one field error, at
 * field, with message. */
static void
expect_field_in(const ProtobufCMessageDescriptor *desc, const char *json, size_t len,
                const char *field, const char *message)
{
	mall_status st;
	ProtobufCMessage *m = (ProtobufCMessage *)&st; /* must be reset to NULL */
	mall_code code = mall_json_to_pb(json, len, desc, A, &m, &st);
	if (code != MALL_INVALID_ARGUMENT || st.nfields != 1)
		print_status(&st);
	assert_int_equal(code, MALL_INVALID_ARGUMENT);
	assert_int_equal(st.code, MALL_INVALID_ARGUMENT);
	assert_null(m);
	assert_int_equal(st.nfields, 1);
	assert_string_equal(st.fields[0].field, field);
	assert_string_equal(st.fields[0].message, message);
}

static void
expect_field(const char *json, const char *field, const char *message)
{
	expect_field_in(EVERYTHING, json, strlen(json), field, message);
}

/* expect_malformed: converting text fails as a whole, with a message that
 * starts with prefix and no field errors. */
static void
expect_malformed_n(const char *text, size_t len, const char *prefix)
{
	mall_status st;
	ProtobufCMessage *m = (ProtobufCMessage *)&st;
	mall_code code = mall_json_to_pb(text, len, EVERYTHING, A, &m, &st);
	if (code != MALL_INVALID_ARGUMENT || strncmp(st.message, prefix, strlen(prefix)) != 0)
		print_status(&st);
	assert_int_equal(code, MALL_INVALID_ARGUMENT);
	assert_null(m);
	assert_int_equal(st.nfields, 0);
	assert_true(strncmp(st.message, prefix, strlen(prefix)) == 0);
	assert_true(mall_utf8_valid(st.message, strlen(st.message)));
}

static void
expect_malformed(const char *text, const char *prefix)
{
	expect_malformed_n(text, strlen(text), prefix);
}

static void
assert_json(const ProtobufCMessage *m, const char *expected)
{
	size_t len = 0;
	char *text = mall_pb_to_json_text(m, &len);
	assert_int_equal(len, strlen(text));
	assert_string_equal(text, expected);
	free(text);
}

static uint8_t *
pack(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf = malloc(*len ? *len : 1);
	assert_int_equal(protobuf_c_message_pack(m, buf), *len);
	return buf;
}

static const char all_kinds_in[] =
    "{\"i32\":-5,\"i64\":\"-9007199254740993\",\"u32\":4294967295,"
    "\"u64\":\"18446744073709551615\",\"s32\":-2147483648,\"s64\":-9223372036854775808,"
    "\"f32\":7,\"f64\":\"18446744073709551614\",\"sf32\":-9,\"sf64\":9223372036854775807,"
    "\"flag\":true,\"ratio\":0.25,\"amount\":-1234.5,\"text\":\"h\xc3\xa9llo \\\"q\\\"\","
    "\"blob\":\"AP8Q\",\"color\":\"GREEN_BLUE\",\"inner\":{\"name\":\"in\",\"count\":3},"
    "\"numbers\":[1,\"-2\",3000000000000],\"words\":[\"a\",\"\",\"\xed\x95\x9c\"],"
    "\"inners\":[{\"name\":\"x\"},{\"count\":2}],\"colors\":[\"red\",\"green_blue\"],"
    "\"snake_case_name\":\"snake\",\"choiceText\":\"pick\","
    "\"tree\":{\"name\":\"root\",\"child\":{\"name\":\"c\"},"
    "\"children\":[{\"name\":\"k1\"},{\"name\":\"k2\"}]},"
    "\"blobs\":[\"\",\"AQ==\"],\"flags\":[true,false],\"amounts\":[1.5,-0.125],"
    "\"ratios\":[0.5],\"big\":[0,\"18446744073709551615\"],\"small\":[-1,1]}";

static const char all_kinds_out[] =
    "{\"i32\":-5,\"i64\":-9007199254740993,\"u32\":4294967295,"
    "\"u64\":\"18446744073709551615\",\"s32\":-2147483648,\"s64\":-9223372036854775808,"
    "\"f32\":7,\"f64\":\"18446744073709551614\",\"sf32\":-9,\"sf64\":9223372036854775807,"
    "\"flag\":true,\"ratio\":0.25,\"amount\":-1234.5,\"text\":\"h\xc3\xa9llo \\\"q\\\"\","
    "\"blob\":\"AP8Q\",\"color\":\"green_blue\",\"inner\":{\"name\":\"in\",\"count\":3},"
    "\"numbers\":[1,-2,3000000000000],\"words\":[\"a\",\"\",\"\xed\x95\x9c\"],"
    "\"inners\":[{\"name\":\"x\",\"count\":0},{\"name\":\"\",\"count\":2}],"
    "\"colors\":[\"red\",\"green_blue\"],\"snakeCaseName\":\"snake\",\"choiceText\":\"pick\","
    "\"tree\":{\"name\":\"root\",\"child\":{\"name\":\"c\",\"children\":[]},"
    "\"children\":[{\"name\":\"k1\",\"children\":[]},{\"name\":\"k2\",\"children\":[]}]},"
    "\"blobs\":[\"\",\"AQ==\"],\"flags\":[true,false],\"amounts\":[1.5,-0.125],"
    "\"ratios\":[0.5],\"big\":[0,\"18446744073709551615\"],\"small\":[-1,1]}";

/* Every field kind reads into the C struct as expected. */
static void
test_all_kinds_read(void **state)
{
	(void)state;
	Everything *e = parse_ok(all_kinds_in);
	assert_int_equal(e->i32, -5);
	assert_true(e->i64 == -9007199254740993LL);
	assert_int_equal(e->u32, 4294967295U);
	assert_true(e->u64 == UINT64_MAX);
	assert_int_equal(e->s32, INT32_MIN);
	assert_true(e->s64 == INT64_MIN);
	assert_int_equal(e->f32, 7);
	assert_true(e->f64 == UINT64_MAX - 1);
	assert_int_equal(e->sf32, -9);
	assert_true(e->sf64 == INT64_MAX);
	assert_true(e->flag);
	assert_true(e->ratio == 0.25f);
	assert_true(e->amount == -1234.5);
	assert_string_equal(e->text, "h\xc3\xa9llo \"q\"");
	assert_int_equal(e->blob.len, 3);
	assert_memory_equal(e->blob.data, "\x00\xff\x10", 3);
	assert_int_equal(e->color, MALL__TEST__COLOR__GREEN_BLUE);
	assert_non_null(e->inner);
	assert_string_equal(e->inner->name, "in");
	assert_int_equal(e->inner->count, 3);
	assert_int_equal(e->n_numbers, 3);
	assert_true(e->numbers[0] == 1 && e->numbers[1] == -2 && e->numbers[2] == 3000000000000LL);
	assert_int_equal(e->n_words, 3);
	assert_string_equal(e->words[1], "");
	assert_string_equal(e->words[2], "\xed\x95\x9c");
	assert_int_equal(e->n_inners, 2);
	assert_string_equal(e->inners[0]->name, "x");
	assert_string_equal(e->inners[1]->name, ""); /* default, not NULL */
	assert_int_equal(e->inners[1]->count, 2);
	assert_int_equal(e->n_colors, 2);
	assert_int_equal(e->colors[1], MALL__TEST__COLOR__GREEN_BLUE);
	assert_string_equal(e->snake_case_name, "snake");
	assert_int_equal(e->choice_case, MALL__TEST__EVERYTHING__CHOICE_CHOICE_TEXT);
	assert_string_equal(e->choice_text, "pick");
	assert_string_equal(e->tree->child->name, "c");
	assert_null(e->tree->child->child);
	assert_int_equal(e->tree->n_children, 2);
	assert_string_equal(e->tree->children[1]->name, "k2");
	assert_int_equal(e->n_blobs, 2);
	assert_int_equal(e->blobs[0].len, 0);
	assert_int_equal(e->blobs[1].len, 1);
	assert_int_equal(e->blobs[1].data[0], 1);
	assert_int_equal(e->n_flags, 2);
	assert_true(e->flags[0] && !e->flags[1]);
	assert_true(e->amounts[1] == -0.125);
	assert_true(e->ratios[0] == 0.5f);
	assert_true(e->big[1] == UINT64_MAX);
	assert_int_equal(e->small[0], -1);
}

/* JSON -> pb -> JSON gives the normalized JSON; pb -> wire -> pb keeps it; and
 * the output text reads back into the same message. */
static void
test_all_kinds_round_trip(void **state)
{
	(void)state;
	Everything *e = parse_ok(all_kinds_in);
	assert_json(&e->base, all_kinds_out);

	size_t len;
	uint8_t *wire = pack(&e->base, &len);
	ProtobufCMessage *u = protobuf_c_message_unpack(EVERYTHING, mall_arena_pb(A), len, wire);
	assert_non_null(u);
	assert_json(u, all_kinds_out);

	Everything *again = parse_ok(all_kinds_out);
	size_t len2;
	uint8_t *wire2 = pack(&again->base, &len2);
	assert_int_equal(len, len2);
	assert_memory_equal(wire, wire2, len);
	free(wire);
	free(wire2);
}

/* Output carries every scalar and repeated field at its default, and no unset
 * sub-message or oneof member. */
static void
test_defaults_in_output(void **state)
{
	(void)state;
	ProtobufCMessage *m = mall_pb_new(EVERYTHING, A);
	assert_json(m,
	            "{\"i32\":0,\"i64\":0,\"u32\":0,\"u64\":0,\"s32\":0,\"s64\":0,\"f32\":0,"
	            "\"f64\":0,\"sf32\":0,\"sf64\":0,\"flag\":false,\"ratio\":0.0,\"amount\":0.0,"
	            "\"text\":\"\",\"blob\":\"\",\"color\":\"color_unspecified\",\"numbers\":[],"
	            "\"words\":[],\"inners\":[],\"colors\":[],\"snakeCaseName\":\"\","
	            "\"blobs\":[],\"flags\":[],\"amounts\":[],\"ratios\":[],\"big\":[],"
	            "\"small\":[]}");
	/* the same from "{}" and when nulls stand for absent fields */
	Everything *e =
	    parse_ok("{\"i32\":null,\"inner\":null,\"words\":null,\"choiceText\":null}");
	assert_null(e->inner);
	assert_int_equal(e->n_words, 0);
	assert_int_equal(e->choice_case, MALL__TEST__EVERYTHING__CHOICE__NOT_SET);
	assert_string_equal(e->text, "");
	/* a default message packs (strings point at the default, not NULL) */
	size_t len;
	free(pack(&e->base, &len));
	assert_int_equal(len, 0);
}

static void
test_names(void **state)
{
	(void)state;
	Everything *e = parse_ok("{\"snake_case_name\":\"a\"}");
	assert_string_equal(e->snake_case_name, "a");
	e = parse_ok("{\"snakeCaseName\":\"b\",\"choice_inner\":{\"name\":\"n\"}}");
	assert_string_equal(e->snake_case_name, "b");
	assert_int_equal(e->choice_case, MALL__TEST__EVERYTHING__CHOICE_CHOICE_INNER);
	expect_field("{\"snakeCaseName\":\"a\",\"snake_case_name\":\"b\"}", "snakeCaseName",
	             "is given more than once");
	/* names are case-sensitive */
	expect_field("{\"SnakeCaseName\":\"a\"}", "SnakeCaseName", "unknown field");
}

static void
test_oneof(void **state)
{
	(void)state;
	Everything *e = parse_ok("{\"choiceInner\":{\"name\":\"n\",\"count\":1}}");
	assert_int_equal(e->choice_case, MALL__TEST__EVERYTHING__CHOICE_CHOICE_INNER);
	assert_string_equal(e->choice_inner->name, "n");
	char *text = mall_pb_to_json_text(&e->base, NULL);
	assert_non_null(strstr(text, "\"choiceInner\":{\"name\":\"n\",\"count\":1}"));
	assert_null(strstr(text, "choiceText"));
	free(text);

	size_t len;
	uint8_t *wire = pack(&e->base, &len);
	Everything *u =
	    (Everything *)protobuf_c_message_unpack(EVERYTHING, mall_arena_pb(A), len, wire);
	free(wire);
	assert_non_null(u);
	assert_int_equal(u->choice_case, MALL__TEST__EVERYTHING__CHOICE_CHOICE_INNER);
	assert_int_equal(u->choice_inner->count, 1);

	expect_field("{\"choiceText\":\"a\",\"choiceInner\":{}}", "choiceInner",
	             "cannot be set together with choiceText (one of them only)");
}

static void
test_enums(void **state)
{
	(void)state;
	assert_int_equal(parse_ok("{\"color\":\"green_blue\"}")->color,
	                 MALL__TEST__COLOR__GREEN_BLUE);
	assert_int_equal(parse_ok("{\"color\":\"Green_Blue\"}")->color,
	                 MALL__TEST__COLOR__GREEN_BLUE);
	assert_int_equal(parse_ok("{\"color\":\"RED\"}")->color, MALL__TEST__COLOR__RED);
	expect_field("{\"color\":\"purple\"}", "color",
	             "must be one of color_unspecified, red, green_blue");
	expect_field("{\"color\":2}", "color", "must be a string naming a value");
	expect_field("{\"colors\":[\"red\",\"greenblue\"]}", "colors[1]",
	             "must be one of color_unspecified, red, green_blue");

	/* a value without a name (from a newer peer) is written as its number */
	Everything *e = (Everything *)mall_pb_new(EVERYTHING, A);
	e->color = 7;
	char *text = mall_pb_to_json_text(&e->base, NULL);
	assert_non_null(strstr(text, "\"color\":7,"));
	free(text);
}

static void
test_integers(void **state)
{
	(void)state;
	Everything *e = parse_ok("{\"i32\":2147483647,\"u32\":\"4294967295\",\"i64\":"
	                         "\"-9223372036854775808\",\"u64\":9223372036854775807,"
	                         "\"sf32\":1e3,\"s32\":-0,\"f64\":\"007\",\"sf64\":-2.0}");
	assert_int_equal(e->i32, INT32_MAX);
	assert_int_equal(e->u32, UINT32_MAX);
	assert_true(e->i64 == INT64_MIN);
	assert_true(e->u64 == (uint64_t)INT64_MAX);
	assert_int_equal(e->sf32, 1000);
	assert_int_equal(e->s32, 0);
	assert_true(e->f64 == 7);
	assert_true(e->sf64 == -2);

	const char *i32 = "must be an integer between -2147483648 and 2147483647";
	expect_field("{\"i32\":2147483648}", "i32", i32);
	expect_field("{\"i32\":-2147483649}", "i32", i32);
	expect_field("{\"s32\":\"2147483648\"}", "s32", i32);
	expect_field("{\"sf32\":1e10}", "sf32", i32);
	expect_field("{\"u32\":4294967296}", "u32", "must be an integer between 0 and 4294967295");
	expect_field("{\"f32\":-1}", "f32", "must be an integer between 0 and 4294967295");
	expect_field("{\"i64\":\"9223372036854775808\"}", "i64",
	             "must be an integer between -9223372036854775808 and 9223372036854775807");
	expect_field("{\"u64\":\"18446744073709551616\"}", "u64",
	             "must be an integer between 0 and 18446744073709551615");
	expect_field("{\"u64\":\"-1\"}", "u64",
	             "must be an integer between 0 and 18446744073709551615");
	expect_field("{\"u64\":1e20}", "u64",
	             "must be an integer between 0 and 18446744073709551615");
	expect_field("{\"i32\":1.5}", "i32", "must be an integer");
	expect_field("{\"i32\":\"12x\"}", "i32", "must be an integer");
	expect_field("{\"i32\":\" 12\"}", "i32", "must be an integer");
	expect_field("{\"i32\":\"+12\"}", "i32", "must be an integer");
	expect_field("{\"i32\":\"\"}", "i32", "must be an integer");
	expect_field("{\"i32\":\"-\"}", "i32", "must be an integer");
	expect_field("{\"i64\":\"1e3\"}", "i64", "must be an integer");
	expect_field("{\"i64\":true}", "i64", "must be an integer");
	expect_field("{\"i64\":[1]}", "i64", "must be an integer");
	expect_field("{\"numbers\":[1,\"x\"]}", "numbers[1]", "must be an integer");
	expect_field("{\"numbers\":[1,null]}", "numbers[1]", "must not be null");
	expect_field("{\"small\":[2147483648]}", "small[0]", i32);
}

static void
test_big_unsigned_output(void **state)
{
	(void)state;
	Everything *e = (Everything *)mall_pb_new(EVERYTHING, A);
	e->u64 = (uint64_t)INT64_MAX;
	e->f64 = (uint64_t)INT64_MAX + 1;
	char *text = mall_pb_to_json_text(&e->base, NULL);
	assert_non_null(strstr(text, "\"u64\":9223372036854775807,"));
	assert_non_null(strstr(text, "\"f64\":\"9223372036854775808\","));
	free(text);
}

static void
test_floats(void **state)
{
	(void)state;
	Everything *e = parse_ok("{\"ratio\":0.1,\"amount\":1e308,\"ratios\":[3,-2.5e-3]}");
	assert_true(e->ratio == 0.1f);
	assert_true(e->amount == 1e308);
	assert_true(e->ratios[0] == 3.0f);
	assert_true(e->ratios[1] == -2.5e-3f);

	/* a float is written as its shortest decimal (0.1, not 0.100000001490116),
	 * so it reads back the same */
	json_t *j = mall_pb_to_json(&e->base);
	assert_true(json_real_value(json_object_get(j, "ratio")) == 0.1);
	assert_true(json_real_value(json_array_get(json_object_get(j, "ratios"), 1)) == -2.5e-3);
	json_decref(j);
	char *text = mall_pb_to_json_text(&e->base, NULL);
	Everything *again = parse_ok(text);
	free(text);
	assert_true(again->ratio == 0.1f);
	assert_true(again->ratios[1] == -2.5e-3f);

	expect_field("{\"ratio\":\"1.5\"}", "ratio", "must be a number");
	expect_field("{\"amount\":\"NaN\"}", "amount", "must be a number");
	expect_field("{\"amount\":true}", "amount", "must be a number");
	expect_field("{\"ratio\":1e39}", "ratio", "must be a number within the range of float");
	expect_field("{\"ratio\":-3.5e38}", "ratio", "must be a number within the range of float");
	/* FLT_MAX written as its shortest decimal (3.4028235e38, a bit above it)
	 * reads back as FLT_MAX */
	e = (Everything *)mall_pb_new(EVERYTHING, A);
	e->ratio = -FLT_MAX;
	text = mall_pb_to_json_text(&e->base, NULL);
	assert_true(parse_ok(text)->ratio == -FLT_MAX);
	free(text);
	assert_true(parse_ok("{\"ratio\":3.4028235e38}")->ratio == FLT_MAX);
	expect_field("{\"amounts\":[1,{}]}", "amounts[1]", "must be a number");

	/* NaN and infinity are never emitted as numbers */
	e = (Everything *)mall_pb_new(EVERYTHING, A);
	e->amount = NAN;
	e->ratio = INFINITY;
	text = mall_pb_to_json_text(&e->base, NULL);
	assert_non_null(strstr(text, "\"ratio\":null,\"amount\":null,"));
	free(text);
}

static void
test_bools_strings_bytes(void **state)
{
	(void)state;
	Everything *e =
	    parse_ok("{\"flag\":false,\"blob\":\"aGVsbG8\",\"blobs\":[\"-_8=\",\"+/8\"]}");
	assert_false(e->flag);
	assert_int_equal(e->blob.len, 5);
	assert_memory_equal(e->blob.data, "hello", 5);
	assert_int_equal(e->blobs[0].len, 2);
	assert_memory_equal(e->blobs[0].data, "\xfb\xff", 2);
	assert_memory_equal(e->blobs[1].data, "\xfb\xff", 2);
	char *text = mall_pb_to_json_text(&e->base, NULL);
	assert_non_null(strstr(text, "\"blob\":\"aGVsbG8=\""));
	assert_non_null(strstr(text, "\"blobs\":[\"+/8=\",\"+/8=\"]"));
	free(text);

	expect_field("{\"flag\":\"true\"}", "flag", "must be true or false");
	expect_field("{\"flag\":1}", "flag", "must be true or false");
	expect_field("{\"flags\":[true,0]}", "flags[1]", "must be true or false");
	expect_field("{\"text\":{}}", "text", "must be a string");
	expect_field("{\"text\":5}", "text", "must be a string");
	expect_field("{\"words\":[\"a\",[]]}", "words[1]", "must be a string");
	expect_field("{\"words\":\"a\"}", "words", "must be an array");
	expect_field("{\"blob\":\"a\"}", "blob", "must be base64");
	expect_field("{\"blob\":\"aGVsbG8=x\"}", "blob", "must be base64");
	expect_field("{\"blob\":\"aG Vs\"}", "blob", "must be base64");
	expect_field("{\"blob\":\"aG=\"}", "blob", "must be base64");
	expect_field("{\"blob\":3}", "blob", "must be a base64 string");
	expect_field("{\"inner\":[]}", "inner", "must be an object");
	expect_field("{\"inners\":{}}", "inners", "must be an array");
	expect_field("{\"inners\":[{},5]}", "inners[1]", "must be an object");
}

static void
test_field_paths(void **state)
{
	(void)state;
	expect_field("{\"nope\":1}", "nope", "unknown field");
	expect_field("{\"inner\":{\"count\":\"x\"}}", "inner.count", "must be an integer");
	expect_field("{\"inner\":{\"nope\":1}}", "inner.nope", "unknown field");
	expect_field("{\"inners\":[{},{},{\"name\":5}]}", "inners[2].name", "must be a string");
	expect_field("{\"tree\":{\"children\":[{},{\"child\":{\"name\":[]}}]}}",
	             "tree.children[1].child.name", "must be a string");
	/* a known field is named by its JSON name even when given by proto name */
	expect_field("{\"snake_case_name\":1}", "snakeCaseName", "must be a string");

	/* every wrong field is reported, not only the first */
	mall_status st;
	ProtobufCMessage *m;
	const char *json = "{\"i32\":\"x\",\"text\":1,\"inner\":{\"count\":true}}";
	assert_int_equal(mall_json_to_pb(json, strlen(json), EVERYTHING, A, &m, &st),
	                 MALL_INVALID_ARGUMENT);
	assert_null(m);
	assert_string_equal(st.message, "invalid request");
	assert_int_equal(st.nfields, 3);
	assert_string_equal(st.fields[0].field, "i32");
	assert_string_equal(st.fields[1].field, "text");
	assert_string_equal(st.fields[2].field, "inner.count");
}

static void
test_malformed(void **state)
{
	(void)state;
	const char *t = "{\"i32\": 1,}";
	mall_status st;
	ProtobufCMessage *m = NULL;
	assert_int_equal(mall_json_to_pb(t, strlen(t), EVERYTHING, A, &m, &st),
	                 MALL_INVALID_ARGUMENT);
	assert_null(m);
	assert_int_equal(st.nfields, 0);
	assert_string_equal(st.message,
	                    "malformed JSON: string or '}' expected near '}' at line 1 column 11");

	expect_malformed("{\"i32\":", "malformed JSON: ");
	expect_malformed("", "malformed JSON: ");
	expect_malformed_n(NULL, 0, "malformed JSON: ");
	expect_malformed("{} x", "malformed JSON: end of file expected");
	expect_malformed("\"x\"", "malformed JSON: ");
	/* the length bounds the text: a complete object followed by more bytes */
	expect_malformed("{}{}", "malformed JSON: ");
	assert_non_null(parse_ok("{}"));
	ProtobufCMessage *ok = NULL;
	assert_int_equal(mall_json_to_pb("{}garbage", 2, EVERYTHING, A, &ok, &st), MALL_OK);
	assert_non_null(ok);

	/* the top level must be an object */
	assert_int_equal(mall_json_to_pb("[1,2]", 5, EVERYTHING, A, &m, &st),
	                 MALL_INVALID_ARGUMENT);
	assert_null(m);
	assert_int_equal(st.nfields, 0);
	assert_string_equal(st.message, "JSON value must be an object, not an array");
	json_t *num = json_integer(3);
	assert_int_equal(mall_json_obj_to_pb(num, EVERYTHING, A, &m, &st), MALL_INVALID_ARGUMENT);
	assert_string_equal(st.message, "JSON value must be an object, not a number");
	json_decref(num);
}

static void
test_duplicate_keys(void **state)
{
	(void)state;
	expect_malformed("{\"i32\":1,\"i32\":2}", "malformed JSON: duplicate object key");
	expect_malformed("{\"inner\":{\"count\":1,\"count\":1}}",
	                 "malformed JSON: duplicate object key");
}

static void
test_invalid_utf8(void **state)
{
	(void)state;
	/* in JSON text, jansson refuses it while parsing */
	expect_malformed("{\"text\":\"a\xff\"}", "malformed JSON: ");
	expect_malformed("{\"te\xc3\x28xt\":1}", "malformed JSON: ");
	expect_malformed("{\"text\":\"\xed\xa0\x80\"}", "malformed JSON: ");
	expect_malformed("{\"text\":\"a\\u0000b\"}", "malformed JSON: ");

	/* in an object built elsewhere, the converter checks it */
	mall_status st;
	ProtobufCMessage *m;
	json_t *o = json_object();
	json_object_set_new(o, "text", json_stringn_nocheck("a\xc3\x28", 3));
	assert_int_equal(mall_json_obj_to_pb(o, EVERYTHING, A, &m, &st), MALL_INVALID_ARGUMENT);
	assert_null(m);
	assert_int_equal(st.nfields, 1);
	assert_string_equal(st.fields[0].field, "text");
	assert_string_equal(st.fields[0].message, "must be valid UTF-8");
	json_decref(o);

	o = json_object();
	json_object_set_new_nocheck(o, "te\xffxt", json_integer(1));
	assert_int_equal(mall_json_obj_to_pb(o, EVERYTHING, A, &m, &st), MALL_INVALID_ARGUMENT);
	assert_int_equal(st.nfields, 1);
	assert_string_equal(st.fields[0].field, "te?xt");
	assert_string_equal(st.fields[0].message, "field name must be valid UTF-8");
	json_decref(o);

	o = json_object();
	json_t *words = json_array();
	json_array_append_new(words, json_string("ok"));
	json_array_append_new(words, json_stringn("a\0b", 3));
	json_object_set_new(o, "words", words);
	assert_int_equal(mall_json_obj_to_pb(o, EVERYTHING, A, &m, &st), MALL_INVALID_ARGUMENT);
	assert_int_equal(st.nfields, 1);
	assert_string_equal(st.fields[0].field, "words[1]");
	assert_string_equal(st.fields[0].message, "must not contain NUL characters");
	json_decref(o);

	/* a string that is not UTF-8 in a message (a peer's bug) is written repaired */
	Everything *e = (Everything *)mall_pb_new(EVERYTHING, A);
	e->text = "a\xff"
	          "b";
	char *text = mall_pb_to_json_text(&e->base, NULL);
	assert_non_null(strstr(text, "\"text\":\"a\xef\xbf\xbd"
	                             "b\""));
	assert_true(mall_utf8_valid(text, strlen(text)));
	free(text);
}

/* {"tree": {"child": ... }} with levels objects in all (the top one included). */
static char *
nested(int levels)
{
	size_t cap = (size_t)levels * 16 + 16, o = 0;
	char *s = malloc(cap);
	o += (size_t)sprintf(s + o, "{\"tree\":");
	for (int i = 2; i < levels; i++)
		o += (size_t)sprintf(s + o, "{\"child\":");
	o += (size_t)sprintf(s + o, "{}");
	for (int i = 1; i < levels; i++)
		s[o++] = '}';
	s[o] = '\0';
	return s;
}

static void
test_deep_nesting(void **state)
{
	(void)state;
	char *ok = nested(32);
	Everything *e = parse_ok(ok);
	free(ok);
	int depth = 1;
	for (Mall__Test__Node *n = e->tree; n != NULL; n = n->child)
		depth++;
	assert_int_equal(depth, 32);

	char *deep = nested(33);
	char path[256] = "tree";
	for (int i = 0; i < 31; i++)
		strcat(path, ".child");
	path[63] = '\0'; /* field names are cut to the status's 63 bytes */
	expect_field(deep, path, "nests deeper than 32 levels");
	free(deep);

	/* through arrays too */
	const char *arr = "{\"tree\":{\"children\":[{\"children\":[{}]}]}}";
	assert_non_null(parse_ok(arr));

	/* JSON nested far deeper than any message: rejected, without a crash */
	size_t n = 100000;
	char *s = malloc(2 * n + 16);
	strcpy(s, "{\"tree\":");
	size_t o = strlen(s);
	for (size_t i = 0; i < n; i++)
		s[o++] = '[';
	for (size_t i = 0; i < n; i++)
		s[o++] = ']';
	s[o++] = '}';
	expect_malformed_n(s, o, "malformed JSON: ");
	free(s);
}

static void
test_set_from_string(void **state)
{
	(void)state;
	mall_status st;
	mall_status_clear(&st);
	Everything *e = (Everything *)mall_pb_new(EVERYTHING, A);
	ProtobufCMessage *m = &e->base;

	assert_int_equal(mall_pb_set_from_string(m, A, "i32", "-42", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "i64", "-9223372036854775808", &st),
	                 MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "u32", "4294967295", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "u64", "18446744073709551615", &st),
	                 MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "s32", "7", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "s64", "8", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "f32", "9", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "f64", "10", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "sf32", "-11", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "sf64", "-12", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "flag", "true", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "ratio", "1.5", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "amount", "-2.5e3", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "text", "h\xc3\xa9", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "blob", "aGk=", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "color", "Green_BLUE", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "snakeCaseName", "s", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "numbers", "1", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "numbers", "-2", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "words", "a", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "words", "b", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "colors", "red", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "flags", "0", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "flags", "1", &st), MALL_OK);
	assert_int_equal(mall_pb_set_from_string(m, A, "choice_text", "c", &st), MALL_OK);
	assert_true(mall_status_ok(&st));

	assert_int_equal(e->i32, -42);
	assert_true(e->i64 == INT64_MIN);
	assert_int_equal(e->u32, UINT32_MAX);
	assert_true(e->u64 == UINT64_MAX);
	assert_int_equal(e->s32, 7);
	assert_true(e->s64 == 8);
	assert_int_equal(e->f32, 9);
	assert_true(e->f64 == 10);
	assert_int_equal(e->sf32, -11);
	assert_true(e->sf64 == -12);
	assert_true(e->flag);
	assert_true(e->ratio == 1.5f);
	assert_true(e->amount == -2500.0);
	assert_string_equal(e->text, "h\xc3\xa9");
	assert_int_equal(e->blob.len, 2);
	assert_memory_equal(e->blob.data, "hi", 2);
	assert_int_equal(e->color, MALL__TEST__COLOR__GREEN_BLUE);
	assert_string_equal(e->snake_case_name, "s");
	assert_int_equal(e->n_numbers, 2);
	assert_true(e->numbers[0] == 1 && e->numbers[1] == -2);
	assert_int_equal(e->n_words, 2);
	assert_string_equal(e->words[1], "b");
	assert_int_equal(e->n_colors, 1);
	assert_int_equal(e->colors[0], MALL__TEST__COLOR__RED);
	assert_int_equal(e->n_flags, 2);
	assert_true(!e->flags[0] && e->flags[1]);
	assert_int_equal(e->choice_case, MALL__TEST__EVERYTHING__CHOICE_CHOICE_TEXT);
	assert_string_equal(e->choice_text, "c");
	size_t len;
	free(pack(m, &len));

	static const struct {
		const char *name, *value, *field, *message;
	} bad[] = {
	    {"i32", "2147483648", "i32", "must be an integer between -2147483648 and 2147483647"},
	    {"i32", "12abc", "i32", "must be an integer"},
	    {"i32", "", "i32", "must be an integer"},
	    {"i32", " 1", "i32", "must be an integer"},
	    {"i32", "1.0", "i32", "must be an integer"},
	    {"u32", "-1", "u32", "must be an integer between 0 and 4294967295"},
	    {"i64", "9223372036854775808", "i64",
	     "must be an integer between -9223372036854775808 and 9223372036854775807"},
	    {"u64", "99999999999999999999", "u64",
	     "must be an integer between 0 and 18446744073709551615"},
	    {"flag", "yes", "flag", "must be true or false"},
	    {"flag", "", "flag", "must be true or false"},
	    {"ratio", "1e39", "ratio", "must be a number within the range of float"},
	    {"amount", "1e999", "amount", "must be a finite number"},
	    {"amount", "nan", "amount", "must be a number"},
	    {"amount", "0x10", "amount", "must be a number"},
	    {"amount", "1.", "amount", "must be a number"},
	    {"amount", "1.5x", "amount", "must be a number"},
	    {"color", "purple", "color", "must be one of color_unspecified, red, green_blue"},
	    {"colors", "2", "colors", "must be one of color_unspecified, red, green_blue"},
	    {"text", "a\xff", "text", "must be valid UTF-8"},
	    {"words", "\xc0\xaf", "words", "must be valid UTF-8"},
	    {"blob", "a", "blob", "must be base64"},
	    {"inner", "x", "inner", "cannot be given as a single value"},
	    {"snake_case_name", "\xed\xa0\x80", "snakeCaseName", "must be valid UTF-8"},
	    {"nope", "1", "nope", "unknown field"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		mall_status_clear(&st);
		if (mall_pb_set_from_string(m, A, bad[i].name, bad[i].value, &st) !=
		    MALL_INVALID_ARGUMENT)
			fail_msg("%s=%s was accepted", bad[i].name, bad[i].value);
		assert_int_equal(st.nfields, 1);
		assert_string_equal(st.fields[0].field, bad[i].field);
		assert_string_equal(st.fields[0].message, bad[i].message);
	}
	/* a bad value leaves the field as it was */
	assert_int_equal(e->i32, -42);
	assert_int_equal(e->n_words, 2);
	assert_string_equal(e->text, "h\xc3\xa9");

	/* errors of several parameters add up */
	mall_status_clear(&st);
	mall_pb_set_from_string(m, A, "i32", "x", &st);
	mall_pb_set_from_string(m, A, "i64", "1", &st);
	mall_pb_set_from_string(m, A, "flag", "x", &st);
	assert_int_equal(st.code, MALL_INVALID_ARGUMENT);
	assert_int_equal(st.nfields, 2);
	assert_string_equal(st.fields[1].field, "flag");
}

/* The API's shape for a product list: lowerCamelCase names, defaults present,
 * Money as {"amount","currency"}, unset sub-messages absent. */
static void
test_catalog_list_reply(void **state)
{
	(void)state;
	Mall__Catalog__ListProductsReply reply = MALL__CATALOG__LIST_PRODUCTS_REPLY__INIT;
	Mall__Catalog__ProductSummary p = MALL__CATALOG__PRODUCT_SUMMARY__INIT;
	Mall__Money price = MALL__MONEY__INIT;
	Mall__Catalog__ProductSummary *products[] = {&p};

	price.amount = 15000;
	price.currency = "KRW";
	p.id = 1;
	p.slug = "kimchi-500g";
	p.name = "\xea\xb9\x80\xec\xb9\x98 500g";
	p.price = &price;
	p.category_id = 3;
	p.available = 1;
	p.created_at = "2026-11-27T12:00:00Z";
	reply.n_products = 1;
	reply.products = products;
	reply.total_count = 41;
	reply.page = 3;
	reply.page_size = 20;
	assert_json(
	    &reply.base,
	    "{\"products\":[{\"id\":1,\"slug\":\"kimchi-500g\",\"name\":\"\xea\xb9\x80\xec\xb9"
	    "\x98 500g\",\"summary\":\"\",\"price\":{\"amount\":15000,\"currency\":\"KRW\"},"
	    "\"categoryId\":3,\"available\":true,\"createdAt\":\"2026-11-27T12:00:00Z\"}],"
	    "\"totalCount\":41,\"page\":3,\"pageSize\":20}");

	Mall__Catalog__ListProductsReply empty = MALL__CATALOG__LIST_PRODUCTS_REPLY__INIT;
	assert_json(&empty.base, "{\"products\":[],\"totalCount\":0,\"page\":0,\"pageSize\":0}");

	/* and a request from JSON, by JSON name and enum name */
	mall_status st;
	ProtobufCMessage *m;
	const char *json = "{\"category\":\"kimchi\",\"sort\":\"price_asc\",\"pageSize\":50}";
	assert_int_equal(mall_json_to_pb(json, strlen(json),
	                                 &mall__catalog__list_products_request__descriptor, A, &m,
	                                 &st),
	                 MALL_OK);
	Mall__Catalog__ListProductsRequest *req = (Mall__Catalog__ListProductsRequest *)m;
	assert_string_equal(req->category, "kimchi");
	assert_int_equal(req->sort, MALL__CATALOG__PRODUCT_SORT__PRICE_ASC);
	assert_int_equal(req->page_size, 50);
	assert_string_equal(req->q, "");
	expect_field_in(&mall__catalog__list_products_request__descriptor,
	                "{\"pageSize\":3000000000}", 23, "pageSize",
	                "must be an integer between -2147483648 and 2147483647");
}

/* ---- the text writer against jansson ---- */

/* jansson_text: the text of the jansson tree, json_dumps as the writer used
 * to be; malloc'd. */
static char *
jansson_text(json_t *j)
{
	char *s = json_dumps(j, JSON_COMPACT);
	assert_non_null(s);
	json_decref(j);
	return s;
}

/* assert_same_text: the writer's text for m is byte for byte jansson's. */
static void
assert_same_text(const ProtobufCMessage *m)
{
	char *want = jansson_text(mall_pb_to_json(m));
	size_t len = 0;
	char *got = mall_pb_to_json_text(m, &len);
	if (len != strlen(want) || memcmp(got, want, len) != 0 || got[len] != '\0')
		fail_msg("writer and jansson differ:\nwriter:  %s\njansson: %s", got, want);
	assert_true(mall_utf8_valid(got, len));
	free(got);
	free(want);
}

/* xorshift64*: reproducible pseudo-random numbers for the generated cases. */
static uint64_t rng_state = 0x9E3779B97F4A7C15ULL;

static uint64_t
rnd(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static uint64_t
rnd_below(uint64_t n)
{
	return rnd() % n;
}

/* A 64-bit value that is often a boundary. */
static uint64_t
rnd_bits64(void)
{
	static const uint64_t edges[] = {0,
	                                 1,
	                                 (uint64_t)-1,
	                                 (uint64_t)INT32_MAX,
	                                 (uint64_t)INT32_MIN,
	                                 UINT32_MAX,
	                                 (uint64_t)INT64_MAX,
	                                 (uint64_t)INT64_MAX + 1,
	                                 UINT64_MAX - 1,
	                                 9,
	                                 10,
	                                 99,
	                                 100,
	                                 999999999999999999ULL,
	                                 1000000000000000000ULL,
	                                 10000000000000000000ULL};
	switch (rnd_below(4)) {
	case 0:
		return edges[rnd_below(sizeof(edges) / sizeof(edges[0]))];
	case 1:
		return rnd_below(1000);
	case 2:
		return rnd() >> rnd_below(64);
	default:
		return rnd();
	}
}

static double
rnd_double(void)
{
	static const double edges[] = {0.0,      -0.0,    1.0,    -1.0,       0.1,
	                               0.5,      1e15,    1e16,   1e17,       1e21,
	                               1e22,     1e-4,    1e-5,   1e-7,       DBL_MAX,
	                               -DBL_MAX, DBL_MIN, 5e-324, 123456.789, 9007199254740993.0,
	                               1e308,    -2.5e-3};
	uint64_t bits;
	double d;
	switch (rnd_below(4)) {
	case 0:
		return edges[rnd_below(sizeof(edges) / sizeof(edges[0]))];
	case 1:
		return (double)(int64_t)rnd_bits64() / (double)(rnd_below(1000) + 1);
	case 2:
		return (double)rnd_below(100000) / 100.0;
	default:
		bits = rnd(); /* any pattern: subnormals, NaNs and infinities too */
		memcpy(&d, &bits, sizeof(d));
		return d;
	}
}

static float
rnd_float(void)
{
	static const float edges[] = {0.0f,    -0.0f,    0.1f,     1.0f,   16777216.0f,
	                              FLT_MAX, -FLT_MAX, FLT_MIN,  1e-45f, 3.4e38f,
	                              1e-7f,   0.3f,     -2.5e-3f, 1e10f,  123.456f};
	uint32_t bits;
	float f;
	switch (rnd_below(3)) {
	case 0:
		return edges[rnd_below(sizeof(edges) / sizeof(edges[0]))];
	case 1:
		return (float)rnd_below(100000) / 100.0f;
	default:
		bits = (uint32_t)rnd();
		memcpy(&f, &bits, sizeof(f));
		return f;
	}
}

/* A NUL-terminated string of up to max bytes in A: ASCII, Korean, emoji,
 * control characters, escapes and bytes that are not UTF-8, mixed. */
static char *
rnd_text(size_t max)
{
	static const char *const pieces[] = {
	    "a", "Z", " ", "/", "\"", "\\", "\x7f", "\x01", "\x1f", "\b", "\f", "\n", "\r", "\t",
	    "\xed\x95\x9c", "\xea\xb8\x80", "\xf0\x9f\x98\x80", "\xe2\x80\xa8", "\xc2\x80",
	    "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf", "<p>", "&amp;",
	    /* not UTF-8 */
	    "\x80", "\xff", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xf5", "\xe2\x82",
	    "\xe0\x80\xaf", "\xf0\x8f\xbf\xbf", "\xc3"};
	size_t n = rnd_below(max + 1), o = 0;
	char *s = mall_arena_alloc(A, n * 4 + 1);
	for (size_t i = 0; i < n; i++) {
		if (rnd_below(8) == 0) { /* any byte but NUL */
			s[o++] = (char)(rnd_below(255) + 1);
			continue;
		}
		const char *p = pieces[rnd_below(sizeof(pieces) / sizeof(pieces[0]))];
		size_t l = strlen(p);
		memcpy(s + o, p, l);
		o += l;
	}
	s[o] = '\0';
	return s;
}

static ProtobufCBinaryData
rnd_bytes(void)
{
	ProtobufCBinaryData b = {rnd_below(12), NULL};
	if (b.len == 0 && rnd_below(2))
		return b; /* data NULL */
	b.data = mall_arena_alloc(A, b.len + 1);
	for (size_t i = 0; i < b.len; i++)
		b.data[i] = (uint8_t)rnd();
	return b;
}

static Mall__Test__Inner *
rnd_inner(void)
{
	Mall__Test__Inner *in = (Mall__Test__Inner *)mall_pb_new(&mall__test__inner__descriptor, A);
	in->name = rnd_below(4) ? rnd_text(6) : NULL;
	in->count = (int32_t)rnd_bits64();
	return in;
}

static Mall__Test__Node *
rnd_node(int depth)
{
	Mall__Test__Node *n = (Mall__Test__Node *)mall_pb_new(&mall__test__node__descriptor, A);
	n->name = rnd_text(4);
	if (depth > 0 && rnd_below(2))
		n->child = rnd_node(depth - 1);
	if (depth > 0 && rnd_below(3) == 0) {
		n->n_children = rnd_below(3);
		n->children = mall_arena_alloc(A, (n->n_children + 1) * sizeof(*n->children));
		for (size_t i = 0; i < n->n_children; i++)
			n->children[i] = rnd_node(depth - 1);
	}
	return n;
}

#define RND_ARRAY(e, field, count, expr)                                                           \
	do {                                                                                       \
		(e)->n_##field = rnd_below((count) + 1);                                           \
		(e)->field = mall_arena_alloc(A, ((e)->n_##field + 1) * sizeof(*(e)->field));      \
		for (size_t k_ = 0; k_ < (e)->n_##field; k_++)                                     \
			(e)->field[k_] = (expr);                                                   \
	} while (0)

static Everything *
rnd_everything(void)
{
	Everything *e = (Everything *)mall_pb_new(EVERYTHING, A);
	e->i32 = (int32_t)rnd_bits64();
	e->i64 = (int64_t)rnd_bits64();
	e->u32 = (uint32_t)rnd_bits64();
	e->u64 = rnd_bits64();
	e->s32 = (int32_t)rnd_bits64();
	e->s64 = (int64_t)rnd_bits64();
	e->f32 = (uint32_t)rnd_bits64();
	e->f64 = rnd_bits64();
	e->sf32 = (int32_t)rnd_bits64();
	e->sf64 = (int64_t)rnd_bits64();
	e->flag = (protobuf_c_boolean)rnd_below(2);
	e->ratio = rnd_float();
	e->amount = rnd_double();
	e->text = rnd_below(8) ? rnd_text(40) : NULL;
	e->blob = rnd_bytes();
	e->color = (Mall__Test__Color)((int)rnd_below(7) - 2); /* unknown values too */
	e->inner = rnd_below(2) ? rnd_inner() : NULL;
	RND_ARRAY(e, numbers, 4, (int64_t)rnd_bits64());
	RND_ARRAY(e, words, 4, rnd_below(10) ? rnd_text(10) : NULL);
	RND_ARRAY(e, inners, 3, rnd_below(10) ? rnd_inner() : NULL);
	RND_ARRAY(e, colors, 3, (Mall__Test__Color)((int)rnd_below(5) - 1));
	e->snake_case_name = rnd_text(5);
	switch (rnd_below(4)) {
	case 1:
		e->choice_case = MALL__TEST__EVERYTHING__CHOICE_CHOICE_TEXT;
		e->choice_text = rnd_below(8) ? rnd_text(8) : NULL;
		break;
	case 2:
	case 3:
		e->choice_case = MALL__TEST__EVERYTHING__CHOICE_CHOICE_INNER;
		e->choice_inner = rnd_below(8) ? rnd_inner() : NULL;
		break;
	}
	e->tree = rnd_below(2) ? rnd_node(4) : NULL;
	RND_ARRAY(e, blobs, 3, rnd_bytes());
	RND_ARRAY(e, flags, 3, (protobuf_c_boolean)rnd_below(2));
	RND_ARRAY(e, amounts, 4, rnd_double());
	RND_ARRAY(e, ratios, 4, rnd_float());
	RND_ARRAY(e, big, 3, rnd_bits64());
	RND_ARRAY(e, small, 3, (int32_t)rnd_bits64());
	if (rnd_below(16) == 0) {
		e->n_numbers = 3; /* a count without an array is written as [] */
		e->numbers = NULL;
	}
	return e;
}

/* A product list page as the catalog answers it: 20 products, Korean text. */
static Mall__Catalog__ListProductsReply *
product_page(void)
{
	Mall__Catalog__ListProductsReply *r = (Mall__Catalog__ListProductsReply *)mall_pb_new(
	    &mall__catalog__list_products_reply__descriptor, A);
	r->n_products = 20;
	r->products = mall_arena_alloc(A, 20 * sizeof(*r->products));
	for (int i = 0; i < 20; i++) {
		Mall__Catalog__ProductSummary *p = (Mall__Catalog__ProductSummary *)mall_pb_new(
		    &mall__catalog__product_summary__descriptor, A);
		Mall__Money *price = (Mall__Money *)mall_pb_new(&mall__money__descriptor, A);
		price->amount = 39000 + i * 1000;
		price->currency = "KRW";
		p->id = 1000 + i;
		p->slug = mall_arena_printf(A, "hanwoo-sirloin-%d", i);
		p->name = mall_arena_printf(A, "\xed\x95\x9c\xec\x9a\xb0 1++ \"%d\"", i);
		p->summary = "\xeb\xa7\x88\xeb\xb8\x94\xeb\xa7\x81 <b>/</b>\n";
		p->price = price;
		p->category_id = i % 4;
		if (i % 2) {
			Mall__Catalog__Image *im = (Mall__Catalog__Image *)mall_pb_new(
			    &mall__catalog__image__descriptor, A);
			im->url = mall_arena_printf(A, "/media/products/%d.jpg", i);
			im->alt = p->name;
			im->width = 800;
			im->height = 600;
			p->thumbnail = im;
		}
		p->available = i % 3 != 0;
		p->created_at = "2026-11-27T12:00:00Z";
		r->products[i] = p;
	}
	r->total_count = 137;
	r->page = 1;
	r->page_size = 20;
	return r;
}

/* A product with options and stocked SKUs. */
static Mall__Catalog__Product *
product_detail(size_t nskus)
{
	Mall__Catalog__Product *p =
	    (Mall__Catalog__Product *)mall_pb_new(&mall__catalog__product__descriptor, A);
	p->id = 7;
	p->slug = "hanwoo-sirloin";
	p->name = "\xed\x95\x9c\xec\x9a\xb0";
	p->description_html = "<p>\xeb\xa7\x88\xeb\xb8\x94\xeb\xa7\x81</p>";
	p->n_skus = nskus;
	p->skus = mall_arena_alloc(A, (nskus + 1) * sizeof(*p->skus));
	for (size_t i = 0; i < nskus; i++) {
		Mall__Catalog__Sku *s =
		    (Mall__Catalog__Sku *)mall_pb_new(&mall__catalog__sku__descriptor, A);
		Mall__Money *price = (Mall__Money *)mall_pb_new(&mall__money__descriptor, A);
		price->amount = 39000;
		price->currency = "KRW";
		s->id = (int64_t)i + 1;
		s->product_id = 7;
		s->code = mall_arena_printf(A, "HW-%zu", i);
		s->price = price;
		s->on_hand = 9;
		s->reserved = 4;
		s->available = 5;
		p->skus[i] = s;
	}
	p->published = 1;
	p->created_at = "2026-11-27T12:00:00Z";
	return p;
}

/* The text writer gives exactly jansson's text (json_dumps of
 * mall_pb_to_json), for every field kind and for thousands of generated
 * messages: numbers at their limits, NaN and infinities, any float or double
 * bit pattern, Korean text, control characters, bytes that are not UTF-8,
 * unknown enum values, unset and NULL sub-messages, nesting. */
static void
test_text_writer_matches_jansson(void **state)
{
	(void)state;
	assert_same_text(&parse_ok(all_kinds_in)->base);
	assert_same_text(&parse_ok("{}")->base);
	assert_same_text(&product_page()->base);
	assert_same_text(&product_detail(6)->base);
	Mall__Catalog__ListProductsReply empty = MALL__CATALOG__LIST_PRODUCTS_REPLY__INIT;
	assert_same_text(&empty.base);

	/* every ASCII and every single byte in a string */
	char all[256];
	for (int i = 1; i < 256; i++)
		all[i - 1] = (char)i;
	all[255] = '\0';
	Everything *e = (Everything *)mall_pb_new(EVERYTHING, A);
	e->text = all;
	assert_same_text(&e->base);

	/* numbers at their limits */
	e = (Everything *)mall_pb_new(EVERYTHING, A);
	e->i32 = INT32_MIN;
	e->i64 = INT64_MIN;
	e->u32 = UINT32_MAX;
	e->u64 = UINT64_MAX;
	e->s32 = INT32_MAX;
	e->s64 = INT64_MAX;
	e->f64 = (uint64_t)INT64_MAX + 1;
	e->sf64 = INT64_MIN;
	e->ratio = FLT_TRUE_MIN;
	e->amount = -DBL_MAX;
	static double amounts[] = {NAN,  INFINITY, -INFINITY, 0.0,  -0.0, DBL_MIN, DBL_TRUE_MIN,
	                           1e21, 1e22,     1e16,      1e17, 0.1,  1e-5,    123456.789};
	static float ratios[] = {NAN, -INFINITY, FLT_MAX, -FLT_MAX, FLT_MIN, 0.1f, 1e-7f, -0.0f};
	static uint64_t big[] = {0, (uint64_t)INT64_MAX, (uint64_t)INT64_MAX + 1, UINT64_MAX};
	e->n_amounts = sizeof(amounts) / sizeof(amounts[0]);
	e->amounts = amounts;
	e->n_ratios = sizeof(ratios) / sizeof(ratios[0]);
	e->ratios = ratios;
	e->n_big = sizeof(big) / sizeof(big[0]);
	e->big = big;
	assert_same_text(&e->base);

	for (int i = 0; i < 3000; i++)
		assert_same_text(&rnd_everything()->base);
}

/* What the text writer writes, spelled out: UTF-8 and '/' as they are,
 * control characters escaped, reals as jansson writes them. */
static void
test_text_writer_format(void **state)
{
	(void)state;
	Mall__Test__Inner in = MALL__TEST__INNER__INIT;
	in.name =
	    "\xed\x95\x9c/\x7f\x01\x1f\b\f\n\r\t\"\\\xe2\x80\xa8\xf0\x9f\x98\x80\xff\xed\xa0\x80";
	in.count = -2147483647 - 1;
	assert_json(&in.base, "{\"name\":\"\xed\x95\x9c/\x7f\\u0001\\u001F\\b\\f\\n\\r\\t\\\"\\\\"
	                      "\xe2\x80\xa8\xf0\x9f\x98\x80\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"
	                      "\xef\xbf\xbd\"," /* \xed\xa0\x80: one U+FFFD a byte */
	                      "\"count\":-2147483648}");

	Everything *e = (Everything *)mall_pb_new(EVERYTHING, A);
	static double amounts[] = {1.0, -0.0, 0.1, 1e22, 1e-7, 1e16, 2.5};
	static float ratios[] = {0.1f, 3.0f};
	e->n_amounts = sizeof(amounts) / sizeof(amounts[0]);
	e->amounts = amounts;
	e->n_ratios = sizeof(ratios) / sizeof(ratios[0]);
	e->ratios = ratios;
	char *text = mall_pb_to_json_text(&e->base, NULL);
	assert_non_null(strstr(text, "\"amounts\":[1.0,-0.0,0.10000000000000001,1e22,"
	                             "9.9999999999999995e-8,10000000000000000.0,2.5],"
	                             "\"ratios\":[0.10000000000000001,3.0],"));
	free(text);
}

/* skip_stock: leaves out a SKU's onHand and reserved (as the gateway does). */
static bool
skip_stock(const ProtobufCFieldDescriptor *f, const ProtobufCMessageDescriptor *owner, void *arg)
{
	(*(int *)arg)++;
	return owner == &mall__catalog__sku__descriptor &&
	       (strcmp(f->name, "on_hand") == 0 || strcmp(f->name, "reserved") == 0);
}

/* skip_count: leaves out "count" of Inner only; "name" of Node stays. */
static bool
skip_count(const ProtobufCFieldDescriptor *f, const ProtobufCMessageDescriptor *owner, void *arg)
{
	(void)arg;
	return owner == &mall__test__inner__descriptor && strcmp(f->name, "count") == 0;
}

static bool
skip_all(const ProtobufCFieldDescriptor *f, const ProtobufCMessageDescriptor *owner, void *arg)
{
	(void)f, (void)owner, (void)arg;
	return true;
}

/* skip_first_and_last: leaves out Everything's first and last fields. */
static bool
skip_first_and_last(const ProtobufCFieldDescriptor *f, const ProtobufCMessageDescriptor *owner,
                    void *arg)
{
	(void)arg;
	return owner == EVERYTHING &&
	       (f == &owner->fields[0] || f == &owner->fields[owner->n_fields - 1]);
}

/* The skip option leaves out exactly the fields it names, at any depth, and
 * the rest is the same text as without it. */
static void
test_text_writer_skip(void **state)
{
	(void)state;
	int calls = 0;
	mall_pb_json_opts stock = {.skip = skip_stock, .arg = &calls};

	/* the product detail: as deleting the keys from jansson's object */
	Mall__Catalog__Product *p = product_detail(3);
	json_t *j = mall_pb_to_json(&p->base);
	size_t i;
	json_t *sku;
	json_array_foreach(json_object_get(j, "skus"), i, sku)
	{
		assert_non_null(json_object_get(sku, "onHand"));
		json_object_del(sku, "onHand");
		json_object_del(sku, "reserved");
	}
	char *want = jansson_text(j);
	size_t len;
	char *got = mall_pb_to_json_text_opts(&p->base, &stock, &len);
	assert_string_equal(got, want);
	assert_int_equal(len, strlen(want));
	assert_null(strstr(got, "onHand"));
	assert_null(strstr(got, "reserved"));
	assert_non_null(strstr(got, "\"price\":{\"amount\":39000,\"currency\":\"KRW\"},"
	                            "\"available\":5},"));
	/* asked once for each field that would be written, with its arg */
	assert_int_equal(calls, 12 + 3 * (8 + 2)); /* price is unset */
	free(got);
	free(want);

	/* no skip, or none skipped: the plain text */
	mall_pb_json_opts none = {0};
	want = mall_pb_to_json_text(&p->base, NULL);
	got = mall_pb_to_json_text_opts(&p->base, &none, NULL);
	assert_string_equal(got, want);
	free(got);
	got = mall_pb_to_json_text_opts(&p->base, NULL, NULL);
	assert_string_equal(got, want);
	free(got);
	free(want);

	/* a nested type's field, wherever the type occurs */
	Everything *e = parse_ok("{\"inner\":{\"name\":\"a\",\"count\":1},"
	                         "\"inners\":[{\"count\":2},{\"name\":\"b\"}],"
	                         "\"choiceInner\":{\"count\":3},\"tree\":{\"name\":\"count\"}}");
	mall_pb_json_opts count = {.skip = skip_count};
	got = mall_pb_to_json_text_opts(&e->base, &count, NULL);
	assert_null(strstr(got, "\"count\":"));
	assert_non_null(strstr(got, "\"inner\":{\"name\":\"a\"},"));
	assert_non_null(strstr(got, "\"inners\":[{\"name\":\"\"},{\"name\":\"b\"}],"));
	assert_non_null(strstr(got, "\"choiceInner\":{\"name\":\"\"},"));
	assert_non_null(strstr(got, "\"tree\":{\"name\":\"count\",\"children\":[]}"));
	free(got);

	/* commas stay right when the first, the last or every field is left out */
	mall_pb_json_opts edges = {.skip = skip_first_and_last};
	got = mall_pb_to_json_text_opts(&e->base, &edges, NULL);
	assert_true(strncmp(got, "{\"i64\":0,", 9) == 0);
	assert_non_null(strstr(got, "\"big\":[]}"));
	assert_null(strstr(got, "\"small\""));
	free(got);
	mall_pb_json_opts all = {.skip = skip_all};
	got = mall_pb_to_json_text_opts(&e->base, &all, &len);
	assert_string_equal(got, "{}");
	assert_int_equal(len, 2);
	free(got);
}

static void
test_utf8_valid(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		size_t len;
		int valid;
	} cases[] = {
	    {"", 0, 1},
	    {"plain ascii", 11, 1},
	    {"\xed\x95\x9c\xea\xb8\x80", 6, 1}, /* Korean */
	    {"\xf0\x9f\x98\x80", 4, 1},         /* emoji */
	    {"\xf4\x8f\xbf\xbf", 4, 1},         /* U+10FFFF */
	    {"a\0b", 3, 1},                     /* NUL is UTF-8 */
	    {"\xc2\x80", 2, 1},                 /* U+0080 */
	    {"\xee\x80\x80", 3, 1},             /* U+E000, after the surrogates */
	    {"\xc0\x80", 2, 0},                 /* overlong NUL */
	    {"\xc1\xbf", 2, 0},                 /* overlong */
	    {"\xe0\x80\xaf", 3, 0},             /* overlong '/' */
	    {"\xf0\x8f\xbf\xbf", 4, 0},         /* overlong */
	    {"\xed\xa0\x80", 3, 0},             /* surrogate U+D800 */
	    {"\xed\xbf\xbf", 3, 0},             /* surrogate U+DFFF */
	    {"\xf4\x90\x80\x80", 4, 0},         /* above U+10FFFF */
	    {"\xf5\x80\x80\x80", 4, 0},
	    {"\xff", 1, 0},
	    {"\x80", 1, 0},         /* lone continuation */
	    {"\xe2\x82", 2, 0},     /* cut short */
	    {"\xe2\x82\xac", 2, 0}, /* cut by the length */
	    {"\xe2\x28\xa1", 3, 0}, /* bad continuation */
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		if (mall_utf8_valid(cases[i].s, cases[i].len) != cases[i].valid)
			fail_msg("case %zu: expected %d", i, cases[i].valid);
}

static void
test_update_mask_parse(void **state)
{
	(void)state;
	static const char *const allowed[] = {"name", "summary", "published"};
	char *mask[] = {"published", "name"};
	bool set[3] = {false};
	mall_status st;
	mall_status_clear(&st);
	assert_int_equal(mall_update_mask_parse(mask, 2, allowed, 3, set, &st), MALL_OK);
	assert_true(set[0] && !set[1] && set[2]);

	bool set2[3] = {false};
	char *bad[] = {"name", "price"};
	assert_int_equal(mall_update_mask_parse(bad, 2, allowed, 3, set2, &st),
	                 MALL_INVALID_ARGUMENT);
	assert_int_equal(st.nfields, 1);
	assert_string_equal(st.fields[0].field, "updateMask");
	assert_string_equal(st.fields[0].message, "price cannot be updated");

	mall_status_clear(&st);
	assert_int_equal(mall_update_mask_parse(NULL, 0, allowed, 3, set2, &st),
	                 MALL_INVALID_ARGUMENT);
	assert_string_equal(st.fields[0].message, "must name at least one field");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_update_mask_parse),
	    cmocka_unit_test_setup_teardown(test_all_kinds_read, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_all_kinds_round_trip, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_defaults_in_output, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_names, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_oneof, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_enums, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_integers, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_big_unsigned_output, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_floats, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bools_strings_bytes, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_field_paths, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_duplicate_keys, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_invalid_utf8, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_deep_nesting, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_set_from_string, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_catalog_list_reply, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_utf8_valid, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_text_writer_matches_jansson, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_text_writer_format, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_text_writer_skip, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
