"""The sandbox PG (tests/fakes/sandbox_pg.py) keeps the contract its README
writes down, which is what the mall's payment client is built against: Basic
auth with the secret key, idempotent POSTs (replay, and 422 for a key reused
with another body), confirm of card, easy-pay and virtual-account payments
with every refusal (unknown, tampered amount or order, rejected card, twice,
too late), lookups by paymentKey and orderId, partial and full cancels, the
refund account a paid virtual account needs, deposits with the deposit webhook
retried until the mall's side accepts it, due dates that expire, the payment
window page and its redirects, faults, the request log, concurrent confirms
of one payment (exactly one acts), and robustness against bad input."""

import base64
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import harness

_pg = {}
_n = [0]


def pg():
    """One sandbox PG (no webhooks) shared by the tests of this file."""
    if "pg" not in _pg:
        _pg["pg"] = harness.start_sandbox_pg()
    return _pg["pg"]


def order_id(prefix="order"):
    _n[0] += 1
    return "%s-%d-%d" % (prefix, _n[0], int(time.time() * 1000) % 10**9)


def paid(amount=10000, method="card", **fields):
    """A confirmed payment: (paymentKey, orderId, confirm answer)."""
    oid = order_id()
    key = pg().create_payment(oid, amount, method, **fields)
    r = pg().confirm(key, oid, amount)
    assert r.status == 200, r
    return key, oid, r


def err(r, status, code):
    assert r.status == status and isinstance(r.body, dict) and r.body.get("code") == code, \
        "expected %d %s, got %r" % (status, code, r)
    assert isinstance(r.body.get("message"), str) and r.body["message"], r


