"""Checkout under load and crashes, everything through the gateway's HTTP API
with real catalog, member, cart, order and payment services, PostgreSQL,
Redis and the sandbox PG (issue 4, "Checkout").

  - 100 shoppers check out at once a SKU with 20 in stock (each cart holds
    one: adding does not reserve): exactly 20 orders are placed, the other 80
    are 409 out_of_stock; the catalog shows 20 reserved and none available,
    never less; the 20 pay through the sandbox and the confirm route, and end
    paid with the stock gone from the shelf (on hand 0, reserved 0).
  - 30 shoppers check out (cart, order, payment window, confirm) while the
    order service and then the payment service are killed with SIGKILL and
    restarted; each retries a failed step with the same Idempotency-Key or
    the same confirm body, as a browser would.  Afterwards every payment the
    PG approved belongs to a paid order and no order is paid without one, no
    payment key was confirmed twice at the PG, the order service consumed
    the payment service's whole outbox (its cursor reaches the outbox's last
    seq, and every payment.approved has an inbox row), for every SKU the
    stock on hand plus what paid orders hold is the stock it started with,
    and nothing stays reserved (what killed placements held is given back).

Shoppers retry only what a browser would: an answer that did not come, or
came as 502/503/504.  Every wait is for a condition, with a generous
deadline; nothing asserts on timing."""

import random
import threading
import time

import harness

_env = {"n": 0}
PHONE = "010-9876-5432"
RETRY_FOR = 90  # seconds a shopper keeps retrying one step


def env():
    """One of each service, the sandbox PG and a gateway.  The order service
    (which follows the payment service's events) and the payment service
    (which reads orders) need each other: the order service's address is
    picked first.  Both get short sweep intervals, so that what a crash
    leaves behind is cleaned up within the test."""
    if "gw" not in _env:
        order_addr = "tcp://127.0.0.1:%d" % harness.free_port()
        pg = harness.start_sandbox_pg()
        cat = harness.start_catalog(env={"MALL_CATALOG_WORKERS": "8"})
        mem = harness.start_service("member")
        cart = harness.start_service("cart", env={"MALL_CATALOG_ADDRS": cat.addr,
                                                  "MALL_RPC_TIMEOUT": "10s"})
        pay = harness.start_service("payment", env={
            "MALL_ORDER_ADDRS": order_addr, "MALL_PAYMENT_PG_URL": pg.url,
            "MALL_PAYMENT_PG_SECRET_KEY": pg.secret_key, "MALL_PAYMENT_PG_TIMEOUT": "5s",
            "MALL_RPC_TIMEOUT": "10s", "MALL_PAYMENT_SWEEP_INTERVAL": "500ms",
            "MALL_PAYMENT_SWEEP_GRACE": "3s"})
        order = harness.start_service("order", env={
            "MALL_ORDER_LISTEN": order_addr,
            "MALL_CATALOG_ADDRS": cat.addr, "MALL_CART_ADDRS": cart.addr,
            "MALL_MEMBER_ADDRS": mem.addr, "MALL_PAYMENT_ADDRS": pay.addr,
            "MALL_PAYMENT_EVENTS_ADDRS": pay.events_addr, "MALL_RPC_TIMEOUT": "5s",
            "MALL_ORDER_SWEEP_INTERVAL": "1s"})
        order.addr = order_addr  # it listens there, not on the port the harness picked
        gw = harness.start_gateway(
            catalog=[cat], member=[mem], cart=[cart], order=[order_addr], payment=[pay],
            env={"MALL_GATEWAY_THREADS": "128", "MALL_RPC_TIMEOUT": "10s",
                 "MALL_PAYMENT_PG_CLIENT_KEY": pg.client_key})
        _env.update(pg=pg, cat=cat, mem=mem, cart=cart, pay=pay, order=order, gw=gw)
        ok, r = harness.rpc_call(cat, "mall.catalog.Catalog", "CreateCategory",
                                 {"slug": "load", "name": "부하 시험"}, mutating=True)
        assert ok, r
    return _env


def uniq(prefix):
    _env["n"] += 1
    return "%s%d-%d" % (prefix, _env["n"], int(time.time() * 1000) % 10 ** 7)


def make_sku(price, stock):
    slug = uniq("load-p")
    cat = env()["cat"]
    ok, p = harness.rpc_call(cat, "mall.catalog.Catalog", "CreateProduct",
                             {"slug": slug, "name": "부하 시험 상품", "categorySlug": "load",
                              "published": True}, mutating=True)
    assert ok, p
    ok, s = harness.rpc_call(cat, "mall.catalog.Catalog", "CreateSku",
                             {"productId": p["id"], "code": slug.upper(), "price": price,
                              "onHand": stock}, mutating=True)
    assert ok, s
    return {"id": s["id"], "slug": slug, "price": price, "stock": stock}


