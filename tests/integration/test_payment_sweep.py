"""The payment service's recovery sweep (services/payment/payment_sweep.c)
against the sandbox PG and real catalog, member, cart and order services
(the order service following payment events).  A payment left 'confirming'
when the shopper never confirms again is settled by the PG's word: killed
with SIGKILL right after the PG confirmed, the restarted service re-sends the
confirm with the same Idempotency-Key (the PG replays, counting one confirm),
the payment ends done and the order paid; a confirm that never reached the
PG is sent by the sweep; a rejection found by the sweep is recorded as
failed; a PG that keeps failing leaves the row for the next pass; an order
cancelled meanwhile is never charged (the payment is only looked up, and
fails); two instances sweeping the same database settle each payment once."""

import secrets
import threading
import time

import harness

_env = {"n": 0}
PAY_ENV = {"MALL_PAYMENT_PG_TIMEOUT": "2s", "MALL_RPC_TIMEOUT": "5s",
           "MALL_PAYMENT_SWEEP_INTERVAL": "300ms", "MALL_PAYMENT_SWEEP_GRACE": "1s"}


def env():
    """One of each service and the sandbox PG, shared by the tests.  The order
    service (which follows the payment service's events) and the payment
    service (which reads orders) need each other: the order service's
    address is picked first."""
    if "pay" not in _env:
        order_addr = "tcp://127.0.0.1:%d" % harness.free_port()
        pg = harness.start_sandbox_pg()
        cat = harness.start_catalog()
        mem = harness.start_service("member")
        cart = harness.start_service("cart", env={"MALL_CATALOG_ADDRS": cat.addr,
                                                  "MALL_RPC_TIMEOUT": "5s"})
        pay_env = dict(PAY_ENV, MALL_ORDER_ADDRS=order_addr, MALL_PAYMENT_PG_URL=pg.url,
                       MALL_PAYMENT_PG_SECRET_KEY=pg.secret_key)
        pay = harness.start_service("payment", env=pay_env)
        order = harness.start_service("order", env={
            "MALL_ORDER_LISTEN": order_addr,
            "MALL_CATALOG_ADDRS": cat.addr, "MALL_CART_ADDRS": cart.addr,
            "MALL_MEMBER_ADDRS": mem.addr, "MALL_PAYMENT_ADDRS": pay.addr,
            "MALL_PAYMENT_EVENTS_ADDRS": pay.events_addr, "MALL_RPC_TIMEOUT": "5s"})
        order.addr = order_addr  # it listens there, not on the port the harness picked
        _env.update(pg=pg, cat=cat, cart=cart, pay=pay, pay_env=pay_env, order=order)
        ok_at(cat, "mall.catalog.Catalog", "CreateCategory",
              {"slug": "sweep-test", "name": "정산 시험"}, mutating=True)
    return _env


def ok_at(svc, service, method, req, **kw):
    good, r = harness.rpc_call(svc, service, method, req, **kw)
    assert good, (method, req, r)
    return r


def pay_call(method, req, timeout_ms=20000):
    return harness.rpc_call(env()["pay"], "mall.payment.PaymentService", method, req,
                            timeout_ms=timeout_ms)


def place_order(price=12000):
    """A pending_payment card order of one line; returns (number, total)."""
    e = env()
    e["n"] += 1
    n = "%d%03d" % (int(time.time() * 1000) % 10 ** 7, e["n"])
    p = ok_at(e["cat"], "mall.catalog.Catalog", "CreateProduct", {
        "slug": "sweep-p%s" % n, "name": "정산 시험 상품 %s" % n, "categorySlug": "sweep-test",
        "published": True}, mutating=True)
    s = ok_at(e["cat"], "mall.catalog.Catalog", "CreateSku", {
        "productId": p["id"], "code": "SWEEP-%s" % n, "price": price, "onHand": 10},
        mutating=True)
    ref = {"guestId": secrets.token_hex(16)}
    ok_at(e["cart"], "mall.cart.CartService", "AddItem",
          {"cart": ref, "skuId": s["id"], "quantity": 1}, mutating=True)
    o = ok_at(e["order"], "mall.order.OrderService", "PlaceOrder", {
        "cart": ref, "paymentMethod": "CARD",
        "shippingAddress": {"recipient": "김민수", "phone": "01012345678",
                            "postalCode": "06236", "address1": "서울특별시 강남구 테헤란로 152"},
        "ordererName": "김민수", "ordererPhone": "010-9876-5432",
        "ordererEmail": "buyer@example.com", "channel": "WEB_PC"}, mutating=True)
    return o["number"], int(o["total"]["amount"])


