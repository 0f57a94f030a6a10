"""The payment saga: mall-order follows the payment service's payment.*
events (lib/consumer.h) and moves orders with them, against real catalog,
member, cart, order and payment services and the sandbox PG.  A card
payment makes its order paid (reservation committed, stock taken, cart
emptied); a virtual account makes it awaiting_deposit until the account's
due date, and the deposit makes it paid, or the sweep cancels it when the
deposit never comes; a rejected card leaves the order open for another try;
a cancelled virtual account cancels the order.  Every approved payment ends
in one paid order whatever happens to mall-order: down while payments are
confirmed, killed with SIGKILL mid-stream, two instances at once, the
catalog down (the event waits, it is never skipped).

The payment service reads orders from an order instance that does not
consume ("reader": its MALL_PAYMENT_ADDRS lead nowhere), so the consuming
instance can be stopped and killed while payments go on; all order
instances share one database."""

import datetime
import secrets
import threading
import time

import harness

_env = {"n": 0, "member": 7000}


def rpc(addr, service, method, req, key=None, mutating=False, timeout_ms=20000):
    """(ok, reply-or-error JSON) of service/method at addr (harness.rpc_call)."""
    return harness.rpc_call(addr, service, method, req, key=key, mutating=mutating,
                            timeout_ms=timeout_ms)


def ok_at(svc, service, method, req, **kw):
    good, r = rpc(svc.addr, service, method, req, **kw)
    assert good, (method, req, r)
    return r


# ---- the services ----

def catalog():
    if "catalog" not in _env:
        _env["catalog"] = harness.start_catalog()
        ok_at(_env["catalog"], "mall.catalog.Catalog", "CreateCategory",
              {"slug": "saga-test", "name": "사가 시험"}, mutating=True)
    return _env["catalog"]


def redis():
    """A Redis of our own: the cart's idempotency records ("clear-<number>")
    would meet those of other test programs' orders, numbered alike."""
    if "redis" not in _env:
        _env["redis"] = harness.start_redis()
    return _env["redis"]


def cart():
    if "cart" not in _env:
        _env["cart"] = harness.start_service("cart", env={
            "MALL_CATALOG_ADDRS": catalog().addr, "MALL_RPC_TIMEOUT": "5s",
            "MALL_REDIS_ADDR": redis().addr})
    return _env["cart"]


def member_svc():
    if "member_svc" not in _env:
        _env["member_svc"] = harness.start_service("member")
    return _env["member_svc"]


def sandbox():
    if "pg" not in _env:
        _env["pg"] = harness.start_sandbox_pg()
    return _env["pg"]


def order_env(**settings):
    e = {"MALL_CATALOG_ADDRS": catalog().addr, "MALL_CART_ADDRS": cart().addr,
         "MALL_MEMBER_ADDRS": member_svc().addr, "MALL_RPC_TIMEOUT": "5s",
         "MALL_ORDER_SWEEP_INTERVAL": "1s"}
    e.update(settings)
    return e


def reader():
    """The order instance the payment service and the tests call: it does not
    consume (nothing listens where its MALL_PAYMENT_ADDRS point)."""
    if "reader" not in _env:
        nowhere = "tcp://127.0.0.1:%d" % harness.free_port()
        _env["reader"] = harness.start_service("order", name="order-reader", env=order_env(
            MALL_PAYMENT_ADDRS=nowhere,
            MALL_PAYMENT_EVENTS_ADDRS="tcp://127.0.0.1:%d" % harness.free_port()))
    return _env["reader"]


def payment_svc():
    if "payment" not in _env:
        _env["payment"] = harness.start_service("payment", env={
            "MALL_ORDER_ADDRS": reader().addr, "MALL_PAYMENT_PG_URL": sandbox().url,
            "MALL_PAYMENT_PG_SECRET_KEY": sandbox().secret_key,
            "MALL_PAYMENT_PG_TIMEOUT": "5s", "MALL_RPC_TIMEOUT": "5s"})
    return _env["payment"]


def start_consumer(name="order"):
    """An order instance consuming the payment events, on the reader's database."""
    return harness.start_service("order", name=name, db=reader().db, env=order_env(
        MALL_PAYMENT_ADDRS=payment_svc().addr,
        MALL_PAYMENT_EVENTS_ADDRS=payment_svc().events_addr))


def consumer():
    if "consumer" not in _env:
        _env["consumer"] = start_consumer()
    return _env["consumer"]


# ---- calls ----

def pay(method, req, **kw):
    kw.setdefault("mutating", method == "Cancel")
    return rpc(payment_svc().addr, "mall.payment.PaymentService", method, req, **kw)


def pay_ok(method, req, **kw):
    good, r = pay(method, req, **kw)
    assert good, (method, req, r)
    return r


