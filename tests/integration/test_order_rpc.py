"""The order service at the RPC level, against a real catalog, member and
cart service, PostgreSQL and Redis.  Orders are placed from guest and member
carts with snapshots and the cart's own totals; numbers are the KST date and
a per-day counter; a repeated idempotency key is one order and one
reservation; refused placements write nothing anywhere; concurrent buyers of
scarce stock get exactly the stock; access is the owner's (or the guest's
with the phone); cancel gives the stock and the coupon back; the transition
table holds; paid commits the reservation and empties the cart; the sweep
cancels expired orders; a kill -9 during placements leaves no reservation
without an order once the sweep has run."""

import datetime
import re
import secrets
import threading
import time

import harness

_env = {"n": 0, "member": 5000}


def rpc(addr, service, method, req, key=None, mutating=False, timeout_ms=20000):
    """(ok, reply-or-error JSON) of service/method at addr (harness.rpc_call)."""
    return harness.rpc_call(addr, service, method, req, key=key, mutating=mutating,
                            timeout_ms=timeout_ms)


# ---- the services ----

def catalog():
    if "catalog" not in _env:
        _env["catalog"] = harness.start_catalog()
        cat_ok("CreateCategory", {"slug": "order-test", "name": "주문 시험"})
    return _env["catalog"]


def member_svc():
    if "member_svc" not in _env:
        _env["member_svc"] = harness.start_service("member")
    return _env["member_svc"]


def cart():
    if "cart" not in _env:
        _env["cart"] = harness.start_service(
            "cart", env={"MALL_CATALOG_ADDRS": catalog().addr, "MALL_RPC_TIMEOUT": "5s"})
    return _env["cart"]


def start_order(name="order", db=None, **settings):
    """An order instance; db shares another's database (one order database:
    numbers are unique per database, and the catalog's reservations are keyed
    by them)."""
    env = {"MALL_CATALOG_ADDRS": catalog().addr, "MALL_CART_ADDRS": cart().addr,
           "MALL_MEMBER_ADDRS": member_svc().addr, "MALL_RPC_TIMEOUT": "5s",
           # no payment service: a paid order's refund cannot be made
           # (test_order_refund.py has one)
           "MALL_PAYMENT_ADDRS": "tcp://127.0.0.1:%d" % harness.free_port()}
    env.update(settings)
    return harness.start_service("order", db=db, env=env, name=name)


def order_svc():
    if "order" not in _env:
        _env["order"] = start_order()
    return _env["order"]


# ---- calls ----

def cat_ok(method, req):
    good, r = rpc(catalog().addr, "mall.catalog.Catalog", method, req,
                  mutating=method not in ("GetSkus", "GetReservation", "GetStock"))
    assert good, (method, req, r)
    return r


def cart_ok(method, req):
    good, r = rpc(cart().addr, "mall.cart.CartService", method, req,
                  mutating=method not in ("GetCart", "ListCoupons"))
    assert good, (method, req, r)
    return r


def mem_ok(method, req):
    good, r = rpc(member_svc().addr, "mall.member.Member", method, req,
                  mutating=method not in ("GetMember", "ListAddresses"))
    assert good, (method, req, r)
    return r


READS = ("GetOrder", "ListOrders")


def call(method, req, key=None, svc=None, **kw):
    return rpc((svc or order_svc()).addr, "mall.order.OrderService", method, req, key=key,
               mutating=method not in READS, **kw)


def ok(method, req, **kw):
    good, r = call(method, req, **kw)
    assert good, (method, req, r)
    return r


def error(method, req, code, fields=None, reason=None, **kw):
    good, r = call(method, req, **kw)
    assert not good and r["error"]["code"] == code, (method, req, r)
    if fields is not None:
        assert set(r["error"].get("fields", {})) == set(fields), (method, req, r)
    if reason is not None:
        assert r["error"].get("reason") == reason, (method, req, r)
    return r["error"]


# ---- fixtures ----

def unique():
    _env["n"] += 1
    return "%d%03d" % (int(time.time() * 1000) % 10 ** 7, _env["n"])


def money(amount):
    return {"amount": amount, "currency": "KRW"}


def amount(m):
    return int((m or {}).get("amount", 0))


