"""Refunds in the order service, against real catalog, member, cart, order
and payment services, the sandbox PG and a gateway: cancelling a paid order
(through the gateway) refunds it in full through PaymentService.Cancel,
restocks it and records it cancelled; the same cancel twice, or four at
once, refunds once at the PG; a paid virtual account needs a refund account
(409 refund_account_required without one, nothing changed); RefundOrder (the
back office, also through mallctl) refunds in part and then the rest
(partially_refunded, then refunded, the PG's balance matching), and refuses
amounts of 0, below 0 or above what is left, and orders not paid, changing
nothing; the payment service down, the PG failing or its answer lost during
a cancel: a clear error, the order still paid, and a retry refunds once; a
payment approved after its order expired is refunded by the sweep, the
order staying cancelled with the refund in its history; an unpaid
virtual-account order cancelled by the shopper or by the sweep has its
account closed at the PG first, so no deposit can come late (and a payment
paid meanwhile is never refunded by that closing); a refund made at
the payment service directly reaches the order through payment.cancelled; a
shipped order cannot be cancelled.

Topology (order_stack.py) as in test_order_saga.py: the payment service
reads orders from an order instance that does not consume ("reader"), so the
consuming instance ("order", which the gateway calls and which reaches the
payment service) can be stopped while payments go on; both share one
database."""

import json
import secrets
import threading
import time

import harness
from order_stack import OrderStack, amount, ok_at, rpc

_env = {}
PHONE = "01098765432"
ACCOUNT = {"bank": "088", "accountNumber": "11012345678", "holderName": "김민수"}


# ---- the services (order_stack.py; "order" is its consumer) ----

_stack = OrderStack("refund", "환불 시험")
catalog, cart, member_svc, sandbox = _stack.catalog, _stack.cart, _stack.member, _stack.sandbox
reader, payment_svc, order_svc = _stack.reader, _stack.payment, _stack.consumer
pay, pay_ok = _stack.pay, _stack.pay_ok
get_order, status, wait_status = _stack.get_order, _stack.status, _stack.wait_status
stock, reservation_state, history = _stack.stock, _stack.reservation_state, _stack.history
order_events, caught_up, unique, sku = (_stack.order_events, _stack.caught_up, _stack.unique,
                                        _stack.sku)


def gateway():
    if "gw" not in _env:
        _env["gw"] = harness.start_gateway(catalog=[catalog()], member=[member_svc()],
                                           cart=[cart()], order=[order_svc()])
    return _env["gw"]


# ---- calls ----

def refund(req, key=None):
    """RefundOrder at the consuming instance: (ok, reply-or-error)."""
    return rpc(order_svc().addr, "mall.order.OrderService", "RefundOrder", req, key=key,
               mutating=key is None)


def cancel(number, body=None, key=None):
    """POST /api/v1/orders/{number}/cancel as the guest (by phone)."""
    h = {"Idempotency-Key": key} if key else None
    return harness.http("POST", gateway().url + "/api/v1/orders/%s/cancel?phone=%s"
                        % (number, PHONE), body=body, headers=h)


def assert_error(r, status_, code, field=None):
    assert r.status == status_, r
    assert isinstance(r.body, dict) and "error" in r.body, r
    assert r.body["error"]["code"] == code, r
    assert r.body["error"]["message"], r
    if field is not None:
        assert field in (r.body["error"].get("fields") or {}), r
    return r.body["error"]


# ---- fixtures ----

def place(method="CARD", qty=1, s=None):
    """A pending_payment guest order (orderer phone PHONE): (order, sku)."""
    s = s or sku()
    ref = {"guestId": secrets.token_hex(16)}
    ok_at(cart(), "mall.cart.CartService", "AddItem",
          {"cart": ref, "skuId": s["id"], "quantity": qty}, mutating=True)
    o = ok_at(reader(), "mall.order.OrderService", "PlaceOrder", {
        "cart": ref, "paymentMethod": method,
        "shippingAddress": {"recipient": "김민수", "phone": "01012345678",
                            "postalCode": "06236", "address1": "서울특별시 강남구 테헤란로 152",
                            "address2": "10층"},
        "ordererName": "김민수", "ordererPhone": PHONE,
        "ordererEmail": "buyer@example.com", "channel": "WEB_PC"}, mutating=True)
    assert o["status"] == "pending_payment", o
    return o, s


