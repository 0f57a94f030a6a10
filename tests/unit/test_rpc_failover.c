/*
 * Failover tests of lib/rpc_client.c against real server processes.
 *
 * Two child processes (this executable re-run with --serve, so each starts
 * with clean nng state) serve a catalog whose GetProduct sleeps 1 ms on a
 * worker.  Sixteen caller threads keep calling through one client while one
 * child is killed (-9: no call may fail) or frozen with SIGSTOP (no call may
 * fail, and throughput during the freeze must stay at least half of what it
 * was before).  Children are reaped in the teardown, even when a test fails,
 * and die with the test process (PR_SET_PDEATHSIG).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mall/catalog.pb-c.h"
#include "rpc.h"

#define CALLERS 16
#define WINDOW_MS 2000

static char self_path[4096];

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static int
free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	socklen_t len = sizeof(a);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* ---- the child: a catalog doing a little work per call ---- */

static mall_code
get_product(mall_rpc_ctx *ctx, const ProtobufCMessage *req, ProtobufCMessage **reply,
            mall_status *st)
{
	const Mall__Catalog__GetProductRequest *r = (const void *)req;
	sleep_ms(1);
	Mall__Catalog__Product *p = mall_arena_alloc(mall_rpc_ctx_arena(ctx), sizeof(*p));
	mall__catalog__product__init(p);
	p->slug = mall_arena_strdup(mall_rpc_ctx_arena(ctx), r->id_or_slug);
	p->id = (int64_t)getpid();
	*reply = &p->base;
	return MALL_OK;
}

static volatile sig_atomic_t child_stop;

static void
on_term(int sig)
{
	(void)sig;
	child_stop = 1;
}

static int
serve(const char *url)
{
	static const mall_rpc_method methods[] = {{"GetProduct", get_product, 0}};
	mall_log_set_level(MALL_LOG_WARN);
	signal(SIGTERM, on_term);
	mall_rpc_server_opts o = {
	    .service = "catalog", .listen = url, .contexts = 64, .workers = 16};
	mall_rpc_server *s;
	mall_status st;
	if (mall_rpc_server_new(&s, &o, &st) != MALL_OK ||
	    mall_rpc_server_add(s, &mall__catalog__catalog__descriptor, methods, 1, &st) !=
	        MALL_OK ||
	    mall_rpc_server_start(s, &st) != MALL_OK) {
		fprintf(stderr, "child server: %s\n", st.message);
		return 1;
	}
	while (!child_stop)
		sleep_ms(50);
	mall_rpc_server_drain(s, 1000);
	mall_rpc_server_free(s);
	return 0;
}

/* ---- the parent ---- */

typedef struct fixture {
	pid_t pid[2];
	char url[2][64];
	char addrs[160];
	mall_rpc_client *cli;
} fixture;

static pid_t
spawn(const char *url)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		execl(self_path, self_path, "--serve", url, (char *)NULL);
		_exit(127);
	}
	return pid;
}

static void
reap(fixture *f)
{
	for (int i = 0; i < 2; i++) {
		if (f->pid[i] <= 0)
			continue;
		kill(f->pid[i], SIGCONT);
		kill(f->pid[i], SIGKILL);
		waitpid(f->pid[i], NULL, 0);
		f->pid[i] = 0;
	}
}

static mall_code
get(mall_rpc_client *c, const char *slug, mall_arena *a, Mall__Catalog__Product **out,
    mall_status *st)
{
	Mall__Catalog__GetProductRequest req = MALL__CATALOG__GET_PRODUCT_REQUEST__INIT;
	req.id_or_slug = (char *)slug;
	ProtobufCMessage *rep = NULL;
	mall_code code = mall_rpc_call(c, &mall__catalog__catalog__descriptor, "GetProduct",
	                               &req.base, &rep, a, NULL, st);
	*out = (Mall__Catalog__Product *)rep;
	return code;
}

static int
setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	*state = f;
	for (int i = 0; i < 2; i++) {
		snprintf(f->url[i], sizeof(f->url[i]), "tcp://127.0.0.1:%d", free_port());
		f->pid[i] = spawn(f->url[i]);
	}
	snprintf(f->addrs, sizeof(f->addrs), "%s,%s", f->url[0], f->url[1]);
	mall_status st;
	if (mall_rpc_client_new(&f->cli, "catalog", f->addrs, NULL, &st) != MALL_OK) {
		fprintf(stderr, "%s\n", st.message);
		reap(f); /* cmocka skips the teardown when the setup fails */
		return -1;
	}
	/* wait until both children answer */
	mall_arena *a = mall_arena_new();
	bool seen[2] = {false, false};
	int64_t until = now_ms() + 10000;
	while (!(seen[0] && seen[1]) && now_ms() < until) {
		Mall__Catalog__Product *p;
		if (get(f->cli, "hello", a, &p, &st) == MALL_OK) {
			for (int i = 0; i < 2; i++)
				if (p->id == f->pid[i])
					seen[i] = true;
		} else {
			sleep_ms(20);
		}
		mall_arena_reset(a);
	}
	mall_arena_free(a);
	if (!(seen[0] && seen[1])) {
		fprintf(stderr, "the two server processes did not both answer within 10 s\n");
		reap(f);
		mall_rpc_client_free(f->cli);
		f->cli = NULL;
		return -1;
	}
	return 0;
}

static int
teardown(void **state)
{
	fixture *f = *state;
	reap(f);
	mall_rpc_client_free(f->cli);
	free(f);
	return 0;
}

