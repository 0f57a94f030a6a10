"""The cart through the gateway (/api/v1/cart...) against real catalog, member
and cart services, PostgreSQL and Redis: every route; the cart is the
session's (a guest cart kept in the session, a member's own cart), never one
the request names; a guest cart merges into the member's at login (quantities
add), also when the cart service was down at login; a member's cart outlives
the session and logout; stock limits are 409 out_of_stock with
details.available; bad bodies are 400 naming the field and write nothing;
unknown SKUs, lines and coupons are 404; the free-shipping boundary, gifts by
subtotal and by SKU, the coupon rules (expired, minimum spend, exhausted,
percentage cap, members only, one per cart, a coupon that stops applying);
CSRF on every write; concurrent adds lose nothing; a withdrawn product's line
stays, unavailable and outside the subtotal; a repeated Idempotency-Key adds
once.

Products and SKUs are made with the catalog's RPCs and promotions with the
cart service's, through rpc_call.  Promotions are global to the cart
service: a test that makes a gift rule switches it off before it ends, one
that changes the shipping policy puts it back."""

import hashlib
import threading
import time

import harness

_env = {}
PASSWORD = "correct horse 1"
FEE, FREE_FROM = 3000, 30000   # the shipping policy the cart migration sets


def env():
    """One catalog, member and cart service and a gateway, shared by the tests
    of this file (the per-IP login limit is high: every test logs in from
    127.0.0.1)."""
    if not _env:
        cat = harness.start_catalog()
        mem = harness.start_service("member")
        cart = harness.start_service("cart", env={"MALL_CATALOG_ADDRS": cat.addr})
        gw = harness.start_gateway(catalog=[cat], member=[mem], cart=[cart],
                                   env={"MALL_GATEWAY_LOGIN_MAX_PER_IP": "100000"})
        _env.update(cat=cat, mem=mem, cart=cart, gw=gw, n=0)
        ok, r = rpc(cat, "mall.catalog.Catalog", "CreateCategory",
                    {"slug": "cart-test", "name": "장바구니 시험"}, mutating=True)
        assert ok, r
    return _env


def rpc(svc, service, method, req, mutating=False, key=None):
    """(ok, reply-or-error JSON) of one RPC (harness.rpc_call)."""
    return harness.rpc_call(svc, service, method, req, key=key, mutating=mutating)


def cart_rpc(method, req, mutating=True):
    ok, r = rpc(env()["cart"], "mall.cart.CartService", method, req, mutating=mutating)
    assert ok, (method, req, r)
    return r


def uniq(prefix):
    env()["n"] += 1
    return "%s%d%d" % (prefix, env()["n"], int(time.time() * 1000) % 100000)


def make_sku(price, stock=100, name="시험 상품", published=True):
    """A new product with one SKU: {"id", "code", "productId", "slug"}."""
    slug = uniq("cart-p")
    ok, p = rpc(env()["cat"], "mall.catalog.Catalog", "CreateProduct",
                {"slug": slug, "name": name, "categorySlug": "cart-test",
                 "published": published}, mutating=True)
    assert ok, p
    code = slug.upper()
    ok, s = rpc(env()["cat"], "mall.catalog.Catalog", "CreateSku",
                {"productId": p["id"], "code": code, "price": price, "onHand": stock},
                mutating=True)
    assert ok, s
    return {"id": s["id"], "code": code, "productId": p["id"], "slug": slug}


def set_published(sku, published):
    ok, r = rpc(env()["cat"], "mall.catalog.Catalog", "UpdateProduct",
                {"id": sku["productId"], "updateMask": ["published"], "published": published},
                mutating=True)
    assert ok, r


def make_coupon(**kw):
    req = {"code": uniq("C"), "name": "시험 쿠폰", "kind": "fixed", "amount": 1000}
    req.update(kw)
    return cart_rpc("CreateCoupon", req)