def paid(method="CARD", qty=1, s=None):
    """A paid order: (order, sku, paymentKey)."""
    order_svc()
    o, s = place(method, qty, s)
    n, total = o["number"], amount(o["total"])
    if method == "CARD":
        key = sandbox().create_payment(n, total, "card")
        p = pay_ok("Confirm", {"paymentKey": key, "orderId": n, "amount": total})
        assert p["status"] == "done", p
    else:
        key = sandbox().create_payment(n, total, "virtual_account", dueInSeconds=86400)
        pay_ok("Confirm", {"paymentKey": key, "orderId": n, "amount": total})
        assert sandbox().deposit(key).status == 200
        ((secret,),) = payment_svc().db.sql(
            "SELECT va_secret FROM payment WHERE order_number = '%s'" % n)
        d = pay_ok("DepositWebhook", {"secret": secret, "status": "DONE", "orderId": n})
        assert d["status"] == "done", d
    wait_status(n, "paid")
    return get_order(n), s, key


def pg_payment(key):
    r = sandbox().payment(key)
    assert r.status == 200, r
    return r.body


def pg_cancels(key):
    """Cancels the PG made of payment key (replays and refusals not counted)."""
    return sandbox().stats()["cancels"].get(key, 0)


def same_order(a, b):
    """The parts of an order a refused call must leave as they were."""
    keys = ("status", "refunded", "cancelledAt", "history")
    return {k: a.get(k) for k in keys} == {k: b.get(k) for k in keys}


# ---- tests ----

def test_cancel_paid_card_order_refunds_and_restocks():
    o, s, key = paid(qty=2)
    n, total = o["number"], amount(o["total"])
    assert stock(s) == (8, 0) and reservation_state(n) == "committed"
    r = cancel(n, {"reason": "마음이 바뀜"})
    assert r.status == 200, r
    got = r.body
    assert got["status"] == "cancelled" and got["cancelledAt"].endswith("Z"), got
    assert amount(got["refunded"]) == total, got
    h = got["history"][-1]
    assert (h["from"], h["to"], h["actor"], h["reason"]) == ("paid", "cancelled", "guest",
                                                             "마음이 바뀜"), h
    # the PG refunded the whole amount, once
    p = pg_payment(key)
    assert p["status"] == "CANCELED" and p["balanceAmount"] == 0, p
    assert [c["cancelAmount"] for c in p["cancels"]] == [total], p["cancels"]
    assert pg_cancels(key) == 1
    assert pay_ok("GetPayment", {"orderId": n})["status"] == "cancelled"
    # the stock is back
    assert stock(s) == (10, 0), stock(s)
    assert reservation_state(n) == "restocked"
    assert order_events(n, "order.cancelled") == 1
    # payment.cancelled reaches the saga, which finds it recorded
    harness.wait_until(caught_up, 20, "the order service caught up")
    assert len(history(n, "cancelled")) == 1, history(n)
    assert status(n) == "cancelled"


def test_cancel_twice_and_at_once_refunds_once():
    o, s, key = paid()
    n = o["number"]
    first = cancel(n, {"reason": "두 번"}, key="twice")
    assert first.status == 200 and first.body["status"] == "cancelled", first
    again = cancel(n, {"reason": "두 번"}, key="twice")
    assert again.status == 200 and again.body == first.body, again
    assert_error(cancel(n), 409, "illegal_transition")
    assert pg_cancels(key) == 1 and stock(s) == (10, 0)
    # four shoppers' tabs at once, each with its own key
    o, s, key = paid()
    n = o["number"]
    results = []

    def go(i):
        results.append(cancel(n, {"reason": "동시에"}, key="tab-%d" % i))
    threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status for r in results) == [200, 409, 409, 409], results
    for r in results:
        if r.status == 409:
            assert_error(r, 409, "illegal_transition")
    assert pg_cancels(key) == 1, sandbox().stats()
    assert pg_payment(key)["balanceAmount"] == 0
    assert len(history(n, "cancelled")) == 1 and stock(s) == (10, 0)


