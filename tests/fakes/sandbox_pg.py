#!/usr/bin/env python3
"""sandbox_pg.py: a sandbox payment gateway that speaks the Toss Payments v1
HTTP protocol, so that the mall's real payment client (libcurl) is what
development and tests exercise.

    python3 tests/fakes/sandbox_pg.py        # settings from the environment

script/server runs it beside the mall; integration tests start one of their
own with harness.start_sandbox_pg().  The protocol as implemented, and every
place it differs from Toss, is written in README.md beside this file: that
README is the contract the payment client is written against.

State lives in memory (a restart forgets every payment).  One lock
serializes every change and the idempotency bookkeeping, so each request acts
as if it were alone; only artificial delays (faults) and webhook deliveries
happen outside it.  Standard library only.

Settings (a bad value stops it at start naming the variable, exit status 2):
  MALL_SANDBOX_PG_LISTEN            host:port (127.0.0.1:8091)
  MALL_SANDBOX_PG_SECRET_KEY        the merchant's secret key (test_sk_sandbox)
  MALL_SANDBOX_PG_CLIENT_KEY        the client key of the payment window (test_ck_sandbox)
  MALL_SANDBOX_PG_WEBHOOK_URL       where deposit callbacks go
                                    (http://127.0.0.1:8080/webhooks/payments/toss; empty: nowhere)
  MALL_SANDBOX_PG_WEBHOOK_RETRIES   re-sends after a failed delivery (7)
  MALL_SANDBOX_PG_WEBHOOK_BACKOFF   wait before the first re-send, doubling after (200ms)
  MALL_SANDBOX_PG_WEBHOOK_TIMEOUT   how long one delivery waits for an answer (10s)
  MALL_SANDBOX_PG_CONFIRM_WINDOW    how long an authenticated payment can be confirmed (10m)
Durations take ms, s, m, h or d.
"""

import base64
import hmac
import html
import http.client
import json
import os
import re
import secrets
import signal
import string
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

KST = timezone(timedelta(hours=9))
ALNUM = string.ascii_letters + string.digits
MAX_BODY = 1 << 20
IDEMPOTENCY_TTL = 15 * 86400  # Toss keeps a key 15 days
IDEMPOTENCY_KEY_MAX = 300
REQUEST_LOG_MAX = 10000
ORDER_ID_RE = re.compile(r"^[A-Za-z0-9_-]{6,64}$")

# method as the window takes it -> as the Payment object names it
METHODS = {"card": "카드", "virtual_account": "가상계좌", "easy_pay": "간편결제"}
PROVIDERS = {"토스페이": "토스페이", "tosspay": "토스페이", "카카오페이": "카카오페이",
             "kakaopay": "카카오페이"}
# banks that issue virtual accounts here (code -> name)
BANKS = {"088": "신한", "004": "KB국민", "020": "우리", "081": "하나", "011": "NH농협",
         "003": "IBK기업", "090": "카카오뱅크", "092": "토스뱅크"}

MSG = {
    "UNAUTHORIZED_KEY": "인증되지 않은 시크릿 키 혹은 클라이언트 키 입니다.",
    "INVALID_REQUEST": "잘못된 요청입니다.",
    "NOT_FOUND_PAYMENT": "존재하지 않는 결제 정보 입니다.",
    "NOT_FOUND_PAYMENT_SESSION": "결제 시간이 만료되어 결제 진행 데이터가 존재하지 않습니다.",
    "ALREADY_PROCESSED_PAYMENT": "이미 처리된 결제 입니다.",
    "REJECT_CARD_PAYMENT": "한도초과 혹은 잔액부족으로 결제에 실패했습니다.",
    "DUPLICATED_ORDER_ID": "이미 승인 및 취소가 진행된 중복된 주문번호 입니다. 다른 주문번호로 진행해주세요.",
    "ALREADY_CANCELED_PAYMENT": "이미 취소된 결제 입니다.",
    "NOT_CANCELABLE_AMOUNT": "취소 할 수 없는 금액 입니다.",
    "NOT_CANCELABLE_PAYMENT": "취소 할 수 없는 결제 입니다.",
    "NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT": "입금 대기중인 결제는 부분 환불이 불가합니다.",
    "INVALID_REFUND_ACCOUNT_INFO": "환불 계좌번호와 예금주명이 일치하지 않습니다.",
    "INVALID_REFUND_ACCOUNT_NUMBER": "잘못된 환불 계좌번호입니다.",
    "INVALID_BANK": "유효하지 않은 은행입니다.",
    "FAILED_INTERNAL_SYSTEM_PROCESSING": "내부 시스템 처리 작업이 실패했습니다. 잠시 후 다시 시도해주세요.",
    "PAY_PROCESS_CANCELED": "사용자에 의해 결제가 취소되었습니다.",
    "NOT_FOUND": "존재하지 않는 경로입니다.",
    "METHOD_NOT_ALLOWED": "허용되지 않은 메서드입니다.",
    "PAYLOAD_TOO_LARGE": "요청 본문이 너무 큽니다.",
}


class ConfigError(Exception):
    pass


class ApiError(Exception):
    """An error answer: HTTP status and Toss's {"code","message"}."""

    def __init__(self, status, code, detail=None):
        super().__init__(code)
        self.status = status
        self.code = code
        base = MSG.get(code, code)
        self.message = "%s (%s)" % (base, detail) if detail else base

    def body(self):
        return {"code": self.code, "message": self.message}


class Drop(Exception):
    """Close the connection without answering (a fault)."""


# --------------------------------------------------------------------------
# Settings

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(name, text):
    m = _DURATION.match(text.strip())
    if not m or float(m.group(1)) <= 0:
        raise ConfigError("%s must be a positive duration like 200ms, 10s, 10m (got \"%s\")"
                          % (name, text))
    return float(m.group(1)) * _UNIT[m.group(2)]