class Client:
    """A browser of sorts: keeps the gateway's cookies, sends them back, and
    sends X-CSRF-Token (the mall_csrf cookie) when csrf is on."""

    def __init__(self, gw=None):
        self.gw = gw or env()["gw"]
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

    def cart(self):
        r = self.request("GET", "/api/v1/cart")
        assert r.status == 200, r
        return r.body

    def add(self, sku, qty=1, **kw):
        sid = sku["id"] if isinstance(sku, dict) else sku
        return self.request("POST", "/api/v1/cart/items", {"skuId": sid, "quantity": qty}, **kw)

    def set_qty(self, sku, qty, **kw):
        sid = sku["id"] if isinstance(sku, dict) else sku
        return self.request("PATCH", "/api/v1/cart/items/%d" % sid, {"quantity": qty}, **kw)

    def remove(self, sku, **kw):
        sid = sku["id"] if isinstance(sku, dict) else sku
        return self.request("DELETE", "/api/v1/cart/items/%d" % sid, **kw)

    def coupon(self, code, **kw):
        return self.request("PUT", "/api/v1/cart/coupon", {"code": code}, **kw)

    def login(self, email):
        r = self.request("POST", "/api/v1/session", {"email": email, "password": PASSWORD})
        assert r.status == 200, r
        return r.body["member"]

    def logout(self):
        r = self.request("DELETE", "/api/v1/session")
        assert r.status == 204, r

    def session_key(self):
        return "sess:" + hashlib.sha256(self.cookies["mall_session"].encode()).hexdigest()

    def session_cart_field(self):
        red = harness.Redis()
        try:
            return red("HGET", self.session_key(), "cart")
        finally:
            red.close()


def signup():
    email = uniq("cart") + "@example.com"
    r = harness.http("POST", env()["gw"].url + "/api/v1/members",
                     body={"email": email, "password": PASSWORD, "name": "김민수",
                           "phone": "010-1234-5678",
                           "marketingConsent": {"email": False, "sms": False}})
    assert r.status == 201, r
    return email


def member_client(gw=None):
    email = signup()
    c = Client(gw)
    m = c.login(email)
    return c, m, email


def won(x):
    return {"amount": x, "currency": "KRW"}


def lines(cart):
    """{skuId: quantity} of a cart."""
    return {i["skuId"]: i["quantity"] for i in cart["items"]}


def assert_ok(r):
    assert r.status == 200, r
    assert r.headers.get("Cache-Control") == "no-store", r.headers
    return r.body


def assert_error(r, status, code, field=None):
    assert r.status == status, r
    assert isinstance(r.body, dict) and "error" in r.body, r
    assert r.body["error"]["code"] == code, r
    assert r.body["error"]["message"], r
    if field is not None:
        assert field in (r.body["error"].get("fields") or {}), r
    return r.body["error"]


# --------------------------------------------------------------------------

def test_empty_cart_without_a_session():
    r = harness.http("GET", env()["gw"].url + "/api/v1/cart")
    c = assert_ok(r)
    assert r.headers.get_all("Set-Cookie") is None, r.headers   # a read makes no session
    assert c["items"] == [] and c["gifts"] == [] and c["itemCount"] == 0, c
    assert c["subtotal"] == won(0) and c["total"] == won(0) and c["shippingFee"] == won(0), c
    assert c["freeShippingThreshold"] == won(FREE_FROM), c
    assert c["orderable"] is False and "coupon" not in c, c
    # an anonymous session without a cart: the same, and no cart is made
    anon = Client()
    assert anon.request("GET", "/api/v1/session").status == 200
    assert anon.cart()["items"] == []
    assert anon.session_cart_field() is None
    # removing the coupon of no cart is the empty cart; a line of no cart is 404
    assert assert_ok(anon.request("DELETE", "/api/v1/cart/coupon"))["items"] == []
    assert_error(anon.set_qty(1, 2), 404, "not_found")
    assert_error(anon.remove(1), 404, "not_found")
    assert anon.session_cart_field() is None


