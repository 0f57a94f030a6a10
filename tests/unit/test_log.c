/* Unit tests of lib/log.c: one JSON object per line, escaping, levels. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <jansson.h>

#include "log.h"

/* Runs fn with the log going to a pipe; returns what was written (malloc'd). */
static char *
capture(void (*fn)(void))
{
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	mall_log_set_fd(fds[1]);
	fn();
	mall_log_set_fd(1);
	close(fds[1]);
	char *buf = calloc(1, 65536);
	size_t len = 0;
	ssize_t n;
	while ((n = read(fds[0], buf + len, 65535 - len)) > 0)
		len += (size_t)n;
	close(fds[0]);
	return buf;
}

static void
log_plain(void)
{
	mall_log_info("trace-1", "order %s placed", "20261127-000001");
}

static void
test_line_is_json_with_fields(void **state)
{
	(void)state;
	mall_log_init("catalog");
	char *out = capture(log_plain);
	assert_non_null(strchr(out, '\n'));
	json_error_t err;
	json_t *obj = json_loads(out, JSON_DISABLE_EOF_CHECK, &err);
	assert_non_null(obj);
	assert_string_equal(json_string_value(json_object_get(obj, "level")), "info");
	assert_string_equal(json_string_value(json_object_get(obj, "service")), "catalog");
	assert_string_equal(json_string_value(json_object_get(obj, "trace_id")), "trace-1");
	assert_string_equal(json_string_value(json_object_get(obj, "msg")),
	                    "order 20261127-000001 placed");
	assert_non_null(json_object_get(obj, "ts"));
	json_decref(obj);
	free(out);
}

static void
log_nasty(void)
{
	mall_log_warn(NULL, "quote \" backslash \\ newline \n tab \t bad utf8 \xff\xfe 한글");
}

static void
test_escaping_keeps_one_valid_line(void **state)
{
	(void)state;
	char *out = capture(log_nasty);
	char *nl = strchr(out, '\n');
	assert_non_null(nl);
	assert_int_equal(nl[1], '\0'); /* exactly one line */
	json_t *obj = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL); /* jansson checks UTF-8 */
	assert_non_null(obj);
	const char *msg = json_string_value(json_object_get(obj, "msg"));
	assert_non_null(strstr(msg, "quote \" backslash \\ newline \n tab"));
	assert_non_null(strstr(msg, "\xEF\xBF\xBD")); /* replacement character */
	assert_non_null(strstr(msg, "한글"));
	assert_null(json_object_get(obj, "trace_id"));
	json_decref(obj);
	free(out);
}

static void
log_levels(void)
{
	mall_log_set_level(MALL_LOG_WARN);
	mall_log_info(NULL, "hidden");
	mall_log_error(NULL, "shown");
	mall_log_set_level(MALL_LOG_INFO);
}

static void
test_level_filter(void **state)
{
	(void)state;
	char *out = capture(log_levels);
	assert_null(strstr(out, "hidden"));
	assert_non_null(strstr(out, "\"level\":\"error\""));
	free(out);
}

static void
log_huge(void)
{
	char big[10000];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	mall_log_info(NULL, "%s", big);
}

static void
test_huge_message_is_truncated_not_broken(void **state)
{
	(void)state;
	char *out = capture(log_huge);
	json_t *obj = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
	assert_non_null(obj);
	json_decref(obj);
	free(out);
}

static void
test_bad_level_setting(void **state)
{
	(void)state;
	setenv("MALL_LOG_LEVEL", "chatty", 1);
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	mall_log_set_fd(fds[1]);
	assert_int_equal(mall_log_init("catalog"), -1);
	mall_log_set_fd(1);
	close(fds[1]);
	char buf[1024] = {0};
	assert_true(read(fds[0], buf, sizeof(buf) - 1) > 0);
	close(fds[0]);
	assert_non_null(strstr(buf, "MALL_LOG_LEVEL"));
	setenv("MALL_LOG_LEVEL", "DEBUG", 1);
	assert_int_equal(mall_log_init("catalog"), 0);
	assert_true(mall_log_enabled(MALL_LOG_DEBUG));
	unsetenv("MALL_LOG_LEVEL");
	mall_log_set_level(MALL_LOG_INFO);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_line_is_json_with_fields),
	    cmocka_unit_test(test_escaping_keeps_one_valid_line),
	    cmocka_unit_test(test_level_filter),
	    cmocka_unit_test(test_huge_message_is_truncated_not_broken),
	    cmocka_unit_test(test_bad_level_setting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