typedef struct load {
	mall_rpc_client *cli;
	atomic_bool stop;
	atomic_long done; /* calls answered OK */
	atomic_long failed;
	atomic_long slowest_ms; /* the longest call */
	pthread_mutex_t mu;
	char first_error[300];
} load;

static void *
caller(void *p)
{
	load *l = p;
	mall_arena *a = mall_arena_new();
	long n = 0;
	while (!atomic_load(&l->stop)) {
		char slug[32];
		snprintf(slug, sizeof(slug), "p-%ld", n++);
		mall_status st;
		Mall__Catalog__Product *r;
		int64_t t0 = now_ms();
		mall_code code = get(l->cli, slug, a, &r, &st);
		long took = (long)(now_ms() - t0);
		long prev = atomic_load(&l->slowest_ms);
		while (took > prev && !atomic_compare_exchange_weak(&l->slowest_ms, &prev, took))
			;
		if (code == MALL_OK && strcmp(r->slug, slug) == 0) {
			atomic_fetch_add(&l->done, 1);
		} else {
			if (atomic_fetch_add(&l->failed, 1) == 0) {
				pthread_mutex_lock(&l->mu);
				snprintf(l->first_error, sizeof(l->first_error), "%s: %s",
				         mall_code_name(st.code), st.message);
				pthread_mutex_unlock(&l->mu);
			}
		}
		mall_arena_reset(a);
	}
	mall_arena_free(a);
	return NULL;
}

static void
start_load(load *l, mall_rpc_client *cli, pthread_t *t)
{
	memset(l, 0, sizeof(*l));
	l->cli = cli;
	pthread_mutex_init(&l->mu, NULL);
	for (int i = 0; i < CALLERS; i++)
		pthread_create(&t[i], NULL, caller, l);
}

static void
stop_load(load *l, pthread_t *t)
{
	atomic_store(&l->stop, true);
	for (int i = 0; i < CALLERS; i++)
		pthread_join(t[i], NULL);
	pthread_mutex_destroy(&l->mu);
}

/* Calls answered during the next ms milliseconds. */
static long
window(load *l, int ms)
{
	long before = atomic_load(&l->done);
	sleep_ms(ms);
	return atomic_load(&l->done) - before;
}

static void
test_kill_one_instance_mid_load(void **state)
{
	fixture *f = *state;
	load l;
	pthread_t t[CALLERS];
	start_load(&l, f->cli, t);
	sleep_ms(500); /* warm up */
	long before = window(&l, WINDOW_MS);
	kill(f->pid[0], SIGKILL);
	waitpid(f->pid[0], NULL, 0);
	f->pid[0] = 0;
	long after = window(&l, WINDOW_MS);
	stop_load(&l, t);

	printf("kill -9 one of 2 instances, %d callers: %.0f calls/s before, %.0f calls/s "
	       "after, %ld failed, slowest call %ld ms\n",
	       CALLERS, before * 1000.0 / WINDOW_MS, after * 1000.0 / WINDOW_MS,
	       atomic_load(&l.failed), atomic_load(&l.slowest_ms));
	if (atomic_load(&l.failed) != 0)
		fail_msg("%ld calls failed, the first with %s", atomic_load(&l.failed),
		         l.first_error);
	assert_true(before > 0);
	assert_true(after > 0); /* the survivor serves everything */
	/* calls in flight on the dead instance were re-sent at once, not after
	 * their 1 s try timeout */
	if (atomic_load(&l.slowest_ms) >= 700)
		fail_msg("a call took %ld ms across the kill", atomic_load(&l.slowest_ms));
}

static void
test_freeze_one_instance_mid_load(void **state)
{
	fixture *f = *state;
	load l;
	pthread_t t[CALLERS];
	start_load(&l, f->cli, t);
	sleep_ms(500);
	long before = window(&l, WINDOW_MS);
	kill(f->pid[0], SIGSTOP);
	long during = window(&l, WINDOW_MS);
	kill(f->pid[0], SIGCONT);
	long after = window(&l, WINDOW_MS);
	stop_load(&l, t);

	printf("SIGSTOP one of 2 instances for %d ms, %d callers: %.0f calls/s before, %.0f "
	       "calls/s frozen, %.0f calls/s after SIGCONT, %ld failed, slowest call %ld ms\n",
	       WINDOW_MS, CALLERS, before * 1000.0 / WINDOW_MS, during * 1000.0 / WINDOW_MS,
	       after * 1000.0 / WINDOW_MS, atomic_load(&l.failed), atomic_load(&l.slowest_ms));
	if (atomic_load(&l.failed) != 0)
		fail_msg("%ld calls failed, the first with %s", atomic_load(&l.failed),
		         l.first_error);
	assert_true(before > 0);
	if (during * 2 < before)
		fail_msg("throughput fell from %ld to %ld calls per %d ms while one instance was "
		         "frozen",
		         before, during, WINDOW_MS);
}

int
main(int argc, char **argv)
{
	if (argc == 3 && strcmp(argv[1], "--serve") == 0)
		return serve(argv[2]);
	ssize_t n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
	if (n <= 0) {
		perror("readlink /proc/self/exe");
		return 1;
	}
	self_path[n] = '\0';
	mall_log_set_level(MALL_LOG_ERROR);
	setvbuf(stdout, NULL, _IOLBF, 0);
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_kill_one_instance_mid_load, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_freeze_one_instance_mid_load, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