def test_virtual_account_needs_a_refund_account():
    o, s, key = paid(method="VIRTUAL_ACCOUNT", qty=3)
    n, total = o["number"], amount(o["total"])
    assert stock(s) == (7, 0)
    before = get_order(n)
    e = assert_error(cancel(n, {"reason": "환불"}), 409, "refund_account_required")
    assert "refundAccount" in e["message"], e
    for bad, field in (({"bank": "88a", "accountNumber": "11012345678", "holderName": "김"},
                        "refundAccount.bank"),
                       ({"bank": "088", "accountNumber": "12-34", "holderName": "김"},
                        "refundAccount.accountNumber"),
                       ({"bank": "088", "accountNumber": "11012345678", "holderName": ""},
                        "refundAccount.holderName")):
        assert_error(cancel(n, {"refundAccount": bad}), 400, "invalid_argument", field)
    assert_error(cancel(n, {"refundAccount": dict(ACCOUNT, iban="x")}), 400,
                 "invalid_argument")
    # nothing changed anywhere
    assert same_order(get_order(n), before)
    assert pg_cancels(key) == 0 and pg_payment(key)["status"] == "DONE"
    assert stock(s) == (7, 0)
    r = cancel(n, {"reason": "환불", "refundAccount": ACCOUNT})
    assert r.status == 200 and r.body["status"] == "cancelled", r
    assert amount(r.body["refunded"]) == total, r.body
    p = pg_payment(key)
    assert p["status"] == "CANCELED" and p["balanceAmount"] == 0, p
    va = p["virtualAccount"]
    assert va["refundStatus"] == "COMPLETED", va
    assert va["refundReceiveAccount"] == {"bankCode": "088", "accountNumber": "11012345678",
                                          "holderName": "김민수"}, va
    assert pg_cancels(key) == 1 and stock(s) == (10, 0)


