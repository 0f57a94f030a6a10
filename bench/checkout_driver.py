#!/usr/bin/env python3
"""bench/checkout_driver.py URL SANDBOX_URL SKU_IDS: the buyers of bench/checkout.

BENCH_BUYERS threads (32), each a guest with its own keep-alive connections
(http.client: one to the gateway at URL, one to the sandbox PG at SANDBOX_URL)
and its own cookie jar.  Each gets a session once (GET /api/v1/session), then
loops over whole checkouts:

  cart     POST /api/v1/cart/items        1 of a SKU (SKU_IDS: comma-separated ids,
                                          cycled over)
  order    POST /api/v1/orders            Idempotency-Key, card, a shipping address
  pay      POST SANDBOX/sandbox/v1/payments   what the PG's payment window does
  confirm  POST /api/v1/payments/confirm  answered once the order is paid

A checkout counts when its confirm answers 200 with the order "paid" and it
ended inside the measured window: BENCH_DURATION (20s) after a BENCH_WARMUP
(3s) that is not counted.  Any other answer, a connection failure or an order
not yet paid in the confirm's answer is an error (the buyer goes on with its
next checkout).  With BENCH_PG_PORT set, the sum of pg_stat_database
xact_commit (the whole cluster) is read with psql at the start and end of the
measured window.

Prints a table (checkouts/s, p50/p99 of the whole checkout and of each step,
errors) and a last line "RESULT <checkouts/s> <checkouts> <errors>
<commits or -1>" for bench/checkout.  Stdlib only.
"""
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid
from http.cookies import SimpleCookie

URL, SANDBOX_URL, SKU_ARG = sys.argv[1:4]
SKUS = [int(s) for s in SKU_ARG.split(",") if s]


def seconds(name, default):
    v = os.environ.get(name, default).strip()
    for suffix, mult in (("ms", 0.001), ("s", 1), ("m", 60)):
        if v.endswith(suffix) and v[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(v[: -len(suffix)]) * mult
    return float(v)


BUYERS = int(os.environ.get("BENCH_BUYERS", "32"))
DURATION = seconds("BENCH_DURATION", "20s")
WARMUP = seconds("BENCH_WARMUP", "3s")
PG_PORT = os.environ.get("BENCH_PG_PORT", "")
STEPS = ("cart", "order", "pay", "confirm")

ADDRESS = {"recipient": "김민수", "phone": "010-1234-5678", "postalCode": "06236",
           "address1": "서울 강남구 테헤란로 152", "address2": "12층"}


class HttpError(Exception):
    pass


class Conn:
    """One keep-alive connection; reconnects (and sends again, once) when the
    server closed it before answering.  Writes carry an Idempotency-Key, so
    sending one again is safe."""

    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.host, self.port = u.hostname, u.port or 80
        self.c = None
        self.reconnects = 0

    def request(self, method, path, body=None, headers=None):
        data = json.dumps(body).encode() if body is not None else None
        h = dict(headers or {})
        if data is not None:
            h["Content-Type"] = "application/json"
        for attempt in (0, 1):
            if self.c is None:
                self.c = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.c.request(method, path, body=data, headers=h)
                r = self.c.getresponse()
                raw = r.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
                    http.client.CannotSendRequest, http.client.BadStatusLine) as e:
                self.c.close()
                self.c = None
                if attempt == 1:
                    raise HttpError("%s %s: %s" % (method, path, e))
                self.reconnects += 1
                continue
            if r.getheader("Connection", "").lower() == "close":
                self.c.close()
                self.c = None
            return r.status, r.headers, raw
        raise HttpError("unreachable")


class Shared:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = {s: [] for s in STEPS + ("checkout",)}
        self.session_lat = []
        self.done = 0
        self.errors = 0
        self.error_kinds = {}
        self.reconnects = 0
        self.started = 0  # checkouts begun in the window (for information)

    def error(self, what):
        with self.lock:
            self.errors += 1
            self.error_kinds[what] = self.error_kinds.get(what, 0) + 1


