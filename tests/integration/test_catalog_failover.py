"""Two catalog instances behind one RPC client: one killed with SIGKILL in the
middle of the load and no call fails; one frozen with SIGSTOP and the callers
keep at least half their throughput.  The load is rpc_load (a C client of
libmall) calling mall.catalog.Catalog/ListProducts."""

import json
import signal
import threading
import time

import harness

_env = {}


def env():
    if not _env:
        a = harness.start_catalog(name="catalog-a")
        b = harness.start_catalog(db=a.db, name="catalog-b")
        _env.update(a=a, b=b)
    return _env


def run_load(seconds, during=None, at=None, threads=16, window_ms=500):
    """Runs rpc_load against both instances; calls during() after `at` s."""
    e = env()
    argv = [harness.binary("tests/integration/rpc_load"), "--addrs",
            "%s,%s" % (e["a"].addr, e["b"].addr), "--method", "list-products",
            "--threads", str(threads), "--seconds", str(seconds),
            "--report-every-ms", str(window_ms)]
    if during is not None:
        t = threading.Timer(at, during)
        t.start()
    p = harness.start_process("rpc_load", argv)
    code = p.wait(timeout=seconds + 60)
    assert code == 0, "rpc_load exited %s:\n%s" % (code, p.tail())
    out = p.output().strip().splitlines()[-1]
    return json.loads(out)


def test_kill9_one_instance_mid_load_fails_no_call():
    e = env()
    r = run_load(6, during=lambda: e["b"].kill9(), at=2)
    assert r["calls"] > 100, r
    assert r["failures"] == 0, r
    e["b"].restart()


def test_sigstop_one_instance_keeps_half_the_throughput():
    e = env()
    window_ms = 500
    # 4 s before the freeze, 6 s frozen
    r = run_load(10, during=lambda: e["b"].stop(), at=4, window_ms=window_ms)
    e["b"].cont()
    w = r["per_window"]
    per_s = 1000 // window_ms
    before = w[1:4 * per_s - 1]            # skip warm-up and the edge
    frozen = w[4 * per_s + 2:10 * per_s - 1]
    assert before and frozen, r
    rate_before = sum(before) / len(before)
    rate_frozen = sum(frozen) / len(frozen)
    assert rate_frozen >= 0.5 * rate_before, (
        "throughput fell from %.0f to %.0f calls per window" % (rate_before, rate_frozen), r)
    assert r["failures"] == 0, r


harness.run()
