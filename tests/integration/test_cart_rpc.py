"""The cart service at the RPC level, against a real catalog, PostgreSQL and
Redis: what the HTTP tests cannot reach.  Retried changes apply once (a
guest's cart records the idempotency key in Redis with the change, a
member's in PostgreSQL); a guest cart merges into a member's once, its
quantities adding up within stock and 99, a sold-out line kept and flagged;
refused requests write nothing; concurrent adds to one cart lose nothing;
the stock check says why and how many; a catalog that is down is
UNAVAILABLE, not a crash; carts outlive a kill -9 of the service."""

import secrets
import threading
import time

import harness

GUEST_TTL_MS = 2 * 3600 * 1000
_env = {"n": 0}


def catalog():
    if "catalog" not in _env:
        _env["catalog"] = harness.start_catalog()
        cat_ok("CreateCategory", {"slug": "cart-test", "name": "장바구니 시험"})
    return _env["catalog"]


def cart():
    if "cart" not in _env:
        _env["cart"] = harness.start_service(
            "cart", env={"MALL_CATALOG_ADDRS": catalog().addr, "MALL_CART_GUEST_TTL": "2h",
                         "MALL_RPC_TIMEOUT": "2s"})
    return _env["cart"]


def rpc(addr, service, method, req, key=None, mutating=False):
    """(ok, reply-or-error JSON) of service/method at addr (harness.rpc_call)."""
    return harness.rpc_call(addr, service, method, req, key=key, mutating=mutating)


def cat_ok(method, req):
    good, r = rpc(catalog().addr, "mall.catalog.Catalog", method, req,
                  mutating=method != "GetSkus")
    assert good, (method, req, r)
    return r


def call(method, req, key=None, mutating=None, svc=None):
    if mutating is None:
        mutating = method not in ("GetCart", "GetShippingPolicy", "ListCoupons",
                                  "ListGiftRules")
    return rpc((svc or cart()).addr, "mall.cart.CartService", method, req, key=key,
               mutating=mutating)


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


def unique():
    _env["n"] += 1
    return "%d%03d" % (int(time.time() * 1000) % 10 ** 7, _env["n"])


def sku(stock=10, price=1000, published=True, weight="1kg"):
    """A new product with one SKU; returns the SKU (id, code, price...)."""
    n = unique()
    p = cat_ok("CreateProduct", {
        "slug": "cart-p%s" % n, "name": "상품 %s" % n, "categorySlug": "cart-test",
        "images": [{"url": "/media/cart-p%s.jpg" % n, "alt": "상품"}],
        "options": [{"name": "중량", "values": [weight]}], "published": published})
    s = cat_ok("CreateSku", {"productId": p["id"], "code": "CART-%s" % n,
                             "optionValues": [{"option": "중량", "value": weight}],
                             "price": price, "onHand": stock})
    s["product"] = p
    return s


def set_stock(s, on_hand):
    cat_ok("SetStock", {"skuCode": s["code"], "onHand": on_hand})


def guest():
    return {"guestId": secrets.token_hex(16)}


def member():
    _env["member"] = _env.get("member", 1000) + 1
    return {"memberId": _env["member"]}


def add(ref, s, qty=1, **kw):
    return ok("AddItem", {"cart": ref, "skuId": s["id"], "quantity": qty}, **kw)


def quantities(c):
    return {i["skuId"]: i["quantity"] for i in c["items"]}


def get(ref):
    return ok("GetCart", {"cart": ref})


def redis():
    if "redis" not in _env:
        _env["redis"] = harness.Redis()
    return _env["redis"]


def guest_key(ref):
    return "cart:g:" + ref["guestId"]


def money(amount):
    return {"amount": amount, "currency": "KRW"}


# --------------------------------------------------------------------------

def test_an_empty_cart_costs_nothing():
    for ref in (guest(), member()):
        c = get(ref)
        assert c["items"] == [] and c["gifts"] == [], c
        assert c["subtotal"] == money(0) and c["shippingFee"] == money(0), c
        assert c["total"] == money(0) and c["itemCount"] == 0, c
        assert c["orderable"] is False and "coupon" not in c, c
    # a read creates nothing
    assert cart().db.sql("SELECT count(*) FROM cart") == [("0",)]


