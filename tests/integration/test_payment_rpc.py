"""The payment service at the RPC level, against the sandbox PG (the real
libcurl path) and real catalog, member, cart and order services.  Confirm
answers the PG's payment and records it with its event once, whatever is
repeated (sequential, concurrent, after a timeout, after a kill -9 while
the PG's answer was on its way); a tampered amount never reaches the PG; a
virtual account is paid by the deposit callback, verified by its secret and
a re-query; rejections are recorded; refunds go through the PG's cancel;
secrets never reach pg_exchange."""

import json
import secrets
import threading
import time

import harness

_env = {"n": 0}


def rpc(addr, service, method, req, key=None, mutating=False, timeout_ms=20000):
    """(ok, reply-or-error JSON) of service/method at addr (harness.rpc_call)."""
    return harness.rpc_call(addr, service, method, req, key=key, mutating=mutating,
                            timeout_ms=timeout_ms)


# ---- the services ----

def catalog():
    if "catalog" not in _env:
        _env["catalog"] = harness.start_catalog()
        ok_at(_env["catalog"], "mall.catalog.Catalog", "CreateCategory",
              {"slug": "pay-test", "name": "결제 시험"}, mutating=True)
    return _env["catalog"]


def cart():
    if "cart" not in _env:
        _env["cart"] = harness.start_service(
            "cart", env={"MALL_CATALOG_ADDRS": catalog().addr, "MALL_RPC_TIMEOUT": "5s"})
    return _env["cart"]


def order_svc():
    if "order" not in _env:
        member = harness.start_service("member")
        _env["order"] = harness.start_service("order", env={
            "MALL_CATALOG_ADDRS": catalog().addr, "MALL_CART_ADDRS": cart().addr,
            "MALL_MEMBER_ADDRS": member.addr, "MALL_RPC_TIMEOUT": "5s"})
    return _env["order"]


def sandbox():
    if "pg" not in _env:
        _env["pg"] = harness.start_sandbox_pg()
    return _env["pg"]


def payment_svc():
    if "payment" not in _env:
        _env["payment"] = harness.start_service("payment", env={
            "MALL_ORDER_ADDRS": order_svc().addr, "MALL_PAYMENT_PG_URL": sandbox().url,
            "MALL_PAYMENT_PG_SECRET_KEY": sandbox().secret_key,
            "MALL_PAYMENT_PG_TIMEOUT": "2s", "MALL_RPC_TIMEOUT": "5s"})
    return _env["payment"]


def ok_at(svc, service, method, req, **kw):
    good, r = rpc(svc.addr, service, method, req, **kw)
    assert good, (method, req, r)
    return r


def call(method, req, **kw):
    kw.setdefault("mutating", method == "Cancel")
    return rpc(payment_svc().addr, "mall.payment.PaymentService", method, req, **kw)


def ok(method, req, **kw):
    good, r = call(method, req, **kw)
    assert good, (method, req, r)
    return r


def error(method, req, code, reason=None, **kw):
    good, r = call(method, req, **kw)
    assert not good and r["error"]["code"] == code, (method, req, r)
    if reason is not None:
        assert r["error"].get("reason") == reason, (method, req, r)
    return r["error"]


def amount(m):
    return int((m or {}).get("amount", 0))


# ---- fixtures ----

