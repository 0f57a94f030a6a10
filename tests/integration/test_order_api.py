"""Orders through the gateway (/api/v1/orders...) against real catalog,
member, cart and order services, PostgreSQL and Redis: a guest checks out
from the session's guest cart with a shipping address (201 with the order and
the payment window's parameters; the amount is the cart's total) and reads
the order back with the orderer's phone; a member checks out with an address
of the address book and lists their orders; placing needs an Idempotency-Key,
the same key and body is the same order (also from two threads at once), the
same key with another body is 422; an empty cart is 409 cart_empty, stock
gone since the cart was filled 409; bad bodies are 400 naming the field; none
of these refusals writes anything; another member can neither read nor
cancel an order (404); cancel puts the stock back; CSRF guards the writes;
the sales channel follows the User-Agent."""

import threading
import time

import harness

_env = {"n": 0}
PASSWORD = "correct horse 1"
PG_CLIENT_KEY = "test_ck_order_api"


def env():
    """One catalog, member, cart and order service and a gateway, shared by
    the tests of this file."""
    if "gw" not in _env:
        cat = harness.start_catalog()
        mem = harness.start_service("member")
        cart = harness.start_service("cart", env={"MALL_CATALOG_ADDRS": cat.addr})
        order = harness.start_service("order", env={
            "MALL_CATALOG_ADDRS": cat.addr, "MALL_CART_ADDRS": cart.addr,
            "MALL_MEMBER_ADDRS": mem.addr, "MALL_RPC_TIMEOUT": "5s"})
        gw = harness.start_gateway(catalog=[cat], member=[mem], cart=[cart], order=[order],
                                   env={"MALL_GATEWAY_LOGIN_MAX_PER_IP": "100000",
                                        "MALL_PAYMENT_PG_CLIENT_KEY": PG_CLIENT_KEY})
        _env.update(cat=cat, mem=mem, cart=cart, order=order, gw=gw)
        ok, r = rpc(cat, "mall.catalog.Catalog", "CreateCategory",
                    {"slug": "order-api", "name": "주문 API 시험"})
        assert ok, r
    return _env


def rpc(svc, service, method, req):
    """(ok, reply-or-error JSON) of one mutating RPC (harness.rpc_call)."""
    return harness.rpc_call(svc, service, method, req, mutating=True)


def uniq(prefix):
    _env["n"] += 1
    return "%s%d%d" % (prefix, _env["n"], int(time.time() * 1000) % 100000)


def make_sku(price, stock=100, name="시험 상품"):
    slug = uniq("oapi-p")
    ok, p = rpc(env()["cat"], "mall.catalog.Catalog", "CreateProduct",
                {"slug": slug, "name": name, "categorySlug": "order-api", "published": True})
    assert ok, p
    code = slug.upper()
    ok, s = rpc(env()["cat"], "mall.catalog.Catalog", "CreateSku",
                {"productId": p["id"], "code": code, "price": price, "onHand": stock})
    assert ok, s
    return {"id": s["id"], "code": code, "name": name}


def set_stock(sku, on_hand):
    ok, r = rpc(env()["cat"], "mall.catalog.Catalog", "SetStock",
                {"skuCode": sku["code"], "onHand": on_hand})
    assert ok, r


def stock(sku):
    """(on_hand, reserved) of a SKU."""
    (row,) = env()["cat"].db.sql("SELECT on_hand, reserved FROM sku WHERE id = %d" % sku["id"])
    return int(row[0]), int(row[1])


def order_count():
    return int(env()["order"].db.sql("SELECT count(*) FROM orders")[0][0])


def written():
    """What the refusals must leave alone: orders, placement attempts and
    reservations."""
    o = env()["order"].db
    return (order_count(), int(o.sql("SELECT count(*) FROM order_attempt")[0][0]),
            int(env()["cat"].db.sql("SELECT count(*) FROM reservation")[0][0]))