def test_guest_add_makes_a_session_and_a_cart():
    sku = make_sku(4500, name="제주 한라봉")
    c = Client()
    r = c.add(sku, 2)
    cart = assert_ok(r)
    assert "mall_session" in c.cookies and "mall_csrf" in c.cookies, r.headers
    guest = c.session_cart_field()
    assert guest is not None and len(guest) == 32, guest
    assert guest.decode() not in r.text   # the guest id never leaves the gateway
    (item,) = cart["items"]
    assert item["id"] == sku["id"] and item["skuId"] == sku["id"], item
    assert item["skuCode"] == sku["code"] and item["productSlug"] == sku["slug"], item
    assert item["name"] == "제주 한라봉" and item["quantity"] == 2, item
    assert item["unitPrice"] == won(4500) and item["lineTotal"] == won(9000), item
    assert item["availability"] == "available" and item["availableQuantity"] == 100, item
    assert cart["subtotal"] == won(9000) and cart["shippingFee"] == won(FEE), cart
    assert cart["total"] == won(9000 + FEE) and cart["itemCount"] == 2, cart
    assert cart["amountToFreeShipping"] == won(FREE_FROM - 9000), cart
    assert cart["orderable"] is True, cart
    # the same SKU again adds to its line
    cart = assert_ok(c.add(sku, 3))
    assert lines(cart) == {sku["id"]: 5}, cart
    assert c.cart() == cart
    assert c.session_cart_field() == guest   # one cart per session


def test_change_and_remove_lines():
    a, b = make_sku(1000), make_sku(2000)
    c = Client()
    assert_ok(c.add(a, 1))
    cart = assert_ok(c.add(b, 2))
    assert [i["skuId"] for i in cart["items"]] == [a["id"], b["id"]], cart   # oldest first
    cart = assert_ok(c.set_qty(a, 7))
    assert lines(cart) == {a["id"]: 7, b["id"]: 2}, cart
    assert cart["subtotal"] == won(7 * 1000 + 2 * 2000), cart
    cart = assert_ok(c.remove(a))
    assert lines(cart) == {b["id"]: 2}, cart
    assert_error(c.remove(a), 404, "not_found")
    assert_error(c.set_qty(a, 1), 404, "not_found")
    assert lines(c.cart()) == {b["id"]: 2}


def test_unknown_sku_is_404():
    c = Client()
    missing = int(env()["cat"].db.sql("SELECT coalesce(max(id), 0) + 1000 FROM sku")[0][0])
    assert_error(c.add(missing, 1), 404, "not_found")


BAD_ADDS = [
    ({"skuId": "SKU", "quantity": 0}, "quantity"),
    ({"skuId": "SKU", "quantity": -1}, "quantity"),
    ({"skuId": "SKU", "quantity": 100}, "quantity"),
    ('{"skuId": SKU, "quantity": 1e12}', "quantity"),
    ({"skuId": "SKU", "quantity": "3"}, "quantity"),
    ({"skuId": "SKU", "quantity": 2.5}, "quantity"),
    ({"skuId": "SKU"}, "quantity"),
    ({"quantity": 1}, "skuId"),
    ({"skuId": 0, "quantity": 1}, "skuId"),
    ({"skuId": -5, "quantity": 1}, "skuId"),
    ({"skuId": "SKU_TEXT", "quantity": 1}, "skuId"),
    ({"skuId": "SKU", "quantity": 1, "price": 1}, "price"),
    ({"skuId": "SKU", "quantity": 1, "memberId": 1}, "memberId"),
    ({"skuId": "SKU", "quantity": 1, "cart": {"memberId": 1}}, "cart"),
    ({"skuId": "SKU", "quantity": 1, "sku_id": 1}, "sku_id"),
    ({"skuId": "x" * 200000, "quantity": 1}, "skuId"),
]


