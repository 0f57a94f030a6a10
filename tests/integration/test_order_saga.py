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
from order_stack import OrderStack, amount, ok_at

_env = {"member": 7000}


# ---- the services (order_stack.py) ----

_stack = OrderStack("saga", "사가 시험")
catalog, redis, cart, member_svc = _stack.catalog, _stack.redis, _stack.cart, _stack.member
sandbox, order_env, reader, payment_svc = (_stack.sandbox, _stack.order_env, _stack.reader,
                                           _stack.payment)
start_consumer, consumer = _stack.start_consumer, _stack.consumer
pay, pay_ok = _stack.pay, _stack.pay_ok
get_order, status, wait_status = _stack.get_order, _stack.status, _stack.wait_status
stock, reservation_state, history = _stack.stock, _stack.reservation_state, _stack.history
order_events, caught_up, unique, sku = (_stack.order_events, _stack.caught_up, _stack.unique,
                                        _stack.sku)


# ---- fixtures ----

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


def cart_items(ref):
    return ok_at(cart(), "mall.cart.CartService", "GetCart", {"cart": ref}).get("items", [])


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