class Client:
    """A browser of sorts: keeps the gateway's cookies, sends them back, and
    sends X-CSRF-Token (the mall_csrf cookie) when csrf is on."""

    def __init__(self):
        self.gw = env()["gw"]
        self.cookies = {}
        self.lock = threading.Lock()

    def request(self, method, path, body=None, csrf=True, headers=None):
        h = dict(headers or {})
        with self.lock:
            if self.cookies:
                h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
            if csrf and "mall_csrf" in self.cookies and "X-CSRF-Token" not in h:
                h["X-CSRF-Token"] = self.cookies["mall_csrf"]
        r = harness.http(method, self.gw.url + path, body=body, headers=h)
        with self.lock:
            for line in r.headers.get_all("Set-Cookie") or []:
                name, _, rest = line.partition("=")
                if "Max-Age=0" in line:
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = rest.split(";", 1)[0]
        return r

    def add(self, sku, qty=1):
        r = self.request("POST", "/api/v1/cart/items", {"skuId": sku["id"], "quantity": qty})
        assert r.status == 200, r
        return r.body

    def cart(self):
        r = self.request("GET", "/api/v1/cart")
        assert r.status == 200, r
        return r.body

    def place(self, body, key=None, **kw):
        h = dict(kw.pop("headers", None) or {})
        if key is not None:
            h["Idempotency-Key"] = key
        return self.request("POST", "/api/v1/orders", body, headers=h, **kw)

    def login(self, email):
        r = self.request("POST", "/api/v1/session", {"email": email, "password": PASSWORD})
        assert r.status == 200, r
        return r.body["member"]


def member_client():
    email = uniq("oapi") + "@example.com"
    r = harness.http("POST", env()["gw"].url + "/api/v1/members",
                     body={"email": email, "password": PASSWORD, "name": "김민수",
                           "phone": "010-1234-5678",
                           "marketingConsent": {"email": False, "sms": False}})
    assert r.status == 201, r
    c = Client()
    m = c.login(email)
    return c, m


def shipping(**over):
    a = {"recipient": "김민수", "phone": "01012345678", "postalCode": "06236",
         "address1": "서울특별시 강남구 테헤란로 152", "address2": "10층"}
    a.update(over)
    return a


def order_body(**over):
    b = {"paymentMethod": "card", "shippingAddress": shipping(), "ordererName": "이영희",
         "ordererPhone": "010-9876-5432", "ordererEmail": "Buyer@Example.com",
         "deliveryNote": "문 앞에 놓아 주세요"}
    b.update(over)
    return {k: v for k, v in b.items() if v is not None}


def assert_error(r, status, code, field=None):
    assert r.status == status, r
    assert isinstance(r.body, dict) and "error" in r.body, r
    assert r.body["error"]["code"] == code, r
    assert r.body["error"]["message"], r
    if field is not None:
        assert field in (r.body["error"].get("fields") or {}), r
    return r.body["error"]


def amount(m):
    return int((m or {}).get("amount", 0))


# --------------------------------------------------------------------------

def test_guest_checkout():
    a, b = make_sku(12000, name="한우 등심 300g"), make_sku(8000, name="양념 갈비")
    c = Client()
    c.add(a, 2)
    cart = c.add(b, 1)
    r = c.place(order_body(), key=uniq("guest-"))
    assert r.status == 201, r
    assert r.headers.get("Cache-Control") == "no-store", r.headers
    o, pay = r.body["order"], r.body["payment"]
    assert o["status"] == "pending_payment" and o["memberId"] == 0, o
    assert o["channel"] == "web_pc" and o["paymentMethod"] == "card", o
    assert amount(o["total"]) == amount(cart["total"]) == 32000, (o["total"], cart["total"])
    assert [(l["skuId"], l["quantity"]) for l in o["lines"]] == [(a["id"], 2), (b["id"], 1)]
    assert o["shippingAddress"]["phone"] == "010-1234-5678", o
    assert o["ordererEmail"] == "buyer@example.com", o
    assert pay == {"orderId": o["number"], "amount": amount(o["total"]),
                   "orderName": "한우 등심 300g 외 1건", "clientKey": PG_CLIENT_KEY,
                   "windowUrl": "http://127.0.0.1:8091/sandbox/pay",
                   "customerName": "이영희", "customerEmail": "buyer@example.com"}, pay
    assert stock(a) == (100, 2), stock(a)
    # the guest cart's id never leaves the gateway
    assert c.cookies["mall_session"] not in r.text
    # read back with the orderer's phone (hyphens optional), by anyone
    n = o["number"]
    got = harness.http("GET", env()["gw"].url + "/api/v1/orders/%s?phone=01098765432" % n)
    assert got.status == 200 and got.body == o, got
    got = c.request("GET", "/api/v1/orders/%s?phone=010-9876-5432" % n)
    assert got.status == 200 and got.body["number"] == n, got
    # a wrong phone, no phone, a number that is none
    assert_error(c.request("GET", "/api/v1/orders/%s?phone=010-0000-0000" % n), 404,
                 "not_found")
    assert_error(c.request("GET", "/api/v1/orders/%s" % n), 400, "invalid_argument", "phone")
    assert_error(c.request("GET", "/api/v1/orders/%s?phone=12" % n), 400, "invalid_argument",
                 "phone")
    assert_error(c.request("GET", "/api/v1/orders/nope?phone=01098765432"), 404, "not_found")
    assert_error(c.request("GET", "/api/v1/orders/%s?phone=01098765432&x=1" % n), 400,
                 "invalid_argument", "x")
    # a guest has no list
    assert_error(c.request("GET", "/api/v1/orders"), 401, "unauthenticated")