class Settings:
    def __init__(self, env):
        def get(name, default):
            v = env.get(name)
            return default if v is None or v.strip() == "" else v.strip()

        listen = get("MALL_SANDBOX_PG_LISTEN", "127.0.0.1:8091")
        host, sep, port = listen.rpartition(":")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise ConfigError("MALL_SANDBOX_PG_LISTEN must be host:port (got \"%s\")" % listen)
        self.host, self.port = host.strip("[]"), int(port)
        self.secret_key = get("MALL_SANDBOX_PG_SECRET_KEY", "test_sk_sandbox")
        self.client_key = get("MALL_SANDBOX_PG_CLIENT_KEY", "test_ck_sandbox")
        for name, v in (("MALL_SANDBOX_PG_SECRET_KEY", self.secret_key),
                        ("MALL_SANDBOX_PG_CLIENT_KEY", self.client_key)):
            if ":" in v or not v.isprintable():
                raise ConfigError("%s must be printable and without \":\"" % name)
        # unset: the default; set but empty: no webhooks at all
        url = env.get("MALL_SANDBOX_PG_WEBHOOK_URL")
        self.webhook_url = ("http://127.0.0.1:8080/webhooks/payments/toss" if url is None
                            else url.strip())
        if self.webhook_url and not re.match(r"^https?://[^/\s]+", self.webhook_url):
            raise ConfigError("MALL_SANDBOX_PG_WEBHOOK_URL must be an http:// or https:// URL "
                              "or empty (got \"%s\")" % self.webhook_url)
        retries = get("MALL_SANDBOX_PG_WEBHOOK_RETRIES", "7")
        if not retries.isdigit() or int(retries) > 30:
            raise ConfigError("MALL_SANDBOX_PG_WEBHOOK_RETRIES must be 0..30 (got \"%s\")" % retries)
        self.webhook_retries = int(retries)
        self.webhook_backoff = parse_duration("MALL_SANDBOX_PG_WEBHOOK_BACKOFF",
                                              get("MALL_SANDBOX_PG_WEBHOOK_BACKOFF", "200ms"))
        self.webhook_timeout = parse_duration("MALL_SANDBOX_PG_WEBHOOK_TIMEOUT",
                                              get("MALL_SANDBOX_PG_WEBHOOK_TIMEOUT", "10s"))
        self.confirm_window = parse_duration("MALL_SANDBOX_PG_CONFIRM_WINDOW",
                                             get("MALL_SANDBOX_PG_CONFIRM_WINDOW", "10m"))


# --------------------------------------------------------------------------
# Small helpers

_log_lock = threading.Lock()


def log(text):
    with _log_lock:
        sys.stderr.write("%s sandbox-pg %s\n" % (
            datetime.now(KST).isoformat(timespec="milliseconds"), text))
        sys.stderr.flush()


def iso(ts):
    """Toss's time format: 2024-01-31T12:34:56+09:00."""
    return None if ts is None else datetime.fromtimestamp(ts, KST).isoformat(timespec="seconds")


def rand(n, alphabet=ALNUM):
    return "".join(secrets.choice(alphabet) for _ in range(n))