def sku(stock=10, price=12000, name=None):
    n = unique()
    p = cat_ok("CreateProduct", {
        "slug": "order-p%s" % n, "name": name or "한우 등심 %s" % n,
        "categorySlug": "order-test", "options": [{"name": "중량", "values": ["300g"]}],
        "published": True})
    s = cat_ok("CreateSku", {"productId": p["id"], "code": "ORD-%s" % n,
                             "optionValues": [{"option": "중량", "value": "300g"}],
                             "price": price, "onHand": stock})
    s["product"] = p
    return s


def guest():
    return {"guestId": secrets.token_hex(16)}


def member_ref():
    _env["member"] += 1
    return {"memberId": _env["member"]}


def fill(ref, *lines):
    c = None
    for s, qty in lines:
        c = cart_ok("AddItem", {"cart": ref, "skuId": s["id"], "quantity": qty})
    return c


def shipping(**over):
    a = {"recipient": "김민수", "phone": "01012345678", "postalCode": "06236",
         "address1": "서울특별시 강남구 테헤란로 152", "address2": "10층"}
    a.update(over)
    return a


def place_req(ref, **over):
    req = {"cart": ref, "paymentMethod": "CARD", "shippingAddress": shipping(),
           "ordererName": "김민수", "ordererPhone": "010-9876-5432",
           "ordererEmail": "Buyer@Example.com", "deliveryNote": "문 앞에 놓아 주세요",
           "channel": "WEB_PC"}
    req.update(over)
    return req


def reserved(s):
    (row,) = catalog().db.sql("SELECT on_hand, reserved FROM sku WHERE id = %d" % s["id"])
    return int(row[0]), int(row[1])


def reservation(number):
    good, r = rpc(catalog().addr, "mall.catalog.Catalog", "GetReservation",
                  {"orderId": number})
    return r if good else None


def order_count(svc=None):
    return int((svc or order_svc()).db.sql("SELECT count(*) FROM orders")[0][0])


# ---- tests ----

def test_place_from_guest_cart():
    a, b = sku(price=12000), sku(price=8000, name="양념 갈비")
    ref = guest()
    fill(ref, (a, 2), (b, 1))
    quote = cart_ok("GetCart", {"cart": ref})
    o = ok("PlaceOrder", place_req(ref))
    assert re.fullmatch(r"\d{8}-\d{6}", o["number"]), o
    kst = (datetime.datetime.utcnow() + datetime.timedelta(hours=9)).strftime("%Y%m%d")
    assert o["number"].startswith(kst), (o["number"], kst)
    assert o["status"] == "pending_payment" and o.get("memberId", "0") in (0, "0"), o
    for k in ("subtotal", "discount", "shippingFee", "total"):
        assert amount(o.get(k)) == amount(quote.get(k)), (k, o, quote)
    assert amount(o["total"]) == 32000, o  # 24000 + 8000, free shipping at 30000
    lines = o["lines"]
    assert [(l["skuId"], l["quantity"]) for l in lines] == [(a["id"], 2), (b["id"], 1)], lines
    assert lines[0]["name"] == a["product"]["name"] and lines[0]["optionText"], lines
    assert lines[0]["unitPrice"] == money("12000") or amount(lines[0]["unitPrice"]) == 12000
    assert amount(lines[0]["lineTotal"]) == 24000 and not lines[0].get("gift"), lines
    assert o["orderName"] == "%s 외 1건" % a["product"]["name"], o
    assert o["ordererEmail"] == "buyer@example.com", o
    assert o["shippingAddress"]["phone"] == "010-1234-5678", o
    assert o["paymentDueAt"].endswith("Z") and o["placedAt"].endswith("Z"), o
    assert [(h.get("from", "order_status_unspecified"), h["to"], h["actor"])
            for h in o["history"]] == [("order_status_unspecified", "pending_payment",
                                        "guest")], o["history"]
    r = reservation(o["number"])
    assert r and r["state"] == "reserved", r
    assert sorted((l["skuId"], l["quantity"]) for l in r["lines"]) == sorted(
        [(a["id"], 2), (b["id"], 1)]), r
    assert reserved(a) == (10, 2), reserved(a)
    db = order_svc().db
    assert db.sql("SELECT count(*) FROM order_attempt") == [("0",)]
    types = [t for (t,) in db.sql("SELECT type FROM outbox ORDER BY seq")]
    assert "order.placed" in types, types
    # the snapshot stays when the catalog changes
    cat_ok("SetStock", {"skuCode": b["code"], "onHand": 50})
    got = ok("GetOrder", {"number": o["number"], "ordererPhone": "01098765432"})
    assert got["lines"] == o["lines"] and got["total"] == o["total"], got