def test_member_checkout_with_address_book_and_list():
    s = make_sku(15000)
    c, m = member_client()
    r = c.request("POST", "/api/v1/me/addresses", shipping(recipient="박서준"))
    assert r.status == 201, r
    addr = r.body
    c.add(s, 2)
    body = order_body(shippingAddress=None, addressId=addr["id"])
    r = c.place(body, key="member-1",
                headers={"User-Agent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
                                       "AppleWebKit/605.1.15 Mobile/15E148 Safari/604.1"})
    assert r.status == 201, r
    o = r.body["order"]
    assert o["memberId"] == m["id"] and o["channel"] == "web_mobile", o
    assert o["shippingAddress"]["recipient"] == "박서준", o
    assert o["history"][0]["actor"] == "member:%d" % m["id"], o
    assert r.body["payment"]["amount"] == amount(o["total"]) == 30000, r.body  # free shipping
    # another order, then the list: newest first
    c.add(s, 1)
    r2 = c.place(order_body(paymentMethod="virtual_account"), key="member-2")
    assert r2.status == 201, r2
    assert r2.body["order"]["paymentMethod"] == "virtual_account"
    lst = c.request("GET", "/api/v1/orders")
    assert lst.status == 200, lst
    assert [x["number"] for x in lst.body["orders"]] == [r2.body["order"]["number"],
                                                         o["number"]], lst.body
    assert lst.body["totalCount"] == 2, lst.body
    page = c.request("GET", "/api/v1/orders?page=2&pageSize=1")
    assert page.status == 200 and [x["number"] for x in page.body["orders"]] == [o["number"]]
    assert page.body["totalCount"] == 2, page.body
    assert_error(c.request("GET", "/api/v1/orders?pageSize=101"), 400, "invalid_argument",
                 "pageSize")
    # the member reads it without a phone
    got = c.request("GET", "/api/v1/orders/%s" % o["number"])
    assert got.status == 200 and got.body["number"] == o["number"], got
    # another member's address is not found and writes nothing
    other, _ = member_client()
    other.add(s, 1)
    before = written()
    r = other.place(order_body(shippingAddress=None, addressId=addr["id"]), key="other-addr")
    assert_error(r, 404, "not_found", "addressId")
    assert written() == before


def test_idempotency_key_required():
    s = make_sku(5000)
    c = Client()
    c.add(s, 1)
    before = written()
    r = c.place(order_body())
    e = assert_error(r, 400, "idempotency_key_required", "Idempotency-Key")
    assert "Idempotency-Key" in e["message"], e
    assert_error(c.place(order_body(), key="b a d"), 400, "invalid_argument", "Idempotency-Key")
    assert written() == before
    assert stock(s) == (100, 0)


