"""order_stack.py: the services the order saga's and the refunds' tests run
(test_order_saga.py, test_order_refund.py), started on first use and kept
for the test program: catalog (with one category), cart on a Redis of its
own (its idempotency records, "clear-<number>", would meet other programs'
orders, numbered alike), member, the sandbox PG, the payment service and
two kinds of order instance on one database:

- the reader: the instance the payment service and the tests call; it does
  not consume (its MALL_PAYMENT_ADDRS lead nowhere), so the consuming
  instance can be stopped or killed while payments go on;
- consumers (start_consumer, consumer()): instances that follow the payment
  service's events, and can reach it (refunds).

Not a test file: harness.py runs test_*.py only."""
import time

import harness

# the payment outbox's newest pub_seq, or more than any while a committed row
# still awaits one (so a cursor never seems to have caught up too early)
PAYMENT_LAST_SQL = ("SELECT CASE WHEN bool_or(pub_seq IS NULL) THEN 9223372036854775807 "
                    "ELSE coalesce(max(pub_seq), 0) END FROM outbox")


def rpc(addr, service, method, req, key=None, mutating=False, timeout_ms=20000):
    """(ok, reply-or-error JSON) of service/method at addr (harness.rpc_call)."""
    return harness.rpc_call(addr, service, method, req, key=key, mutating=mutating,
                            timeout_ms=timeout_ms)


def ok_at(svc, service, method, req, **kw):
    good, r = rpc(svc.addr, service, method, req, **kw)
    assert good, (method, req, r)
    return r


def amount(m):
    return int((m or {}).get("amount", 0))


