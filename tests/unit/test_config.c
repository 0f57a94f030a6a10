/* Unit tests of lib/config.c: defaults, parsing, clear errors for bad values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

static void
test_defaults_when_unset(void **state)
{
	(void)state;
	mall_config cfg;
	mall_config_init(&cfg);
	unsetenv("MALL_T_X");
	setenv("MALL_T_EMPTY", "", 1);
	assert_string_equal(mall_config_str(&cfg, "MALL_T_X", "d"), "d");
	assert_string_equal(mall_config_str(&cfg, "MALL_T_EMPTY", "d"), "d");
	assert_int_equal(mall_config_int(&cfg, "MALL_T_X", 8, 1, 10), 8);
	assert_true(mall_config_bool(&cfg, "MALL_T_X", true));
	assert_int_equal(mall_config_size(&cfg, "MALL_T_X", 1048576, 0, INT64_MAX), 1048576);
	assert_int_equal(mall_config_duration_ms(&cfg, "MALL_T_X", 3000, 0, INT64_MAX), 3000);
	assert_int_equal(cfg.nerrors, 0);
	assert_int_equal(mall_config_check(&cfg), 0);
}

static void
test_values_parse(void **state)
{
	(void)state;
	mall_config cfg;
	mall_config_init(&cfg);
	setenv("MALL_T_INT", "42", 1);
	setenv("MALL_T_BOOL", "Off", 1);
	setenv("MALL_T_SIZE", "50MiB", 1);
	setenv("MALL_T_SIZE2", "512k", 1);
	setenv("MALL_T_DUR", "5s", 1);
	setenv("MALL_T_DUR2", "250ms", 1);
	setenv("MALL_T_DUR3", "2m", 1);
	setenv("MALL_T_DUR4", "30d", 1);
	setenv("MALL_T_LISTEN", "127.0.0.1:8080", 1);
	assert_int_equal(mall_config_int(&cfg, "MALL_T_INT", 0, 0, 100), 42);
	assert_false(mall_config_bool(&cfg, "MALL_T_BOOL", true));
	assert_int_equal(mall_config_size(&cfg, "MALL_T_SIZE", 0, 0, INT64_MAX), 50 * 1024 * 1024);
	assert_int_equal(mall_config_size(&cfg, "MALL_T_SIZE2", 0, 0, INT64_MAX), 512 * 1024);
	assert_int_equal(mall_config_duration_ms(&cfg, "MALL_T_DUR", 0, 0, INT64_MAX), 5000);
	assert_int_equal(mall_config_duration_ms(&cfg, "MALL_T_DUR2", 0, 0, INT64_MAX), 250);
	assert_int_equal(mall_config_duration_ms(&cfg, "MALL_T_DUR3", 0, 0, INT64_MAX), 120000);
	assert_int_equal(mall_config_duration_ms(&cfg, "MALL_T_DUR4", 0, 0, INT64_MAX),
	                 INT64_C(30) * 24 * 3600 * 1000);
	assert_string_equal(mall_config_listen(&cfg, "MALL_T_LISTEN", "x:1"), "127.0.0.1:8080");
	assert_int_equal(cfg.nerrors, 0);
}

static void
test_bad_values_name_the_setting(void **state)
{
	(void)state;
	mall_config cfg;
	mall_config_init(&cfg);
	setenv("MALL_T_INT", "abc", 1);
	setenv("MALL_T_RANGE", "1000", 1);
	setenv("MALL_T_BOOL", "maybe", 1);
	setenv("MALL_T_SIZE", "12parsecs", 1);
	setenv("MALL_T_DUR", "-5s", 1);
	setenv("MALL_T_LISTEN", "localhost:99999", 1);
	setenv("MALL_T_OVER", "99999999999999999999", 1);
	assert_int_equal(mall_config_int(&cfg, "MALL_T_INT", 7, 0, 100), 7);
	assert_int_equal(mall_config_int(&cfg, "MALL_T_RANGE", 7, 0, 100), 7);
	assert_true(mall_config_bool(&cfg, "MALL_T_BOOL", true));
	assert_int_equal(mall_config_size(&cfg, "MALL_T_SIZE", 1, 0, INT64_MAX), 1);
	assert_int_equal(mall_config_duration_ms(&cfg, "MALL_T_DUR", 1, 0, INT64_MAX), 1);
	assert_string_equal(mall_config_listen(&cfg, "MALL_T_LISTEN", "d:1"), "d:1");
	assert_int_equal(mall_config_int(&cfg, "MALL_T_OVER", 3, 0, INT64_MAX), 3);
	assert_int_equal(cfg.nerrors, 7);
	assert_string_equal(cfg.errors[0], "MALL_T_INT: \"abc\" is not an integer");
	assert_string_equal(cfg.errors[1], "MALL_T_RANGE: \"1000\" is out of range (0 to 100)");
	assert_non_null(strstr(cfg.errors[2], "MALL_T_BOOL"));
	assert_non_null(strstr(cfg.errors[3], "is not a size"));
	assert_non_null(strstr(cfg.errors[4], "is not a duration"));
	assert_non_null(strstr(cfg.errors[5], "no valid port"));
	assert_int_equal(mall_config_check(&cfg), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults_when_unset),
	    cmocka_unit_test(test_values_parse),
	    cmocka_unit_test(test_bad_values_name_the_setting),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