def test_same_key_same_order_also_concurrently():
    s = make_sku(7000)
    c = Client()
    c.add(s, 3)
    before = order_count()
    first = c.place(order_body(), key="same-key")
    assert first.status == 201, first
    again = c.place(order_body(), key="same-key")
    assert again.status == 201 and again.body == first.body, (first, again)
    assert order_count() == before + 1 and stock(s) == (100, 3)
    # another body with that key: refused, nothing written
    b = written()
    r = c.place(order_body(deliveryNote="경비실에 맡겨 주세요"), key="same-key")
    e = assert_error(r, 422, "idempotency_key_reused")
    assert "same-key" not in e["message"] and r.headers.get("Content-Type").startswith(
        "application/json"), r
    assert written() == b
    # the same key on another shopper's cart is another order
    d = Client()
    d.add(s, 1)
    other = d.place(order_body(), key="same-key")
    assert other.status == 201 and other.body["order"]["number"] != first.body["order"][
        "number"], other

    # two threads at once with one key: one order
    t = Client()
    t.add(s, 2)
    before = order_count()
    results = [None, None]

    def go(i):
        results[i] = t.place(order_body(), key="concurrent-key")

    threads = [threading.Thread(target=go, args=(i,)) for i in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert all(x.status == 201 for x in results), results
    n = results[0].body["order"]["number"]
    assert results[1].body["order"]["number"] == n, results
    assert order_count() == before + 1
    assert env()["order"].db.sql("SELECT count(*) FROM orders WHERE number = '%s'" % n) == [
        ("1",)]
    assert stock(s) == (100, 3 + 1 + 2), stock(s)


def test_empty_cart():
    before = written()
    # no session at all
    r = harness.http("POST", env()["gw"].url + "/api/v1/orders", body=order_body(),
                     headers={"Idempotency-Key": "empty-1"})
    assert_error(r, 409, "cart_empty")
    # a session without a cart, and a member with an empty cart
    c = Client()
    assert c.request("GET", "/api/v1/session").status == 200
    assert_error(c.place(order_body(), key="empty-2"), 409, "cart_empty")
    m, _ = member_client()
    assert_error(m.place(order_body(), key="empty-3"), 409, "cart_empty")
    assert written() == before


def test_bad_fields_write_nothing():
    s = make_sku(9000)
    c = Client()
    c.add(s, 1)
    before = written()
    cases = [
        (order_body(ordererPhone="02-123-4567"), "ordererPhone"),
        (order_body(shippingAddress=shipping(phone="12")), "shippingAddress.phone"),
        (order_body(shippingAddress=shipping(postalCode="1234")), "shippingAddress.postalCode"),
        (order_body(shippingAddress=dict(shipping(), floor=3)), "shippingAddress.floor"),
        (order_body(coupon="X"), "coupon"),
        (order_body(channel="external"), "channel"),
        (order_body(cart={"memberId": 1}), "cart"),
        (order_body(paymentMethod="cash"), "paymentMethod"),
        (order_body(paymentMethod=None), "paymentMethod"),
        (order_body(addressId=1), "addressId"),
        (order_body(addressId="1", shippingAddress=None), "addressId"),
        (order_body(shippingAddress=None), "shippingAddress"),
        (order_body(ordererEmail="nope"), "ordererEmail"),
        (order_body(ordererName=""), "ordererName"),
        (order_body(deliveryNote="가" * 201), "deliveryNote"),
    ]
    for i, (body, field) in enumerate(cases):
        r = c.place(body, key="bad-%d" % i)
        assert_error(r, 400, "invalid_argument", field)
    # not JSON, not an object
    r = c.request("POST", "/api/v1/orders", "paymentMethod=card",
                  headers={"Idempotency-Key": "bad-form",
                           "Content-Type": "application/x-www-form-urlencoded"})
    assert_error(r, 400, "invalid_argument")
    r = c.place([1], key="bad-array")
    assert_error(r, 400, "invalid_argument")
    assert written() == before
    assert stock(s) == (100, 0)
    # the cart is still good for an order
    assert c.place(order_body(), key="good").status == 201


def test_out_of_stock_at_checkout():
    s = make_sku(4000, stock=5)
    c = Client()
    c.add(s, 3)
    set_stock(s, 2)
    before = written()
    r = c.place(order_body(), key="oos")
    assert r.status == 409 and r.body["error"]["code"] == "out_of_stock", r
    assert r.body["error"]["details"] == {"skuId": s["id"], "available": 2}, r
    assert written() == before
    assert stock(s) == (2, 0)
    # someone else takes the stock between the cart's quote and the reservation:
    # the placing that loses gets 409 out_of_stock
    t = make_sku(4000, stock=1)
    buyers = [Client() for _ in range(4)]
    for b in buyers:
        b.add(t, 1)
    results = [None] * 4

    def buy(i):
        results[i] = buyers[i].place(order_body(), key="scarce")

    threads = [threading.Thread(target=buy, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(1 for x in results if x.status == 201) == 1, results
    for x in results:
        if x.status != 201:
            assert x.status == 409 and x.body["error"]["code"] == "out_of_stock", x
    assert stock(t) == (1, 1)


def test_other_member_cannot_read_or_cancel():
    s = make_sku(10000)
    mine, _ = member_client()
    mine.add(s, 1)
    o = mine.place(order_body(), key="mine").body["order"]
    theirs, _ = member_client()
    n = o["number"]
    assert_error(theirs.request("GET", "/api/v1/orders/%s" % n), 404, "not_found")
    assert_error(theirs.request("POST", "/api/v1/orders/%s/cancel" % n), 404, "not_found")
    # a member's order is not reached by phone either
    assert_error(theirs.request("GET", "/api/v1/orders/%s?phone=01098765432" % n), 404,
                 "not_found")
    assert_error(harness.http("POST", env()["gw"].url + "/api/v1/orders/%s/cancel?phone="
                              "01098765432" % n), 404, "not_found")
    assert theirs.request("GET", "/api/v1/orders").body["orders"] == []
    assert mine.request("GET", "/api/v1/orders/%s" % n).body["status"] == "pending_payment"


def test_cancel_gives_the_stock_back():
    s = make_sku(11000, stock=10)
    c, m = member_client()
    c.add(s, 4)
    o = c.place(order_body(), key="to-cancel").body["order"]
    assert stock(s) == (10, 4)
    # unknown keys, wrong types
    assert_error(c.request("POST", "/api/v1/orders/%s/cancel" % o["number"], {"why": "x"}),
                 400, "invalid_argument", "why")
    assert_error(c.request("POST", "/api/v1/orders/%s/cancel" % o["number"], {"reason": 3}),
                 400, "invalid_argument", "reason")
    r = c.request("POST", "/api/v1/orders/%s/cancel" % o["number"], {"reason": "마음이 바뀜"},
                  headers={"Idempotency-Key": "cancel-1"})
    assert r.status == 200, r
    assert r.body["status"] == "cancelled" and r.body["cancelledAt"].endswith("Z"), r.body
    assert r.body["history"][-1]["actor"] == "member:%d" % m["id"], r.body
    assert r.body["history"][-1]["reason"] == "마음이 바뀜", r.body
    assert stock(s) == (10, 0), stock(s)
    # the same key again: the same answer; without it: illegal now
    again = c.request("POST", "/api/v1/orders/%s/cancel" % o["number"], {"reason": "마음이 바뀜"},
                      headers={"Idempotency-Key": "cancel-1"})
    assert again.status == 200 and again.body == r.body, again
    assert_error(c.request("POST", "/api/v1/orders/%s/cancel" % o["number"]), 409,
                 "illegal_transition")
    # a guest cancels with the phone, without a body
    g = Client()
    g.add(s, 2)
    go = g.place(order_body(), key="guest-cancel").body["order"]
    assert stock(s) == (10, 2)
    assert_error(g.request("POST", "/api/v1/orders/%s/cancel" % go["number"]), 400,
                 "invalid_argument", "phone")
    assert_error(g.request("POST", "/api/v1/orders/%s/cancel?phone=01000000000" % go["number"]),
                 404, "not_found")
    r = g.request("POST", "/api/v1/orders/%s/cancel?phone=01098765432" % go["number"])
    assert r.status == 200 and r.body["status"] == "cancelled", r
    assert r.body["history"][-1]["actor"] == "guest", r.body
    assert stock(s) == (10, 0), stock(s)


def test_csrf():
    s = make_sku(6000)
    c = Client()
    c.add(s, 1)
    before = written()
    assert_error(c.place(order_body(), key="csrf", csrf=False), 403, "permission_denied")
    assert_error(c.place(order_body(), key="csrf", headers={"X-CSRF-Token": "0" * 64}), 403,
                 "permission_denied")
    assert written() == before
    o = c.place(order_body(), key="csrf").body["order"]
    assert_error(c.request("POST", "/api/v1/orders/%s/cancel?phone=01098765432" % o["number"],
                           csrf=False), 403, "permission_denied")
    got = c.request("GET", "/api/v1/orders/%s?phone=01098765432" % o["number"])
    assert got.body["status"] == "pending_payment", got


def test_routes_answer_405_and_openapi():
    c = Client()
    r = c.request("DELETE", "/api/v1/orders/20261126-000123")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers.get("Allow") == "GET, HEAD", r.headers
    doc = harness.http("GET", env()["gw"].url + "/api/v1/openapi.json").body
    assert "/api/v1/orders/{number}/cancel" in doc["paths"], list(doc["paths"])


harness.run()