def bad_add_bodies(sku):
    out = []
    for body, field in BAD_ADDS:
        if isinstance(body, str):
            body = body.replace("SKU", str(sku["id"]))
        else:
            body = {k: (sku["id"] if v == "SKU" else (str(sku["id"]) if v == "SKU_TEXT" else v))
                    for k, v in body.items()}
        out.append((body, field))
    return out


def test_bad_bodies_are_400_and_write_nothing():
    sku = make_sku(1000)
    # without a session: 400, and no session is made
    for body, field in bad_add_bodies(sku):
        r = harness.http("POST", env()["gw"].url + "/api/v1/cart/items", body=body,
                         headers={"Content-Type": "application/json"})
        assert_error(r, 400, "invalid_argument", field)
        assert r.headers.get_all("Set-Cookie") is None, (body, r.headers)
    # with a cart: 400, and the cart is unchanged
    c = Client()
    before = assert_ok(c.add(sku, 2))
    for body, field in bad_add_bodies(sku):
        assert_error(c.request("POST", "/api/v1/cart/items", body,
                               headers={"Content-Type": "application/json"}),
                     400, "invalid_argument", field)
    for q in (0, -1, 100, "3", None, 1.5):
        body = {} if q is None else {"quantity": q}
        assert_error(c.request("PATCH", "/api/v1/cart/items/%d" % sku["id"], body), 400,
                     "invalid_argument", "quantity")
    assert_error(c.request("PATCH", "/api/v1/cart/items/%d" % sku["id"],
                           {"quantity": 3, "skuId": sku["id"]}), 400, "invalid_argument",
                 "skuId")
    for bad in ("abc", "0", "-1", "1x", "1.5", "99999999999999999999", "%20"):
        assert_error(c.request("PATCH", "/api/v1/cart/items/" + bad, {"quantity": 1}), 400,
                     "invalid_argument", "itemId")
        assert_error(c.request("DELETE", "/api/v1/cart/items/" + bad), 400,
                     "invalid_argument", "itemId")
    for body, field in (({"code": ""}, "code"), ({}, "code"), ({"code": 5}, "code"),
                        ({"code": "A" * 100000}, "code"), ({"code": "쿠폰"}, "code"),
                        ({"code": "WELCOME", "cart": {"guestId": "0" * 32}}, "cart")):
        assert_error(c.request("PUT", "/api/v1/cart/coupon", body), 400, "invalid_argument",
                     field)
    # not JSON, not an object, not UTF-8 (also inside a string), no JSON type
    for raw, ctype in ((b'{"skuId": %d, "quantity": 1' % sku["id"], "application/json"),
                       (b"[1, 2]", "application/json"),
                       (b'{"skuId": %d, "quantity": 1, "x": "\xff\xfe"}' % sku["id"],
                        "application/json"),
                       (b'{"skuId": %d, "quantity": 1}' % sku["id"], "text/plain"),
                       (b"", "application/json")):
        r = c.request("POST", "/api/v1/cart/items", raw, headers={"Content-Type": ctype})
        assert_error(r, 400, "invalid_argument")
    # a bad Idempotency-Key
    assert_error(c.add(sku, 1, headers={"Idempotency-Key": "b a d"}), 400, "invalid_argument",
                 "Idempotency-Key")
    assert c.cart() == before


def test_above_stock_is_409_out_of_stock():
    sku = make_sku(1000, stock=3)
    c = Client()
    e = assert_error(c.add(sku, 4), 409, "out_of_stock")
    assert e["details"]["available"] == 3, e
    assert c.cart()["items"] == []
    assert_ok(c.add(sku, 2))
    e = assert_error(c.add(sku, 2), 409, "out_of_stock")
    assert e["details"]["available"] == 3, e   # in all, the line may hold 3
    e = assert_error(c.set_qty(sku, 4), 409, "out_of_stock")
    assert e["details"]["available"] == 3, e
    assert lines(c.cart()) == {sku["id"]: 2}
    cart = assert_ok(c.set_qty(sku, 3))
    assert lines(cart) == {sku["id"]: 3}
    # the stock falls below the line: the line stays, short
    harness.mallctl("catalog", "set-stock", sku["code"], "1", catalog=env()["cat"])
    (item,) = c.cart()["items"]
    assert item["availability"] == "insufficient_stock" and item["availableQuantity"] == 1, item
    harness.mallctl("catalog", "set-stock", sku["code"], "0", catalog=env()["cat"])
    cart = c.cart()
    assert cart["items"][0]["availability"] == "sold_out", cart
    assert cart["subtotal"] == won(0) and cart["orderable"] is False, cart