def stock(sku):
    """(on_hand, reserved) of a SKU, from the catalog's database."""
    (row,) = env()["cat"].db.sql("SELECT on_hand, reserved FROM sku WHERE id = %d" % sku["id"])
    return int(row[0]), int(row[1])


def shown(sku):
    """The SKU as the storefront's product page shows it."""
    r = harness.http("GET", env()["gw"].url + "/api/v1/products/" + sku["slug"], timeout=30)
    assert r.status == 200, r
    for s in r.body.get("skus", []):
        if int(s["id"]) == sku["id"]:
            return s
    raise AssertionError("product page of %s without its SKU: %r" % (sku["slug"], r.body))


class Client:
    """A browser: keeps the gateway's cookies and sends the CSRF token back."""

    def __init__(self):
        self.cookies = {}

    def request(self, method, path, body=None, headers=None, timeout=60):
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        if "mall_csrf" in self.cookies:
            h["X-CSRF-Token"] = self.cookies["mall_csrf"]
        r = harness.http(method, env()["gw"].url + path, body=body, headers=h, timeout=timeout)
        for line in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = line.partition("=")
            if "Max-Age=0" in line:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = rest.split(";", 1)[0]
        return r

    def retrying(self, what, method, path, body=None, headers=None, until=None):
        """The request, sent again (same body, same headers: the same
        Idempotency-Key) while no answer comes or it is 502/503/504, for at
        most RETRY_FOR seconds; returns (answer, tries)."""
        deadline = until or time.monotonic() + RETRY_FOR
        tries = 0
        while True:
            tries += 1
            try:
                r = self.request(method, path, body, headers)
                if r.status not in (502, 503, 504):
                    return r, tries
                last = r
            except OSError as e:  # refused, reset, timed out: the answer was lost
                last = e
            if time.monotonic() > deadline:
                raise AssertionError("%s: no answer but %r after %d tries" % (what, last, tries))
            time.sleep(0.2 + random.random() * 0.3)


def order_body():
    return {"paymentMethod": "card", "ordererName": "이영희", "ordererPhone": PHONE,
            "ordererEmail": "buyer@example.com",
            "shippingAddress": {"recipient": "김민수", "phone": "01012345678",
                                "postalCode": "06236", "address1": "서울특별시 강남구 테헤란로 152",
                                "address2": "10층"}}


def order_of(number):
    r = harness.http("GET", env()["gw"].url + "/api/v1/orders/%s?phone=%s" % (number, PHONE),
                     timeout=30)
    return r.body if r.status == 200 else None


def wait_paid(numbers, timeout=90):
    left = set(numbers)

    def done():
        for n in list(left):
            o = order_of(n)
            if o is not None and o["status"] == "paid":
                left.discard(n)
        return not left
    harness.wait_until(done, timeout, "orders %s becoming paid" % sorted(left), interval=0.3)


def run_threads(fn, n):
    """fn(i) on n threads at once; returns the results, re-raising the
    first exception a thread met."""
    results, errors = [None] * n, []

    def one(i):
        try:
            results[i] = fn(i)
        except BaseException as e:  # reported below, with the others' results
            errors.append(e)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def amount(m):
    return int((m or {}).get("amount", 0))


# --------------------------------------------------------------------------