def test_partial_refund_then_the_rest():
    o, s, key = paid(s=sku(price=15000))
    n, total = o["number"], amount(o["total"])
    assert total > 3001, total
    # through mallctl, as the back office's operator would
    req = {"number": n, "amount": 3000, "reason": "부분 환불", "actor": "admin:3"}
    p = harness.mallctl("rpc", "--key", "partial-1", "order", "RefundOrder", json.dumps(req),
                        env={"MALL_ORDER_ADDRS": order_svc().addr})
    got = json.loads(p.stdout)
    assert got["status"] == "partially_refunded" and amount(got["refunded"]) == 3000, got
    h = got["history"][-1]
    assert (h["from"], h["to"], h["actor"]) == ("paid", "partially_refunded", "admin:3"), h
    assert "부분 환불" in h["reason"], h
    pp = pg_payment(key)
    assert pp["status"] == "PARTIAL_CANCELED" and pp["balanceAmount"] == total - 3000, pp
    # the same key again: the same answer, no second refund
    again = harness.mallctl("rpc", "--key", "partial-1", "order", "RefundOrder",
                            json.dumps(req), env={"MALL_ORDER_ADDRS": order_svc().addr})
    assert json.loads(again.stdout) == got
    assert pg_cancels(key) == 1
    # bad amounts change nothing
    before = get_order(n)
    for bad in (0, -500):
        good, e = refund(dict(req, amount=bad))
        assert not good and e["error"]["code"] == "invalid_argument", e
        assert "amount" in e["error"]["fields"], e
    good, e = refund(dict(req, amount=total - 3000 + 1))
    assert not good and e["error"].get("reason") == "exceeds_refundable", e
    assert e["error"]["details"]["refundable"] == total - 3000, e
    p = harness.mallctl("rpc", "order", "RefundOrder", json.dumps(dict(req, amount=total)),
                        env={"MALL_ORDER_ADDRS": order_svc().addr}, check=False)
    assert p.returncode != 0 and "exceeds_refundable" in p.stderr, p
    for bad, field in (({"reason": ""}, "reason"), ({"actor": ""}, "actor"),
                       ({"number": "x"}, "number")):
        good, e = refund(dict(req, **bad))
        assert not good and field in e["error"].get("fields", {}), e
    assert same_order(get_order(n), before)
    assert pg_cancels(key) == 1 and pg_payment(key)["balanceAmount"] == total - 3000
    # the rest
    good, got = refund(dict(req, amount=total - 3000, reason="나머지 환불"))
    assert good, got
    assert got["status"] == "refunded" and amount(got["refunded"]) == total, got
    pp = pg_payment(key)
    assert pp["status"] == "CANCELED" and pp["balanceAmount"] == 0, pp
    assert [c["cancelAmount"] for c in pp["cancels"]] == [3000, total - 3000], pp
    assert pay_ok("GetPayment", {"orderId": n})["status"] == "cancelled"
    good, e = refund(dict(req, amount=1))
    assert not good and e["error"].get("reason") == "not_refundable", e
    # money only: the stock stays sold
    assert stock(s) == (9, 0)
    harness.wait_until(caught_up, 20, "the order service caught up")
    assert status(n) == "refunded" and amount(get_order(n)["refunded"]) == total


def test_refunds_of_unpaid_orders_are_refused():
    order_svc()
    o, s = place()
    n = o["number"]
    good, e = refund({"number": n, "amount": 1000, "reason": "x", "actor": "admin:1"})
    assert not good and e["error"].get("reason") == "not_refundable", e
    assert status(n) == "pending_payment"
    r = cancel(n)
    assert r.status == 200 and r.body["status"] == "cancelled", r
    good, e = refund({"number": n, "amount": 1000, "reason": "x", "actor": "admin:1"})
    assert not good and e["error"].get("reason") == "not_refundable", e
    assert amount(get_order(n).get("refunded")) == 0
    good, e = refund({"number": "20991231-999999", "amount": 1000, "reason": "x",
                      "actor": "admin:1"})
    assert not good and e["error"]["code"] == "not_found", e
    # a virtual-account order is refunded to an account
    o, s, key = paid(method="VIRTUAL_ACCOUNT")
    good, e = refund({"number": o["number"], "amount": 1000, "reason": "x",
                      "actor": "admin:1"})
    assert not good and e["error"].get("reason") == "refund_account_required", e
    good, e = refund({"number": o["number"], "amount": 1000, "reason": "x",
                      "actor": "admin:1", "refundAccount": dict(ACCOUNT, bank="")})
    assert not good and "refundAccount.bank" in e["error"].get("fields", {}), e
    assert status(o["number"]) == "paid" and pg_cancels(key) == 0
    good, got = refund({"number": o["number"], "amount": 1000, "reason": "x",
                        "actor": "admin:1", "refundAccount": ACCOUNT})
    assert good and got["status"] == "partially_refunded", got
    assert pg_payment(key)["balanceAmount"] == amount(o["total"]) - 1000