def test_free_shipping_boundary():
    big, small = make_sku(29999), make_sku(1)
    c = Client()
    cart = assert_ok(c.add(big, 1))
    assert cart["subtotal"] == won(29999), cart
    assert cart["shippingFee"] == won(FEE) and cart["amountToFreeShipping"] == won(1), cart
    assert cart["total"] == won(29999 + FEE), cart
    cart = assert_ok(c.add(small, 1))
    assert cart["subtotal"] == won(30000), cart
    assert cart["shippingFee"] == won(0) and cart["amountToFreeShipping"] == won(0), cart
    assert cart["total"] == won(30000), cart
    cart = assert_ok(c.remove(small))
    assert cart["shippingFee"] == won(FEE) and cart["amountToFreeShipping"] == won(1), cart
    # a changed policy shows at once
    cart_rpc("SetShippingPolicy", {"fee": 2500, "freeThreshold": 50000})
    try:
        cart = c.cart()
        assert cart["shippingFee"] == won(2500), cart
        assert cart["amountToFreeShipping"] == won(50000 - 29999), cart
        assert cart["freeShippingThreshold"] == won(50000), cart
    finally:
        cart_rpc("SetShippingPolicy", {"fee": FEE, "freeThreshold": FREE_FROM})


def test_gift_follows_the_subtotal():
    gift = make_sku(9000, stock=50, name="사은품 수건")
    sku = make_sku(40000)
    rule = cart_rpc("CreateGiftRule", {"name": "12만원 이상 수건", "minSubtotal": 120000,
                                       "giftSkuId": gift["id"], "giftQuantity": 1})
    try:
        c = Client()
        cart = assert_ok(c.add(sku, 2))
        assert cart["gifts"] == [], cart
        cart = assert_ok(c.set_qty(sku, 3))   # 120,000: the gift comes
        (g,) = cart["gifts"]
        assert g["skuId"] == gift["id"] and g["quantity"] == 1 and g["ruleId"] == rule["id"], g
        assert g["ruleName"] == "12만원 이상 수건" and g["name"] == "사은품 수건", g
        assert cart["subtotal"] == won(120000), cart   # gifts count 0
        assert gift["id"] not in lines(cart), cart
        cart = assert_ok(c.set_qty(sku, 2))   # 80,000: it goes
        assert cart["gifts"] == [], cart
        assert c.cart()["gifts"] == []
    finally:
        cart_rpc("SetGiftRuleActive", {"id": rule["id"], "active": False})


def test_gift_by_trigger_sku():
    gift = make_sku(3000, stock=50, name="증정 꿀 스틱")
    trigger, other = make_sku(15000), make_sku(5000)
    rule = cart_rpc("CreateGiftRule", {"name": "꿀 사면 스틱", "triggerSkuId": trigger["id"],
                                       "giftSkuId": gift["id"], "giftQuantity": 2})
    try:
        c = Client()
        assert assert_ok(c.add(other, 1))["gifts"] == []
        cart = assert_ok(c.add(trigger, 1))
        (g,) = cart["gifts"]
        assert g["skuId"] == gift["id"] and g["quantity"] == 2, g
        cart = assert_ok(c.remove(trigger))
        assert cart["gifts"] == [], cart
    finally:
        cart_rpc("SetGiftRuleActive", {"id": rule["id"], "active": False})