class OrderStack:
    """prefix names what the program creates ("saga": category saga-test,
    products saga-p..., SKUs SAGA-...); category_name is the category's."""

    def __init__(self, prefix, category_name):
        self.prefix = prefix
        self.category = ("%s-test" % prefix, category_name)
        self.s = {}
        self.n = 0

    def catalog(self):
        if "catalog" not in self.s:
            self.s["catalog"] = harness.start_catalog()
            ok_at(self.s["catalog"], "mall.catalog.Catalog", "CreateCategory",
                  {"slug": self.category[0], "name": self.category[1]}, mutating=True)
        return self.s["catalog"]

    def redis(self):
        if "redis" not in self.s:
            self.s["redis"] = harness.start_redis()
        return self.s["redis"]

    def cart(self):
        if "cart" not in self.s:
            self.s["cart"] = harness.start_service("cart", env={
                "MALL_CATALOG_ADDRS": self.catalog().addr, "MALL_RPC_TIMEOUT": "5s",
                "MALL_REDIS_ADDR": self.redis().addr})
        return self.s["cart"]

    def member(self):
        if "member" not in self.s:
            self.s["member"] = harness.start_service("member")
        return self.s["member"]

    def sandbox(self):
        if "pg" not in self.s:
            self.s["pg"] = harness.start_sandbox_pg()
        return self.s["pg"]

    def order_env(self, **settings):
        e = {"MALL_CATALOG_ADDRS": self.catalog().addr, "MALL_CART_ADDRS": self.cart().addr,
             "MALL_MEMBER_ADDRS": self.member().addr, "MALL_RPC_TIMEOUT": "5s",
             "MALL_ORDER_SWEEP_INTERVAL": "1s"}
        e.update(settings)
        return e

    def reader(self):
        if "reader" not in self.s:
            nowhere = "tcp://127.0.0.1:%d" % harness.free_port()
            self.s["reader"] = harness.start_service(
                "order", name="order-reader", env=self.order_env(
                    MALL_PAYMENT_ADDRS=nowhere,
                    MALL_PAYMENT_EVENTS_ADDRS="tcp://127.0.0.1:%d" % harness.free_port()))
        return self.s["reader"]

    def payment(self):
        if "payment" not in self.s:
            pg = self.sandbox()
            self.s["payment"] = harness.start_service("payment", env={
                "MALL_ORDER_ADDRS": self.reader().addr, "MALL_PAYMENT_PG_URL": pg.url,
                "MALL_PAYMENT_PG_SECRET_KEY": pg.secret_key,
                "MALL_PAYMENT_PG_TIMEOUT": "5s", "MALL_RPC_TIMEOUT": "5s"})
        return self.s["payment"]

    def start_consumer(self, name="order"):
        """A new order instance consuming the payment events, on the reader's
        database."""
        pay = self.payment()
        return harness.start_service("order", name=name, db=self.reader().db,
                                     env=self.order_env(
                                         MALL_PAYMENT_ADDRS=pay.addr,
                                         MALL_PAYMENT_EVENTS_ADDRS=pay.events_addr))

    def consumer(self):
        """The consuming instance of the program, started once."""
        if "consumer" not in self.s:
            self.s["consumer"] = self.start_consumer()
        return self.s["consumer"]

    def pay(self, method, req, **kw):
        """PaymentService.method; Cancel with a new idempotency key unless kw
        names one."""
        kw.setdefault("mutating", method == "Cancel")
        return rpc(self.payment().addr, "mall.payment.PaymentService", method, req, **kw)

    def pay_ok(self, method, req, **kw):
        good, r = self.pay(method, req, **kw)
        assert good, (method, req, r)
        return r

    # ---- reading and waiting ----

    def get_order(self, number):
        return ok_at(self.reader(), "mall.order.OrderService", "GetOrder",
                     {"number": number, "admin": True})

    def status(self, number):
        return self.get_order(number)["status"]

    def wait_status(self, number, want, timeout=20):
        harness.wait_until(lambda: self.status(number) == want, timeout,
                           "order %s %s (it is %s)" % (number, want, self.status(number)))

    def stock(self, s):
        """(on_hand, reserved) of SKU s."""
        (row,) = self.catalog().db.sql("SELECT on_hand, reserved FROM sku WHERE id = %d"
                                       % s["id"])
        return int(row[0]), int(row[1])

    def reservation_state(self, number):
        return ok_at(self.catalog(), "mall.catalog.Catalog", "GetReservation",
                     {"orderId": number})["state"]

    def history(self, number, to=None):
        h = self.get_order(number).get("history", [])
        return [x for x in h if to is None or x["to"] == to]

    def order_events(self, number, type_):
        """How many order.* events of type_ the order outbox holds about number."""
        rows = self.reader().db.sql(
            "SELECT count(*) FROM outbox WHERE type = '%s' AND "
            "position(convert_to('%s', 'UTF8') in payload) > 0" % (type_, number))
        return int(rows[0][0])

    def caught_up(self):
        """Whether the order database's cursor reached the payment outbox's end."""
        (last,) = self.payment().db.sql(PAYMENT_LAST_SQL)[0]
        rows = self.reader().db.sql(
            "SELECT after_seq FROM event_cursor WHERE source = 'payment'")
        return bool(rows) and int(rows[0][0]) >= int(last)

    # ---- making ----

    def unique(self):
        self.n += 1
        return "%d%03d" % (int(time.time() * 1000) % 10 ** 7, self.n)

    def sku(self, stock=10, price=12000):
        """A new published product with one SKU (option 중량 300g)."""
        n = self.unique()
        cat = self.catalog()
        p = ok_at(cat, "mall.catalog.Catalog", "CreateProduct", {
            "slug": "%s-p%s" % (self.prefix, n), "name": "한우 등심 %s" % n,
            "categorySlug": self.category[0],
            "options": [{"name": "중량", "values": ["300g"]}], "published": True},
            mutating=True)
        return ok_at(cat, "mall.catalog.Catalog", "CreateSku", {
            "productId": p["id"], "code": "%s-%s" % (self.prefix.upper(), n),
            "optionValues": [{"option": "중량", "value": "300g"}], "price": price,
            "onHand": stock}, mutating=True)