def test_a_line_is_priced_from_the_catalog():
    s = sku(stock=10, price=12000, weight="1kg")
    ref = guest()
    c = add(ref, s, 2)
    assert len(c["items"]) == 1, c
    it = c["items"][0]
    assert it["id"] == it["skuId"] == s["id"] and it["skuCode"] == s["code"], it
    assert it["productId"] == s["product"]["id"], it
    assert it["productSlug"] == s["product"]["slug"], it
    assert it["name"] == s["product"]["name"] and it["optionText"] == "중량: 1kg", it
    assert it["imageUrl"] == s["product"]["images"][0]["url"], it
    assert it["unitPrice"] == money(12000) and it["lineTotal"] == money(24000), it
    assert it["quantity"] == 2 and it["availability"] == "available", it
    assert it["availableQuantity"] == 10, it
    assert it["addedAt"].endswith("Z") and it["addedAt"][:2] == "20", it
    # the default policy: 3,000 won below 30,000
    assert c["subtotal"] == money(24000) and c["shippingFee"] == money(3000), c
    assert c["total"] == money(27000) and c["amountToFreeShipping"] == money(6000), c
    assert c["freeShippingThreshold"] == money(30000), c
    assert c["itemCount"] == 2 and c["orderable"] is True, c
    assert get(ref) == c


def test_add_item_retried_with_the_same_key_adds_once():
    s = sku(stock=50)
    for ref in (guest(), member()):
        key = "add-%s" % secrets.token_hex(8)
        first = add(ref, s, 2, key=key)
        again = add(ref, s, 2, key=key)
        assert quantities(first) == quantities(again) == {s["id"]: 2}, (first, again)
        assert quantities(get(ref)) == {s["id"]: 2}
        # another key is another add
        assert quantities(add(ref, s, 2)) == {s["id"]: 4}


def test_a_key_reused_for_another_change_is_refused():
    a, b = sku(), sku()
    for ref in (guest(), member()):
        key = "reuse-%s" % secrets.token_hex(8)
        add(ref, a, 1, key=key)
        error("AddItem", {"cart": ref, "skuId": b["id"], "quantity": 1}, "invalid_argument",
              key=key)
        assert quantities(get(ref)) == {a["id"]: 1}


def test_changes_need_an_idempotency_key():
    s = sku()
    for ref in (guest(), member()):
        error("AddItem", {"cart": ref, "skuId": s["id"], "quantity": 1}, "invalid_argument",
              mutating=False)
        assert get(ref)["items"] == []


def test_set_quantity_and_remove_item():
    a, b = sku(stock=5), sku(stock=5)
    for ref in (guest(), member()):
        add(ref, a, 1)
        add(ref, b, 1)
        c = ok("SetItemQuantity", {"cart": ref, "itemId": a["id"], "quantity": 4})
        assert quantities(c) == {a["id"]: 4, b["id"]: 1}, c
        assert [i["skuId"] for i in c["items"]] == [a["id"], b["id"]], c  # oldest first
        e = error("SetItemQuantity", {"cart": ref, "itemId": a["id"], "quantity": 6},
                  "failed_precondition", reason="out_of_stock")
        assert e["details"] == {"available": 5, "inCart": 4}, e
        c = ok("RemoveItem", {"cart": ref, "itemId": a["id"]})
        assert quantities(c) == {b["id"]: 1}, c
        error("RemoveItem", {"cart": ref, "itemId": a["id"]}, "not_found")
        error("SetItemQuantity", {"cart": ref, "itemId": a["id"], "quantity": 1}, "not_found")
        assert quantities(get(ref)) == {b["id"]: 1}


def test_stock_check_says_why_and_how_many():
    few = sku(stock=3)
    ref = guest()
    add(ref, few, 1)
    e = error("AddItem", {"cart": ref, "skuId": few["id"], "quantity": 3},
              "failed_precondition", reason="out_of_stock")
    assert e["details"] == {"available": 3, "inCart": 1}, e
    assert "only 3 left of sku %s; your cart has 1" % few["code"] in e["message"], e
    assert quantities(get(ref)) == {few["id"]: 1}
    add(ref, few, 2)  # exactly the stock is fine

    many = sku(stock=500)
    add(ref, many, 99)
    e = error("AddItem", {"cart": ref, "skuId": many["id"], "quantity": 1},
              "failed_precondition", reason="quantity_limit")
    assert e["details"] == {"available": 99, "inCart": 99}, e

    gone = sku(stock=0)
    e = error("AddItem", {"cart": member(), "skuId": gone["id"], "quantity": 1},
              "failed_precondition", reason="out_of_stock")
    assert e["details"] == {"available": 0, "inCart": 0}, e

    hidden = sku(published=False)
    error("AddItem", {"cart": ref, "skuId": hidden["id"], "quantity": 1},
          "failed_precondition", reason="unavailable")
    error("AddItem", {"cart": ref, "skuId": 987654321, "quantity": 1}, "not_found")
    assert quantities(get(ref)) == {few["id"]: 3, many["id"]: 99}