def order(number):
    return ok_at(env()["order"], "mall.order.OrderService", "GetOrder",
                 {"number": number, "admin": True})


def payment_status(number):
    rows = env()["pay"].db.sql("SELECT status, failure_code FROM payment "
                               "WHERE order_number = '%s'" % number)
    return tuple(rows[0]) if rows else None


def events(number):
    """Types of the payment service's outbox events about order number."""
    rows = env()["pay"].db.sql(
        "SELECT type FROM outbox WHERE position(convert_to('%s', 'UTF8') in payload) > 0 "
        "ORDER BY seq" % number)
    return [t for (t,) in rows]


def confirms(key):
    return env()["pg"].stats()["confirms"].get(key, 0)


def confirm_req(key, number, total):
    return {"paymentKey": key, "orderId": number, "amount": total}


def wait_status(number, want, timeout=30):
    return harness.wait_until(lambda: payment_status(number)
                              and payment_status(number)[0] == want, timeout,
                              "the payment of order %s becoming %s (it is %s)"
                              % (number, want, payment_status(number)))


def wait_order(number, want, timeout=30):
    return harness.wait_until(lambda: order(number)["status"] == want, timeout,
                              "order %s becoming %s" % (number, want))


def paid_entries(o):
    return [h for h in o["history"] if h["to"] == "paid"]


def drain_faults():
    """Uses up the sandbox's pending faults with requests that act on
    nothing (a confirm of no payment), so the next test starts clean."""
    pg = env()["pg"]
    while harness.http("GET", pg.url + "/sandbox/v1/faults").body["faults"]:
        pg.confirm("no-such-payment-key", "no-such-order", 1)


# --------------------------------------------------------------------------

def test_kill9_after_the_pg_confirmed_then_the_sweep_settles_it():
    e = env()
    pay, pg = e["pay"], e["pg"]
    number, total = place_order()
    key = pg.create_payment(number, total, "card")
    # the PG confirms, then takes 1.8 s to answer: the service dies meanwhile
    pg.fault("POST /v1/payments/confirm", when="after", delayMs=1800, count=1)
    t = threading.Thread(target=pay_call, args=("Confirm", confirm_req(key, number, total)),
                         kwargs={"timeout_ms": 4000})
    t.start()
    harness.wait_until(lambda: confirms(key) == 1, 15, "the PG's confirm")
    pay.kill9()
    t.join()
    assert payment_status(number) == ("confirming", ""), payment_status(number)
    assert events(number) == []
    # restarted; nobody confirms again: the sweep does, with the same key
    pay.start()
    wait_order(number, "paid")
    assert payment_status(number) == ("done", ""), payment_status(number)
    assert confirms(key) == 1, pg.stats()
    assert events(number) == ["payment.approved"], events(number)
    assert pg.payment(key).body["status"] == "DONE"
    o = order(number)
    assert len(paid_entries(o)) == 1, o["history"]
    sent = [q for q in pg.requests() if q["path"] == "/v1/payments/confirm"
            and q["idempotencyKey"] == "confirm-%s-%s" % (number, key)]
    assert len(sent) == 2 and sent[1]["replayed"], sent
    assert "payment sweep: payment %s of order %s left confirming is done" % (key, number) \
        in pay.proc.output()
    # the shopper's late retry answers the recorded payment, nothing more
    good, p = pay_call("Confirm", confirm_req(key, number, total))
    assert good and p["status"] == "done", p
    assert confirms(key) == 1 and events(number) == ["payment.approved"]


def test_a_confirm_that_never_reached_the_pg_is_sent_by_the_sweep():
    pg = env()["pg"]
    number, total = place_order()
    key = pg.create_payment(number, total, "easy_pay")
    # refused before acting: the PG has not confirmed anything
    pg.fault("POST /v1/payments/confirm", when="before", status=500, count=1)
    good, r = pay_call("Confirm", confirm_req(key, number, total))
    assert not good and r["error"]["code"] == "unavailable", r
    wait_order(number, "paid")
    assert payment_status(number) == ("done", "")
    assert confirms(key) == 1 and events(number) == ["payment.approved"], events(number)