def place_order(price=12000, method="CARD"):
    """A pending_payment order of one line; returns (number, total)."""
    _env["n"] += 1
    n = "%d%03d" % (int(time.time() * 1000) % 10 ** 7, _env["n"])
    cat = catalog()
    p = ok_at(cat, "mall.catalog.Catalog", "CreateProduct", {
        "slug": "pay-p%s" % n, "name": "한우 등심 %s" % n, "categorySlug": "pay-test",
        "options": [{"name": "중량", "values": ["300g"]}], "published": True}, mutating=True)
    s = ok_at(cat, "mall.catalog.Catalog", "CreateSku", {
        "productId": p["id"], "code": "PAY-%s" % n,
        "optionValues": [{"option": "중량", "value": "300g"}], "price": price, "onHand": 10},
        mutating=True)
    ref = {"guestId": secrets.token_hex(16)}
    ok_at(cart(), "mall.cart.CartService", "AddItem",
          {"cart": ref, "skuId": s["id"], "quantity": 1}, mutating=True)
    o = ok_at(order_svc(), "mall.order.OrderService", "PlaceOrder", {
        "cart": ref, "paymentMethod": method,
        "shippingAddress": {"recipient": "김민수", "phone": "01012345678",
                            "postalCode": "06236", "address1": "서울특별시 강남구 테헤란로 152",
                            "address2": "10층"},
        "ordererName": "김민수", "ordererPhone": "010-9876-5432",
        "ordererEmail": "buyer@example.com", "channel": "WEB_PC"}, mutating=True)
    return o["number"], amount(o["total"])


def events(number):
    """Types of the payment service's outbox events about order number."""
    rows = payment_svc().db.sql(
        "SELECT type FROM outbox WHERE position(convert_to('%s', 'UTF8') in payload) > 0 "
        "ORDER BY seq" % number)
    return [t for (t,) in rows]


def confirms(key):
    return sandbox().stats()["confirms"].get(key, 0)


def confirm_req(key, number, total):
    return {"paymentKey": key, "orderId": number, "amount": total}


# ---- tests ----

def test_card_confirm_records_payment_and_event():
    number, total = place_order(price=15000)
    key = sandbox().create_payment(number, total, "card")
    p = ok("Confirm", confirm_req(key, number, total))
    assert p["status"] == "done" and p["method"] == "card", p
    assert p["paymentKey"] == key and p["orderId"] == number, p
    assert amount(p["amount"]) == total and amount(p["balance"]) == total, p
    assert p["approvedAt"].endswith("Z") and p["card"]["number"], p
    assert "virtualAccount" not in p, p
    assert confirms(key) == 1
    assert events(number) == ["payment.approved"], events(number)
    got = ok("GetPayment", {"orderId": number})
    assert got == p, (got, p)
    reqs = [r for r in sandbox().requests() if r["path"] == "/v1/payments/confirm"]
    assert reqs[-1]["idempotencyKey"] == "confirm-%s-%s" % (number, key), reqs[-1]
    rows = payment_svc().db.sql(
        "SELECT method, path, idempotency_key, status FROM pg_exchange ORDER BY id")
    assert ("POST", "/v1/payments/confirm", "confirm-%s-%s" % (number, key), "200") in rows, rows
    error("GetPayment", {"orderId": "20000101-999999"}, "not_found")


def test_tampered_amount_never_reaches_the_pg():
    number, total = place_order(price=20000)
    key = sandbox().create_payment(number, total, "card")
    before = len(sandbox().requests())
    for bad in (total - 1000, 100, 0, -5):
        e = error("Confirm", confirm_req(key, number, bad), "failed_precondition",
                  "amount_mismatch")
        assert e["details"]["orderTotal"] == total, e
    assert confirms(key) == 0 and len(sandbox().requests()) == before
    assert events(number) == []
    error("Confirm", confirm_req(key, "20000101-999999", total), "not_found")
    error("Confirm", confirm_req("", number, total), "invalid_argument")


def test_confirm_twice_and_concurrently_confirms_once():
    number, total = place_order()
    key = sandbox().create_payment(number, total, "card")
    first = ok("Confirm", confirm_req(key, number, total))
    again = ok("Confirm", confirm_req(key, number, total))
    assert again == first and confirms(key) == 1
    # ten at once, on a fresh order
    number, total = place_order()
    key = sandbox().create_payment(number, total, "easy_pay", provider="카카오페이")
    results = [None] * 10

    def one(i):
        results[i] = call("Confirm", confirm_req(key, number, total))
    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(good for good, _ in results), results
    replies = [r for _, r in results]
    assert all(r == replies[0] for r in replies), replies
    assert replies[0]["status"] == "done" and replies[0]["easyPayProvider"] == "카카오페이"
    assert confirms(key) == 1, sandbox().stats()
    assert events(number) == ["payment.approved"], events(number)
    # another payment key of a paid order is refused, the PG not called
    other = sandbox().create_payment(number + "x", total, "card")
    error("Confirm", confirm_req(other, number, total), "failed_precondition", "already_paid")