def test_numbers_count_up_per_day():
    s = sku(stock=20)
    nums = []
    for _ in range(3):
        ref = guest()
        fill(ref, (s, 1))
        nums.append(ok("PlaceOrder", place_req(ref))["number"])
    days = {n[:8] for n in nums}
    seqs = [int(n[9:]) for n in nums]
    assert len(days) == 1 and seqs == [seqs[0], seqs[0] + 1, seqs[0] + 2], nums


def test_member_cart_and_address_book():
    s = sku()
    m = mem_ok("SignUp", {"email": "o%s@example.com" % unique(), "password": "correct horse 1",
                          "name": "회원", "phone": "010-1111-2222",
                          "marketingConsent": {"email": False, "sms": False}})
    other = mem_ok("SignUp", {"email": "o%s@example.com" % unique(),
                              "password": "correct horse 1", "name": "다른 회원",
                              "phone": "010-1111-3333",
                              "marketingConsent": {"email": False, "sms": False}})
    addr = mem_ok("AddAddress", dict(shipping(recipient="이영희"), memberId=m["id"]))
    theirs = mem_ok("AddAddress", dict(shipping(recipient="남"), memberId=other["id"]))
    ref = {"memberId": m["id"]}
    fill(ref, (s, 3))
    req = place_req(ref, addressId=addr["id"])
    del req["shippingAddress"]
    before = order_count()
    e = error("PlaceOrder", dict(req, addressId=theirs["id"]), "not_found", ["addressId"])
    error("PlaceOrder", dict(req, addressId=987654321), "not_found", ["addressId"])
    assert order_count() == before, e
    o = ok("PlaceOrder", req)
    assert int(o["memberId"]) == m["id"], o
    assert o["shippingAddress"]["recipient"] == "이영희", o
    assert o["history"][0]["actor"] == "member:%d" % m["id"], o
    # a guest has no address book; both or neither address is refused
    g = guest()
    fill(g, (s, 1))
    error("PlaceOrder", {k: v for k, v in dict(place_req(g), addressId=addr["id"]).items()
                         if k != "shippingAddress"}, "invalid_argument", ["addressId"])
    error("PlaceOrder", dict(place_req(g), addressId=addr["id"]), "invalid_argument",
          ["addressId"])
    error("PlaceOrder", {k: v for k, v in place_req(g).items() if k != "shippingAddress"},
          "invalid_argument", ["shippingAddress"])


def test_refusals_write_nothing():
    s = sku(stock=5)
    before = order_count()
    ref = guest()
    error("PlaceOrder", place_req(ref), "failed_precondition", reason="cart_empty")
    fill(ref, (s, 2))
    bad = place_req(ref, paymentMethod="PAYMENT_METHOD_UNSPECIFIED", channel="SALES_CHANNEL_UNSPECIFIED",
                    ordererName="", ordererPhone="02-123-4567", ordererEmail="nope",
                    deliveryNote="가" * 201,
                    shippingAddress=shipping(recipient="", phone="12", postalCode="1234",
                                             address1="", address2="나" * 201))
    e = error("PlaceOrder", bad, "invalid_argument")
    assert set(e["fields"]) == {"paymentMethod", "channel", "ordererName", "ordererPhone",
                                "ordererEmail", "deliveryNote", "shippingAddress.recipient",
                                "shippingAddress.phone", "shippingAddress.postalCode",
                                "shippingAddress.address1", "shippingAddress.address2"}, e
    error("PlaceOrder", place_req(ref, ordererName="가" * 51), "invalid_argument",
          ["ordererName"])
    error("PlaceOrder", place_req({"guestId": "xyz"}), "invalid_argument", ["cart.guestId"])
    cat_ok("SetStock", {"skuCode": s["code"], "onHand": 1})
    e = error("PlaceOrder", place_req(ref), "failed_precondition", reason="out_of_stock")
    assert e.get("details") == {"skuId": s["id"], "available": 1}, e
    assert order_count() == before
    assert reserved(s) == (1, 0), reserved(s)
    n = int(order_svc().db.sql("SELECT count(*) FROM order_attempt")[0][0])
    assert n == 0, n  # no number was taken