def test_a_rejection_found_by_the_sweep_is_recorded():
    pg = env()["pg"]
    number, total = place_order()
    key = pg.create_payment(number, total, "card", outcome="fail")
    pg.fault("POST /v1/payments/confirm", when="before", status=500, count=1)
    good, r = pay_call("Confirm", confirm_req(key, number, total))
    assert not good and r["error"]["code"] == "unavailable", r
    wait_status(number, "failed")
    assert payment_status(number) == ("failed", "REJECT_CARD_PAYMENT")
    assert events(number) == ["payment.failed"] and confirms(key) == 1
    # the order waits for another card, as after a rejection Confirm saw
    assert order(number)["status"] == "pending_payment"
    key2 = pg.create_payment(number, total, "card")
    good, p = pay_call("Confirm", confirm_req(key2, number, total))
    assert good and p["status"] == "done", p
    wait_order(number, "paid")


def test_a_pg_that_keeps_failing_leaves_the_row_for_the_next_pass():
    pg = env()["pg"]
    number, total = place_order()
    key = pg.create_payment(number, total, "card")
    # the PG acts but its answers are lost, for the shopper and two sweeps
    pg.fault("POST /v1/payments/confirm", when="after", status=500, count=3)
    good, r = pay_call("Confirm", confirm_req(key, number, total))
    assert not good and r["error"]["code"] == "unavailable", r
    wait_order(number, "paid")
    drain_faults()
    assert confirms(key) == 1 and events(number) == ["payment.approved"]
    sent = [q for q in pg.requests() if q["idempotencyKey"] == "confirm-%s-%s" % (number, key)]
    assert len(sent) >= 4 and [q["status"] for q in sent[:3]] == [500, 500, 500], sent
    assert "is still unsettled (confirm sent again)" in env()["pay"].proc.output()


def test_an_order_cancelled_meanwhile_is_never_charged():
    e = env()
    pg = e["pg"]
    number, total = place_order()
    key = pg.create_payment(number, total, "card")
    # every confirm fails before acting until the order is cancelled: the
    # sweep's re-sends meanwhile change nothing at the PG
    pg.fault("POST /v1/payments/confirm", when="before", status=500, count=100)
    good, r = pay_call("Confirm", confirm_req(key, number, total))
    assert not good and r["error"]["code"] == "unavailable", r
    ok_at(e["order"], "mall.order.OrderService", "CancelOrder",
          {"number": number, "admin": True, "reason": "고객 요청"}, mutating=True)
    wait_status(number, "failed")
    drain_faults()
    assert payment_status(number) == ("failed", "NOT_CONFIRMED"), payment_status(number)
    assert events(number) == ["payment.failed"], events(number)
    assert confirms(key) == 0 and pg.payment(key).body["status"] == "IN_PROGRESS"
    assert order(number)["status"] == "cancelled"
    lookups = [q for q in pg.requests() if q["method"] == "GET" and key in q["path"]]
    assert lookups and all(q["status"] == 200 for q in lookups), lookups


def test_two_instances_sweep_one_database_and_settle_each_payment_once():
    e = env()
    pg = e["pg"]
    second = harness.start_service("payment", db=e["pay"].db, env=e["pay_env"],
                                   name="payment-2")
    orders = []
    for _ in range(6):
        number, total = place_order()
        key = pg.create_payment(number, total, "card")
        orders.append((number, total, key))
    # each confirm acts at the PG and its answer is lost, and so are the
    # answers to the sweeps' re-sends until the faults are used up: six rows
    # confirming, which both instances then find at once
    pg.fault("POST /v1/payments/confirm", when="after", status=500, count=200)
    for number, total, key in orders:
        good, r = harness.rpc_call(second, "mall.payment.PaymentService", "Confirm",
                                   confirm_req(key, number, total))
        assert not good and r["error"]["code"] == "unavailable", r
    assert all(payment_status(n) == ("confirming", "") for n, _, _ in orders)
    drain_faults()
    for number, _, _ in orders:
        wait_order(number, "paid")
    for number, total, key in orders:
        assert payment_status(number) == ("done", ""), (number, payment_status(number))
        assert events(number) == ["payment.approved"], (number, events(number))
        assert confirms(key) == 1, (number, pg.stats())
        assert len(paid_entries(order(number))) == 1
    second.terminate()


harness.run()