def test_virtual_account_and_deposit_webhook():
    number, total = place_order(price=33000, method="VIRTUAL_ACCOUNT")
    key = sandbox().create_payment(number, total, "virtual_account", bank="004",
                                   dueInSeconds=86400)
    p = ok("Confirm", confirm_req(key, number, total))
    assert p["status"] == "waiting_for_deposit" and p["method"] == "virtual_account", p
    va = p["virtualAccount"]
    assert va["bank"] == "004" and len(va["accountNumber"]) == 14 and va["dueDate"], p
    assert "secret" not in json.dumps(p) and not p.get("approvedAt"), p
    assert events(number) == ["payment.awaiting_deposit"]
    ((secret,),) = payment_svc().db.sql(
        "SELECT va_secret FROM payment WHERE order_number = '%s'" % number)
    assert secret.startswith("ps_"), secret
    body = {"createdAt": "2026-11-26T10:05:00.000000", "secret": secret, "status": "DONE",
            "transactionKey": "9FF15E1A29D0E77C218F57262BFA4986", "orderId": number}
    # a forged callback: refused, nothing changes, the PG is not asked
    forged = dict(body, secret="ps_" + "x" * 32)
    error("DepositWebhook", {"body": json.dumps(forged)}, "permission_denied")
    error("DepositWebhook", {"secret": "nope", "orderId": number, "status": "DONE"},
          "permission_denied")
    error("DepositWebhook", {"body": json.dumps(dict(body, orderId="20000101-999999"))},
          "not_found")
    assert ok("GetPayment", {"orderId": number})["status"] == "waiting_for_deposit"
    # a callback before the deposit: the PG says it is still waiting
    w = ok("DepositWebhook", {"body": json.dumps(body)})
    assert w["status"] == "waiting_for_deposit", w
    r = sandbox().deposit(key)
    assert r.status == 200, r
    for _ in range(3):
        d = ok("DepositWebhook", {"body": json.dumps(body)})
        assert d["status"] == "done" and d["approvedAt"], d
    assert events(number) == ["payment.awaiting_deposit", "payment.approved"], events(number)
    # the fields form works too
    d = ok("DepositWebhook", {"secret": secret, "status": "DONE", "orderId": number})
    assert d["status"] == "done"
    assert events(number) == ["payment.awaiting_deposit", "payment.approved"]


def test_rejection_is_recorded_with_payment_failed():
    number, total = place_order()
    key = sandbox().create_payment(number, total, "card", outcome="fail")
    e = error("Confirm", confirm_req(key, number, total), "failed_precondition",
              "payment_rejected")
    assert "REJECT_CARD_PAYMENT" in e["message"], e
    p = ok("GetPayment", {"orderId": number})
    assert p["status"] == "failed" and p["failureCode"] == "REJECT_CARD_PAYMENT", p
    assert events(number) == ["payment.failed"]
    error("Confirm", confirm_req(key, number, total), "failed_precondition", "payment_rejected")
    assert events(number) == ["payment.failed"] and confirms(key) == 1
    # the shopper opens the window again: a new payment key confirms
    key2 = sandbox().create_payment(number, total, "card")
    p = ok("Confirm", confirm_req(key2, number, total))
    assert p["status"] == "done" and p["paymentKey"] == key2, p
    assert events(number) == ["payment.failed", "payment.approved"]


