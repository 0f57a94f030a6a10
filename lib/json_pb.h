/*
 * json_pb.h: JSON <-> protobuf, driven by protobuf-c descriptors (jansson).
 *
 * The proto3 JSON mapping as the API uses it:
 *   - field names are lowerCamelCase (page_size -> pageSize); on input the
 *     proto name is accepted too;
 *   - enums are lower-case strings of their value names ("price_asc"); input
 *     accepts any case;
 *   - 64-bit integers are JSON numbers (input also accepts decimal strings);
 *     uint64 values above INT64_MAX are written, and must be given, as
 *     decimal strings (jansson's integers are signed 64-bit);
 *   - bytes are base64;
 *   - output carries every scalar and repeated field, defaults included
 *     (amount 0, "" and []), and a sub-message only when it is set;
 *   - input rejects unknown fields, wrong types, out-of-range numbers,
 *     duplicate keys and invalid UTF-8, with a field error naming the field
 *     (dotted path for nested fields: "shippingAddress.postalCode",
 *     "items[2].quantity").
 * Messages are created in an arena (alloc.h): nothing to free piece by piece.
 */
#ifndef MALL_JSON_PB_H
#define MALL_JSON_PB_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "alloc.h"
#include "status.h"

/* mall_pb_new: a new message of type desc, initialized to defaults, in a. */
ProtobufCMessage *mall_pb_new(const ProtobufCMessageDescriptor *desc, mall_arena *a);

/* mall_json_to_pb: parses JSON text (an object) into a new message of type desc
 * in a.  On error *out is NULL and st is INVALID_ARGUMENT with field errors (or
 * a message for malformed JSON). */
mall_code mall_json_to_pb(const char *text, size_t len, const ProtobufCMessageDescriptor *desc,
                          mall_arena *a, ProtobufCMessage **out, mall_status *st);
/* mall_json_obj_to_pb: as mall_json_to_pb from a parsed object. */
mall_code mall_json_obj_to_pb(const json_t *obj, const ProtobufCMessageDescriptor *desc,
                              mall_arena *a, ProtobufCMessage **out, mall_status *st);

/* mall_pb_to_json: the message as a new jansson object (the caller owns the
 * reference). */
json_t *mall_pb_to_json(const ProtobufCMessage *m);
/* mall_pb_to_json_text: compact JSON text, NUL-terminated, its length (without
 * the NUL) in *len unless len is NULL; malloc'd, the caller frees it.  Written
 * directly from the message (no jansson values), byte for byte what
 * json_dumps(mall_pb_to_json(m), JSON_COMPACT) gives: UTF-8 is kept, '/' is
 * not escaped, bytes that are not UTF-8 become U+FFFD. */
char *mall_pb_to_json_text(const ProtobufCMessage *m, size_t *len);

/* mall_pb_json_opts: fields for mall_pb_to_json_text_opts to leave out.  skip
 * (when not NULL) is asked about each field that would be written, in nested
 * messages too, with owner the descriptor of the message holding f (so it can
 * single out one message type); a field for which it returns true is left out
 * as if it did not exist.  arg is passed to skip as it is. */
typedef struct mall_pb_json_opts {
	bool (*skip)(const ProtobufCFieldDescriptor *f, const ProtobufCMessageDescriptor *owner,
	             void *arg);
	void *arg;
} mall_pb_json_opts;

/* mall_pb_to_json_text_opts: as mall_pb_to_json_text, leaving out what opts
 * says (opts NULL: nothing). */
char *mall_pb_to_json_text_opts(const ProtobufCMessage *m, const mall_pb_json_opts *opts,
                                size_t *len);

/* mall_pb_set_from_string: sets the scalar or enum field named name (JSON or
 * proto name) of m from its text form, as in a query string: integers in
 * decimal within the field's range, bools true/false/1/0, enums by name (any
 * case); for a repeated field the value is appended.  Unknown names and bad
 * values are field errors. Strings are copied into a.  st is not cleared: the
 * field errors of several calls (one per query parameter) add up in it. */
mall_code mall_pb_set_from_string(ProtobufCMessage *m, mall_arena *a, const char *name,
                                  const char *value, mall_status *st);

/* mall_update_mask_parse: for a partial update's update_mask (JSON field names),
 * sets set[k] for every name equal to allowed[k] (nallowed names; set has that
 * many entries, cleared by the caller).  An empty mask or a name not allowed is
 * a field error on "updateMask" added to st.  Returns st->code. */
mall_code mall_update_mask_parse(char *const *mask, size_t n, const char *const *allowed,
                                 size_t nallowed, bool *set, mall_status *st);

/* mall_utf8_valid: whether s[0..len) is valid UTF-8 (no overlongs, no
 * surrogates). */
int mall_utf8_valid(const char *s, size_t len);
/* mall_utf8_chars: the number of code points in valid UTF-8 s[0..len) (bytes
 * that do not continue a sequence). */
size_t mall_utf8_chars(const char *s, size_t len);

#endif