def test_lines_are_flagged_when_stock_falls():
    s = sku(stock=5)
    ref = member()
    add(ref, s, 3)
    set_stock(s, 2)
    c = get(ref)
    it = c["items"][0]
    assert it["availability"] == "insufficient_stock" and it["availableQuantity"] == 2, it
    assert c["orderable"] is False and c["subtotal"] == money(0), c
    set_stock(s, 0)
    assert get(ref)["items"][0]["availability"] == "sold_out"
    set_stock(s, 5)
    assert get(ref)["orderable"] is True


def test_invalid_cart_refs_write_nothing():
    s = sku()
    bad = [
        ({"memberId": 7, "guestId": secrets.token_hex(16)}, ["cart.guestId"]),
        ({}, ["cart.memberId", "cart.guestId"]),
        (None, ["cart.memberId", "cart.guestId"]),
        ({"guestId": secrets.token_hex(16).upper()}, ["cart.guestId"]),
        ({"guestId": secrets.token_hex(15)}, ["cart.guestId"]),
        ({"guestId": "g" * 32}, ["cart.guestId"]),
        ({"memberId": -3}, ["cart.memberId"]),
    ]
    rows = cart().db.sql("SELECT count(*) FROM cart_item")
    for ref, fields in bad:
        req = {"skuId": s["id"], "quantity": 1}
        if ref is not None:
            req["cart"] = ref
        error("AddItem", req, "invalid_argument", fields)
        error("GetCart", {"cart": ref} if ref is not None else {}, "invalid_argument", fields)
        error("ClearCart", {"cart": ref} if ref is not None else {}, "invalid_argument", fields)
        if ref and ref.get("guestId"):
            assert redis()("EXISTS", "cart:g:" + ref["guestId"]) == 0, ref
    ref = guest()
    error("AddItem", {"cart": ref, "skuId": 0, "quantity": 0}, "invalid_argument",
          ["skuId", "quantity"])
    error("AddItem", {"cart": ref, "skuId": s["id"], "quantity": 100}, "invalid_argument",
          ["quantity"])
    error("SetItemQuantity", {"cart": ref, "itemId": 0, "quantity": 1}, "invalid_argument",
          ["itemId"])
    error("ApplyCoupon", {"cart": ref, "code": "x!"}, "invalid_argument", ["code"])
    assert redis()("EXISTS", guest_key(ref)) == 0
    error("MergeGuestCart", {"guestId": "nope", "memberId": 0}, "invalid_argument",
          ["guestId", "memberId"])
    assert cart().db.sql("SELECT count(*) FROM cart_item") == rows
    assert cart().db.sql("SELECT count(*) FROM merged_guest_cart") == [("0",)]


def test_member_cart_lives_in_postgresql_and_guest_cart_in_redis():
    s = sku()
    m = member()
    add(m, s, 2)
    rows = cart().db.sql("SELECT sku_id, quantity FROM cart_item WHERE member_id = %d"
                         % m["memberId"])
    assert rows == [(str(s["id"]), "2")], rows
    g = guest()
    add(g, s, 3)
    h = redis()("HGETALL", guest_key(g))
    fields = dict(zip(h[::2], h[1::2]))
    assert fields[b"i:%d" % s["id"]] == b"3", fields
    assert int(fields[b"t:%d" % s["id"]]) > 1.6e12, fields
    ttl = redis()("PTTL", guest_key(g))
    assert GUEST_TTL_MS - 60000 < ttl <= GUEST_TTL_MS, ttl
    # a read pushes the expiry back
    redis()("PEXPIRE", guest_key(g), 60000)
    get(g)
    assert redis()("PTTL", guest_key(g)) > GUEST_TTL_MS - 60000