def get_order(number):
    return ok_at(reader(), "mall.order.OrderService", "GetOrder",
                 {"number": number, "admin": True})


def status(number):
    return get_order(number)["status"]


def wait_status(number, want, timeout=20):
    harness.wait_until(lambda: status(number) == want, timeout,
                       "order %s %s (it is %s)" % (number, want, status(number)))


def amount(m):
    return int((m or {}).get("amount", 0))


# ---- fixtures ----

def unique():
    _env["n"] += 1
    return "%d%03d" % (int(time.time() * 1000) % 10 ** 7, _env["n"])


def sku(stock=10, price=12000):
    n = unique()
    cat = catalog()
    p = ok_at(cat, "mall.catalog.Catalog", "CreateProduct", {
        "slug": "saga-p%s" % n, "name": "한우 등심 %s" % n, "categorySlug": "saga-test",
        "options": [{"name": "중량", "values": ["300g"]}], "published": True}, mutating=True)
    return ok_at(cat, "mall.catalog.Catalog", "CreateSku", {
        "productId": p["id"], "code": "SAGA-%s" % n,
        "optionValues": [{"option": "중량", "value": "300g"}], "price": price,
        "onHand": stock}, mutating=True)


def member_ref():
    _env["member"] += 1
    return {"memberId": _env["member"]}


def place(method="CARD", qty=1, ref=None, s=None):
    """A pending_payment order from a fresh cart: (order, sku, cart ref)."""
    s = s or sku()
    ref = ref or {"guestId": secrets.token_hex(16)}
    ok_at(cart(), "mall.cart.CartService", "AddItem",
          {"cart": ref, "skuId": s["id"], "quantity": qty}, mutating=True)
    o = ok_at(reader(), "mall.order.OrderService", "PlaceOrder", {
        "cart": ref, "paymentMethod": method,
        "shippingAddress": {"recipient": "김민수", "phone": "01012345678",
                            "postalCode": "06236", "address1": "서울특별시 강남구 테헤란로 152",
                            "address2": "10층"},
        "ordererName": "김민수", "ordererPhone": "010-9876-5432",
        "ordererEmail": "buyer@example.com", "channel": "WEB_PC"}, mutating=True)
    assert o["status"] == "pending_payment", o
    return o, s, ref


def confirm_card(o, **fields):
    """The shopper pays o by card at the sandbox PG; Confirm.  The payment."""
    total = amount(o["total"])
    key = sandbox().create_payment(o["number"], total, "card", **fields)
    return pay("Confirm", {"paymentKey": key, "orderId": o["number"], "amount": total})


def stock(s):
    (row,) = catalog().db.sql("SELECT on_hand, reserved FROM sku WHERE id = %d" % s["id"])
    return int(row[0]), int(row[1])


def reservation_state(number):
    return ok_at(catalog(), "mall.catalog.Catalog", "GetReservation",
                 {"orderId": number})["state"]


def cart_items(ref):
    return ok_at(cart(), "mall.cart.CartService", "GetCart", {"cart": ref}).get("items", [])


def history(number, to=None):
    h = get_order(number).get("history", [])
    return [x for x in h if to is None or x["to"] == to]


def order_events(number, type_):
    """How many order.* events of type_ the order outbox holds about number."""
    rows = reader().db.sql(
        "SELECT count(*) FROM outbox WHERE type = '%s' AND "
        "position(convert_to('%s', 'UTF8') in payload) > 0" % (type_, number))
    return int(rows[0][0])


def caught_up():
    """Whether the order database's cursor reached the payment outbox's end."""
    (last,) = payment_svc().db.sql("SELECT CASE WHEN bool_or(pub_seq IS NULL) THEN 9223372036854775807 ELSE coalesce(max(pub_seq), 0) END FROM outbox")[0]
    rows = reader().db.sql("SELECT after_seq FROM event_cursor WHERE source = 'payment'")
    return bool(rows) and int(rows[0][0]) >= int(last)


def paid_once(numbers):
    for n in numbers:
        assert len(history(n, "paid")) == 1, (n, history(n))
        assert order_events(n, "order.paid") == 1, n
        assert reservation_state(n) == "committed", n


def rfc3339(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))


# ---- tests ----

