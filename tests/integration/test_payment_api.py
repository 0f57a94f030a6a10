"""Payments through the gateway (POST /api/v1/payments/confirm and the PG's
deposit callback POST /webhooks/payments/toss) against real catalog, member,
cart, order and payment services, PostgreSQL, Redis and the sandbox PG,
whose deposit callbacks go to this gateway: a guest checks out by card end to
end (cart, order, the PG's window, confirm: the payment is done and the order
becomes paid); confirming twice reaches the PG once; a tampered amount is 409
amount_mismatch and never reaches the PG; a virtual account answers its
account, and the sandbox's deposit callback through the gateway makes it
paid (a repeated callback is 200 and changes nothing); a callback with a
wrong secret is 403 and changes nothing, a malformed one 400, one for an
unknown order 404, one the PG cannot be asked about 503; bad confirm bodies
are 400 and confirm nothing, and a payment key the PG never issued is a 4xx
that leaves the order payable."""

import json
import subprocess
import time

import harness

_env = {"n": 0}
PHONE = "010-9876-5432"


def env():
    """One of each service, the sandbox PG and a gateway, shared by the tests
    of this file.  The sandbox must know the gateway's address before the
    payment service (which needs the sandbox) and the gateway (which needs the
    payment service) start, and the order service (which consumes the payment
    service's events) and the payment service (which reads orders) need each
    other: the gateway's and the order service's ports are picked first."""
    if "gw" not in _env:
        gw_port = harness.free_port()
        order_addr = "tcp://127.0.0.1:%d" % harness.free_port()
        pg = harness.start_sandbox_pg(
            webhook_url="http://127.0.0.1:%d/webhooks/payments/toss" % gw_port,
            env={"MALL_SANDBOX_PG_WEBHOOK_BACKOFF": "100ms",
                 "MALL_SANDBOX_PG_WEBHOOK_RETRIES": "5"})
        cat = harness.start_catalog()
        mem = harness.start_service("member")
        cart = harness.start_service("cart", env={"MALL_CATALOG_ADDRS": cat.addr})
        pay = harness.start_service("payment", env={
            "MALL_ORDER_ADDRS": order_addr, "MALL_PAYMENT_PG_URL": pg.url,
            "MALL_PAYMENT_PG_SECRET_KEY": pg.secret_key, "MALL_PAYMENT_PG_TIMEOUT": "2s",
            "MALL_RPC_TIMEOUT": "5s"})
        order = harness.start_service("order", env={
            "MALL_ORDER_LISTEN": order_addr,
            "MALL_CATALOG_ADDRS": cat.addr, "MALL_CART_ADDRS": cart.addr,
            "MALL_MEMBER_ADDRS": mem.addr, "MALL_PAYMENT_ADDRS": pay.addr,
            "MALL_PAYMENT_EVENTS_ADDRS": pay.events_addr, "MALL_RPC_TIMEOUT": "5s"})
        g = harness.start_gateway(
            catalog=[cat], member=[mem], cart=[cart], order=[order_addr], payment=[pay],
            env={"MALL_GATEWAY_LISTEN": "127.0.0.1:%d" % gw_port,
                 "MALL_GATEWAY_LOGIN_MAX_PER_IP": "100000",
                 "MALL_PAYMENT_PG_CLIENT_KEY": pg.client_key,
                 "MALL_ORDER_EVENTS_ADDRS": order.events_addr},
            wait=False)
        gw = harness.Gateway(g.proc, gw_port)
        harness.wait_http(gw.url + "/readyz", 200, 60, proc=gw.proc)
        _env.update(cat=cat, mem=mem, cart=cart, order=order, order_addr=order_addr, pay=pay,
                    pg=pg, gw=gw)
        ok, r = rpc(cat, "mall.catalog.Catalog", "CreateCategory",
                    {"slug": "pay-api", "name": "결제 API 시험"})
        assert ok, r
    return _env