def test_coupon_errors():
    sku = make_sku(10000)
    c = Client()
    assert_ok(c.add(sku, 1))
    assert_error(c.coupon("NOSUCHCOUPON"), 404, "not_found")
    expired = make_coupon(startsAt="2020-01-01T00:00:00Z", endsAt="2020-01-02T00:00:00Z")
    assert_error(c.coupon(expired["code"]), 409, "coupon_expired")
    later = make_coupon(startsAt="2099-01-01T00:00:00Z")
    assert_error(c.coupon(later["code"]), 409, "coupon_not_started")
    minspend = make_coupon(minSubtotal=50000)
    e = assert_error(c.coupon(minspend["code"]), 409, "coupon_min_spend")
    assert e["details"]["minSubtotal"] == 50000, e
    once = make_coupon(totalLimit=1)
    cart_rpc("RedeemCoupon", {"code": once["code"], "memberId": 0, "orderId": uniq("order-"),
                              "subtotal": 10000})
    assert_error(c.coupon(once["code"]), 409, "coupon_exhausted")
    members = make_coupon(memberOnly=True)
    assert_error(c.coupon(members["code"]), 409, "coupon_members_only")
    cart = c.cart()
    assert "coupon" not in cart and cart["discount"] == won(0), cart
    # a member may use it
    m, _, _ = member_client()
    assert_ok(m.add(sku, 1))
    cart = assert_ok(m.coupon(members["code"]))
    assert cart["coupon"]["applicable"] is True and cart["discount"] == won(1000), cart


def test_coupons_apply_replace_and_remove():
    sku = make_sku(25000)
    pct = make_coupon(kind="percentage", amount=0, percent=10, maxDiscount=2000)
    fixed = make_coupon(amount=3000, name="3천원 할인")
    c = Client()
    assert_ok(c.add(sku, 2))   # 50,000
    cart = assert_ok(c.coupon(pct["code"].lower()))   # codes are case-insensitive
    co = cart["coupon"]
    assert co["code"] == pct["code"] and co["applicable"] is True and co["reason"] == "", co
    assert co["discount"] == won(2000) and cart["discount"] == won(2000), cart   # 10% capped
    assert cart["shippingFee"] == won(0) and cart["total"] == won(48000), cart
    # one coupon per cart: PUT replaces
    cart = assert_ok(c.coupon(fixed["code"]))
    assert cart["coupon"]["code"] == fixed["code"] and cart["discount"] == won(3000), cart
    assert cart["total"] == won(47000), cart
    assert c.cart()["coupon"]["code"] == fixed["code"]
    cart = assert_ok(c.request("DELETE", "/api/v1/cart/coupon"))
    assert "coupon" not in cart and cart["discount"] == won(0), cart
    assert cart["total"] == won(50000), cart
    assert "coupon" not in c.cart()


def test_coupon_that_stops_applying_stays_inapplicable():
    sku = make_sku(20000)
    coupon = make_coupon(amount=5000, minSubtotal=30000)
    c = Client()
    assert_ok(c.add(sku, 2))   # 40,000
    cart = assert_ok(c.coupon(coupon["code"]))
    assert cart["coupon"]["applicable"] is True and cart["discount"] == won(5000), cart
    cart = assert_ok(c.set_qty(sku, 1))   # 20,000: below the minimum
    co = cart["coupon"]
    assert co["code"] == coupon["code"] and co["applicable"] is False, co
    assert co["reason"] == "coupon_min_spend" and co["discount"] == won(0), co
    # what the shopper needs to know: how much the coupon wants
    assert co["minSubtotal"] == won(30000) and "30,000" in co["message"], co
    assert cart["discount"] == won(0) and cart["total"] == won(20000 + FEE), cart
    cart = assert_ok(c.set_qty(sku, 2))   # and back
    assert cart["coupon"]["applicable"] is True and cart["discount"] == won(5000), cart