def test_100_shoppers_race_for_20_in_stock():
    sku = make_sku(10000, 20)
    shoppers = [Client() for _ in range(100)]

    def add(i):
        r, _ = shoppers[i].retrying("add to cart", "POST", "/api/v1/cart/items",
                                    {"skuId": sku["id"], "quantity": 1})
        assert r.status == 200, r
    for start in range(0, 100, 10):  # ten browsers at a time fill their carts
        run_threads(lambda i: add(start + i), 10)
    assert stock(sku) == (20, 0), stock(sku)  # adding reserves nothing

    # while they check out, the storefront never shows less than nothing
    seen, rows, stop = [], [], threading.Event()

    def watch():
        n = 0
        while not stop.is_set():
            n += 1
            try:
                seen.append(int(shown(sku)["available"]))
                if n % 8 == 0:  # the catalog's row now and then (psql is slow)
                    rows.append(stock(sku))
            except (AssertionError, OSError) as e:
                seen.append(e)
    watcher = threading.Thread(target=watch)
    watcher.start()
    go = threading.Barrier(100)
    keys = [uniq("race-") for _ in range(100)]

    def place(i):
        go.wait()
        r, tries = shoppers[i].retrying("place order", "POST", "/api/v1/orders", order_body(),
                                        headers={"Idempotency-Key": keys[i]})
        return r, tries
    try:
        results = run_threads(place, 100)
    finally:
        stop.set()
        watcher.join()
    placed = [(i, r) for i, (r, _) in enumerate(results) if r.status == 201]
    answers = {}
    for r, _ in results:
        code = r.body["error"]["code"] if r.status != 201 and isinstance(r.body, dict) else ""
        answers[(r.status, code)] = answers.get((r.status, code), 0) + 1
    assert len(placed) == 20, answers
    assert sum(n for (st, _), n in answers.items() if st == 409) == 80, answers
    assert stock(sku) == (20, 20), stock(sku)
    assert int(shown(sku)["available"]) == 0, shown(sku)
    assert seen and all(isinstance(a, int) and 0 <= a <= 20 for a in seen), seen
    assert all(on == 20 and 0 <= res <= 20 for on, res in rows), rows
    print("    placing: %d tries for 100 shoppers; %d samples of the stock"
          % (sum(t for _, t in results), len(seen)), flush=True)

    # the 20 pay: the PG's window, then the confirm route
    pg = env()["pg"]

    def pay(k):
        i, r = placed[k]
        o, p = r.body["order"], r.body["payment"]
        assert p["amount"] == amount(o["total"]) == 13000, (o["total"], p)  # 10,000 + shipping
        key = pg.create_payment(p["orderId"], p["amount"], orderName=p["orderName"])
        c, _ = shoppers[i].retrying("confirm", "POST", "/api/v1/payments/confirm",
                                    {"paymentKey": key, "orderId": p["orderId"],
                                     "amount": p["amount"]})
        assert c.status == 200 and c.body["payment"]["status"] == "done", c
        return o["number"], key
    paid = run_threads(pay, 20)
    wait_paid([n for n, _ in paid])
    stats = pg.stats()["confirms"]
    assert all(stats.get(key) == 1 for _, key in paid), stats
    assert stock(sku) == (0, 0), stock(sku)
    assert int(shown(sku)["available"]) == 0
    # last, so that the rest is checked whatever the losers were told: each
    # was told the stock ran out (the code a storefront shows as "sold out")
    assert answers == {(201, ""): 20, (409, "out_of_stock"): 80}, answers


# ---- the crash test ----

def consumed_everything():
    """The order service's cursor on the payment service's events has
    reached the payment outbox's last seq."""
    (top,) = env()["pay"].db.sql("SELECT CASE WHEN bool_or(pub_seq IS NULL) THEN 9223372036854775807 ELSE coalesce(max(pub_seq), 0) END FROM outbox")
    rows = env()["order"].db.sql("SELECT after_seq FROM event_cursor WHERE source = 'payment'")
    return rows and int(rows[0][0]) == int(top[0])