S = Shared()
barrier = threading.Barrier(BUYERS + 1)
T = {}


def buyer(idx):
    gw = Conn(URL)
    pg = Conn(SANDBOX_URL)
    jar = {}

    def cookie_header():
        return "; ".join("%s=%s" % kv for kv in jar.items())

    def keep_cookies(headers):
        for h in headers.get_all("Set-Cookie") or []:
            c = SimpleCookie()
            c.load(h)
            for k, m in c.items():
                jar[k] = m.value

    def call(method, path, body=None, key=False):
        h = {"Cookie": cookie_header()} if jar else {}
        if "mall_csrf" in jar and method != "GET":
            h["X-CSRF-Token"] = jar["mall_csrf"]
        if key:
            h["Idempotency-Key"] = uuid.uuid4().hex
        status, headers, raw = gw.request(method, path, body, h)
        keep_cookies(headers)
        return status, raw

    try:
        t = time.monotonic()
        status, raw = call("GET", "/api/v1/session")
        S.session_lat.append(time.monotonic() - t)
        if status != 200 or "mall_session" not in jar:
            S.error("session: %d" % status)
    except Exception as e:  # noqa: BLE001 (counted, reported)
        S.error("session: %s" % type(e).__name__)
    barrier.wait()
    start, end = T["start"], T["end"]
    n = idx
    while time.monotonic() < end:
        n += 1
        sku = SKUS[n % len(SKUS)]
        steps = {}
        step = "cart"
        t_begin = time.monotonic()
        try:
            t = t_begin
            status, raw = call("POST", "/api/v1/cart/items", {"skuId": sku, "quantity": 1}, key=True)
            steps["cart"] = time.monotonic() - t
            if status != 200:
                raise HttpError("%d %s" % (status, raw[:120].decode(errors="replace")))
            step = "order"
            t = time.monotonic()
            status, raw = call("POST", "/api/v1/orders", {
                "paymentMethod": "card", "ordererName": "김민수", "ordererPhone": "010-1234-5678",
                "ordererEmail": "minsu@example.com", "shippingAddress": ADDRESS}, key=True)
            steps["order"] = time.monotonic() - t
            if status != 201:
                raise HttpError("%d %s" % (status, raw[:120].decode(errors="replace")))
            p = json.loads(raw)["payment"]
            number, amount = p["orderId"], p["amount"]
            if isinstance(amount, dict):
                amount = amount["amount"]
            step = "pay"
            t = time.monotonic()
            status, _, raw = pg.request("POST", "/sandbox/v1/payments", {
                "orderId": number, "amount": amount, "method": "card",
                "orderName": p.get("orderName") or "벤치 주문", "outcome": "success"})
            steps["pay"] = time.monotonic() - t
            if status != 200:
                raise HttpError("%d %s" % (status, raw[:120].decode(errors="replace")))
            key = json.loads(raw)["paymentKey"]
            step = "confirm"
            t = time.monotonic()
            status, raw = call("POST", "/api/v1/payments/confirm",
                               {"paymentKey": key, "orderId": number, "amount": amount})
            t_end = time.monotonic()
            steps["confirm"] = t_end - t
            if status != 200:
                raise HttpError("%d %s" % (status, raw[:120].decode(errors="replace")))
            st = json.loads(raw)["order"]["status"]
            if st != "paid":
                raise HttpError("order %s after the confirm" % st)
        except HttpError as e:
            S.error("%s: %s" % (step, str(e)[:100]))
            continue
        except Exception as e:  # noqa: BLE001
            S.error("%s: %s %s" % (step, type(e).__name__, str(e)[:80]))
            continue
        if start <= t_end <= end:
            with S.lock:
                S.done += 1
                S.lat["checkout"].append(t_end - t_begin)
                for k, v in steps.items():
                    S.lat[k].append(v)
    with S.lock:
        S.reconnects += gw.reconnects + pg.reconnects