class Receiver:
    """A webhook receiver: answers `fail_first` deliveries with 500 (the
    first of them by closing the connection instead), then 200."""

    def __init__(self, fail_first=0):
        self.bodies = []
        self.fail_first = fail_first
        self.lock = threading.Lock()
        outer = self

        class H(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with outer.lock:
                    outer.bodies.append((self.path, self.headers.get("Content-Type"), data))
                    n = len(outer.bodies)
                if n == 1 and outer.fail_first > 0:
                    self.close_connection = True  # no answer at all
                    return
                status = 500 if n <= outer.fail_first else 200
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d/webhooks/payments/toss" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def received(self):
        with self.lock:
            return list(self.bodies)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------

def test_health_unknown_paths_and_methods():
    p = pg()
    r = harness.http("GET", p.url + "/healthz")
    assert r.status == 200 and r.body == {"status": "ok"}, r
    err(harness.http("GET", p.url + "/nope"), 404, "NOT_FOUND")
    err(p.api("GET", "/v1/nothing/here"), 404, "NOT_FOUND")
    err(p.api("DELETE", "/v1/payments/confirm"), 405, "METHOD_NOT_ALLOWED")
    r = harness.http("PUT", p.url + "/sandbox/v1/stats")
    err(r, 405, "METHOD_NOT_ALLOWED")
    assert r.headers.get("Allow") == "GET", r.headers


def test_basic_auth_with_the_secret_key():
    p = pg()
    path = "/v1/payments/unknown-payment-key"
    err(p.api("GET", path, auth=False), 401, "UNAUTHORIZED_KEY")
    err(p.api("GET", path, auth=False, headers=p.auth_header("test_sk_wrong")), 401, "UNAUTHORIZED_KEY")
    err(p.api("GET", path, auth=False, headers=p.auth_header(p.client_key)), 401, "UNAUTHORIZED_KEY")
    for value in ("Bearer " + p.secret_key, "Basic !!!notbase64",
                  "Basic " + base64.b64encode(p.secret_key.encode()).decode(),
                  "Basic " + base64.b64encode((p.secret_key + ":pw").encode()).decode()):
        err(p.api("GET", path, auth=False, headers={"Authorization": value}), 401, "UNAUTHORIZED_KEY")
    err(p.api("POST", "/v1/payments/confirm", {"paymentKey": "x", "orderId": "order-x", "amount": 1},
              auth=False), 401, "UNAUTHORIZED_KEY")
    # with the right key the request goes through (and finds nothing)
    err(p.api("GET", path), 404, "NOT_FOUND_PAYMENT")


def test_card_payment_confirmed_and_looked_up():
    p = pg()
    oid = order_id()
    key = p.create_payment(oid, 15000, "card", orderName="한우 등심 외 1건")
    r = p.payment(key)
    assert r.status == 200 and r.body["status"] == "IN_PROGRESS" and r.body["approvedAt"] is None, r
    r = p.confirm(key, oid, 15000)
    assert r.status == 200, r
    b = r.body
    assert b["status"] == "DONE" and b["method"] == "카드", b
    assert b["paymentKey"] == key and b["orderId"] == oid and b["orderName"] == "한우 등심 외 1건", b
    assert b["totalAmount"] == 15000 and b["balanceAmount"] == 15000 and b["currency"] == "KRW", b
    assert b["suppliedAmount"] == 13636 and b["vat"] == 1364, b
    assert b["approvedAt"].endswith("+09:00") and b["requestedAt"].endswith("+09:00"), b
    assert len(b["lastTransactionKey"]) == 32, b
    card = b["card"]
    assert card["company"] and card["approveNo"].isdigit() and "****" in card["number"], card
    assert b["virtualAccount"] is None and b["easyPay"] is None and b["cancels"] is None, b
    assert b["secret"] is None, b
    by_key = p.payment(key)
    by_order = p.api("GET", "/v1/payments/orders/" + oid)
    assert by_key.status == 200 and by_key.body == b, by_key
    assert by_order.status == 200 and by_order.body == b, by_order
    err(p.api("GET", "/v1/payments/orders/order-nobody-has"), 404, "NOT_FOUND_PAYMENT")
    err(p.confirm(key, oid, 15000), 400, "ALREADY_PROCESSED_PAYMENT")
    assert p.stats()["confirms"][key] == 1, p.stats()


def test_confirm_refusals():
    p = pg()
    err(p.confirm("no-such-payment-key", "order-none1", 1000), 404, "NOT_FOUND_PAYMENT")
    oid = order_id()
    key = p.create_payment(oid, 20000)
    # a tampered amount or another order's id: refused, nothing confirmed
    err(p.confirm(key, oid, 200), 400, "INVALID_REQUEST")
    err(p.confirm(key, oid, 20001), 400, "INVALID_REQUEST")
    err(p.confirm(key, "order-someone-else", 20000), 400, "INVALID_REQUEST")
    r = p.payment(key)
    assert r.body["status"] == "IN_PROGRESS" and r.body["approvedAt"] is None, r
    assert key not in p.stats()["confirms"], p.stats()
    # malformed requests
    for body in ({"orderId": oid, "amount": 20000}, {"paymentKey": key, "amount": 20000},
                 {"paymentKey": key, "orderId": oid}, {"paymentKey": key, "orderId": oid, "amount": "20000"},
                 {"paymentKey": key, "orderId": oid, "amount": 20000.0},
                 {"paymentKey": key, "orderId": oid, "amount": True}, [key, oid, 20000]):
        err(p.api("POST", "/v1/payments/confirm", body), 400, "INVALID_REQUEST")
    err(p.api("POST", "/v1/payments/confirm", b'{"paymentKey":', headers={"Content-Type": "application/json"}),
        400, "INVALID_REQUEST")
    err(p.api("POST", "/v1/payments/confirm", json.dumps({"paymentKey": key, "orderId": oid, "amount": 20000}),
              headers={"Content-Type": "text/plain"}), 400, "INVALID_REQUEST")
    err(p.api("POST", "/v1/payments/confirm", b"", headers={"Content-Type": "application/json"}),
        400, "INVALID_REQUEST")
    # still confirmable with the right values
    r = p.confirm(key, oid, 20000)
    assert r.status == 200 and r.body["status"] == "DONE", r


def test_rejected_card():
    p = pg()
    oid = order_id()
    key = p.create_payment(oid, 5000, outcome="fail")
    err(p.confirm(key, oid, 5000), 403, "REJECT_CARD_PAYMENT")
    b = p.payment(key).body
    assert b["status"] == "ABORTED" and b["failure"]["code"] == "REJECT_CARD_PAYMENT", b
    err(p.confirm(key, oid, 5000), 400, "ALREADY_PROCESSED_PAYMENT")
    # the order can be paid with a new payment
    key2 = p.create_payment(oid, 5000)
    assert p.confirm(key2, oid, 5000).status == 200
    assert p.api("GET", "/v1/payments/orders/" + oid).body["paymentKey"] == key2


def test_easy_pay():
    p = pg()
    key, oid, r = paid(8000, "easy_pay", provider="카카오페이")
    b = r.body
    assert b["method"] == "간편결제" and b["status"] == "DONE", b
    assert b["easyPay"] == {"provider": "카카오페이", "amount": 8000, "discountAmount": 0}, b
    key, oid, r = paid(8000, "easy_pay")
    assert r.body["easyPay"]["provider"] == "토스페이", r
    for bad in ({"method": "easy_pay", "provider": "삼성페이"}, {"method": "card", "provider": "토스페이"},
                {"method": "bitcoin"}):
        r = harness.http("POST", p.url + "/sandbox/v1/payments",
                         body=dict(bad, orderId=order_id(), amount=1000))
        err(r, 400, "INVALID_REQUEST")


def test_creating_payments():
    p = pg()
    url = p.url + "/sandbox/v1/payments"
    good = {"orderId": order_id(), "amount": 1000}
    assert harness.http("POST", url, body=good).status == 200
    good["orderId"] = order_id()
    assert harness.http("POST", url, body=good, headers=p.auth_header(p.client_key)).status == 200
    err(harness.http("POST", url, body=dict(good, orderId=order_id()), headers=p.auth_header()),
        401, "UNAUTHORIZED_KEY")
    for bad in ({"orderId": "short", "amount": 1000}, {"orderId": "has space!", "amount": 1000},
                {"orderId": "x" * 65, "amount": 1000}, {"orderId": order_id(), "amount": 0},
                {"orderId": order_id(), "amount": "1000"}, {"orderId": order_id()},
                {"orderId": order_id(), "amount": 1000, "outcome": "maybe"},
                {"orderId": order_id(), "amount": 1000, "dueInSeconds": 60},
                {"orderId": order_id(), "amount": 1000, "method": "virtual_account", "dueInSeconds": 0},
                {"orderId": order_id(), "amount": 1000, "orderName": "x" * 101}):
        err(harness.http("POST", url, body=bad), 400, "INVALID_REQUEST")
    err(harness.http("POST", url, body={"orderId": order_id(), "amount": 1000,
                                        "method": "virtual_account", "bank": "999"}), 400, "INVALID_BANK")
    # an order paid once cannot be paid again
    key, oid, _ = paid(3000)
    err(harness.http("POST", url, body={"orderId": oid, "amount": 3000}), 400, "DUPLICATED_ORDER_ID")
    # two windows opened for one order: the second confirm is refused
    oid = order_id()
    k1, k2 = p.create_payment(oid, 3000), p.create_payment(oid, 3000)
    assert p.confirm(k2, oid, 3000).status == 200
    err(p.confirm(k1, oid, 3000), 400, "DUPLICATED_ORDER_ID")
    assert p.api("GET", "/v1/payments/orders/" + oid).body["paymentKey"] == k2


def test_idempotent_confirm():
    p = pg()
    oid = order_id()
    key = p.create_payment(oid, 12000)
    first = p.confirm(key, oid, 12000, idempotency_key="idem-confirm-1")
    assert first.status == 200 and first.headers.get("Idempotent-Replayed") is None, first
    again = p.confirm(key, oid, 12000, idempotency_key="idem-confirm-1")
    assert again.status == 200 and again.raw == first.raw, again
    assert again.headers.get("Idempotent-Replayed") == "true", again.headers
    assert p.stats()["confirms"][key] == 1, p.stats()
    # the same key with another body
    err(p.confirm(key, oid, 13000, idempotency_key="idem-confirm-1"), 422, "INVALID_REQUEST")
    # a new key acts again (and is refused: already confirmed)
    err(p.confirm(key, oid, 12000, idempotency_key="idem-confirm-2"), 400, "ALREADY_PROCESSED_PAYMENT")
    # an error answer is stored and replayed too
    err(p.confirm(key, oid, 12000, idempotency_key="idem-confirm-2"), 400, "ALREADY_PROCESSED_PAYMENT")
    # a key is scoped to its URL: the same key on the cancel API acts
    r = p.cancel(key, "고객 요청", 2000, idempotency_key="idem-confirm-1")
    assert r.status == 200 and r.body["balanceAmount"] == 10000, r
    # too long a key
    err(p.confirm(key, oid, 12000, idempotency_key="k" * 301), 400, "INVALID_REQUEST")
    log = [e for e in p.requests() if e["idempotencyKey"] == "idem-confirm-1"]
    assert [(e["method"], e["status"], e["replayed"]) for e in log] == [
        ("POST", 200, False), ("POST", 200, True), ("POST", 422, False), ("POST", 200, False)], log
    assert log[0]["path"] == "/v1/payments/confirm", log


def test_idempotent_partial_cancel():
    p = pg()
    key, oid, _ = paid(10000)
    r1 = p.cancel(key, "부분 환불", 3000, idempotency_key="idem-cancel-1")
    r2 = p.cancel(key, "부분 환불", 3000, idempotency_key="idem-cancel-1")
    assert r1.status == 200 and r2.raw == r1.raw, (r1, r2)
    b = p.payment(key).body
    assert b["balanceAmount"] == 7000 and len(b["cancels"]) == 1, b
    assert p.stats()["cancels"][key] == 1, p.stats()


def test_partial_and_full_cancel():
    p = pg()
    key, oid, r = paid(10000)
    r = p.cancel(key, "단순 변심", 3000)
    assert r.status == 200, r
    b = r.body
    assert b["status"] == "PARTIAL_CANCELED" and b["balanceAmount"] == 7000, b
    c = b["cancels"]
    assert len(c) == 1 and c[0]["cancelAmount"] == 3000 and c[0]["cancelReason"] == "단순 변심", c
    assert c[0]["refundableAmount"] == 7000 and c[0]["canceledAt"].endswith("+09:00"), c
    assert c[0]["transactionKey"] == b["lastTransactionKey"], b
    err(p.cancel(key, "too much", 8000), 403, "NOT_CANCELABLE_AMOUNT")
    assert p.payment(key).body["balanceAmount"] == 7000
    for body in ({}, {"cancelReason": ""}, {"cancelReason": "x", "cancelAmount": 0},
                 {"cancelReason": "x", "cancelAmount": "100"}, {"cancelReason": "x" * 201}):
        err(p.api("POST", "/v1/payments/%s/cancel" % key, body), 400, "INVALID_REQUEST")
    r = p.cancel(key, "나머지 취소")
    assert r.status == 200, r
    b = r.body
    assert b["status"] == "CANCELED" and b["balanceAmount"] == 0 and len(b["cancels"]) == 2, b
    assert b["cancels"][1]["cancelAmount"] == 7000 and b["cancels"][1]["refundableAmount"] == 0, b
    assert b["card"]["acquireStatus"] == "CANCELED", b
    err(p.cancel(key, "again"), 400, "ALREADY_CANCELED_PAYMENT")
    err(p.cancel(key, "again", 1), 400, "ALREADY_CANCELED_PAYMENT")
    err(p.cancel("no-such-payment-key", "x"), 404, "NOT_FOUND_PAYMENT")
    # not yet confirmed, or rejected: nothing to cancel
    oid = order_id()
    k = p.create_payment(oid, 1000)
    err(p.cancel(k, "x"), 403, "NOT_CANCELABLE_PAYMENT")
    k = p.create_payment(order_id(), 1000, outcome="fail")
    p.confirm(k, p.payment(k).body["orderId"], 1000)
    err(p.cancel(k, "x"), 403, "NOT_CANCELABLE_PAYMENT")


def test_virtual_account_deposit_webhook_retried():
    rx = Receiver(fail_first=2)
    try:
        p = harness.start_sandbox_pg(webhook_url=rx.url, name="sandbox-pg-webhooks",
                                     env={"MALL_SANDBOX_PG_WEBHOOK_BACKOFF": "100ms",
                                          "MALL_SANDBOX_PG_WEBHOOK_RETRIES": "4"})
        oid = order_id("va")
        key = p.create_payment(oid, 33000, "virtual_account", customerName="김민수", bank="004")
        r = p.confirm(key, oid, 33000)
        assert r.status == 200, r
        b = r.body
        assert b["status"] == "WAITING_FOR_DEPOSIT" and b["method"] == "가상계좌", b
        assert b["approvedAt"] is None and b["secret"] and len(b["secret"]) >= 20, b
        va = b["virtualAccount"]
        assert va["accountNumber"].isdigit() and va["bank"] == "004" and va["bankCode"] == "004", va
        assert va["customerName"] == "김민수" and va["refundStatus"] == "NONE" and not va["expired"], va
        assert va["dueDate"].endswith("+09:00"), va
        due = time.mktime(time.strptime(va["dueDate"][:19], "%Y-%m-%dT%H:%M:%S"))
        assert 2.9 * 86400 < due - time.mktime(time.strptime(b["requestedAt"][:19], "%Y-%m-%dT%H:%M:%S")) \
            < 3.1 * 86400, va
        assert rx.received() == []
        r = p.deposit(key)
        assert r.status == 200, r
        done = r.body
        assert done["status"] == "DONE" and done["approvedAt"], done
        assert done["virtualAccount"]["settlementStatus"] == "COMPLETED", done
        harness.wait_until(lambda: len(rx.received()) >= 3, 10, "three webhook deliveries")
        time.sleep(0.5)
        got = rx.received()
        assert len(got) == 3, got  # two failed (closed, 500), the third accepted: no more
        bodies = [json.loads(d) for _, _, d in got]
        assert all(x == bodies[0] for x in bodies), bodies
        hook = bodies[0]
        assert got[0][0] == "/webhooks/payments/toss" and got[0][1] == "application/json", got[0]
        assert set(hook) == {"createdAt", "secret", "status", "transactionKey", "orderId"}, hook
        assert hook["secret"] == b["secret"] and hook["status"] == "DONE" and hook["orderId"] == oid, hook
        assert hook["transactionKey"] == done["lastTransactionKey"], (hook, done)
        d = p.webhooks()
        assert len(d) == 1 and d[0]["state"] == "delivered", d
        assert [a["status"] for a in d[0]["attempts"]] == [None, 500, 200], d
        assert d[0]["attempts"][0]["error"], d
        # a second deposit is refused; a resend delivers the same body again
        err(p.deposit(key), 400, "INVALID_REQUEST")
        r = harness.http("POST", p.url + "/sandbox/v1/webhooks/resend", body={"paymentKey": key})
        assert r.status == 200 and r.body["body"] == hook, r
        harness.wait_until(lambda: len(rx.received()) == 4, 10, "the resent webhook")
        assert json.loads(rx.received()[3][2]) == hook
        # card payments have no deposit callback
        k2 = p.create_payment(order_id(), 1000)
        r = harness.http("POST", p.url + "/sandbox/v1/webhooks/resend", body={"paymentKey": k2})
        err(r, 400, "INVALID_REQUEST")
        err(harness.http("POST", p.url + "/sandbox/v1/deposits", body={"paymentKey": "nope"}),
            404, "NOT_FOUND_PAYMENT")
        # a paid virtual account is refunded to an account the customer names
        err(p.cancel(key, "환불"), 400, "INVALID_REQUEST")
        acct = {"bank": "088", "accountNumber": "11012345678", "holderName": "김민수"}
        err(p.cancel(key, "환불", refund_account=dict(acct, bank="신한은행")), 400, "INVALID_BANK")
        err(p.cancel(key, "환불", refund_account=dict(acct, accountNumber="12-34")),
            400, "INVALID_REFUND_ACCOUNT_NUMBER")
        err(p.cancel(key, "환불", refund_account=dict(acct, holderName="")), 400, "INVALID_REFUND_ACCOUNT_INFO")
        assert p.payment(key).body["status"] == "DONE"
        r = p.cancel(key, "환불", 3000, refund_account=acct)
        assert r.status == 200 and r.body["status"] == "PARTIAL_CANCELED", r
        r = p.cancel(key, "환불", refund_account=acct)
        assert r.status == 200 and r.body["status"] == "CANCELED" and r.body["balanceAmount"] == 0, r
        va = r.body["virtualAccount"]
        assert va["refundStatus"] == "COMPLETED", va
        assert va["refundReceiveAccount"] == {"bankCode": "088", "accountNumber": "11012345678",
                                              "holderName": "김민수"}, va
        # the full cancel of a virtual account calls the deposit callback (CANCELED)
        harness.wait_until(lambda: len(rx.received()) == 5, 10, "the CANCELED callback")
        hook = json.loads(rx.received()[4][2])
        assert hook["status"] == "CANCELED" and hook["secret"] == b["secret"], hook
        assert hook["transactionKey"] == r.body["lastTransactionKey"], hook
    finally:
        rx.close()


def test_webhook_gives_up_after_the_retries():
    rx = Receiver(fail_first=100)
    try:
        p = harness.start_sandbox_pg(webhook_url=rx.url, name="sandbox-pg-giveup",
                                     env={"MALL_SANDBOX_PG_WEBHOOK_BACKOFF": "50ms",
                                          "MALL_SANDBOX_PG_WEBHOOK_RETRIES": "2"})
        oid = order_id("va")
        key = p.create_payment(oid, 1000, "virtual_account")
        assert p.confirm(key, oid, 1000).status == 200
        assert p.deposit(key).status == 200
        harness.wait_until(lambda: p.webhooks()[0]["state"] == "failed", 10, "the delivery to give up")
        assert len(p.webhooks()[0]["attempts"]) == 3 and len(rx.received()) == 3
    finally:
        rx.close()


def test_virtual_account_canceled_while_waiting():
    p = pg()
    key, oid, r = paid(5000, "virtual_account")
    err(p.cancel(key, "x", 1000), 403, "NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT")
    r = p.cancel(key, "주문 취소")  # no refund account: no money moved
    assert r.status == 200 and r.body["status"] == "CANCELED" and r.body["balanceAmount"] == 0, r
    assert r.body["virtualAccount"]["refundStatus"] == "NONE", r
    err(p.deposit(key), 400, "INVALID_REQUEST")
    d = [x for x in p.webhooks() if x["paymentKey"] == key]
    assert len(d) == 1 and d[0]["state"] == "skipped" and d[0]["body"]["status"] == "CANCELED", d


def test_virtual_account_expires():
    p = pg()
    key, oid, r = paid(7000, "virtual_account", dueInSeconds=1)
    assert r.body["status"] == "WAITING_FOR_DEPOSIT", r
    time.sleep(1.3)
    b = p.payment(key).body
    assert b["status"] == "EXPIRED" and b["virtualAccount"]["expired"] is True, b
    assert p.api("GET", "/v1/payments/orders/" + oid).body["status"] == "EXPIRED"
    err(p.deposit(key), 400, "INVALID_REQUEST")
    err(p.cancel(key, "x"), 403, "NOT_CANCELABLE_PAYMENT")
    err(p.confirm(key, oid, 7000), 400, "ALREADY_PROCESSED_PAYMENT")


def test_unconfirmed_payment_expires():
    p = harness.start_sandbox_pg(name="sandbox-pg-window", env={"MALL_SANDBOX_PG_CONFIRM_WINDOW": "1s"})
    oid = order_id()
    key = p.create_payment(oid, 1000)
    time.sleep(1.3)
    err(p.confirm(key, oid, 1000), 404, "NOT_FOUND_PAYMENT_SESSION")
    assert p.payment(key).body["status"] == "EXPIRED"
    p.terminate()


def test_concurrent_confirms_act_once():
    p = pg()
    oid = order_id()
    key = p.create_payment(oid, 25000)
    results = [None] * 20
    start = threading.Barrier(20)

    def confirm(i):
        start.wait()
        results[i] = p.confirm(key, oid, 25000, idempotency_key="concurrent-%d-%s" % (i, oid))
    threads = [threading.Thread(target=confirm, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    ok = [r for r in results if r is not None and r.status == 200]
    refused = [r for r in results if r is not None and r.status == 400
               and r.body.get("code") == "ALREADY_PROCESSED_PAYMENT"]
    assert len(ok) == 1 and len(refused) == 19, results
    assert p.stats()["confirms"][key] == 1, p.stats()


def test_payment_window_page():
    p = pg()
    oid = order_id("win")
    q = {"clientKey": p.client_key, "orderId": oid, "orderName": "<script>alert(1)</script> 한우",
         "amount": "123000", "method": "easy_pay", "provider": "카카오페이",
         "successUrl": "http://shop.example/pay/success?from=window",
         "failUrl": "http://shop.example/pay/fail"}
    import urllib.parse as up
    r = harness.http("GET", p.url + "/sandbox/pay?" + up.urlencode(q))
    assert r.status == 200 and r.headers.get("Content-Type").startswith("text/html"), r
    page = r.text
    for s in ("결제하기", "실패", "123,000원", "간편결제 (카카오페이)", oid):
        assert s in page, s
    assert "<script>alert" not in page and "&lt;script&gt;" in page, page
    form = up.urlencode(dict(q, action="pay"))
    ctype = {"Content-Type": "application/x-www-form-urlencoded"}
    r = harness.http("POST", p.url + "/sandbox/pay", body=form, headers=ctype)
    assert r.status == 303, r
    loc = up.urlsplit(r.headers["Location"])
    assert (loc.scheme, loc.netloc, loc.path) == ("http", "shop.example", "/pay/success"), loc
    got = dict(up.parse_qsl(loc.query))
    assert got["from"] == "window" and got["orderId"] == oid and got["amount"] == "123000", got
    assert got["paymentType"] == "NORMAL", got
    c = p.confirm(got["paymentKey"], oid, 123000)
    assert c.status == 200 and c.body["easyPay"]["provider"] == "카카오페이", c
    # 실패: back to failUrl, nothing created
    oid2 = order_id("win")
    r = harness.http("POST", p.url + "/sandbox/pay",
                     body=up.urlencode(dict(q, orderId=oid2, action="cancel")), headers=ctype)
    assert r.status == 303, r
    got = dict(up.parse_qsl(up.urlsplit(r.headers["Location"]).query))
    assert r.headers["Location"].startswith("http://shop.example/pay/fail?"), r.headers["Location"]
    assert got["code"] == "PAY_PROCESS_CANCELED" and got["orderId"] == oid2 and got["message"], got
    err(p.api("GET", "/v1/payments/orders/" + oid2), 404, "NOT_FOUND_PAYMENT")
    # 승인 거절: a payment whose confirm is rejected
    oid3 = order_id("win")
    r = harness.http("POST", p.url + "/sandbox/pay",
                     body=up.urlencode(dict(q, orderId=oid3, action="reject")), headers=ctype)
    got = dict(up.parse_qsl(up.urlsplit(r.headers["Location"]).query))
    err(p.confirm(got["paymentKey"], oid3, 123000), 403, "REJECT_CARD_PAYMENT")
    # bad windows: an error page, no redirect
    r = harness.http("GET", p.url + "/sandbox/pay?" + up.urlencode(dict(q, clientKey="test_ck_wrong")))
    assert r.status == 401 and "UNAUTHORIZED_KEY" in r.text, r
    for bad in ({"amount": ""}, {"amount": "12.5"}, {"orderId": "x"}, {"successUrl": "/relative"},
                {"failUrl": "javascript:alert(1)"}, {"method": "cash"}):
        r = harness.http("GET", p.url + "/sandbox/pay?" + up.urlencode(dict(q, **bad)))
        assert r.status == 400 and r.headers.get("Location") is None and "<html" in r.text, (bad, r)
    r = harness.http("POST", p.url + "/sandbox/pay", body=json.dumps(q))
    assert r.status == 400, r


def test_faults():
    p = pg()
    oid = order_id()
    key = p.create_payment(oid, 9000)
    # the PG fails before acting: nothing happens, a retry with the same key acts
    p.fault("POST /v1/payments/confirm", status=500)
    err(p.confirm(key, oid, 9000, idempotency_key="fault-1"), 500, "FAILED_INTERNAL_SYSTEM_PROCESSING")
    assert p.payment(key).body["status"] == "IN_PROGRESS"
    assert p.confirm(key, oid, 9000, idempotency_key="fault-1").status == 200
    # the PG acts, then the answer is lost (slow): the retry with the same key
    # gets the stored answer; without a key it is ALREADY_PROCESSED_PAYMENT
    oid = order_id()
    key = p.create_payment(oid, 9000)
    p.fault("confirm$", when="after", delayMs=1500)
    try:
        p.confirm(key, oid, 9000, idempotency_key="fault-2", timeout=0.5)
        raise AssertionError("the slow confirm answered within the client's timeout")
    except OSError:
        pass
    r = p.confirm(key, oid, 9000, idempotency_key="fault-2")
    assert r.status == 200 and r.body["status"] == "DONE" and r.headers.get("Idempotent-Replayed") == "true", r
    err(p.confirm(key, oid, 9000), 400, "ALREADY_PROCESSED_PAYMENT")
    assert p.stats()["confirms"][key] == 1
    # dropped connection after acting
    key2, oid2, _ = paid(4000)
    p.fault("/cancel$", when="after", drop=True)
    try:
        p.cancel(key2, "x", 1000, idempotency_key="fault-3")
        raise AssertionError("the dropped cancel answered")
    except OSError:
        pass
    r = p.cancel(key2, "x", 1000, idempotency_key="fault-3")
    assert r.status == 200 and r.body["balanceAmount"] == 3000, r
    # lookups fail too, count times
    p.fault("^GET /v1/payments/", status=503, code="PROVIDER_ERROR", count=2)
    assert p.payment(key2).status == 503 and p.payment(key2).status == 503
    assert p.payment(key2).status == 200
    assert harness.http("GET", p.url + "/sandbox/v1/faults").body == {"faults": []}
    err(harness.http("POST", p.url + "/sandbox/v1/faults", body={"pattern": "("}), 400, "INVALID_REQUEST")
    err(harness.http("POST", p.url + "/sandbox/v1/faults", body={"pattern": "x", "when": "never"}),
        400, "INVALID_REQUEST")
    harness.wait_until(lambda: all(e["status"] is not None for e in p.requests()), 10,
                       "the slow confirm to finish")
    log = [e for e in p.requests() if e["idempotencyKey"] == "fault-2"]
    assert [(e["status"], e["fault"], e["replayed"]) for e in log] == [(200, True, False), (200, False, True)], log


def test_robustness():
    p = pg()
    # a request line that is not HTTP, a huge body, a bad Content-Length
    with harness.RawConnection("127.0.0.1", p.port) as c:
        c.send(b"GARBAGE\r\n\r\n")
        data = c.read_until_close()
    assert b"Traceback" not in data, data
    r = harness.http("POST", p.url + "/v1/payments/confirm", body=b"{" + b" " * (1 << 20) + b"}",
                     headers=dict(p.auth_header(), **{"Content-Type": "application/json"}))
    err(r, 413, "PAYLOAD_TOO_LARGE")
    with harness.RawConnection("127.0.0.1", p.port) as c:
        c.send(b"POST /sandbox/v1/payments HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
        r = c.read_response()
    err(r, 400, "INVALID_REQUEST")
    # keep-alive: several requests on one connection, one chunked
    with harness.RawConnection("127.0.0.1", p.port) as c:
        body = json.dumps({"orderId": order_id(), "amount": 1000}).encode()
        c.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
               b"POST /sandbox/v1/payments HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n"
               b"GET /sandbox/v1/stats HTTP/1.1\r\nHost: x\r\n\r\n" % (len(body), body))
        statuses = [c.read_response().status for _ in range(3)]
    assert statuses == [200, 200, 200], statuses
    for body in (b"[1,2]", b"\xff\xfe", b"null"):
        r = harness.http("POST", p.url + "/sandbox/v1/deposits", body=body,
                         headers={"Content-Type": "application/json"})
        err(r, 400, "INVALID_REQUEST")
    assert p.alive()
    assert "Traceback" not in p.proc.output()


def test_payment_listing():
    p = pg()
    key, oid, _ = paid(2500)
    waiting = p.create_payment(order_id(), 4000)
    r = harness.http("GET", p.url + "/sandbox/v1/payments")
    assert r.status == 200, r
    by_key = {x["paymentKey"]: x for x in r.body["payments"]}
    assert by_key[key]["status"] == "DONE" and by_key[key]["orderId"] == oid, by_key[key]
    assert by_key[key] == p.payment(key).body, (by_key[key], p.payment(key).body)
    assert by_key[waiting]["status"] == "IN_PROGRESS", by_key[waiting]
    keys = [x["paymentKey"] for x in r.body["payments"]]
    assert keys.index(key) < keys.index(waiting), keys  # oldest first
    r = harness.http("GET", p.url + "/sandbox/v1/payments?orderId=" + oid)
    assert r.status == 200 and [x["paymentKey"] for x in r.body["payments"]] == [key], r
    r = harness.http("GET", p.url + "/sandbox/v1/payments?orderId=none-such-order")
    assert r.status == 200 and r.body == {"payments": []}, r


def test_request_log_stats_and_reset():
    p = pg()
    key, oid, _ = paid(1000)
    log = p.requests()
    assert all(set(e) >= {"method", "path", "idempotencyKey", "status", "replayed", "at"} for e in log), log
    assert any(e["path"] == "/v1/payments/confirm" and e["status"] == 200 for e in log), log
    assert not any(e["path"].startswith("/sandbox") for e in log), log
    n = len(log)
    p.api("GET", "/v1/payments/" + key, auth=False)
    assert p.requests()[n]["status"] == 401, p.requests()[n]
    assert "POST /v1/payments/confirm 200" in p.proc.output()  # one log line a request
    p.reset()
    assert p.requests() == [] and p.stats() == {"confirms": {}, "cancels": {}, "payments": 0}
    err(p.payment(key), 404, "NOT_FOUND_PAYMENT")


def test_bad_settings_stop_it():
    exe = os.path.join(harness.source_dir(), "tests", "fakes", "sandbox_pg.py")
    for var, value in (("MALL_SANDBOX_PG_WEBHOOK_RETRIES", "many"), ("MALL_SANDBOX_PG_LISTEN", "8091"),
                       ("MALL_SANDBOX_PG_WEBHOOK_BACKOFF", "5"), ("MALL_SANDBOX_PG_WEBHOOK_URL", "ftp://x")):
        proc = harness.start_process("sandbox-pg-bad", [sys.executable, exe], {var: value}, check=False)
        assert proc.wait(10) == 2, proc
        assert var in proc.output(), proc.output()


def test_sigterm_exits_cleanly():
    p = harness.start_sandbox_pg(name="sandbox-pg-term")
    assert p.terminate() == 0


harness.run()