def test_card_payment_makes_the_order_paid():
    consumer()
    ref = member_ref()
    o, s, _ = place(qty=2, ref=ref)
    n = o["number"]
    assert stock(s) == (10, 2)
    good, p = confirm_card(o)
    assert good and p["status"] == "done", p
    wait_status(n, "paid")
    got = get_order(n)
    assert got["paidAt"].endswith("Z"), got
    (h,) = history(n, "paid")
    assert h["from"] == "pending_payment" and h["actor"] == "payment", h
    assert p["paymentKey"] in h["reason"], h
    assert reservation_state(n) == "committed"
    assert stock(s) == (8, 0), stock(s)
    harness.wait_until(lambda: cart_items(ref) == [], 10, "the member's cart emptied")
    assert order_events(n, "order.paid") == 1 and order_events(n, "order.status_changed") == 1
    # a guest's cart too
    o, s, g = place()
    assert confirm_card(o)[0]
    wait_status(o["number"], "paid")
    harness.wait_until(lambda: cart_items(g) == [], 10, "the guest's cart emptied")


def test_payment_takes_only_what_the_order_took_out_of_the_cart():
    consumer()
    for ref in (member_ref(), {"guestId": secrets.token_hex(16)}):
        o, s, _ = place(qty=2, ref=ref)
        # the shopper goes on shopping while the order awaits payment
        other = sku()
        ok_at(cart(), "mall.cart.CartService", "AddItem",
              {"cart": ref, "skuId": s["id"], "quantity": 1}, mutating=True)
        ok_at(cart(), "mall.cart.CartService", "AddItem",
              {"cart": ref, "skuId": other["id"], "quantity": 4}, mutating=True)
        assert confirm_card(o)[0]
        wait_status(o["number"], "paid")

        def left():
            return sorted((int(i["skuId"]), i["quantity"]) for i in cart_items(ref))
        want = sorted([(s["id"], 1), (other["id"], 4)])
        harness.wait_until(lambda: left() == want, 10,
                           "the order's 2 taken out of the cart, the rest kept")
        time.sleep(0.5)  # nothing more is taken later
        assert left() == want, (ref, left())


def test_virtual_account_awaits_the_deposit_then_paid():
    consumer()
    o, s, ref = place(method="VIRTUAL_ACCOUNT", qty=3)
    n, total = o["number"], amount(o["total"])
    key = sandbox().create_payment(n, total, "virtual_account", bank="088", dueInSeconds=86400)
    p = pay_ok("Confirm", {"paymentKey": key, "orderId": n, "amount": total})
    assert p["status"] == "waiting_for_deposit", p
    wait_status(n, "awaiting_deposit")
    got = get_order(n)
    due = rfc3339(p["virtualAccount"]["dueDate"])
    assert rfc3339(got["paymentDueAt"]) == due, (got["paymentDueAt"], due)
    (h,) = history(n, "awaiting_deposit")
    assert h["actor"] == "payment", h
    assert reservation_state(n) == "reserved" and stock(s) == (10, 3)
    assert cart_items(ref) != []
    # the shopper pays; the PG calls back
    assert sandbox().deposit(key).status == 200
    ((secret,),) = payment_svc().db.sql(
        "SELECT va_secret FROM payment WHERE order_number = '%s'" % n)
    d = pay_ok("DepositWebhook", {"secret": secret, "status": "DONE", "orderId": n})
    assert d["status"] == "done", d
    wait_status(n, "paid")
    (h,) = history(n, "paid")
    assert h["from"] == "awaiting_deposit" and h["actor"] == "payment", h
    assert reservation_state(n) == "committed" and stock(s) == (7, 0)
    harness.wait_until(lambda: cart_items(ref) == [], 10, "the cart emptied")


def test_deposit_never_made_is_cancelled_by_the_sweep():
    consumer()
    o, s, _ = place(method="VIRTUAL_ACCOUNT", qty=2)
    n, total = o["number"], amount(o["total"])
    key = sandbox().create_payment(n, total, "virtual_account", dueInSeconds=2)
    pay_ok("Confirm", {"paymentKey": key, "orderId": n, "amount": total})
    assert stock(s) == (10, 2)
    # the order's own window (72 h) gives way to the account's due date
    wait_status(n, "cancelled", timeout=30)
    got = get_order(n)
    assert [h["to"] for h in got["history"]] == ["pending_payment", "awaiting_deposit",
                                                 "cancelled"], got["history"]
    assert got["history"][-1]["actor"] == "system:expiry", got["history"]
    assert reservation_state(n) == "released" and stock(s) == (10, 0), stock(s)
    # the account is closed (expired at the PG at its due date, or closed by
    # the sweep's cancel a moment before), and the payment service knows it
    ((st,),) = payment_svc().db.sql("SELECT status FROM payment WHERE order_number = '%s'" % n)
    assert st in ("expired", "cancelled"), st
    assert sandbox().deposit(key).status == 400