def commits():
    if not PG_PORT:
        return None
    try:
        out = subprocess.run(
            ["psql", "-X", "-At", "-h", "127.0.0.1", "-p", PG_PORT, "-U", "postgres", "-d", "postgres",
             "-c", "SELECT sum(xact_commit), (SELECT wal_sync FROM pg_stat_wal) FROM pg_stat_database"],
            check=True, capture_output=True, text=True, timeout=10).stdout
        x, y = out.strip().split("|")
        return int(x), int(y)
    except Exception as e:  # noqa: BLE001
        print("warning: could not read pg_stat_database: %s" % e, file=sys.stderr)
        return None


# the services' own background work (event relays, consumers, sweeps), idle
IDLE = 3.0
i0 = commits()
time.sleep(IDLE)
i1 = commits()
threads = [threading.Thread(target=buyer, args=(i,), daemon=True) for i in range(BUYERS)]
for th in threads:
    th.start()
now = time.monotonic()
T["start"] = now + WARMUP
T["end"] = now + WARMUP + DURATION
barrier.wait()
time.sleep(max(0.0, T["start"] - time.monotonic()))
c0 = commits()
time.sleep(max(0.0, T["end"] - time.monotonic()))
c1 = commits()
for th in threads:
    th.join(60)
commit_delta = c1[0] - c0[0] if c0 is not None and c1 is not None else None
sync_delta = c1[1] - c0[1] if commit_delta is not None else None
idle = ((i1[0] - i0[0]) / IDLE, (i1[1] - i0[1]) / IDLE) if i0 is not None and i1 is not None else None


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    i = max(0, min(len(xs) - 1, int(round(q / 100.0 * len(xs) + 0.5)) - 1))
    return xs[i] * 1000


rate = S.done / DURATION
print("\ncheckout: %d buyers, %.0fs measured after %.0fs warm-up, %d SKUs" % (BUYERS, DURATION, WARMUP, len(SKUS)))
print("%-34s %9s %9s %9s" % ("step", "count", "p50", "p99"))
labels = {"checkout": "whole checkout (cart..confirm)",
          "cart": "POST /api/v1/cart/items", "order": "POST /api/v1/orders",
          "pay": "POST sandbox /sandbox/v1/payments", "confirm": "POST /api/v1/payments/confirm"}
for k in ("checkout",) + STEPS:
    xs = S.lat[k]
    print("%-34s %9d %7.1fms %7.1fms" % (labels[k], len(xs), pct(xs, 50), pct(xs, 99)))
print("%-34s %9d %7.1fms %7.1fms" % ("GET /api/v1/session (once)", len(S.session_lat),
                                      pct(S.session_lat, 50), pct(S.session_lat, 99)))
print("completed checkouts: %d, %.1f/s; errors: %d (whole run, warm-up included); reconnects: %d"
      % (S.done, rate, S.errors, S.reconnects))
for k, v in sorted(S.error_kinds.items(), key=lambda kv: -kv[1])[:10]:
    print("  error x%d: %s" % (v, k))
if commit_delta is not None:
    per = (lambda x: x / S.done if S.done else float("nan"))
    print("PostgreSQL in the window: %d commits (xact_commit, all databases, read-only ones too), "
          "%.1f per checkout; %d WAL syncs, %.2f per checkout"
          % (commit_delta, per(commit_delta), sync_delta, per(sync_delta)))
    if idle is not None:
        print("  idle before the run: %.0f commits/s, %.1f WAL syncs/s (%.1f commits per checkout "
              "at the measured rate; minus those: %.1f)"
              % (idle[0], idle[1], idle[0] / rate if rate else float("nan"),
                 per(commit_delta - idle[0] * DURATION)))
print("RESULT %.2f %d %d %d" % (rate, S.done, S.errors, commit_delta if commit_delta is not None else -1))