def test_pg_errors_and_timeouts_are_unavailable_then_confirm_once():
    number, total = place_order()
    key = sandbox().create_payment(number, total, "card")
    # the PG acts but answers 500: unavailable; the retry gets the stored answer
    sandbox().fault("POST /v1/payments/confirm", when="after", status=500, count=1)
    error("Confirm", confirm_req(key, number, total), "unavailable", "pg_unavailable")
    assert confirms(key) == 1
    assert ok("GetPayment", {"orderId": number})["status"] == "confirming"
    p = ok("Confirm", confirm_req(key, number, total))
    assert p["status"] == "done" and confirms(key) == 1
    assert events(number) == ["payment.approved"]
    # the PG answers too late (timeout 2s): unavailable, then a retry
    number, total = place_order()
    key = sandbox().create_payment(number, total, "card")
    sandbox().fault("POST /v1/payments/confirm", when="after", delayMs=3500, count=1)
    error("Confirm", confirm_req(key, number, total), "unavailable", "pg_timeout")
    time.sleep(2)
    p = ok("Confirm", confirm_req(key, number, total))
    assert p["status"] == "done" and confirms(key) == 1, sandbox().stats()
    assert events(number) == ["payment.approved"]
    rows = payment_svc().db.sql(
        "SELECT count(*) FROM pg_exchange WHERE idempotency_key = 'confirm-%s-%s' "
        "AND status = 0 AND error <> ''" % (number, key))
    assert rows == [("1",)], rows


def test_kill9_while_the_pg_answers_then_retry_confirms_once():
    svc = payment_svc()
    number, total = place_order()
    key = sandbox().create_payment(number, total, "card")
    sandbox().fault("POST /v1/payments/confirm", when="after", delayMs=1800, count=1)
    t = threading.Thread(target=call, args=("Confirm", confirm_req(key, number, total)))
    t.start()
    harness.wait_until(lambda: confirms(key) == 1, 10, "the PG's confirm")
    svc.kill9()
    t.join()
    assert events(number) == []
    svc.start()
    p = ok("Confirm", confirm_req(key, number, total))
    assert p["status"] == "done" and confirms(key) == 1, sandbox().stats()
    assert events(number) == ["payment.approved"], events(number)
    rows = svc.db.sql("SELECT count(*) FROM pg_exchange WHERE idempotency_key = "
                      "'confirm-%s-%s'" % (number, key))
    assert int(rows[0][0]) == 2, rows


def test_cancel_refunds_through_the_pg():
    number, total = place_order(price=15000)
    key = sandbox().create_payment(number, total, "card")
    ok("Confirm", confirm_req(key, number, total))
    k = "cancel-test-%s" % number
    p = ok("Cancel", {"orderId": number, "amount": 3000, "reason": "고객 변심"}, key=k)
    assert p["status"] == "partially_cancelled" and amount(p["balance"]) == total - 3000, p
    again = ok("Cancel", {"orderId": number, "amount": 3000, "reason": "고객 변심"}, key=k)
    assert again == p
    assert sandbox().stats()["cancels"].get(key) == 1
    p = ok("Cancel", {"orderId": number, "reason": "고객 변심"}, mutating=True)
    assert p["status"] == "cancelled" and amount(p["balance"]) == 0, p
    assert events(number) == ["payment.approved", "payment.cancelled", "payment.cancelled"]
    error("Cancel", {"orderId": number, "reason": "x"}, "failed_precondition", "not_cancelable",
          mutating=True)
    rows = payment_svc().db.sql("SELECT count(*), sum(amount) FROM payment_cancel "
                                "WHERE order_number = '%s'" % number)
    assert rows == [("2", str(total))], rows


def test_secrets_never_in_pg_exchange():
    db = payment_svc().db
    secrets_ = [s for (s,) in db.sql("SELECT va_secret FROM payment WHERE va_secret <> ''")]
    assert secrets_, "no virtual account was confirmed"
    rows = db.sql("SELECT request_body || ' ' || response_body FROM pg_exchange")
    text = " ".join(r[0] for r in rows)
    assert rows and '"secret":"***"' in text, text[:500]
    for s in secrets_ + [sandbox().secret_key, "Basic "]:
        assert s not in text, s
    assert "ps_" not in text


harness.run()