def test_rejected_card_leaves_the_order_open():
    consumer()
    o, s, _ = place()
    n = o["number"]
    good, e = confirm_card(o, outcome="fail")
    assert not good and e["error"]["reason"] == "payment_rejected", e
    harness.wait_until(caught_up, 20, "the order service caught up")
    assert status(n) == "pending_payment" and reservation_state(n) == "reserved"
    assert len(history(n)) == 1, history(n)
    # another card, within the window
    good, p = confirm_card(o)
    assert good and p["status"] == "done", p
    wait_status(n, "paid")
    assert stock(s) == (9, 0)


def test_cancelled_virtual_account_cancels_the_order():
    consumer()
    o, s, _ = place(method="VIRTUAL_ACCOUNT")
    n, total = o["number"], amount(o["total"])
    key = sandbox().create_payment(n, total, "virtual_account", dueInSeconds=86400)
    pay_ok("Confirm", {"paymentKey": key, "orderId": n, "amount": total})
    wait_status(n, "awaiting_deposit")
    c = pay_ok("Cancel", {"orderId": n, "reason": "고객 요청"}, mutating=True)
    assert c["status"] == "cancelled", c
    wait_status(n, "cancelled")
    assert history(n, "cancelled")[0]["actor"] == "payment"
    assert reservation_state(n) == "released" and stock(s) == (10, 0)


def test_orders_paid_after_the_order_service_was_down_once_each():
    svc = consumer()
    orders = [place()[0] for _ in range(5)]
    late, _, _ = place()
    svc.terminate()
    for o in orders + [late]:
        good, p = confirm_card(o)
        assert good and p["status"] == "done", p
    # one order is cancelled before the consumer hears of its payment
    ok_at(reader(), "mall.order.OrderService", "CancelOrder",
          {"number": late["number"], "admin": True, "reason": "재고 확인"}, mutating=True)
    time.sleep(1)
    assert all(status(o["number"]) == "pending_payment" for o in orders)
    svc.start()
    for o in orders:
        wait_status(o["number"], "paid")
    paid_once([o["number"] for o in orders])
    harness.wait_until(caught_up, 20, "the order service caught up")
    # the payment of the cancelled order is noted, the order stays cancelled
    got = get_order(late["number"])
    assert got["status"] == "cancelled", got
    note = got["history"][-1]
    assert note["from"] == "cancelled" and note["to"] == "cancelled", got["history"]
    assert note["actor"] == "payment" and "refunded" in note["reason"], note
    assert reservation_state(late["number"]) == "released"
    assert order_events(late["number"], "order.paid") == 0
    assert "approved after the order was cancelled" in svc.proc.output()


def test_kill9_mid_stream_pays_every_order_once():
    svc = consumer()
    s = sku(stock=100)
    first = [place(s=s)[0]["number"] for _ in range(4)]
    then = [place(s=s)[0] for _ in range(6)]
    for n in first:
        assert confirm_card({"number": n, "total": get_order(n)["total"]})[0]
    for n in first:
        wait_status(n, "paid")
    # the catalog stalls: the consumer's next CommitReservation waits on it,
    # inside the transaction of the event, when the consumer is killed
    catalog().stop()
    try:
        for o in then:
            assert confirm_card(o)[0]
        time.sleep(1)
        svc.kill9()
    finally:
        catalog().cont()
    rest = [o["number"] for o in then]
    assert all(status(n) == "pending_payment" for n in rest)
    svc.start()
    for n in rest:
        wait_status(n, "paid")
    paid_once(first + rest)
    assert stock(s) == (90, 0), stock(s)


def test_catalog_outage_delays_the_payment_never_drops_it():
    svc = consumer()
    o, s, _ = place()
    n = o["number"]
    catalog().terminate()
    try:
        good, p = confirm_card(o)
        assert good and p["status"] == "done", p
        svc.proc.wait_log("could not apply event payment.approved", timeout=20)
        time.sleep(1)
        assert status(n) == "pending_payment"
    finally:
        catalog().start()
    wait_status(n, "paid", timeout=30)
    paid_once([n])
    assert stock(s) == (9, 0)


def test_two_consumers_apply_each_event_once():
    consumer()
    other = start_consumer(name="order-2")
    try:
        s = sku(stock=100)
        orders = [place(s=s)[0] for _ in range(10)]
        results = [None] * len(orders)

        def one(i):
            results[i] = confirm_card(orders[i])
        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(orders))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(good for good, _ in results), results
        numbers = [o["number"] for o in orders]
        for n in numbers:
            wait_status(n, "paid")
        harness.wait_until(caught_up, 20, "the order service caught up")
        paid_once(numbers)
        assert stock(s) == (90, 0), stock(s)
        rows = reader().db.sql("SELECT count(*), count(DISTINCT event_id) FROM inbox "
                               "WHERE source = 'payment'")
        assert rows[0][0] == rows[0][1], rows
    finally:
        other.terminate()


harness.run()