def new_transaction_key():
    return secrets.token_hex(16).upper()


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def dumps(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def canonical(obj):
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def basic_credentials(header):
    """The user part of "Basic base64(user:)", or None when the header is not
    that (a password after the colon is not accepted either)."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    user, sep, password = decoded.partition(":")
    if not sep or password:
        return None
    return user


def same_key(given, expected):
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def with_query(url, params):
    """url with params appended to its query string (keeping what is there)."""
    parts = urllib.parse.urlsplit(url)
    extra = urllib.parse.urlencode(params)
    query = parts.query + "&" + extra if parts.query else extra
    return urllib.parse.urlunsplit(parts._replace(query=query))


def require_str(body, name, max_len=None, required=True):
    v = body.get(name)
    if v is None:
        if required:
            raise ApiError(400, "INVALID_REQUEST", "%s is required" % name)
        return None
    if not isinstance(v, str) or not v.strip():
        raise ApiError(400, "INVALID_REQUEST", "%s must be a non-empty string" % name)
    if max_len and len(v) > max_len:
        raise ApiError(400, "INVALID_REQUEST", "%s must be at most %d characters" % (name, max_len))
    return v


def require_amount(body, name, required=True):
    v = body.get(name)
    if v is None and not required:
        return None
    if not is_int(v) or v < 1 or v > 10_000_000_000:
        raise ApiError(400, "INVALID_REQUEST", "%s must be an integer number of won, 1 or more" % name)
    return v


# --------------------------------------------------------------------------
# Payments

class Payment:
    """One payment: what the window authenticated, and what happened since."""

    def __init__(self, spec, now, confirm_window):
        self.key = rand(50)
        self.order_id = spec["orderId"]
        self.order_name = spec["orderName"]
        self.method = spec["method"]
        self.amount = spec["amount"]
        self.outcome = spec["outcome"]
        self.provider = spec["provider"]
        self.due_in = spec["dueInSeconds"]
        self.customer_name = spec["customerName"]
        self.bank = spec["bank"]
        self.status = "IN_PROGRESS"
        self.requested_at = now
        self.approved_at = None
        self.confirm_deadline = now + confirm_window
        self.balance = self.amount
        self.card = None
        self.virtual_account = None
        self.easy_pay = None
        self.secret = None
        self.due_ts = None
        self.cancels = []
        self.last_transaction_key = None
        self.failure = None
        self.last_callback = None

    def refresh(self, now):
        """Applies the passage of time: an authenticated payment not confirmed
        in time, and a virtual account not paid by its due date, expire."""
        if self.status == "IN_PROGRESS" and now > self.confirm_deadline:
            self.status = "EXPIRED"
        elif self.status == "WAITING_FOR_DEPOSIT" and now > self.due_ts:
            self.status = "EXPIRED"
            self.virtual_account["expired"] = True

    def to_json(self):
        vat = (2 * self.balance + 11) // 22  # balance / 11, rounded half up, as Toss
        return {
            "mId": "sandbox",
            "version": "2022-11-16",
            "paymentKey": self.key,
            "type": "NORMAL",
            "orderId": self.order_id,
            "orderName": self.order_name,
            "currency": "KRW",
            "method": METHODS[self.method],
            "totalAmount": self.amount,
            "balanceAmount": self.balance,
            "status": self.status,
            "requestedAt": iso(self.requested_at),
            "approvedAt": iso(self.approved_at),
            "useEscrow": False,
            "lastTransactionKey": self.last_transaction_key,
            "suppliedAmount": self.balance - vat,
            "vat": vat,
            "taxFreeAmount": 0,
            "taxExemptionAmount": 0,
            "cultureExpense": False,
            "isPartialCancelable": True,
            "card": dict(self.card) if self.card else None,
            "virtualAccount": json.loads(json.dumps(self.virtual_account)) if self.virtual_account else None,
            "transfer": None,
            "mobilePhone": None,
            "giftCertificate": None,
            "cashReceipt": None,
            "cashReceipts": None,
            "discount": None,
            "cancels": [dict(c) for c in self.cancels] or None,
            "secret": self.secret,
            "easyPay": dict(self.easy_pay) if self.easy_pay else None,
            "country": "KR",
            "failure": dict(self.failure) if self.failure else None,
            "receipt": None,
            "checkout": None,
        }


def payment_spec(raw, from_form=False):
    """Checks what opening the payment window names (the window's query, the
    form it posts, or POST /sandbox/v1/payments); returns the normalized spec
    or raises ApiError 400 naming the field."""
    spec = {}
    if from_form:  # every value a string: amounts become integers here
        for name in ("amount", "dueInSeconds"):
            v = raw.get(name)
            if isinstance(v, str) and v.strip() != "":
                if not re.match(r"^\d{1,12}$", v.strip()):
                    raise ApiError(400, "INVALID_REQUEST", "%s must be an integer" % name)
                raw[name] = int(v)
            elif v is not None:
                raw.pop(name)
        raw = {k: v for k, v in raw.items() if v != ""}
    order_id = require_str(raw, "orderId")
    if not ORDER_ID_RE.match(order_id):
        raise ApiError(400, "INVALID_REQUEST",
                       "orderId must be 6 to 64 characters of A-Z, a-z, 0-9, - and _")
    spec["orderId"] = order_id
    spec["amount"] = require_amount(raw, "amount")
    spec["orderName"] = require_str(raw, "orderName", 100, required=False) or "샌드박스 주문"
    method = require_str(raw, "method", required=False) or "card"
    if method.lower() not in METHODS:
        raise ApiError(400, "INVALID_REQUEST", "method must be card, virtual_account or easy_pay")
    spec["method"] = method.lower()
    outcome = require_str(raw, "outcome", required=False) or "success"
    if outcome not in ("success", "fail"):
        raise ApiError(400, "INVALID_REQUEST", "outcome must be success or fail")
    spec["outcome"] = outcome
    provider = require_str(raw, "provider", required=False)
    if provider is not None and spec["method"] != "easy_pay":
        raise ApiError(400, "INVALID_REQUEST", "provider is for method easy_pay only")
    if spec["method"] == "easy_pay":
        provider = provider or "토스페이"
        if provider.lower() not in PROVIDERS:
            raise ApiError(400, "INVALID_REQUEST", "provider must be 토스페이 (tosspay) or 카카오페이 (kakaopay)")
        provider = PROVIDERS[provider.lower()]
    spec["provider"] = provider
    due = raw.get("dueInSeconds")
    bank = require_str(raw, "bank", required=False)
    if spec["method"] != "virtual_account" and (due is not None or bank is not None):
        raise ApiError(400, "INVALID_REQUEST", "dueInSeconds and bank are for method virtual_account only")
    if due is not None and (not is_int(due) or due < 1 or due > 90 * 86400):
        raise ApiError(400, "INVALID_REQUEST", "dueInSeconds must be an integer from 1 to 7776000")
    spec["dueInSeconds"] = due if due is not None else 3 * 86400
    if bank is not None and bank not in BANKS:
        raise ApiError(400, "INVALID_BANK", "bank must be one of %s" % ", ".join(sorted(BANKS)))
    spec["bank"] = bank or "088"
    spec["customerName"] = require_str(raw, "customerName", 100, required=False) or "홍길동"
    return spec


class Sandbox:
    """The state of the PG and what acts on it.  Methods whose name starts
    with api_ or sb_ run with self.lock held and return (status, object) or
    raise ApiError; nothing is changed before every check passed."""

    def __init__(self, settings):
        self.settings = settings
        self.lock = threading.Lock()
        self.generation = 0
        with self.lock:
            self._clear()
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())

    def _clear(self):
        self.generation += 1
        self.payments = {}
        self.orders = {}        # orderId -> [paymentKey, ...] oldest first
        self.idempotency = {}   # (key, method, path) -> record
        self.requests = []
        self.confirms = {}
        self.cancel_counts = {}
        self.deliveries = []
        self.faults = []

    # ---- lookups -------------------------------------------------------

    def _payment(self, key, now):
        p = self.payments.get(key)
        if p is None:
            raise ApiError(404, "NOT_FOUND_PAYMENT")
        p.refresh(now)
        return p

    def _settled_for_order(self, order_id, now, other_than=None):
        """A payment of order_id past authentication (confirmed, waiting for a
        deposit, canceled): an order is paid once at most."""
        for k in self.orders.get(order_id, []):
            p = self.payments[k]
            p.refresh(now)
            if k != other_than and p.status not in ("READY", "IN_PROGRESS", "ABORTED", "EXPIRED"):
                return p
        return None

    # ---- the Toss API (/v1) --------------------------------------------

    def api_get_payment(self, params, body, now):
        return 200, self._payment(params["payment_key"], now).to_json()

    def api_get_order(self, params, body, now):
        keys = self.orders.get(params["order_id"])
        if not keys:
            raise ApiError(404, "NOT_FOUND_PAYMENT")
        p = self._settled_for_order(params["order_id"], now) or self._payment(keys[-1], now)
        return 200, p.to_json()

    def api_confirm(self, params, body, now):
        key = require_str(body, "paymentKey", 200)
        order_id = require_str(body, "orderId", 64)
        amount = body.get("amount")
        if not is_int(amount):
            raise ApiError(400, "INVALID_REQUEST", "amount must be an integer")
        p = self._payment(key, now)
        if p.status == "EXPIRED" and p.virtual_account is None:  # never confirmed
            raise ApiError(404, "NOT_FOUND_PAYMENT_SESSION")
        if p.status != "IN_PROGRESS":
            raise ApiError(400, "ALREADY_PROCESSED_PAYMENT")
        if order_id != p.order_id:
            raise ApiError(400, "INVALID_REQUEST", "orderId does not match the payment's")
        if amount != p.amount:
            raise ApiError(400, "INVALID_REQUEST", "amount does not match the payment's")
        if self._settled_for_order(p.order_id, now, other_than=p.key):
            raise ApiError(400, "DUPLICATED_ORDER_ID")
        self.confirms[p.key] = self.confirms.get(p.key, 0) + 1
        if p.outcome == "fail":
            p.status = "ABORTED"
            p.failure = {"code": "REJECT_CARD_PAYMENT", "message": MSG["REJECT_CARD_PAYMENT"]}
            raise ApiError(403, "REJECT_CARD_PAYMENT")
        p.last_transaction_key = new_transaction_key()
        if p.method == "card":
            p.status = "DONE"
            p.approved_at = now
            p.card = {
                "company": "신한", "issuerCode": "41", "acquirerCode": "41",
                "number": "4330" + rand(4, string.digits) + "****" + rand(3, string.digits) + "*",
                "installmentPlanMonths": 0, "isInterestFree": False, "interestPayer": None,
                "approveNo": rand(8, string.digits), "useCardPoint": False, "cardType": "신용",
                "ownerType": "개인", "acquireStatus": "READY", "amount": p.amount,
            }
        elif p.method == "easy_pay":
            p.status = "DONE"
            p.approved_at = now
            p.easy_pay = {"provider": p.provider, "amount": p.amount, "discountAmount": 0}
        else:
            p.status = "WAITING_FOR_DEPOSIT"
            p.secret = "ps_" + rand(32)
            p.due_ts = now + p.due_in
            p.virtual_account = {
                "accountType": "일반", "accountNumber": rand(14, string.digits),
                "bank": p.bank, "bankCode": p.bank, "customerName": p.customer_name,
                "dueDate": iso(p.due_ts), "refundStatus": "NONE", "expired": False,
                "settlementStatus": "INCOMPLETED", "refundReceiveAccount": None,
            }
        return 200, p.to_json()

    def api_cancel(self, params, body, now):
        reason = require_str(body, "cancelReason", 200)
        amount = require_amount(body, "cancelAmount", required=False)
        account = body.get("refundReceiveAccount")
        if account is not None and not isinstance(account, dict):
            raise ApiError(400, "INVALID_REQUEST", "refundReceiveAccount must be an object")
        p = self._payment(params["payment_key"], now)
        if p.status == "CANCELED":
            raise ApiError(400, "ALREADY_CANCELED_PAYMENT")
        if p.status not in ("DONE", "PARTIAL_CANCELED", "WAITING_FOR_DEPOSIT"):
            raise ApiError(403, "NOT_CANCELABLE_PAYMENT", "the payment is %s" % p.status)
        if amount is None:
            amount = p.balance
        if amount > p.balance:
            raise ApiError(403, "NOT_CANCELABLE_AMOUNT",
                           "cancelAmount %d is above the balance %d" % (amount, p.balance))
        refund_to = None
        if p.status == "WAITING_FOR_DEPOSIT":
            if amount != p.balance:
                raise ApiError(403, "NOT_ALLOWED_PARTIAL_REFUND_WAITING_DEPOSIT")
        elif p.method == "virtual_account":
            if account is None:
                raise ApiError(400, "INVALID_REQUEST",
                               "refundReceiveAccount is required to refund a paid virtual account")
            bank = account.get("bank")
            number = account.get("accountNumber")
            holder = account.get("holderName")
            if not isinstance(bank, str) or not re.match(r"^\d{2,3}$", bank):
                raise ApiError(400, "INVALID_BANK", "refundReceiveAccount.bank must be a bank code like 088")
            if not isinstance(number, str) or not re.match(r"^\d{6,20}$", number):
                raise ApiError(400, "INVALID_REFUND_ACCOUNT_NUMBER",
                               "refundReceiveAccount.accountNumber must be 6 to 20 digits")
            if not isinstance(holder, str) or not holder.strip() or len(holder) > 60:
                raise ApiError(400, "INVALID_REFUND_ACCOUNT_INFO",
                               "refundReceiveAccount.holderName must be 1 to 60 characters")
            refund_to = {"bankCode": bank, "accountNumber": number, "holderName": holder}
        tx = new_transaction_key()
        p.balance -= amount
        p.cancels.append({
            "transactionKey": tx, "cancelReason": reason, "taxExemptionAmount": 0,
            "canceledAt": iso(now), "easyPayDiscountAmount": 0, "receiptKey": None,
            "cancelAmount": amount, "taxFreeAmount": 0, "refundableAmount": p.balance,
            "cancelStatus": "DONE", "cancelRequestId": None,
        })
        p.last_transaction_key = tx
        p.status = "CANCELED" if p.balance == 0 else "PARTIAL_CANCELED"
        if p.card and p.status == "CANCELED":
            p.card["acquireStatus"] = "CANCELED"
        if refund_to:
            p.virtual_account["refundStatus"] = "COMPLETED"
            p.virtual_account["refundReceiveAccount"] = refund_to
        self.cancel_counts[p.key] = self.cancel_counts.get(p.key, 0) + 1
        if p.method == "virtual_account" and p.status == "CANCELED":
            # Toss calls the deposit callback when a virtual account is canceled too
            self._callback(p, "CANCELED", now)
        return 200, p.to_json()

    # ---- the sandbox's own API (/sandbox/v1) ---------------------------

    def sb_create(self, spec, now):
        if self._settled_for_order(spec["orderId"], now):
            raise ApiError(400, "DUPLICATED_ORDER_ID")
        p = Payment(spec, now, self.settings.confirm_window)
        self.payments[p.key] = p
        self.orders.setdefault(p.order_id, []).append(p.key)
        return p

    def sb_deposit(self, body, now):
        p = self._payment(require_str(body, "paymentKey", 200), now)
        if p.status != "WAITING_FOR_DEPOSIT":
            raise ApiError(400, "INVALID_REQUEST",
                           "payment %s is %s, not WAITING_FOR_DEPOSIT" % (p.key, p.status))
        p.status = "DONE"
        p.approved_at = now
        p.last_transaction_key = new_transaction_key()
        p.virtual_account["settlementStatus"] = "COMPLETED"
        self._callback(p, "DONE", now)
        return 200, p.to_json()

    def sb_resend(self, body, now):
        p = self._payment(require_str(body, "paymentKey", 200), now)
        if p.last_callback is None:
            raise ApiError(400, "INVALID_REQUEST", "payment %s has had no deposit callback" % p.key)
        d = self._deliver_later(p, p.last_callback)
        return 200, {"delivery": d["id"], "body": d["body"]}

    def sb_fault(self, body, now):
        pattern = require_str(body, "pattern", 500)
        try:
            rx = re.compile(pattern)
        except re.error as e:
            raise ApiError(400, "INVALID_REQUEST", "pattern is not a regular expression: %s" % e)
        count = body.get("count", 1)
        when = body.get("when", "before")
        status = body.get("status")
        delay = body.get("delayMs", 0)
        drop = body.get("drop", False)
        if not is_int(count) or count < 1:
            raise ApiError(400, "INVALID_REQUEST", "count must be a positive integer")
        if when not in ("before", "after"):
            raise ApiError(400, "INVALID_REQUEST", "when must be before or after")
        if status is not None and (not is_int(status) or not 200 <= status <= 599):
            raise ApiError(400, "INVALID_REQUEST", "status must be an HTTP status 200..599")
        if not is_int(delay) or delay < 0 or delay > 600000:
            raise ApiError(400, "INVALID_REQUEST", "delayMs must be 0..600000")
        if not isinstance(drop, bool):
            raise ApiError(400, "INVALID_REQUEST", "drop must be true or false")
        code = body.get("code") or "FAILED_INTERNAL_SYSTEM_PROCESSING"
        if not isinstance(code, str):
            raise ApiError(400, "INVALID_REQUEST", "code must be a string")
        fault = {"pattern": pattern, "count": count, "when": when, "status": status,
                 "code": code, "delayMs": delay, "drop": drop, "_rx": rx}
        self.faults.append(fault)
        return 200, self._faults_json()

    def _faults_json(self):
        return {"faults": [{k: v for k, v in f.items() if not k.startswith("_")} for f in self.faults]}

    def take_fault(self, method, path):
        with self.lock:
            for f in self.faults:
                if f["_rx"].search("%s %s" % (method, path)):
                    f["count"] -= 1
                    if f["count"] == 0:
                        self.faults.remove(f)
                    return f
        return None

    def stats(self):
        return {"confirms": dict(self.confirms), "cancels": dict(self.cancel_counts),
                "payments": len(self.payments)}

    def listing(self, order_id, now):
        """Every payment (of order_id when given), oldest first, as the Payment
        objects GET /v1/payments/{paymentKey} answers (time applied)."""
        keys = self.orders.get(order_id, []) if order_id is not None else list(self.payments)
        return {"payments": [self._payment(k, now).to_json() for k in keys]}

    def record_request(self, entry):
        """Adds entry (a dict its request fills in as it goes) to the log, in
        the order requests arrive."""
        with self.lock:
            self.requests.append(entry)
            del self.requests[:-REQUEST_LOG_MAX]

    def reset(self):
        with self.lock:
            self._clear()

    # ---- idempotent calls ------------------------------------------------

    def call(self, fn, params, body, method, path, key):
        """Runs fn under the lock, through the idempotency table when key is
        given: returns (status, body bytes, replayed)."""
        now = time.time()
        with self.lock:
            if key is not None:
                for k in [k for k, r in self.idempotency.items() if r["at"] < now - IDEMPOTENCY_TTL]:
                    del self.idempotency[k]
                rec = self.idempotency.get((key, method, path))
                if rec is not None:
                    if rec["request"] != canonical(body):
                        raise ApiError(422, "INVALID_REQUEST",
                                       "Idempotency-Key %s was used with a different request body" % key)
                    return rec["status"], rec["body"], True
            try:
                status, obj = fn(params, body, now)
            except ApiError as e:
                status, obj = e.status, e.body()
            data = dumps(obj)
            if key is not None:
                self.idempotency[(key, method, path)] = {
                    "request": canonical(body), "status": status, "body": data, "at": now}
            return status, data, False

    # ---- webhooks --------------------------------------------------------

    def _callback(self, p, status, now):
        """The DEPOSIT_CALLBACK of p (lock held): remembered for a resend and
        delivered in the background."""
        body = {"createdAt": datetime.fromtimestamp(now, KST).strftime("%Y-%m-%dT%H:%M:%S.%f"),
                "secret": p.secret, "status": status,
                "transactionKey": p.last_transaction_key, "orderId": p.order_id}
        p.last_callback = body
        self._deliver_later(p, body)

    def _deliver_later(self, p, body):
        d = {"id": len(self.deliveries) + 1, "paymentKey": p.key, "orderId": p.order_id,
             "url": self.settings.webhook_url, "body": body, "attempts": [],
             "state": "pending" if self.settings.webhook_url else "skipped"}
        self.deliveries.append(d)
        if self.settings.webhook_url:
            threading.Thread(target=self._deliver, args=(d, self.generation),
                             name="webhook-%d" % d["id"], daemon=True).start()
        return d

    def _deliver(self, d, generation):
        data = dumps(d["body"])
        delay = self.settings.webhook_backoff
        tries = 1 + self.settings.webhook_retries
        for attempt in range(1, tries + 1):
            if attempt > 1:
                time.sleep(delay)
                delay *= 2
            if self.generation != generation:
                return  # reset meanwhile
            req = urllib.request.Request(d["url"], data=data, method="POST", headers={
                "Content-Type": "application/json", "User-Agent": "sandbox-pg"})
            status, error = None, None
            try:
                with self.opener.open(req, timeout=self.settings.webhook_timeout) as r:
                    status = r.status
                    r.read()
            except urllib.error.HTTPError as e:
                status = e.code
                e.close()
            except (OSError, http.client.HTTPException, ValueError) as e:
                error = str(getattr(e, "reason", None) or e) or type(e).__name__
            ok = status is not None and 200 <= status < 300
            with self.lock:
                if self.generation != generation:
                    return
                d["attempts"].append({"at": iso(time.time()), "status": status, "error": error})
                if ok:
                    d["state"] = "delivered"
                elif attempt == tries:
                    d["state"] = "failed"
            log("webhook %d for payment %s (order %s) to %s: attempt %d of %d: %s" % (
                d["id"], d["paymentKey"], d["orderId"], d["url"], attempt, tries,
                "status %d" % status if status is not None else error))
            if ok:
                return


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # a webhook answered with a redirect failed (it is not followed)
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


# --------------------------------------------------------------------------
# The payment window

PAGE_STYLE = """
body{font-family:system-ui,sans-serif;background:#f2f4f6;margin:0;padding:24px}
main{max-width:420px;margin:0 auto;background:#fff;border-radius:12px;padding:24px}
h1{font-size:20px;margin:0 0 4px}.note{color:#6b7684;font-size:13px;margin:0 0 16px}
dl{display:grid;grid-template-columns:auto 1fr;gap:8px 16px;margin:0 0 24px}
dt{color:#6b7684}dd{margin:0;text-align:right}
button{display:block;width:100%;padding:12px;margin:8px 0;border:0;border-radius:8px;font-size:16px}
#pay{background:#3182f6;color:#fff}#reject{background:#e5e8eb}#fail{background:#fff;border:1px solid #d1d6db}
"""

WINDOW_FIELDS = ("clientKey", "orderId", "orderName", "amount", "method", "provider",
                 "successUrl", "failUrl", "customerName", "dueInSeconds", "bank")


def page(title, inner):
    return ("<!doctype html>\n<html lang=\"ko\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>%s</title><style>%s</style></head>\n<body><main>\n%s\n</main></body></html>\n"
            % (html.escape(title), PAGE_STYLE, inner)).encode()


def error_page(e):
    return page("결제 오류", "<h1>결제를 진행할 수 없습니다</h1>\n"
                "<p class=\"note\" id=\"error-code\">%s</p>\n<p id=\"error-message\">%s</p>"
                % (html.escape(e.code), html.escape(e.message)))


def window_request(fields, client_key):
    """Checks the window's fields: the client key, both return URLs and the
    payment; returns (spec, successUrl, failUrl)."""
    if not same_key(fields.get("clientKey"), client_key):
        raise ApiError(401, "UNAUTHORIZED_KEY", "clientKey")
    urls = []
    for name in ("successUrl", "failUrl"):
        u = fields.get(name) or ""
        parts = urllib.parse.urlsplit(u)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ApiError(400, "INVALID_REQUEST", "%s must be an absolute http(s) URL" % name)
        urls.append(u)
    raw = {k: fields.get(k) for k in WINDOW_FIELDS if k not in ("clientKey", "successUrl", "failUrl")}
    raw = {k: v for k, v in raw.items() if v is not None}
    return payment_spec(raw, from_form=True), urls[0], urls[1]


def window_page(fields, spec):
    method = METHODS[spec["method"]]
    if spec["provider"]:
        method += " (%s)" % spec["provider"]
    hidden = "".join("<input type=\"hidden\" name=\"%s\" value=\"%s\">" % (k, html.escape(fields[k]))
                     for k in WINDOW_FIELDS if fields.get(k) is not None)
    rows = (("주문명", "order-name", spec["orderName"]), ("주문번호", "order-id", spec["orderId"]),
            ("결제 수단", "method", method), ("결제 금액", "amount", "{:,}원".format(spec["amount"])))
    return page("샌드박스 결제창", (
        "<h1>샌드박스 결제</h1>\n<p class=\"note\">테스트 결제창입니다. 실제로 돈이 오가지 않습니다.</p>\n"
        "<dl>%s</dl>\n<form method=\"post\" action=\"/sandbox/pay\">%s\n"
        "<button type=\"submit\" name=\"action\" value=\"pay\" id=\"pay\">결제하기</button>\n"
        "<button type=\"submit\" name=\"action\" value=\"reject\" id=\"reject\">결제하기 (승인 거절)</button>\n"
        "<button type=\"submit\" name=\"action\" value=\"cancel\" id=\"fail\">실패</button>\n"
        "</form>") % ("".join("<dt>%s</dt><dd id=\"%s\">%s</dd>" % (a, b, html.escape(c))
                              for a, b, c in rows), hidden))


# --------------------------------------------------------------------------
# HTTP

# (method, path regex, handler name, kind); kind: api (secret key), sandbox
# (no auth), open
ROUTES = [
    ("GET", r"/healthz", "h_health", "open"),
    ("POST", r"/v1/payments/confirm", "api_confirm", "api"),
    ("GET", r"/v1/payments/orders/(?P<order_id>[^/]+)", "api_get_order", "api"),
    ("GET", r"/v1/payments/(?P<payment_key>[^/]+)", "api_get_payment", "api"),
    ("POST", r"/v1/payments/(?P<payment_key>[^/]+)/cancel", "api_cancel", "api"),
    ("GET", r"/sandbox/pay", "h_window", "open"),
    ("POST", r"/sandbox/pay", "h_window_submit", "open"),
    ("POST", r"/sandbox/v1/payments", "h_create", "sandbox"),
    ("GET", r"/sandbox/v1/payments", "h_payments", "sandbox"),
    ("POST", r"/sandbox/v1/deposits", "h_deposit", "sandbox"),
    ("POST", r"/sandbox/v1/webhooks/resend", "h_resend", "sandbox"),
    ("GET", r"/sandbox/v1/webhooks", "h_webhooks", "sandbox"),
    ("GET", r"/sandbox/v1/requests", "h_requests", "sandbox"),
    ("GET", r"/sandbox/v1/stats", "h_stats", "sandbox"),
    ("POST", r"/sandbox/v1/reset", "h_reset", "sandbox"),
    ("GET", r"/sandbox/v1/faults", "h_faults", "sandbox"),
    ("POST", r"/sandbox/v1/faults", "h_add_fault", "sandbox"),
]
ROUTES = [(m, re.compile("^" + rx + "$"), h, k) for m, rx, h, k in ROUTES]


def route(method, path):
    """(handler name, kind, params) of method+path; or (None, None, allowed
    methods) when nothing matches."""
    allowed = []
    for m, rx, h, kind in ROUTES:
        match = rx.match(path)
        if match:
            if m == method:
                return h, kind, {k: urllib.parse.unquote(v) for k, v in match.groupdict().items()}
            allowed.append(m)
    return None, None, allowed


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "sandbox-pg"
    timeout = 60  # an idle keep-alive connection is closed after this

    sandbox = None  # set by main()

    # ---- plumbing ------------------------------------------------------

    def log_message(self, format, *args):
        pass  # one line per request is written by handle_one()

    def version_string(self):
        return self.server_version

    def send_error(self, code, message=None, explain=None):
        # malformed requests (bad request line, headers too long, unknown
        # method): a JSON answer like every other, then the connection closes
        self.close_connection = True
        err = {"code": "INVALID_REQUEST" if code < 500 else "FAILED_INTERNAL_SYSTEM_PROCESSING",
               "message": message or "bad request"}
        if code == 501:
            err = {"code": "METHOD_NOT_ALLOWED", "message": MSG["METHOD_NOT_ALLOWED"]}
        try:
            self.reply(code, dumps(err), headers=[("Connection", "close")])
        except OSError:
            pass
        log("%s %s %d (malformed request: %s)" % (getattr(self, "command", None) or "-",
                                                   getattr(self, "path", None) or "-", code, message))

    def reply(self, status, data, ctype="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for k, v in headers:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and status >= 200 and status not in (204, 304):
            self.wfile.write(data)
        self.answered = status

    def reply_error(self, e):
        self.reply(e.status, dumps(e.body()))

    def read_body(self):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            data = b""
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    raise ApiError(400, "INVALID_REQUEST", "bad chunked body")
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                if len(data) + size > MAX_BODY:
                    self.close_connection = True
                    raise ApiError(413, "PAYLOAD_TOO_LARGE")
                data += self.rfile.read(size)
                self.rfile.readline(1024)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        if not length.strip().isdigit():
            self.close_connection = True
            raise ApiError(400, "INVALID_REQUEST", "bad Content-Length")
        n = int(length)
        if n > MAX_BODY:
            # read what was sent (up to a point) so that the client, still
            # sending, gets the answer rather than a reset connection
            self.close_connection = True
            left = n if n <= 16 * MAX_BODY else 0
            while left > 0:
                chunk = self.rfile.read(min(left, 65536))
                if not chunk:
                    break
                left -= len(chunk)
            raise ApiError(413, "PAYLOAD_TOO_LARGE", "at most %d bytes" % MAX_BODY)
        return self.rfile.read(n)

    def json_body(self, data, required):
        """The request's JSON object (None when there is no body and none is
        required)."""
        if not data:
            if required:
                raise ApiError(400, "INVALID_REQUEST", "a JSON body is required")
            return {}
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise ApiError(400, "INVALID_REQUEST", "Content-Type must be application/json")
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise ApiError(400, "INVALID_REQUEST", "malformed JSON: %s" % e)
        if not isinstance(body, dict):
            raise ApiError(400, "INVALID_REQUEST", "the body must be a JSON object")
        return body

    def do_GET(self):
        self.handle_one()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def handle_one(self):
        t0 = time.monotonic()
        self.answered = None
        self.note = ""
        try:
            self.dispatch()
        except Drop:
            self.close_connection = True
            self.note += " dropped (fault)"
        except ApiError as e:
            self.reply_error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            self.note += " client went away"
        except Exception:
            log("internal error on %s %s:\n%s" % (self.command, self.path, traceback.format_exc()))
            self.close_connection = True
            if self.answered is None:
                try:
                    self.reply_error(ApiError(500, "FAILED_INTERNAL_SYSTEM_PROCESSING"))
                except OSError:
                    pass
        log("%s %s %s %.1fms%s" % (self.command, self.path,
                                    self.answered if self.answered is not None else "-",
                                    (time.monotonic() - t0) * 1000, self.note))

    # ---- dispatch ------------------------------------------------------

    def dispatch(self):
        url = urllib.parse.urlsplit(self.path)
        path = url.path
        data = self.read_body()
        name, kind, params = route(self.command, path)
        if path == "/v1" or path.startswith("/v1/"):
            return self.api(name, params, path, data)
        if name is None:
            if params:
                self.reply(405, dumps(ApiError(405, "METHOD_NOT_ALLOWED").body()),
                           headers=[("Allow", ", ".join(params))])
                return
            raise ApiError(404, "NOT_FOUND", path)
        if kind == "sandbox":
            body = self.json_body(data, required=False)
            return getattr(self, name)(body, url.query)
        return getattr(self, name)(data, url.query)

    def api(self, name, params, path, data):
        """A /v1 request: the secret key, then faults, then the handler through
        the idempotency table; each is written to the request log."""
        sb = self.sandbox
        key = self.headers.get("Idempotency-Key")
        entry = {"method": self.command, "path": self.path, "idempotencyKey": key,
                 "status": None, "replayed": False, "fault": False,
                 "at": datetime.now(KST).isoformat(timespec="milliseconds")}
        sb.record_request(entry)
        try:
            if not same_key(basic_credentials(self.headers.get("Authorization")),
                            sb.settings.secret_key):
                raise ApiError(401, "UNAUTHORIZED_KEY")
            if name is None:
                if params:
                    raise ApiError(405, "METHOD_NOT_ALLOWED")
                raise ApiError(404, "NOT_FOUND", path)
            fault = sb.take_fault(self.command, path)
            if fault:
                entry["fault"] = True
            if fault and fault["when"] == "before":
                self.apply_fault(fault, entry)
            body = self.json_body(data, required=True) if self.command == "POST" else {}
            if self.command != "POST":
                key = None  # idempotency is for POST only
            elif key is not None and not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX:
                raise ApiError(400, "INVALID_REQUEST", "Idempotency-Key must be 1 to 300 characters")
            status, out, replayed = sb.call(getattr(sb, name), params, body, self.command, path, key)
            entry["replayed"] = replayed
            if fault and fault["when"] == "after":
                self.apply_fault(fault, entry)
            if replayed:
                self.note += " replayed"
            entry["status"] = status
            self.reply(status, out, headers=[("Idempotent-Replayed", "true")] if replayed else ())
        except ApiError as e:
            entry["status"] = e.status
            self.reply_error(e)
        finally:
            if key is not None:
                self.note += " key=%s" % key

    def apply_fault(self, fault, entry):
        """Waits delayMs, then drops the connection or answers the fault's
        status; with neither, the request goes on (after a delay only)."""
        if fault["delayMs"]:
            time.sleep(fault["delayMs"] / 1000.0)
        if fault["drop"]:
            entry["status"] = 0
            raise Drop()
        if fault["status"] is not None:
            raise ApiError(fault["status"], fault["code"], "injected fault")

    # ---- open and sandbox routes ---------------------------------------

    def h_health(self, data, query):
        self.reply(200, dumps({"status": "ok"}))

    def h_window(self, data, query):
        fields = {k: v[0] for k, v in urllib.parse.parse_qs(query, keep_blank_values=True).items()}
        try:
            spec, _, _ = window_request(fields, self.sandbox.settings.client_key)
        except ApiError as e:
            self.reply(e.status, error_page(e), "text/html; charset=utf-8")
            return
        self.reply(200, window_page(fields, spec), "text/html; charset=utf-8")

    def h_window_submit(self, data, query):
        sb = self.sandbox
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            if ctype != "application/x-www-form-urlencoded":
                raise ApiError(400, "INVALID_REQUEST",
                               "Content-Type must be application/x-www-form-urlencoded")
            try:
                form = urllib.parse.parse_qs(data.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                raise ApiError(400, "INVALID_REQUEST", "the form is not UTF-8")
            fields = {k: v[0] for k, v in form.items()}
            action = fields.pop("action", "pay")
            if action not in ("pay", "reject", "cancel"):
                raise ApiError(400, "INVALID_REQUEST", "action must be pay, reject or cancel")
            spec, success_url, fail_url = window_request(fields, sb.settings.client_key)
            if action == "cancel":
                location = with_query(fail_url, {"code": "PAY_PROCESS_CANCELED",
                                                 "message": MSG["PAY_PROCESS_CANCELED"],
                                                 "orderId": spec["orderId"]})
            else:
                spec["outcome"] = "fail" if action == "reject" else "success"
                with sb.lock:
                    p = sb.sb_create(spec, time.time())
                location = with_query(success_url, {"paymentType": "NORMAL", "orderId": p.order_id,
                                                    "paymentKey": p.key, "amount": p.amount})
        except ApiError as e:
            self.reply(e.status, error_page(e), "text/html; charset=utf-8")
            return
        self.reply(303, page("이동 중", "<p><a href=\"%s\">계속</a></p>" % html.escape(location)),
                   "text/html; charset=utf-8", headers=[("Location", location)])

    def h_create(self, body, query):
        sb = self.sandbox
        auth = self.headers.get("Authorization")
        if auth is not None and not same_key(basic_credentials(auth), sb.settings.client_key):
            raise ApiError(401, "UNAUTHORIZED_KEY", "use the client key, or no Authorization")
        spec = payment_spec(dict(body))
        with sb.lock:
            p = sb.sb_create(spec, time.time())
        self.reply(200, dumps({"paymentKey": p.key, "orderId": p.order_id, "amount": p.amount}))

    def _locked(self, fn, *args):
        with self.sandbox.lock:
            status, obj = fn(*args, time.time())
        self.reply(status, dumps(obj))

    def h_deposit(self, body, query):
        self._locked(self.sandbox.sb_deposit, body)

    def h_resend(self, body, query):
        self._locked(self.sandbox.sb_resend, body)

    def h_add_fault(self, body, query):
        self._locked(self.sandbox.sb_fault, body)

    def h_faults(self, body, query):
        with self.sandbox.lock:
            out = self.sandbox._faults_json()
        self.reply(200, dumps(out))

    def h_webhooks(self, body, query):
        with self.sandbox.lock:
            out = json.loads(dumps({"deliveries": self.sandbox.deliveries}))
        self.reply(200, dumps(out))

    def h_requests(self, body, query):
        with self.sandbox.lock:
            out = {"requests": [dict(e) for e in self.sandbox.requests]}
        self.reply(200, dumps(out))

    def h_payments(self, body, query):
        q = urllib.parse.parse_qs(query, keep_blank_values=True)
        order_id = q["orderId"][0] if "orderId" in q else None
        with self.sandbox.lock:
            out = self.sandbox.listing(order_id, time.time())
        self.reply(200, dumps(out))

    def h_stats(self, body, query):
        with self.sandbox.lock:
            out = self.sandbox.stats()
        self.reply(200, dumps(out))

    def h_reset(self, body, query):
        self.sandbox.reset()
        self.reply(200, dumps({"status": "ok"}))


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    try:
        settings = Settings(os.environ)
    except ConfigError as e:
        sys.stderr.write("sandbox-pg: %s\n" % e)
        return 2
    Handler.sandbox = Sandbox(settings)
    try:
        server = Server((settings.host, settings.port), Handler)
    except OSError as e:
        sys.stderr.write("sandbox-pg: could not listen on %s:%d: %s\n"
                         % (settings.host, settings.port, e.strerror or e))
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    host, port = server.server_address[:2]
    log("listening on http://%s:%d (webhooks to %s, %d re-sends from %gs)" % (
        host, port, settings.webhook_url or "nowhere", settings.webhook_retries,
        settings.webhook_backoff))
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    t.start()
    while not stop.wait(0.5):
        pass
    server.shutdown()
    server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