def test_payment_service_down_during_a_cancel():
    o, s, key = paid()
    n = o["number"]
    before = get_order(n)
    payment_svc().terminate()
    try:
        r = cancel(n, {"reason": "결제 서버 중단"})
        e = assert_error(r, 503, "refund_unavailable")
        assert n in e["message"], e
        assert r.headers.get("Retry-After"), r.headers
        assert same_order(get_order(n), before)
        assert stock(s) == (9, 0) and reservation_state(n) == "committed"
    finally:
        payment_svc().start()
    # the shopper tries again later (the order service reconnects within a
    # moment of the restart; until then the answer is the same 503)
    tries = []

    def retried():
        tries.append(cancel(n, {"reason": "결제 서버 중단"}))
        if tries[-1].status == 503:
            assert_error(tries[-1], 503, "refund_unavailable")
            assert status(n) == "paid"
            return False
        return True
    harness.wait_until(retried, 20, "a retried cancel answered", interval=0.5)
    r = tries[-1]
    assert r.status == 200 and r.body["status"] == "cancelled", r
    assert pg_cancels(key) == 1 and stock(s) == (10, 0)


def test_pg_failure_and_lost_answer_during_a_cancel():
    # the PG fails before acting: nothing refunded, the order stays paid
    o, s, key = paid()
    n = o["number"]
    before = get_order(n)
    sandbox().fault("POST /v1/payments/[^/]+/cancel", status=500, when="before")
    assert_error(cancel(n), 503, "refund_unavailable")
    assert same_order(get_order(n), before) and pg_cancels(key) == 0
    r = cancel(n)
    assert r.status == 200 and r.body["status"] == "cancelled", r
    assert pg_cancels(key) == 1
    # the PG refunds and its answer is lost: the retry gets the PG's stored
    # answer (same key), never a second refund
    o, s, key = paid()
    n = o["number"]
    sandbox().fault("POST /v1/payments/[^/]+/cancel", when="after", drop=True)
    assert_error(cancel(n), 503, "refund_unavailable")
    assert status(n) == "paid" and pg_cancels(key) == 1
    r = cancel(n)
    assert r.status == 200 and r.body["status"] == "cancelled", r
    assert pg_cancels(key) == 1 and pg_payment(key)["balanceAmount"] == 0
    assert stock(s) == (10, 0)


def test_payment_approved_after_expiry_is_refunded_by_the_sweep():
    svc = order_svc()
    svc.terminate()
    try:
        o, s = place(qty=2)
        n, total = o["number"], amount(o["total"])
        key = sandbox().create_payment(n, total, "card")
        p = pay_ok("Confirm", {"paymentKey": key, "orderId": n, "amount": total})
        assert p["status"] == "done", p
        # the window closes before the order service hears of the payment
        reader().db.sql("UPDATE orders SET payment_due_at = now() - interval '1 second' "
                        "WHERE number = '%s'" % n)
        wait_status(n, "cancelled")
        assert stock(s) == (10, 0)
    finally:
        svc.start()
    harness.wait_until(lambda: pg_payment(key)["status"] == "CANCELED", 30,
                       "the late payment refunded at the PG")
    assert pg_cancels(key) == 1 and pg_payment(key)["balanceAmount"] == 0
    harness.wait_until(lambda: amount(get_order(n).get("refunded")) == total, 10,
                       "the order records the refund")
    got = get_order(n)
    assert got["status"] == "cancelled", got
    notes = [h for h in got["history"] if h["from"] == "cancelled" and h["to"] == "cancelled"]
    assert len(notes) == 2, got["history"]
    assert key in notes[0]["reason"] and "to be refunded" in notes[0]["reason"], notes
    assert "refunded automatically" in notes[1]["reason"], notes
    ((state,),) = reader().db.sql("SELECT state FROM refund_due WHERE number = '%s'" % n)
    assert state == "done"
    assert order_events(n, "order.paid") == 0 and stock(s) == (10, 0)
    assert reservation_state(n) == "released"
    # nothing more happens on later sweeps
    time.sleep(2)
    assert pg_cancels(key) == 1 and len(get_order(n)["history"]) == len(got["history"])


def awaiting_deposit():
    """A virtual-account order awaiting its deposit: (order, sku, paymentKey)."""
    order_svc()
    o, s = place(method="VIRTUAL_ACCOUNT", qty=2)
    n, total = o["number"], amount(o["total"])
    key = sandbox().create_payment(n, total, "virtual_account", dueInSeconds=86400)
    pay_ok("Confirm", {"paymentKey": key, "orderId": n, "amount": total})
    wait_status(n, "awaiting_deposit")
    return get_order(n), s, key