WRITES = [
    ("POST", "/api/v1/cart/items", lambda s: {"skuId": s["id"], "quantity": 1}),
    ("PATCH", "/api/v1/cart/items/%(id)d", lambda s: {"quantity": 5}),
    ("DELETE", "/api/v1/cart/items/%(id)d", lambda s: None),
    ("PUT", "/api/v1/cart/coupon", lambda s: {"code": s["coupon"]}),
    ("DELETE", "/api/v1/cart/coupon", lambda s: None),
]


def test_cart_writes_need_the_csrf_token():
    sku = make_sku(1000)
    sku["coupon"] = make_coupon()["code"]
    guest = Client()
    assert_ok(guest.add(sku, 2))
    member, _, _ = member_client()
    assert_ok(member.add(sku, 2))
    for c in (guest, member):
        before = c.cart()
        for method, path, body in WRITES:
            p = path % sku
            assert_error(c.request(method, p, body(sku), csrf=False), 403, "permission_denied")
            assert_error(c.request(method, p, body(sku), csrf=False,
                                   headers={"X-CSRF-Token": "0" * 64}), 403,
                         "permission_denied")
        assert c.cart() == before


def test_guest_cart_merges_at_login():
    a, b = make_sku(1000), make_sku(2000)
    email = signup()
    # the member's own cart already holds some of a
    m = Client()
    m.login(email)
    assert_ok(m.add(a, 3))
    m.logout()
    # a guest fills a cart, then logs in
    g = Client()
    assert_ok(g.add(a, 2))
    assert_ok(g.add(b, 1))
    old_session = g.cookies["mall_session"]
    g.login(email)
    assert g.cookies["mall_session"] != old_session
    cart = g.cart()
    assert lines(cart) == {a["id"]: 5, b["id"]: 1}, cart   # quantities add
    assert g.session_cart_field() is None   # merged: the field is gone
    # the old guest session is gone with its cart
    old = Client()
    old.cookies = {"mall_session": old_session}
    assert old.cart()["items"] == []
    # a second login of the same browser merges nothing twice
    g.login(email)
    assert lines(g.cart()) == {a["id"]: 5, b["id"]: 1}
    # a fresh member: the guest cart becomes the member's cart
    g2 = Client()
    assert_ok(g2.add(b, 4))
    g2.login(signup())
    assert lines(g2.cart()) == {b["id"]: 4}


def test_other_members_login_does_not_take_the_cart():
    sku = make_sku(1000)
    c, _, _ = member_client()
    assert_ok(c.add(sku, 2))
    c.login(signup())   # someone else signs in on the same browser
    assert c.cart()["items"] == []


def test_member_cart_outlives_the_session_and_logout():
    gw = harness.start_gateway(name="gateway-short-ttl", catalog=[env()["cat"]],
                               member=[env()["mem"]], cart=[env()["cart"]],
                               env={"MALL_GATEWAY_SESSION_TTL": "2s",
                                    "MALL_GATEWAY_LOGIN_MAX_PER_IP": "100000"})
    sku = make_sku(3000)
    email = signup()
    c = Client(gw)
    c.login(email)
    assert_ok(c.add(sku, 4))
    time.sleep(3)   # the session expires
    assert c.cart()["items"] == []   # no session: an empty cart
    c.login(email)
    assert lines(c.cart()) == {sku["id"]: 4}
    c.logout()
    assert c.cart()["items"] == []
    c.login(email)
    assert lines(c.cart()) == {sku["id"]: 4}
    # the same cart on the other gateway
    d = Client()
    d.login(email)
    assert lines(d.cart()) == {sku["id"]: 4}


def test_merge_waits_for_a_cart_service_that_was_down():
    sku = make_sku(1000)
    email = signup()
    g = Client()
    assert_ok(g.add(sku, 2))
    guest = g.session_cart_field()
    cart = env()["cart"]
    cart.kill9()
    try:
        g.login(email)   # the login succeeds without the cart service
        assert g.session_cart_field() == guest   # the guest cart waits in the session
        r = g.request("GET", "/api/v1/cart")
        assert r.status in (503, 504), r
    finally:
        cart.restart()
    # the next cart request merges it (once the gateway has reconnected)
    harness.wait_until(lambda: g.request("GET", "/api/v1/cart").status == 200, 10,
                       "the gateway reaching the restarted cart service")
    c = g.cart()
    assert lines(c) == {sku["id"]: 2}, c
    assert g.session_cart_field() is None