def test_checkouts_survive_kill9_of_the_order_and_payment_services():
    e = env()
    pg, order_svc, pay_svc = e["pg"], e["order"], e["pay"]
    skus = [make_sku(price, 200) for price in (7000, 12000, 31000)]
    buyers = 30
    progress = {"placed": 0, "confirming": 0}
    lock = threading.Lock()

    burst = threading.Event()

    def checkout(i):
        random.seed(i)
        c = Client()
        if i >= 10:  # two thirds come at once, when the order service is killed
            burst.wait()
            time.sleep(random.random() * 0.3)
        else:
            time.sleep(random.random() * 2)
        lines = random.sample(skus, random.choice((1, 2)))
        for s in lines:
            r, _ = c.retrying("add", "POST", "/api/v1/cart/items",
                              {"skuId": s["id"], "quantity": random.choice((1, 2))})
            assert r.status == 200, r
        key = "crash-%d-%s" % (i, uniq(""))
        r, tries = c.retrying("place order %d" % i, "POST", "/api/v1/orders", order_body(),
                              headers={"Idempotency-Key": key})
        assert r.status == 201, (i, r)
        with lock:
            progress["placed"] += 1
        p = r.body["payment"]
        pkey = pg.create_payment(p["orderId"], p["amount"], orderName=p["orderName"])
        with lock:
            progress["confirming"] += 1
        body = {"paymentKey": pkey, "orderId": p["orderId"], "amount": p["amount"]}
        r, ctries = c.retrying("confirm %d" % i, "POST", "/api/v1/payments/confirm", body)
        assert r.status == 200 and r.body["payment"]["status"] == "done", (i, r)
        return p["orderId"], pkey, tries, ctries

    box = {}
    shoppers_error = []

    def guarded():
        try:
            box["results"] = run_threads(checkout, buyers)
        except BaseException as ex:
            shoppers_error.append(ex)
    shoppers = threading.Thread(target=guarded)
    shoppers.start()
    # the order service dies once some orders are placed, while many more
    # are being placed, and comes back at once
    harness.wait_until(lambda: progress["placed"] >= 4 or not shoppers.is_alive(), 90,
                       "a few orders placed")
    burst.set()
    time.sleep(0.3)
    order_svc.kill9()
    time.sleep(0.5)
    order_svc.start()
    # the payment service dies while shoppers confirm, with three confirms
    # the PG has acted on and whose answers are on their way (the sandbox
    # holds them back 2.5 s), and comes back a moment later
    harness.wait_until(lambda: progress["confirming"] >= 8 or not shoppers.is_alive(), 90,
                       "a third of the shoppers at the payment step")
    pg.fault("POST /v1/payments/confirm", when="after", delayMs=2500, count=3)
    harness.wait_until(lambda: not harness.http("GET", pg.url + "/sandbox/v1/faults")
                       .body["faults"] or not shoppers.is_alive(), 90,
                       "three confirms acted on at the PG")
    pay_svc.kill9()
    time.sleep(1)
    pay_svc.start()
    shoppers.join()
    if shoppers_error:
        raise shoppers_error[0]
    results = box["results"]
    numbers = [n for n, _, _, _ in results]
    print("    retries: placing %d, confirming %d (for %d shoppers)"
          % (sum(t - 1 for _, _, t, _ in results), sum(t - 1 for _, _, _, t in results),
             buyers), flush=True)
    wait_paid(numbers)

    # the order service has consumed every payment event
    harness.wait_until(consumed_everything, 60, "the order service reaching the payment "
                       "outbox's last seq")

    # what the PG holds: each payment key confirmed once at most; every
    # approved payment's order is paid
    r = harness.http("GET", pg.url + "/sandbox/v1/payments")
    assert r.status == 200, r
    approved = {p["paymentKey"]: p for p in r.body["payments"] if p["status"] == "DONE"}
    confirms = pg.stats()["confirms"]
    assert all(n == 1 for n in confirms.values()), confirms
    by_order = {}
    for p in approved.values():
        by_order.setdefault(p["orderId"], []).append(p["paymentKey"])
    assert all(len(ks) == 1 for ks in by_order.values()), by_order
    for n in by_order:
        o = order_of(n)
        assert o is not None and o["status"] == "paid", (n, o)
    # every paid order has an approved payment, recorded by the payment service
    paid_orders = [n for (n,) in order_svc.db.sql("SELECT number FROM orders "
                                                   "WHERE status = 'paid'")]
    assert set(numbers) <= set(paid_orders), (numbers, paid_orders)
    assert set(paid_orders) <= set(by_order), set(paid_orders) - set(by_order)
    recorded = dict(pay_svc.db.sql("SELECT order_number, payment_key FROM payment "
                                   "WHERE status = 'done'"))
    for n in paid_orders:
        assert recorded.get(n) in by_order[n], (n, recorded.get(n), by_order[n])

    # every payment.approved was taken in by the order service (its inbox)
    approved_events = {eid for (eid,) in pay_svc.db.sql(
        "SELECT event_id FROM outbox WHERE type = 'payment.approved'")}
    inbox = {eid for (eid,) in order_svc.db.sql(
        "SELECT event_id FROM inbox WHERE source = 'payment'")}
    assert approved_events and approved_events <= inbox, approved_events - inbox
    assert len(approved_events) == len(paid_orders), (len(approved_events), len(paid_orders))

    # stock: what is on the shelf and what paid orders took is what there was
    for s in skus:
        (sold,) = order_svc.db.sql(
            "SELECT coalesce(sum(l.quantity), 0) FROM order_line l JOIN orders o "
            "ON o.id = l.order_id WHERE o.status = 'paid' AND l.sku_id = %d" % s["id"])
        on_hand, reserved = stock(s)
        assert on_hand + int(sold[0]) == s["stock"], (s, on_hand, sold, reserved)
    # and nothing stays reserved: every shopper's order is paid, and what a
    # placement killed half-way held is given back by the order sweep (after
    # its grace of 2 x MALL_RPC_TIMEOUT + 1 s)
    try:
        harness.wait_until(lambda: all(stock(s)[1] == 0 for s in skus), 90,
                           "the stock held by killed placements given back", interval=1)
    except AssertionError:
        raise AssertionError("still reserved (on hand, reserved): %s"
                             % [stock(s) for s in skus])
    print("    placements killed half-way, their stock given back: %d"
          % order_svc.proc.output().count("gave back what abandoned order"), flush=True)


harness.run()
