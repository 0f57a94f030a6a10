/*
 * test_gateway_path.c: static-file paths stay inside the web root
 * (gateway/path.c): dot segments, hidden files, symbolic links out of the root
 * and a sibling directory sharing the root's name as a prefix.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "path.h"
#include "query.h"

static char base[PATH_MAX]; /* a temporary folder: base/web is the root */
static char root[PATH_MAX]; /* canonical base/web */

static void
write_file(const char *rel, const char *text)
{
	char p[PATH_MAX + 64];
	snprintf(p, sizeof(p), "%s/%s", base, rel);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void
at(const char *rel, char *out)
{
	snprintf(out, PATH_MAX + 64, "%s/%s", base, rel);
}

static int
setup(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/mall_t_gwpath_XXXXXX";
	if (mkdtemp(tmpl) == NULL)
		return -1;
	snprintf(base, sizeof(base), "%s", tmpl);
	char p[PATH_MAX + 64], q[PATH_MAX + 64];
	at("web", p);
	mkdir(p, 0755);
	at("web/css", p);
	mkdir(p, 0755);
	at("web/sub", p);
	mkdir(p, 0755);
	at("web2", p);
	mkdir(p, 0755);
	write_file("web/index.html", "<h1>home</h1>");
	write_file("web/css/site.css", "body{}");
	write_file("web/sub/index.html", "sub");
	write_file("web/.env", "SECRET=1");
	write_file("web2/secret.txt", "sibling secret");
	write_file("outside.txt", "outside");
	/* links: one out of the root, one to a sibling that shares the prefix,
	 * one inside the root, and a directory link out of the root */
	at("web/out.txt", p);
	at("outside.txt", q);
	if (symlink(q, p) != 0)
		return -1;
	at("web/sibling.txt", p);
	if (symlink("../web2/secret.txt", p) != 0)
		return -1;
	at("web/alias.css", p);
	if (symlink("css/site.css", p) != 0)
		return -1;
	at("web/etc", p);
	if (symlink("/etc", p) != 0)
		return -1;
	at("web", p);
	if (realpath(p, root) == NULL)
		return -1;
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", base);
	return system(cmd) == 0 ? 0 : -1;
}

static mall_gw_path_result
rel(const char *path, char *out)
{
	return mall_gw_path_relative(path, out, PATH_MAX);
}

static void
test_relative(void **state)
{
	(void)state;
	char out[PATH_MAX];
	assert_int_equal(rel("/", out), MALL_GW_PATH_OK);
	assert_string_equal(out, "");
	assert_int_equal(rel("/index.html", out), MALL_GW_PATH_OK);
	assert_string_equal(out, "index.html");
	assert_int_equal(rel("//css///site.css/", out), MALL_GW_PATH_OK);
	assert_string_equal(out, "css/site.css");
	assert_int_equal(rel("/a..b/c.d", out), MALL_GW_PATH_OK);
	assert_string_equal(out, "a..b/c.d");

	assert_int_equal(rel("/../etc/passwd", out), MALL_GW_PATH_REFUSED);
	assert_int_equal(rel("/css/../../etc/passwd", out), MALL_GW_PATH_REFUSED);
	assert_int_equal(rel("/..", out), MALL_GW_PATH_REFUSED);
	assert_int_equal(rel("/./index.html", out), MALL_GW_PATH_REFUSED);
	assert_int_equal(rel("/.env", out), MALL_GW_PATH_REFUSED);
	assert_int_equal(rel("/.git/config", out), MALL_GW_PATH_REFUSED);
	assert_int_equal(rel("/..\\..\\etc\\passwd", out), MALL_GW_PATH_REFUSED);
	assert_int_equal(rel("/a\\b", out), MALL_GW_PATH_REFUSED);

	/* the request path is decoded first, so %2e%2e is ".." by the time it
	 * gets here */
	char decoded[64];
	size_t n;
	assert_int_equal(mall_gw_percent_decode("/%2e%2e/%2E%2E/etc/passwd",
	                                        strlen("/%2e%2e/%2E%2E/etc/passwd"), false, true,
	                                        decoded, &n),
	                 MALL_GW_DECODE_OK);
	assert_int_equal(rel(decoded, out), MALL_GW_PATH_REFUSED);
	assert_int_equal(mall_gw_percent_decode("/css%2f..%2f..%2fetc",
	                                        strlen("/css%2f..%2f..%2fetc"), false, true,
	                                        decoded, &n),
	                 MALL_GW_DECODE_OK);
	assert_int_equal(rel(decoded, out), MALL_GW_PATH_REFUSED);

	char small[8];
	assert_int_equal(mall_gw_path_relative("/index.html", small, sizeof(small)),
	                 MALL_GW_PATH_TOO_LONG);
}

static void
expect_file(const char *relpath, const char *suffix)
{
	char out[PATH_MAX], want[PATH_MAX + 64];
	assert_int_equal(mall_gw_path_resolve(root, relpath, out), 0);
	snprintf(want, sizeof(want), "%s/%s", root, suffix);
	assert_string_equal(out, want);
}

static void
expect_refused(const char *relpath)
{
	char out[PATH_MAX];
	if (mall_gw_path_resolve(root, relpath, out) == 0)
		fail_msg("\"%s\" resolved to \"%s\", outside %s or not a file", relpath, out, root);
}

static void
test_resolve(void **state)
{
	(void)state;
	expect_file("", "index.html");
	expect_file("index.html", "index.html");
	expect_file("sub", "sub/index.html");
	expect_file("css/site.css", "css/site.css");
	expect_file("alias.css", "css/site.css"); /* a link inside the root is fine */

	expect_refused("missing.html");
	expect_refused("css");         /* a directory without index.html */
	expect_refused("out.txt");     /* absolute link out of the root */
	expect_refused("sibling.txt"); /* ../web2: shares "web" as a string prefix */
	expect_refused("etc/passwd");  /* a directory link out of the root */
	expect_refused("../outside.txt");
	expect_refused("../web2/secret.txt");
}

static void
test_mime(void **state)
{
	(void)state;
	assert_string_equal(mall_gw_mime_type("/x/index.html"), "text/html; charset=utf-8");
	assert_string_equal(mall_gw_mime_type("app.js"), "text/javascript; charset=utf-8");
	assert_string_equal(mall_gw_mime_type("style.CSS"), "text/css; charset=utf-8");
	assert_string_equal(mall_gw_mime_type("a/b.svg"), "image/svg+xml");
	assert_string_equal(mall_gw_mime_type("a/b.webp"), "image/webp");
	assert_string_equal(mall_gw_mime_type("openapi.json"), "application/json; charset=utf-8");
	assert_string_equal(mall_gw_mime_type("README"), "application/octet-stream");
	assert_string_equal(mall_gw_mime_type("a.d/README"), "application/octet-stream");
	assert_string_equal(mall_gw_mime_type("x.exe"), "application/octet-stream");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_relative),
	    cmocka_unit_test(test_resolve),
	    cmocka_unit_test(test_mime),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