def test_concurrent_adds_lose_nothing():
    sku = make_sku(100, stock=1000)
    n = 10

    def adds(client, out):
        for _ in range(n):
            out.append(client.add(sku, 1).status)

    def run(clients):
        statuses = []
        threads = [threading.Thread(target=adds, args=(c, statuses)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert statuses == [200] * (n * len(clients)), statuses

    # two sessions of one member
    email = signup()
    c1, c2 = Client(), Client()
    c1.login(email)
    c2.login(email)
    run([c1, c2])
    cart = c1.cart()
    assert lines(cart) == {sku["id"]: 2 * n}, cart
    # two threads of one guest session that has no cart yet: one cart is made
    g = Client()
    assert g.request("GET", "/api/v1/session").status == 200
    run([g, g])
    cart = g.cart()
    assert lines(cart) == {sku["id"]: 2 * n}, cart
    run([g, g])
    assert lines(g.cart()) == {sku["id"]: 4 * n}


def test_withdrawn_product_line_stays_unavailable():
    gone, kept = make_sku(5000), make_sku(7000)
    c, _, _ = member_client()
    assert_ok(c.add(gone, 1))
    assert_ok(c.add(kept, 2))
    set_published(gone, False)
    try:
        cart = c.cart()
        by_sku = {i["skuId"]: i for i in cart["items"]}
        assert set(by_sku) == {gone["id"], kept["id"]}, cart   # not dropped
        assert by_sku[gone["id"]]["availability"] == "unavailable", cart
        assert by_sku[kept["id"]]["availability"] == "available", cart
        assert cart["subtotal"] == won(14000) and cart["orderable"] is False, cart
        assert cart["itemCount"] == 3, cart
        assert_error(c.add(gone, 1), 409, "unavailable")
        # it can still be removed
        cart = assert_ok(c.remove(gone))
        assert lines(cart) == {kept["id"]: 2} and cart["orderable"] is True, cart
    finally:
        set_published(gone, True)


def test_repeated_idempotency_key_adds_once():
    sku = make_sku(1000)
    for c in (Client(), member_client()[0]):
        h = {"Idempotency-Key": "cart-add-once"}
        r1 = assert_ok(c.add(sku, 2, headers=h))
        r2 = assert_ok(c.add(sku, 2, headers=h))
        assert lines(r1) == lines(r2) == {sku["id"]: 2}, (r1, r2)
        assert lines(c.cart()) == {sku["id"]: 2}
        # a new key is a new add
        assert lines(assert_ok(c.add(sku, 2, headers={"Idempotency-Key": "cart-add-2"}))) == \
            {sku["id"]: 4}
        # a used key with another body is refused (guest carts in Redis and
        # member carts in PostgreSQL alike), and changes nothing
        assert_error(c.add(sku, 3, headers=h), 422, "idempotency_key_reused")
        assert lines(c.cart()) == {sku["id"]: 4}


def test_openapi_documents_the_cart_routes():
    r = harness.http("GET", env()["gw"].url + "/api/v1/openapi.json")
    assert r.status == 200, r
    paths = r.body["paths"]
    for path, methods in (("/api/v1/cart", ["get"]), ("/api/v1/cart/items", ["post"]),
                          ("/api/v1/cart/items/{itemId}", ["patch", "delete"]),
                          ("/api/v1/cart/coupon", ["put", "delete"])):
        for m in methods:
            assert m in paths[path], (path, m)
    for name in ("Cart", "CartItem", "Gift", "AppliedCoupon", "Money"):
        assert name in r.body["components"]["schemas"], name


harness.run()