def test_same_key_concurrently_is_one_order():
    s = sku(stock=10)
    ref = guest()
    fill(ref, (s, 2))
    key = "place-%s" % unique()
    results = []
    threads = [threading.Thread(target=lambda: results.append(call(
        "PlaceOrder", place_req(ref), key=key))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(good for good, _ in results), results
    assert results[0][1]["number"] == results[1][1]["number"], results
    assert reserved(s) == (10, 2), reserved(s)
    number = results[0][1]["number"]
    assert order_svc().db.sql("SELECT count(*) FROM orders WHERE number = '%s'" % number) == [
        ("1",)]
    # later, the same key again: the same order
    again = ok("PlaceOrder", place_req(ref), key=key)
    assert again["number"] == number and reserved(s) == (10, 2)


def test_scarce_stock_concurrent_buyers():
    s = sku(stock=10, price=5000)
    refs = []
    for _ in range(30):
        ref = guest()
        fill(ref, (s, 1))
        refs.append(ref)
    before = order_count()
    results = [None] * 30

    def buy(i):
        results[i] = call("PlaceOrder", place_req(refs[i]))

    threads = [threading.Thread(target=buy, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    good = [r for g, r in results if g]
    bad = [r for g, r in results if not g]
    assert len(good) == 10, (len(good), bad[:3])
    for r in bad:
        assert r["error"]["code"] == "failed_precondition" and r["error"].get(
            "reason") == "out_of_stock", r
    assert order_count() == before + 10
    assert reserved(s) == (10, 10), reserved(s)
    assert len({r["number"] for r in good}) == 10


def test_access_member_and_guest():
    s = sku()
    mine, theirs = member_ref(), member_ref()
    fill(mine, (s, 1))
    o = ok("PlaceOrder", place_req(mine))
    got = ok("GetOrder", {"number": o["number"], "memberId": mine["memberId"]})
    assert got["number"] == o["number"], got
    error("GetOrder", {"number": o["number"], "memberId": theirs["memberId"]}, "not_found")
    # a member's order is not found by phone alone
    error("GetOrder", {"number": o["number"], "ordererPhone": "010-9876-5432"}, "not_found")
    assert ok("GetOrder", {"number": o["number"], "admin": True})["number"] == o["number"]
    lst = ok("ListOrders", {"memberId": mine["memberId"]})
    assert [x["number"] for x in lst["orders"]] == [o["number"]] and int(lst["totalCount"]) == 1
    assert ok("ListOrders", {"memberId": theirs["memberId"]}).get("orders", []) == []
    error("ListOrders", {"memberId": 0}, "invalid_argument", ["memberId"])
    g = guest()
    fill(g, (s, 1))
    go = ok("PlaceOrder", place_req(g))
    assert ok("GetOrder", {"number": go["number"], "ordererPhone": "01098765432"})
    error("GetOrder", {"number": go["number"], "ordererPhone": "010-0000-0000"}, "not_found")
    error("GetOrder", {"number": "20990101-999999", "ordererPhone": "010-9876-5432"},
          "not_found")
    error("GetOrder", {"number": go["number"]}, "invalid_argument", ["ordererPhone"])
    error("GetOrder", {"number": "x", "ordererPhone": "01098765432"}, "invalid_argument",
          ["number"])


def test_cancel_pending_gives_back_stock_and_coupon():
    s = sku(stock=10, price=20000)
    c = cart_ok("CreateCoupon", {"code": "ORD%s" % unique(), "name": "주문 쿠폰",
                                 "kind": "FIXED", "amount": 3000, "totalLimit": 5})
    ref = member_ref()
    fill(ref, (s, 2))
    quote = cart_ok("ApplyCoupon", {"cart": ref, "code": c["code"]})
    o = ok("PlaceOrder", place_req(ref))
    assert o["couponCode"] == c["code"] and amount(o["discount"]) == 3000, o
    assert amount(o["total"]) == amount(quote["total"]) == 37000, (o, quote)
    used = {x["code"]: int(x.get("usedCount", 0))
            for x in cart_ok("ListCoupons", {}).get("coupons", [])}
    assert used[c["code"]] == 1, used
    assert reserved(s) == (10, 2)
    error("CancelOrder", {"number": o["number"], "memberId": ref["memberId"] + 1}, "not_found")
    x = ok("CancelOrder", {"number": o["number"], "memberId": ref["memberId"],
                           "reason": "마음이 바뀜"})
    assert x["status"] == "cancelled" and x["cancelledAt"].endswith("Z"), x
    assert x["history"][-1]["actor"] == "member:%d" % ref["memberId"], x
    assert x["history"][-1]["reason"] == "마음이 바뀜", x
    assert reserved(s) == (10, 0), reserved(s)
    assert reservation(o["number"])["state"] == "released"
    used = {x["code"]: int(x.get("usedCount", 0))
            for x in cart_ok("ListCoupons", {}).get("coupons", [])}
    assert used[c["code"]] == 0, used
    types = [t for (t,) in order_svc().db.sql("SELECT type FROM outbox ORDER BY seq")]
    assert "order.cancelled" in types and "order.status_changed" in types, types
    error("CancelOrder", {"number": o["number"], "memberId": ref["memberId"]},
          "failed_precondition", reason="illegal_transition")


def test_paid_commits_and_clears_cart_then_transitions():
    s = sku(stock=10)
    ref = member_ref()
    fill(ref, (s, 3))
    o = ok("PlaceOrder", place_req(ref))
    n = o["number"]
    error("ChangeStatus", {"number": n, "to": "shipped", "actor": "admin:1"},
          "failed_precondition", reason="illegal_transition")
    p = ok("ChangeStatus", {"number": n, "to": "paid", "actor": "payment"})
    assert p["status"] == "paid" and p["paidAt"].endswith("Z"), p
    assert reservation(n)["state"] == "committed"
    assert reserved(s) == (7, 0), reserved(s)
    assert cart_ok("GetCart", {"cart": ref}).get("items", []) == []
    # cancelling refunds first: without a payment service nothing changes
    error("CancelOrder", {"number": n, "memberId": ref["memberId"]}, "unavailable",
          reason="refund_unavailable")
    assert ok("GetOrder", {"number": n, "admin": True})["status"] == "paid"
    assert reservation(n)["state"] == "committed"
    for to in ("preparing", "shipped", "delivered"):
        assert ok("ChangeStatus", {"number": n, "to": to, "actor": "admin:1"})["status"] == to
    error("ChangeStatus", {"number": n, "to": "paid", "actor": "admin:1"},
          "failed_precondition", reason="illegal_transition")
    error("CancelOrder", {"number": n, "admin": True}, "failed_precondition",
          reason="illegal_transition")
    got = ok("GetOrder", {"number": n, "admin": True})
    assert [h["to"] for h in got["history"]] == ["pending_payment", "paid", "preparing",
                                                 "shipped", "delivered"], got["history"]
    assert got["status"] == "delivered"
    # a guest's cart is emptied too
    g = guest()
    fill(g, (s, 1))
    go = ok("PlaceOrder", place_req(g))
    ok("ChangeStatus", {"number": go["number"], "to": "paid", "actor": "payment"})
    assert cart_ok("GetCart", {"cart": g}).get("items", []) == []
    # a virtual account goes through awaiting_deposit
    v = guest()
    fill(v, (s, 1))
    vo = ok("PlaceOrder", place_req(v, paymentMethod="VIRTUAL_ACCOUNT"))
    assert ok("ChangeStatus", {"number": vo["number"], "to": "awaiting_deposit",
                               "actor": "payment"})["status"] == "awaiting_deposit"
    error("ChangeStatus", {"number": vo["number"], "to": "pending_payment", "actor": "x"},
          "failed_precondition", reason="illegal_transition")
    error("ChangeStatus", {"number": vo["number"], "to": "paid"}, "invalid_argument", ["actor"])


def test_sweep_cancels_expired_orders():
    fast = start_order(name="order-fast", db=order_svc().db, MALL_ORDER_CARD_WINDOW="2s",
                       MALL_ORDER_SWEEP_INTERVAL="1s")
    s = sku(stock=10)
    ref = guest()
    fill(ref, (s, 4))
    o = ok("PlaceOrder", place_req(ref), svc=fast)
    v = guest()
    fill(v, (s, 1))
    vo = ok("PlaceOrder", place_req(v, paymentMethod="VIRTUAL_ACCOUNT"), svc=fast)
    assert reserved(s) == (10, 5)

    def cancelled():
        got = ok("GetOrder", {"number": o["number"], "admin": True}, svc=fast)
        return got if got["status"] == "cancelled" else None

    harness.wait_until(cancelled, timeout=15, what="the expired order to be cancelled")
    got = cancelled()
    assert got["history"][-1]["actor"] == "system:expiry", got["history"]
    assert reserved(s) == (10, 1), reserved(s)
    assert reservation(o["number"])["state"] == "released"
    # the deposit window (72 h) is still open
    assert ok("GetOrder", {"number": vo["number"], "admin": True},
              svc=fast)["status"] == "pending_payment"
    _env["fast"] = fast


def test_sweep_releases_abandoned_attempts():
    """What a placement that died between ReserveStock and its commit leaves
    (an attempt row, a reservation, a coupon use) is given back; an attempt
    without a reservation is kept a while (a late ReserveStock could still
    arrive), then forgotten."""
    fast = _env["fast"]
    s = sku(stock=10)
    c = cart_ok("CreateCoupon", {"code": "ABN%s" % unique(), "name": "버려진 쿠폰",
                                 "kind": "FIXED", "amount": 1000})
    db = fast.db
    day = db.sql("SELECT to_char(now() AT TIME ZONE 'Asia/Seoul', 'YYYYMMDD')")[0][0]
    dead, young, old = ["%s-9%05d" % (day, int(unique()) % 100000 + i) for i in range(3)]
    cat_ok("ReserveStock", {"orderId": dead, "lines": [{"skuId": s["id"], "quantity": 3}]})
    cart_ok("RedeemCoupon", {"code": c["code"], "orderId": dead, "subtotal": 36000})
    assert reserved(s) == (10, 3)
    db.sql("INSERT INTO order_attempt (number, idempotency_key, created_at) VALUES "
           "('%s', 'k1', now() - interval '1 minute'), ('%s', 'k2', now() - interval "
           "'1 minute'), ('%s', 'k3', now() - interval '11 minutes')" % (dead, young, old))
    harness.wait_until(lambda: reserved(s) == (10, 0), timeout=15,
                       what="the abandoned reservation to be released")
    assert reservation(dead)["state"] == "released"
    used = {x["code"]: int(x.get("usedCount", 0))
            for x in cart_ok("ListCoupons", {}).get("coupons", [])}
    assert used[c["code"]] == 0, used
    harness.wait_until(lambda: db.sql("SELECT number FROM order_attempt WHERE number IN "
                                      "('%s', '%s', '%s')" % (dead, young, old))
                       == [(young,)], timeout=15, what="the attempts to be handled")


def test_kill9_during_placements_leaves_no_orphan_reservation():
    svc = start_order(name="order-crash", db=order_svc().db, MALL_ORDER_SWEEP_INTERVAL="1s",
                      MALL_RPC_TIMEOUT="2s")
    s = sku(stock=200, price=1000)
    refs = []
    for _ in range(40):
        ref = guest()
        fill(ref, (s, 2))
        refs.append(ref)
    stop = threading.Event()

    def buyer(i):
        call("PlaceOrder", place_req(refs[i]), svc=svc, timeout_ms=3000)

    threads = [threading.Thread(target=buyer, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    time.sleep(0.25)
    svc.kill9()
    stop.set()
    for t in threads:
        t.join()
    svc.start()
    # the grace (2 x 2 s + 1 s) and a sweep or two

    def consistent():
        open_qty = int(svc.db.sql(
            "SELECT coalesce(sum(l.quantity), 0) FROM order_line l JOIN orders o "
            "ON o.id = l.order_id WHERE o.status IN ('pending_payment', 'awaiting_deposit') "
            "AND l.sku_id = %d" % s["id"])[0][0])
        return reserved(s)[1] == open_qty

    harness.wait_until(consistent, timeout=30, what="reserved stock to match open orders")
    # nothing reserved for a number that has no order
    numbers = {n for (n,) in svc.db.sql("SELECT number FROM orders")}
    rows = catalog().db.sql(
        "SELECT r.order_id FROM reservation r JOIN reservation_line l "
        "ON l.order_id = r.order_id WHERE r.state = 'reserved' AND l.sku_id = %d" % s["id"])
    orphans = [n for (n,) in rows if n not in numbers]
    assert orphans == [], orphans
    placed = int(svc.db.sql("SELECT count(*) FROM order_line WHERE sku_id = %d" % s["id"])[0][0])
    print("kill -9 test: %d of 40 placements committed" % placed)


harness.run()