def test_cancel_awaiting_deposit_closes_the_virtual_account():
    o, s, key = awaiting_deposit()
    n = o["number"]
    r = cancel(n)
    assert r.status == 200 and r.body["status"] == "cancelled", r
    assert amount(r.body.get("refunded")) == 0, r
    # closed at the PG: the shopper can no longer pay into it
    assert pg_payment(key)["status"] == "CANCELED"
    assert sandbox().deposit(key).status == 400
    assert stock(s) == (10, 0), stock(s)
    assert not reader().db.sql("SELECT 1 FROM refund_due WHERE number = '%s'" % n)


def test_expired_virtual_account_is_closed_before_the_order_is_cancelled():
    o, s, key = awaiting_deposit()
    n = o["number"]
    reader().db.sql("UPDATE orders SET payment_due_at = now() - interval '1 second' "
                    "WHERE number = '%s'" % n)
    wait_status(n, "cancelled")
    assert history(n, "cancelled")[-1]["actor"] == "system:expiry"
    assert pg_payment(key)["status"] == "CANCELED"
    assert sandbox().deposit(key).status == 400  # no deposit can come late
    assert stock(s) == (10, 0), stock(s)
    assert not reader().db.sql("SELECT 1 FROM refund_due WHERE number = '%s'" % n)


def test_an_unpaid_only_cancel_never_refunds():
    """What the order service sends when it cancels an unpaid order: a payment
    paid meanwhile is refused (already_paid), not refunded."""
    o, s, key = paid(method="VIRTUAL_ACCOUNT")
    n = o["number"]
    good, e = pay("Cancel", {"orderId": n, "reason": "주문 취소", "unpaidOnly": True},
                  key="close-" + n)
    assert not good and e["error"].get("reason") == "already_paid", e
    assert pg_cancels(key) == 0 and pg_payment(key)["status"] == "DONE"
    assert status(n) == "paid"


def test_refund_made_at_the_payment_service_reaches_the_order():
    o, s, key = paid(s=sku(price=20000))
    n, total = o["number"], amount(o["total"])
    pay_ok("Cancel", {"orderId": n, "amount": 5000, "reason": "직접 환불"})
    wait_status(n, "partially_refunded")
    assert amount(get_order(n)["refunded"]) == 5000
    pay_ok("Cancel", {"orderId": n, "reason": "직접 환불"})
    wait_status(n, "refunded")
    assert amount(get_order(n)["refunded"]) == total
    # a paid order refunded in full there is cancelled with its stock back
    o, s, key = paid(qty=2)
    n = o["number"]
    pay_ok("Cancel", {"orderId": n, "reason": "직접 환불"})
    wait_status(n, "cancelled")
    assert stock(s) == (10, 0) and reservation_state(n) == "restocked"
    assert history(n, "cancelled")[0]["actor"] == "payment"


def test_preparing_is_cancelled_shipped_is_not():
    o, s, key = paid()
    n = o["number"]
    ok_at(reader(), "mall.order.OrderService", "ChangeStatus",
          {"number": n, "to": "preparing", "actor": "admin:1"}, mutating=True)
    r = cancel(n)
    assert r.status == 200 and r.body["status"] == "cancelled", r
    assert r.body["history"][-1]["from"] == "preparing"
    assert pg_cancels(key) == 1 and stock(s) == (10, 0)
    o, s, key = paid()
    n = o["number"]
    for to in ("preparing", "shipped"):
        ok_at(reader(), "mall.order.OrderService", "ChangeStatus",
              {"number": n, "to": to, "actor": "admin:1"}, mutating=True)
    assert_error(cancel(n), 409, "illegal_transition")
    assert status(n) == "shipped" and pg_cancels(key) == 0 and stock(s) == (9, 0)


harness.run()