def test_concurrent_adds_lose_nothing():
    s = sku(stock=50)
    for ref in (guest(), member()):
        results = []

        def one():
            # a fresh client gives up when its first connection takes longer
            # than its connect wait (20 sanitized processes starting at once):
            # retried with the same key, as callers do, it still adds once
            key = "concurrent-%s" % secrets.token_hex(8)
            for _ in range(5):
                good, r = call("AddItem", {"cart": ref, "skuId": s["id"], "quantity": 1},
                               key=key)
                if good or r["error"]["code"] != "unavailable":
                    break
                time.sleep(0.2)
            results.append((good, r))
        threads = [threading.Thread(target=one) for _ in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(good for good, _ in results), [r for good, r in results if not good]
        assert quantities(get(ref)) == {s["id"]: 20}, ref


def coupon(**over):
    req = {"code": "CART%s" % unique(), "name": "시험 쿠폰", "kind": "fixed", "amount": 1000}
    req.update(over)
    return ok("CreateCoupon", req)


def test_coupons_apply_and_come_off():
    s = sku(stock=10, price=10000)
    ref = guest()
    add(ref, s, 1)
    error("ApplyCoupon", {"cart": ref, "code": "NOSUCHCOUPON"}, "not_found")
    big = coupon(minSubtotal=50000)
    e = error("ApplyCoupon", {"cart": ref, "code": big["code"].lower()},
              "failed_precondition", reason="coupon_min_spend")
    assert e["details"] == {"minSubtotal": 50000}, e
    assert "coupon" not in get(ref)
    off = coupon(amount=2000)
    c = ok("ApplyCoupon", {"cart": ref, "code": off["code"].lower()})
    assert c["coupon"]["code"] == off["code"] and c["coupon"]["applicable"] is True, c
    assert c["discount"] == money(2000) and c["total"] == money(10000 - 2000 + 3000), c
    assert get(ref) == c
    # a coupon switched off stays on the cart, taking nothing
    ok("UpdateCoupon", {"code": off["code"], "updateMask": ["active"], "active": False})
    c = get(ref)
    assert c["coupon"]["applicable"] is False and c["coupon"]["reason"] == "coupon_inactive", c
    assert c["discount"] == money(0), c
    c = ok("RemoveCoupon", {"cart": ref})
    assert "coupon" not in c and c["discount"] == money(0), c


def test_gifts_come_with_the_cart():
    paid, free = sku(stock=10, price=20000), sku(stock=5, price=5000, weight="200g")
    rule = ok("CreateGiftRule", {"name": "사은품", "triggerSkuId": paid["id"],
                                 "giftSkuId": free["id"], "giftQuantity": 1})
    ref = member()
    c = add(ref, paid, 1)
    assert len(c["gifts"]) == 1, c
    g = c["gifts"][0]
    assert g["skuId"] == free["id"] and g["skuCode"] == free["code"], g
    assert g["name"] == free["product"]["name"] and g["optionText"] == "중량: 200g", g
    assert g["ruleId"] == rule["id"] and g["ruleName"] == "사은품" and g["quantity"] == 1, g
    assert c["subtotal"] == money(20000), c
    ok("SetGiftRuleActive", {"id": rule["id"], "active": False})
    assert get(ref)["gifts"] == []


def test_merge_adds_up_within_stock_and_99():
    capped, plenty, sold_out, fresh = sku(stock=4), sku(stock=500), sku(stock=5), sku(stock=9)
    g, m = guest(), member()
    add(g, capped, 2)
    add(g, plenty, 60)
    add(g, sold_out, 2)
    add(g, fresh, 1)
    add(m, capped, 3)
    add(m, plenty, 50)
    set_stock(sold_out, 0)
    c = ok("MergeGuestCart", {"guestId": g["guestId"], "memberId": m["memberId"]})
    assert quantities(c) == {capped["id"]: 4, plenty["id"]: 99, sold_out["id"]: 2,
                             fresh["id"]: 1}, c
    flags = {i["skuId"]: i["availability"] for i in c["items"]}
    assert flags[sold_out["id"]] == "sold_out", flags
    # the member's lines first, then the guest's in the order they were added
    assert [i["skuId"] for i in c["items"]] == [capped["id"], plenty["id"], sold_out["id"],
                                               fresh["id"]], c
    assert get(m) == c
    assert redis()("EXISTS", guest_key(g)) == 0


def test_merge_twice_adds_once():
    s = sku(stock=50)
    g, m = guest(), member()
    add(g, s, 2)
    key = "merge-%s" % secrets.token_hex(8)
    first = ok("MergeGuestCart", {"guestId": g["guestId"], "memberId": m["memberId"]}, key=key)
    again = ok("MergeGuestCart", {"guestId": g["guestId"], "memberId": m["memberId"]}, key=key)
    assert first == again and quantities(first) == {s["id"]: 2}, (first, again)
    # the guest cart left behind (a crash before it was deleted) merges no more
    add(g, s, 5)
    other = ok("MergeGuestCart", {"guestId": g["guestId"], "memberId": m["memberId"]})
    assert quantities(other) == {s["id"]: 2}, other
    assert quantities(get(m)) == {s["id"]: 2}
    assert cart().db.sql("SELECT count(*) FROM merged_guest_cart WHERE guest_id = '%s'"
                         % g["guestId"]) == [("1",)]


def test_merge_carries_the_guest_coupon_unless_the_member_has_one():
    s = sku(stock=10, price=10000)
    first, second = coupon(), coupon(amount=500)
    g, m = guest(), member()
    add(g, s, 1)
    ok("ApplyCoupon", {"cart": g, "code": first["code"]})
    c = ok("MergeGuestCart", {"guestId": g["guestId"], "memberId": m["memberId"]})
    assert c["coupon"]["code"] == first["code"] and c["discount"] == money(1000), c
    g2 = guest()
    add(g2, s, 1)
    ok("ApplyCoupon", {"cart": g2, "code": second["code"]})
    c = ok("MergeGuestCart", {"guestId": g2["guestId"], "memberId": m["memberId"]})
    assert c["coupon"]["code"] == first["code"] and quantities(c) == {s["id"]: 2}, c


def test_merge_of_a_cart_that_never_existed_changes_nothing():
    s = sku()
    m = member()
    add(m, s, 1)
    before = get(m)
    c = ok("MergeGuestCart", {"guestId": secrets.token_hex(16), "memberId": m["memberId"]})
    assert c == before, (c, before)


def test_clear_cart_removes_lines_and_coupon():
    s = sku(stock=10, price=10000)
    off = coupon()
    for ref in (guest(), member()):
        add(ref, s, 2)
        ok("ApplyCoupon", {"cart": ref, "code": off["code"]})
        c = ok("ClearCart", {"cart": ref})
        assert c["items"] == [] and "coupon" not in c and c["total"] == money(0), c
        assert get(ref) == c
        # clearing an empty cart is fine
        ok("ClearCart", {"cart": ref})
        if "guestId" in ref:
            assert redis()("EXISTS", guest_key(ref)) == 0
        else:
            assert cart().db.sql("SELECT count(*) FROM cart_item WHERE member_id = %d"
                                 % ref["memberId"]) == [("0",)]


def test_catalog_down_is_unavailable_not_a_crash():
    cat = harness.start_catalog(name="catalog-down")
    good, _ = rpc(cat.addr, "mall.catalog.Catalog", "CreateCategory",
                  {"slug": "down", "name": "down"}, mutating=True)
    assert good
    good, p = rpc(cat.addr, "mall.catalog.Catalog", "CreateProduct",
                  {"slug": "down-p", "name": "down", "categorySlug": "down", "published": True},
                  mutating=True)
    assert good, p
    good, s = rpc(cat.addr, "mall.catalog.Catalog", "CreateSku",
                  {"productId": p["id"], "code": "DOWN-1", "price": 100, "onHand": 5},
                  mutating=True)
    assert good, s
    svc = harness.start_service("cart", env={"MALL_CATALOG_ADDRS": cat.addr,
                                             "MALL_RPC_TIMEOUT": "1s"}, name="cart-down")
    ref, empty = guest(), member()
    add(ref, s, 1, svc=svc)
    cat.terminate()
    error("GetCart", {"cart": ref}, "unavailable", svc=svc)
    error("AddItem", {"cart": ref, "skuId": s["id"], "quantity": 1}, "unavailable", svc=svc)
    # an empty cart needs no catalog
    assert ok("GetCart", {"cart": empty}, svc=svc)["items"] == []
    assert svc.alive()
    cat.start()
    c = ok("GetCart", {"cart": ref}, svc=svc)
    assert quantities(c) == {s["id"]: 1}, c


def test_carts_survive_kill_9():
    s = sku(stock=20)
    g, m = guest(), member()
    add(g, s, 3)
    add(m, s, 4)
    before = (get(g), get(m))
    cart().kill9()
    cart().start()
    assert (get(g), get(m)) == before
    assert quantities(add(m, s, 1)) == {s["id"]: 5}


harness.run()