def rpc(svc, service, method, req):
    """(ok, reply-or-error JSON) of one mutating RPC via rpc_call."""
    argv = [harness.binary("tests/integration/rpc_call"), "--addrs", svc.addr,
            "--service", service, "--method", method, "--mutating"]
    p = subprocess.run(argv + [json.dumps(req)], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode in (0, 1), "rpc_call %s: %d %s %s" % (method, p.returncode, p.stdout,
                                                              p.stderr)
    return p.returncode == 0, json.loads(p.stdout)


def uniq(prefix):
    _env["n"] += 1
    return "%s%d" % (prefix, _env["n"])


def make_sku(price, stock=100):
    slug = uniq("papi-p")
    ok, p = rpc(env()["cat"], "mall.catalog.Catalog", "CreateProduct",
                {"slug": slug, "name": "결제 시험 상품", "categorySlug": "pay-api",
                 "published": True})
    assert ok, p
    ok, s = rpc(env()["cat"], "mall.catalog.Catalog", "CreateSku",
                {"productId": p["id"], "code": slug.upper(), "price": price, "onHand": stock})
    assert ok, s
    return s


class Client:
    """Keeps the gateway's cookies and sends the CSRF token back (as
    test_order_api.py's)."""

    def __init__(self):
        self.cookies = {}

    def request(self, method, path, body=None, csrf=True, headers=None):
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        if csrf and "mall_csrf" in self.cookies and "X-CSRF-Token" not in h:
            h["X-CSRF-Token"] = self.cookies["mall_csrf"]
        r = harness.http(method, env()["gw"].url + path, body=body, headers=h, timeout=30)
        for line in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = line.partition("=")
            if "Max-Age=0" in line:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = rest.split(";", 1)[0]
        return r


def checkout(method="card", price=12000, qty=2):
    """A guest's order placed through the gateway: (client, order, payment
    window parameters)."""
    sku = make_sku(price)
    c = Client()
    r = c.request("POST", "/api/v1/cart/items", {"skuId": sku["id"], "quantity": qty})
    assert r.status == 200, r
    body = {"paymentMethod": method, "ordererName": "이영희", "ordererPhone": PHONE,
            "ordererEmail": "buyer@example.com",
            "shippingAddress": {"recipient": "김민수", "phone": "01012345678",
                                "postalCode": "06236", "address1": "서울특별시 강남구 테헤란로 152",
                                "address2": "10층"}}
    r = c.request("POST", "/api/v1/orders", body, headers={"Idempotency-Key": uniq("pay-")})
    assert r.status == 201, r
    return c, r.body["order"], r.body["payment"]


def confirm(c, body, **kw):
    return c.request("POST", "/api/v1/payments/confirm", body, **kw)


def order_of(number):
    r = harness.http("GET", env()["gw"].url + "/api/v1/orders/%s?phone=%s" % (number, PHONE))
    assert r.status == 200, r
    return r.body


def payment_row(number):
    """(status, payment_key) in the payment service's table, or None."""
    rows = env()["pay"].db.sql(
        "SELECT status, payment_key FROM payment WHERE order_number = '%s'" % number)
    return tuple(rows[0]) if rows else None


def confirms(key):
    return env()["pg"].stats()["confirms"].get(key, 0)


def pg_confirm_requests():
    return [q for q in env()["pg"].requests() if q["path"] == "/v1/payments/confirm"]


def assert_error(r, status, code, field=None):
    assert r.status == status, r
    assert isinstance(r.body, dict) and "error" in r.body, r
    assert r.body["error"]["code"] == code, r
    if field is not None:
        assert field in (r.body["error"].get("fields") or {}), r
    return r.body["error"]


def webhook(body, headers=None):
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return harness.http("POST", env()["gw"].url + "/webhooks/payments/toss", body=data,
                        headers=h, timeout=30)


def amount(m):
    return int((m or {}).get("amount", 0))


def wait_order_status(number, want, timeout=15):
    # needs the order service's payment saga (services/order/order_saga.c)
    return harness.wait_until(lambda: order_of(number)["status"] == want, timeout=timeout,
                              what="order %s becoming %s" % (number, want))


# --------------------------------------------------------------------------

def test_guest_card_checkout_end_to_end():
    pg = env()["pg"]
    c, o, pay = checkout("card", 12000, 2)
    n = o["number"]
    # 2 x 12,000 won and 3,000 won of shipping (free from 30,000)
    assert pay["orderId"] == n and pay["amount"] == amount(o["total"]) == 27000, pay
    assert pay["clientKey"] == pg.client_key, pay
    # the browser completes the PG's window, which returns to successUrl
    key = pg.create_payment(pay["orderId"], pay["amount"], orderName=pay["orderName"])
    r = confirm(c, {"paymentKey": key, "orderId": n, "amount": pay["amount"]})
    assert r.status == 200, r
    assert r.headers.get("Cache-Control") == "no-store", r.headers
    p = r.body["payment"]
    assert p["status"] == "done" and p["method"] == "card", p
    assert p["paymentKey"] == key and p["orderId"] == n and amount(p["amount"]) == 27000, p
    assert p["approvedAt"] and p["card"]["number"], p
    assert "failureMessage" not in p, p
    assert r.body["order"]["number"] == n, r.body
    assert r.body["order"]["status"] in ("pending_payment", "paid"), r.body["order"]
    assert confirms(key) == 1
    assert payment_row(n) == ("done", key)
    # the order service takes the payment in (the saga)
    wait_order_status(n, "paid")
    # confirming again (a reload of the success page) answers the same payment
    # and the PG sees no second confirm
    again = confirm(c, {"paymentKey": key, "orderId": n, "amount": pay["amount"]})
    assert again.status == 200 and again.body["payment"] == p, again
    assert again.body["order"]["status"] == "paid", again.body["order"]
    assert confirms(key) == 1
    # also from another client without any session
    anon = harness.http("POST", env()["gw"].url + "/api/v1/payments/confirm",
                        body={"paymentKey": key, "orderId": n, "amount": pay["amount"]})
    assert anon.status == 200 and anon.body["payment"]["status"] == "done", anon
    assert confirms(key) == 1


def test_confirm_waits_for_the_order_briefly():
    """The answer comes once the order left pending_payment, not 2 s later
    (when the saga works), and never much after MALL_GATEWAY_CONFIRM_WAIT."""
    pg = env()["pg"]
    c, o, pay = checkout("easy_pay", 9000, 1)
    key = pg.create_payment(pay["orderId"], pay["amount"], method="easy_pay")
    t0 = time.monotonic()
    r = confirm(c, {"paymentKey": key, "orderId": o["number"], "amount": pay["amount"]})
    took = time.monotonic() - t0
    assert r.status == 200 and r.body["payment"]["status"] == "done", r
    assert r.body["payment"]["easyPayProvider"], r.body["payment"]
    assert took < 5, took
    if r.body["order"]["status"] == "pending_payment":
        assert took >= 1.9, took  # it waited the whole 2 s
    else:
        assert r.body["order"]["status"] == "paid", r.body["order"]


def test_confirm_wakes_on_the_order_event():
    """A confirm hears its order's order.status_changed: with rechecks far
    apart (30 s) and a long wait (20 s), the answer still comes with the
    order paid, well before either (a confirm that heard nothing would answer
    pending_payment after 20 s)."""
    e = env()
    pg = e["pg"]
    gw = harness.start_gateway(
        catalog=[e["cat"]], member=[e["mem"]], cart=[e["cart"]], order=[e["order_addr"]],
        payment=[e["pay"]], name="gateway-watch",
        env={"MALL_GATEWAY_LOGIN_MAX_PER_IP": "100000",
             "MALL_PAYMENT_PG_CLIENT_KEY": pg.client_key,
             "MALL_GATEWAY_CONFIRM_WAIT": "20s", "MALL_GATEWAY_CONFIRM_RECHECK": "30s",
             "MALL_ORDER_EVENTS_ADDRS": e["order"].events_addr})
    try:
        for _ in range(3):
            c, o, pay = checkout("card", 8000, 1)
            key = pg.create_payment(pay["orderId"], pay["amount"])
            r = harness.http("POST", gw.url + "/api/v1/payments/confirm",
                             body={"paymentKey": key, "orderId": o["number"],
                                   "amount": pay["amount"]}, timeout=60)
            assert r.status == 200 and r.body["payment"]["status"] == "done", r
            assert r.body["order"]["status"] == "paid", r.body["order"]
    finally:
        gw.proc.terminate()
        gw.proc.wait(timeout=30)


def test_tampered_amount():
    pg = env()["pg"]
    c, o, pay = checkout("card", 15000, 1)
    n, total = o["number"], pay["amount"]
    key = pg.create_payment(n, total)
    before = len(pg_confirm_requests())
    for bad in (total - 1000, total + 1, 1):
        r = confirm(c, {"paymentKey": key, "orderId": n, "amount": bad})
        e = assert_error(r, 409, "amount_mismatch")
        # the order's total is not told to whoever guesses an order number
        assert str(total) not in r.text and "details" not in e, r
    assert confirms(key) == 0 and len(pg_confirm_requests()) == before
    assert payment_row(n) is None
    assert order_of(n)["status"] == "pending_payment"
    # the right amount still goes through
    r = confirm(c, {"paymentKey": key, "orderId": n, "amount": total})
    assert r.status == 200 and r.body["payment"]["status"] == "done", r
    assert confirms(key) == 1


def test_bad_confirm_bodies_confirm_nothing():
    pg = env()["pg"]
    c, o, pay = checkout("card", 7000, 1)
    n, total = o["number"], pay["amount"]
    key = pg.create_payment(n, total)
    good = {"paymentKey": key, "orderId": n, "amount": total}
    cases = [
        ({"orderId": n, "amount": total}, "paymentKey"),
        ({"paymentKey": key, "amount": total}, "orderId"),
        ({"paymentKey": key, "orderId": n}, "amount"),
        (dict(good, amount=0), "amount"),
        (dict(good, amount=-1), "amount"),
        (dict(good, amount="%d" % total), "amount"),
        (dict(good, amount=float(total) + 0.5), "amount"),
        (dict(good, amount=None), "amount"),
        (dict(good, extra=1), "extra"),
        (dict(good, memberId=1), "memberId"),
        (dict(good, paymentKey="a b"), "paymentKey"),
        (dict(good, paymentKey="k" * 201), "paymentKey"),
        (dict(good, orderId="x"), "orderId"),
    ]
    for body, field in cases:
        assert_error(confirm(c, body), 400, "invalid_argument", field)
    for raw, ctype in (("paymentKey=%s" % key, "application/x-www-form-urlencoded"),
                       ("[1]", "application/json"), ("{", "application/json"),
                       (json.dumps(good), "text/plain")):
        r = confirm(c, raw, headers={"Content-Type": ctype})
        assert_error(r, 400, "invalid_argument")
    assert confirms(key) == 0
    assert payment_row(n) is None
    # an unknown order: 404, nothing at the PG
    r = confirm(c, dict(good, orderId="20000101-999999"))
    assert_error(r, 404, "not_found")
    assert confirms(key) == 0
    # a session's write needs its CSRF token, as every write
    r = confirm(c, good, csrf=False)
    assert_error(r, 403, "permission_denied")
    assert confirms(key) == 0
    # a payment key the PG never issued: a 4xx, nothing paid, and the real
    # key still goes through afterwards
    r = confirm(c, dict(good, paymentKey="tgen_" + "0" * 40))
    assert 400 <= r.status < 500 and r.body["error"]["code"], r
    assert order_of(n)["status"] == "pending_payment"
    r = confirm(c, good)
    assert r.status == 200 and r.body["payment"]["status"] == "done", r
    assert confirms(key) == 1


def test_pg_unavailable_then_retry():
    pg = env()["pg"]
    c, o, pay = checkout("card", 5000, 1)
    key = pg.create_payment(o["number"], pay["amount"])
    pg.fault("POST /v1/payments/confirm", status=500, count=1)
    body = {"paymentKey": key, "orderId": o["number"], "amount": pay["amount"]}
    r = confirm(c, body)
    assert_error(r, 503, "unavailable")
    assert r.headers.get("Retry-After"), r.headers
    assert "sandbox" not in r.text and "http://" not in r.text, r
    r = confirm(c, body)
    assert r.status == 200 and r.body["payment"]["status"] == "done", r
    assert confirms(key) == 1


def test_rejected_payment():
    pg = env()["pg"]
    c, o, pay = checkout("card", 6000, 1)
    key = pg.create_payment(o["number"], pay["amount"], outcome="fail")
    r = confirm(c, {"paymentKey": key, "orderId": o["number"], "amount": pay["amount"]})
    assert_error(r, 409, "payment_rejected")
    assert "카드" not in r.text, r  # not the PG's text
    assert order_of(o["number"])["status"] == "pending_payment"
    # a new window, paid this time
    key2 = pg.create_payment(o["number"], pay["amount"])
    r = confirm(c, {"paymentKey": key2, "orderId": o["number"], "amount": pay["amount"]})
    assert r.status == 200 and r.body["payment"]["status"] == "done", r


def test_virtual_account_and_deposit_callback():
    pg = env()["pg"]
    c, o, pay = checkout("virtual_account", 20000, 1)
    n = o["number"]
    key = pg.create_payment(n, pay["amount"], method="virtual_account", bank="004",
                            customerName="이영희")
    r = confirm(c, {"paymentKey": key, "orderId": n, "amount": pay["amount"]})
    assert r.status == 200, r
    p = r.body["payment"]
    assert p["status"] == "waiting_for_deposit" and p["method"] == "virtual_account", p
    va = p["virtualAccount"]
    assert va["bank"] == "004" and len(va["accountNumber"]) == 14, va
    assert va["dueDate"] and va["customerName"] == "이영희", va
    assert "secret" not in json.dumps(r.body), r.body  # the callback's secret stays inside
    assert r.body["order"]["status"] in ("pending_payment", "awaiting_deposit"), r.body
    wait_order_status(n, "awaiting_deposit")

    # the customer pays; the sandbox calls the gateway's webhook
    dep = pg.deposit(key)
    assert dep.status == 200, dep
    harness.wait_until(lambda: payment_row(n) == ("done", key), what="the deposit recorded")
    deliveries = [d for d in pg.webhooks() if d["paymentKey"] == key]
    assert len(deliveries) == 1, deliveries
    harness.wait_until(lambda: [d for d in pg.webhooks() if d["paymentKey"] == key][0][
        "state"] == "delivered", what="the delivery answered")
    d = [d for d in pg.webhooks() if d["paymentKey"] == key][0]
    assert d["attempts"][-1]["status"] == 200, d
    wait_order_status(n, "paid")
    # a repeated callback: 200, nothing changes
    r = harness.http("POST", pg.url + "/sandbox/v1/webhooks/resend", body={"paymentKey": key})
    assert r.status == 200, r
    harness.wait_until(lambda: all(x["state"] == "delivered" for x in pg.webhooks()
                                   if x["paymentKey"] == key), what="the resend delivered")
    assert all(x["attempts"][-1]["status"] == 200 for x in pg.webhooks()
               if x["paymentKey"] == key)
    assert payment_row(n) == ("done", key)
    # the body as the PG sends it, posted directly: 200 {"ok":true}
    sent = d["body"] if isinstance(d["body"], dict) else json.loads(d["body"])
    r = webhook(sent)
    assert r.status == 200 and r.body == {"ok": True}, r
    # confirming again now answers the paid payment
    r = confirm(c, {"paymentKey": key, "orderId": n, "amount": pay["amount"]})
    assert r.status == 200 and r.body["payment"]["status"] == "done", r
    assert confirms(key) == 1


def va_waiting():
    """A confirmed virtual account not paid yet: (order number, payment key,
    its secret)."""
    pg = env()["pg"]
    c, o, pay = checkout("virtual_account", 11000, 1)
    key = pg.create_payment(o["number"], pay["amount"], method="virtual_account")
    r = confirm(c, {"paymentKey": key, "orderId": o["number"], "amount": pay["amount"]})
    assert r.status == 200 and r.body["payment"]["status"] == "waiting_for_deposit", r
    secret = pg.payment(key).body["secret"]
    assert secret.startswith("ps_"), secret
    return o["number"], key, secret


def callback(number, secret, status="DONE"):
    return {"createdAt": "2026-11-26T10:05:00.000000", "secret": secret, "status": status,
            "transactionKey": "9FF15E1A29D0E77C218F57262BFA4986", "orderId": number}


def test_webhook_wrong_secret():
    n, key, secret = va_waiting()
    for bad in ("ps_" + "x" * 32, secret[:-1], secret + "x", secret.upper()):
        r = webhook(callback(n, bad))
        assert_error(r, 403, "webhook_secret_mismatch")
        assert bad not in r.text, r
    assert payment_row(n) == ("waiting_for_deposit", key)
    # a cookie that names no live session brings no CSRF check either
    r = webhook(callback(n, "ps_" + "y" * 32), headers={"Cookie": "mall_session=nope"})
    assert_error(r, 403, "webhook_secret_mismatch")
    # then the customer pays: the sandbox's callback (right secret) makes it
    # paid, and a forged one after that still changes nothing
    assert env()["pg"].deposit(key).status == 200
    harness.wait_until(lambda: payment_row(n) == ("done", key), what="the deposit recorded")
    r = webhook(callback(n, "ps_" + "x" * 32, status="CANCELED"))
    assert_error(r, 403, "webhook_secret_mismatch")
    assert payment_row(n) == ("done", key)


def test_webhook_right_secret_before_deposit_changes_nothing():
    """Only what the PG says is recorded: a callback claiming a deposit the
    PG does not know of (here with the right secret and a query string the
    PG may have been configured with) is handled and changes nothing."""
    n, key, secret = va_waiting()
    r = harness.http("POST", env()["gw"].url + "/webhooks/payments/toss?src=toss",
                     body=callback(n, secret))
    assert r.status == 200 and r.body == {"ok": True}, r
    assert payment_row(n) == ("waiting_for_deposit", key)


def test_webhook_malformed_bodies():
    n, key, secret = va_waiting()
    bodies = [b"", b"not json", b"[1]", b'"x"', b"null", b"{", b"\xff\xfe{}",
              b'{"secret": "%s", "orderId": "%s", "orderId": "%s"}' % (
                  secret.encode(), n.encode(), n.encode()),
              b'{"secret": "a\x00", "orderId": "x"}',
              json.dumps({"secret": secret, "orderId": 5}).encode(),
              json.dumps({"secret": secret, "orderId": "x"}).encode(),
              json.dumps({"secret": secret}).encode(),
              json.dumps({"orderId": n}).encode(),
              json.dumps({"secret": 1, "orderId": n}).encode()]
    for b in bodies:
        r = webhook(b)
        assert r.status == 400, (b, r)
        assert r.body["error"]["code"] == "invalid_argument", (b, r)
    assert payment_row(n) == ("waiting_for_deposit", key)


def test_webhook_unknown_order():
    r = webhook(callback("20000101-999999", "ps_" + "z" * 32))
    assert_error(r, 404, "not_found")


def test_webhook_pg_unreachable_is_503():
    n, key, secret = va_waiting()
    pg = env()["pg"]
    pg.fault("GET /v1/payments/", status=500, count=1)
    r = webhook(callback(n, secret))
    assert_error(r, 503, "unavailable")
    assert r.headers.get("Retry-After"), r.headers
    assert payment_row(n) == ("waiting_for_deposit", key)
    r = webhook(callback(n, secret))
    assert r.status == 200, r


def test_webhook_payment_service_down_is_503():
    n, key, secret = va_waiting()
    pay = env()["pay"]
    pay.stop()
    try:
        r = webhook(callback(n, secret))
        assert_error(r, 503, "unavailable")
    finally:
        pay.cont()
    r = webhook(callback(n, secret))
    assert r.status == 200, r


def test_documented():
    doc = harness.http("GET", env()["gw"].url + "/api/v1/openapi.json").body
    assert "post" in doc["paths"]["/api/v1/payments/confirm"], list(doc["paths"])
    assert "post" in doc["paths"]["/webhooks/payments/toss"], list(doc["paths"])


harness.run()
