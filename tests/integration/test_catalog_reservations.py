"""Stock reservations in the catalog (ReserveStock, CommitReservation,
ReleaseReservation, RestockReservation, GetReservation), called with rpc_call
against a real catalog and PostgreSQL: exactly the stock is reserved under 100
concurrent clients, all lines or none, idempotency by key and by order id,
the state machine and its refusals, bad input writing nothing, product pages
showing the change at once, and the stock books still balancing after the
catalog is killed with SIGKILL in the middle of concurrent reservations."""

import calendar
import json
import os
import random
import subprocess
import threading
import time

import harness

_env = {}


def env():
    """One catalog (16 workers: as many transactions at once) and a gateway,
    with a category for the products the tests make."""
    if not _env:
        cat = harness.start_catalog(env={"MALL_CATALOG_WORKERS": "16"})
        gw = harness.start_gateway(catalog=[cat])
        _env.update(cat=cat, gw=gw, n=0)
        ok, r = rpc("CreateCategory", {"slug": "resv", "name": "예약 시험"}, mutating=True)
        assert ok, r
    return _env


# rpc_call, the test's client, runs without LeakSanitizer: with 100 of them
# starting and exiting at once, nng 1.5.2 now and then leaves a few hundred
# bytes of its own (allocated on its threads, nothing of ours) at exit, which
# would abort the client.  The catalog, the subject here, keeps leak checking.
_CLIENT_ENV = dict(os.environ, ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") +
                   ":detect_leaks=0")


def rpc(method, req, key=None, mutating=False, timeout_ms=20000):
    """(ok, reply-or-error JSON) of mall.catalog.Catalog/<method> (harness.rpc_call;
    rpc_call's own exit leak check is off, see _CLIENT_ENV)."""
    return harness.rpc_call(env()["cat"], "mall.catalog.Catalog", method, req, key=key,
                            mutating=mutating, timeout_ms=timeout_ms, env=_CLIENT_ENV)


def new_sku(on_hand, price=1000):
    """A published product with one SKU of on_hand; returns (sku id, product slug)."""
    e = env()
    e["n"] += 1
    slug = "resv-%d-%s" % (e["n"], random.randrange(1 << 30))
    ok, p = rpc("CreateProduct", {"slug": slug, "name": "예약 상품 %d" % e["n"],
                                  "categorySlug": "resv", "published": True}, mutating=True)
    assert ok, p
    ok, s = rpc("CreateSku", {"productId": p["id"], "code": slug.upper(), "price": price,
                              "onHand": on_hand}, mutating=True)
    assert ok, s
    return s["id"], slug


def sql(query):
    return env()["cat"].db.sql(query)


def stock(sku_id):
    """(on_hand, reserved) from the database."""
    (row,) = sql("SELECT on_hand, reserved FROM sku WHERE id = %d" % sku_id)
    return int(row[0]), int(row[1])


def reserve(order, lines, key=None, expires=None, **kw):
    req = {"orderId": order, "lines": [{"skuId": s, "quantity": q} for s, q in lines]}
    if expires is not None:
        req["expiresAt"] = expires
    return rpc("ReserveStock", req, key=key, mutating=True, **kw)


def change(method, order, key=None, **kw):
    return rpc(method, {"orderId": order}, key=key, mutating=True, **kw)


def assert_error(r, code, reason=None, field=None):
    assert "error" in r, r
    assert r["error"]["code"] == code, r
    if reason is not None:
        assert r["error"].get("reason") == reason, r
    if field is not None:
        assert field in r["error"].get("fields", {}), r


def books():
    """Everything a refused request must leave as it was."""
    return (sql("SELECT count(*) FROM reservation")[0][0],
            sql("SELECT count(*) FROM reservation_line")[0][0],
            sql("SELECT coalesce(sum(reserved), 0), coalesce(sum(on_hand), 0) FROM sku")[0])


def assert_books_balance():
    """Every SKU's reserved is the sum of its lines in reservations still
    reserved, and 0 <= reserved <= on_hand."""
    rows = sql("SELECT s.id, s.on_hand, s.reserved, coalesce(("
               " SELECT sum(l.quantity) FROM reservation_line l JOIN reservation r USING (order_id)"
               " WHERE l.sku_id = s.id AND r.state = 'reserved'), 0) FROM sku s")
    for sid, on_hand, reserved, held in rows:
        on_hand, reserved, held = int(on_hand), int(reserved), int(held)
        assert reserved == held, "sku %s: reserved %d, lines hold %d" % (sid, reserved, held)
        assert 0 <= reserved <= on_hand, "sku %s: on hand %d, reserved %d" % (sid, on_hand,
                                                                            reserved)


def test_reserve_get_and_stock():
    a, _ = new_sku(10)
    b, _ = new_sku(4)
    t0 = time.time()
    ok, r = reserve("ord-basic-1", [(b, 4), (a, 3)])
    assert ok, r
    assert r["orderId"] == "ord-basic-1" and r["state"] == "reserved", r
    assert r["lines"] == sorted([{"skuId": a, "quantity": 3}, {"skuId": b, "quantity": 4}],
                                key=lambda l: l["skuId"]), r
    # no expiry given: 30 minutes
    exp = calendar.timegm(time.strptime(r["expiresAt"], "%Y-%m-%dT%H:%M:%SZ"))
    assert abs(exp - (t0 + 1800)) < 120, (r["expiresAt"], t0)
    assert r["createdAt"] and r["updatedAt"], r
    ok, g = rpc("GetReservation", {"orderId": "ord-basic-1"})
    assert ok and g == r, (g, r)
    assert stock(a) == (10, 3) and stock(b) == (4, 4)
    ok, s = rpc("GetStock", {"skuCode": sql("SELECT code FROM sku WHERE id = %d" % a)[0][0]})
    assert ok and (s["onHand"], s["reserved"], s["available"]) == (10, 3, 7), s
    code = sql("SELECT code FROM sku WHERE id = %d" % b)[0][0]
    out = harness.mallctl("catalog", "stock", code, catalog=env()["cat"]).stdout
    assert "on hand 4, reserved 4, available 0" in out, out
    ok, g = rpc("GetReservation", {"orderId": "ord-nobody"})
    assert not ok, g
    assert_error(g, "not_found")
    assert_books_balance()


def test_explicit_expiry():
    a, _ = new_sku(5)
    t = int(time.time()) + 86400
    # in Seoul's offset, with a fraction: answered in UTC, to the second
    when = time.strftime("%Y-%m-%dT%H:%M:%S.250+09:00", time.gmtime(t + 9 * 3600))
    ok, r = reserve("ord-expiry-1", [(a, 1)], expires=when)
    assert ok, r
    want = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
    assert r["expiresAt"] == want, (r["expiresAt"], want, when)
    ok, r = reserve("ord-expiry-2", [(a, 1)], expires=want.replace("T", "t").replace("Z", "z"))
    assert ok and r["expiresAt"] == want, r
    # what ops look for: open reservations by expiry
    rows = sql("SELECT order_id FROM reservation WHERE state = 'reserved' AND "
               "expires_at < now() + interval '2 days' AND order_id = 'ord-expiry-1'")
    assert rows == [("ord-expiry-1",)], rows


def test_100_concurrent_clients_reserve_exactly_the_stock():
    sid, _ = new_sku(20)
    code = sql("SELECT code FROM sku WHERE id = %d" % sid)[0][0]
    results = [None] * 100
    start = threading.Barrier(101)
    done = threading.Event()
    samples = []
    bad = []

    def client(i):
        start.wait()
        results[i] = reserve("ord-conc-%03d" % i, [(sid, 1)])

    def sampler():
        start.wait()
        last = 0
        while not done.is_set():
            on_hand, reserved = stock(sid)
            ok, s = rpc("GetStock", {"skuCode": code})
            samples.append((on_hand, reserved))
            if not (on_hand == 20 and 0 <= reserved <= 20 and reserved >= last):
                bad.append(("sql", on_hand, reserved, last))
            last = reserved
            if not ok or s["available"] < 0 or s["available"] != s["onHand"] - s["reserved"] \
                    or s["reserved"] > s["onHand"]:
                bad.append(("rpc", s))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(100)]
    watch = threading.Thread(target=sampler)
    for t in threads + [watch]:
        t.start()
    for t in threads:
        t.join()
    done.set()
    watch.join()

    won = [r for ok, r in results if ok]
    lost = [r for ok, r in results if not ok]
    assert len(won) == 20, (len(won), lost[:3])
    assert all(r["state"] == "reserved" and r["lines"] == [{"skuId": sid, "quantity": 1}]
               for r in won), won[:3]
    for r in lost:
        assert_error(r, "failed_precondition", "out_of_stock")
        assert r["error"]["details"] == {"skuId": sid, "available": 0}, r
    assert not bad, bad[:5]
    assert samples, "the sampler took no sample"
    assert stock(sid) == (20, 20)
    assert sql("SELECT count(*) FROM reservation_line WHERE sku_id = %d" % sid) == [("20",)]
    ok, s = rpc("GetStock", {"skuCode": code})
    assert ok and s["available"] == 0, s
    assert_books_balance()


class RowLock:
    """Holds a row lock in a psql session of its own (lock_sql, e.g. SELECT
    ... FOR UPDATE, in an open transaction) until the block ends."""

    def __init__(self, lock_sql):
        self.lock_sql = lock_sql

    def __enter__(self):
        db = env()["cat"].db
        self.psql = subprocess.Popen(
            [db.cluster.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", db.admin_conninfo],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.psql.stdin.write("BEGIN;\n\\o /dev/null\n%s;\n\\o\n\\echo locked\n"
                              % self.lock_sql)
        self.psql.stdin.flush()
        line = self.psql.stdout.readline()
        assert line.strip() == "locked", line
        return self

    def __exit__(self, *exc):
        self.psql.communicate("COMMIT;\n", timeout=30)


def lock_waiters():
    """Sessions of the catalog's database waiting for a lock."""
    return int(sql("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                   " AND wait_event_type = 'Lock'")[0][0])


def run_all(calls):
    """Runs the functions of calls in threads at once; returns their results."""
    results = [None] * len(calls)

    def one(i):
        results[i] = calls[i]()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    return threads, results


def test_reservations_check_stock_under_the_row_lock():
    """16 reservations (one per worker) queue behind a lock on the SKU row;
    each must read the stock only once it holds the row, so the last six find
    none left (read before the lock, all 16 would pass the check)."""
    sid, _ = new_sku(10)
    with RowLock("SELECT 1 FROM sku WHERE id = %d FOR UPDATE" % sid):
        threads, results = run_all([lambda i=i: reserve("ord-lock-%02d" % i, [(sid, 1)])
                                    for i in range(16)])
        harness.wait_until(lambda: lock_waiters() >= 16, timeout=60,
                           what="16 reservations waiting for the sku row")
    for t in threads:
        t.join()
    won = [r for ok, r in results if ok]
    lost = [r for ok, r in results if not ok]
    assert len(won) == 10, (len(won), lost[:3])
    for r in lost:
        assert_error(r, "failed_precondition", "out_of_stock")
        assert r["error"]["details"] == {"skuId": sid, "available": 0}, r
    assert stock(sid) == (10, 10)
    assert_books_balance()


def test_state_changes_of_one_order_queue_on_its_row():
    """Commits and releases of one order, all at once behind a lock on its
    reservation: the first one decides; the others agree with it."""
    a, _ = new_sku(8)
    b, _ = new_sku(8)
    ok, r = reserve("ord-lock-race", [(a, 2), (b, 3)])
    assert ok, r
    calls = [lambda: change("CommitReservation", "ord-lock-race"),
             lambda: change("ReleaseReservation", "ord-lock-race")] * 8
    with RowLock("SELECT 1 FROM reservation WHERE order_id = 'ord-lock-race' FOR UPDATE"):
        threads, results = run_all(calls)
        harness.wait_until(lambda: lock_waiters() >= 16, timeout=60,
                           what="16 state changes waiting for the reservation row")
    for t in threads:
        t.join()
    ok, final = rpc("GetReservation", {"orderId": "ord-lock-race"})
    assert ok and final["state"] in ("committed", "released"), final
    for i, (ok, r) in enumerate(results):
        commit = i % 2 == 0
        if final["state"] == "committed":
            if commit:
                assert ok and r == final, r
            else:
                assert_error(r, "failed_precondition", "reservation_committed")
        else:
            if commit:
                assert_error(r, "failed_precondition", "reservation_released")
            else:
                assert ok and r == final, r
    if final["state"] == "committed":
        assert stock(a) == (6, 0) and stock(b) == (5, 0)
    else:
        assert stock(a) == (8, 0) and stock(b) == (8, 0)
    assert_books_balance()


def test_all_lines_or_none():
    a, _ = new_sku(5)
    b, _ = new_sku(2)
    before = books()
    ok, r = reserve("ord-aon-1", [(a, 3), (b, 3)])
    assert not ok, r
    assert_error(r, "failed_precondition", "out_of_stock")
    assert r["error"]["details"] == {"skuId": b, "available": 2}, r
    assert books() == before and stock(a) == (5, 0) and stock(b) == (2, 0)
    ok, g = rpc("GetReservation", {"orderId": "ord-aon-1"})
    assert not ok and g["error"]["code"] == "not_found", g
    # an unknown SKU among known ones: not found, nothing written
    missing = int(sql("SELECT coalesce(max(id), 0) + 1000 FROM sku")[0][0])
    ok, r = reserve("ord-aon-1", [(a, 1), (missing, 1)])
    assert not ok, r
    assert_error(r, "not_found")
    assert r["error"]["details"] == {"skuId": missing}, r
    assert books() == before
    # the order id is still free: with enough stock it goes through
    ok, r = reserve("ord-aon-1", [(a, 3), (b, 2)])
    assert ok and r["state"] == "reserved", r
    assert stock(a) == (5, 3) and stock(b) == (2, 2)
    # and what is left is what the next order can have
    ok, r = reserve("ord-aon-2", [(a, 3)])
    assert not ok and r["error"]["details"] == {"skuId": a, "available": 2}, r
    assert_books_balance()


def test_idempotent_by_key_and_by_order():
    a, _ = new_sku(10)
    b, _ = new_sku(10)
    ok, first = reserve("ord-idem-1", [(a, 2), (b, 1)], key="resv-idem-key-1")
    assert ok, first
    ok, again = reserve("ord-idem-1", [(a, 2), (b, 1)], key="resv-idem-key-1")
    assert ok and again == first, (again, first)
    # a new key, the same order and lines (in another order): the same reservation
    ok, other = reserve("ord-idem-1", [(b, 1), (a, 2)], key="resv-idem-key-2")
    assert ok and other == first, (other, first)
    assert stock(a) == (10, 2) and stock(b) == (10, 1)
    assert sql("SELECT count(*) FROM reservation WHERE order_id = 'ord-idem-1'") == [("1",)]
    # other lines for the order: refused, nothing changes
    for lines in ([(a, 3), (b, 1)], [(a, 2)], [(a, 2), (b, 1), (new_sku(1)[0], 1)]):
        before = books()
        ok, r = reserve("ord-idem-1", lines)
        assert not ok, (lines, r)
        assert_error(r, "failed_precondition", "reservation_mismatch")
        assert books() == before
    # the key reused for another request is refused by the idempotency records
    ok, r = reserve("ord-idem-2", [(a, 1)], key="resv-idem-key-1")
    assert not ok and r["error"]["code"] == "invalid_argument", r
    # after a commit, the repeat answers the committed reservation unchanged
    ok, c = change("CommitReservation", "ord-idem-1")
    assert ok and c["state"] == "committed", c
    ok, r = reserve("ord-idem-1", [(a, 2), (b, 1)])
    assert ok and r == c, (r, c)
    assert stock(a) == (8, 0) and stock(b) == (9, 0)
    assert_books_balance()


def test_same_order_concurrently_with_different_keys():
    sid, _ = new_sku(50)
    results = [None] * 12
    start = threading.Barrier(12)

    def client(i):
        start.wait()
        results[i] = reserve("ord-race-1", [(sid, 3)])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(ok for ok, _ in results), results
    assert len({json.dumps(r, sort_keys=True) for _, r in results}) == 1, results
    assert stock(sid) == (50, 3)
    assert sql("SELECT count(*) FROM reservation WHERE order_id = 'ord-race-1'") == [("1",)]
    assert_books_balance()


def test_commit_then_restock():
    a, _ = new_sku(10)
    b, _ = new_sku(3)
    ok, r = reserve("ord-pay-1", [(a, 4), (b, 3)])
    assert ok, r
    ok, c = change("CommitReservation", "ord-pay-1", key="resv-commit-1")
    assert ok and c["state"] == "committed" and c["lines"] == r["lines"], c
    assert c["createdAt"] == r["createdAt"] and c["expiresAt"] == r["expiresAt"], (c, r)
    assert stock(a) == (6, 0) and stock(b) == (0, 0)
    # again, with the same key and with a new one: nothing more is taken
    ok, again = change("CommitReservation", "ord-pay-1", key="resv-commit-1")
    assert ok and again == c, again
    ok, again = change("CommitReservation", "ord-pay-1")
    assert ok and again == c, again
    assert stock(a) == (6, 0) and stock(b) == (0, 0)
    # a paid order is not released
    before = books()
    ok, r2 = change("ReleaseReservation", "ord-pay-1")
    assert not ok, r2
    assert_error(r2, "failed_precondition", "reservation_committed")
    assert books() == before
    # cancelled after payment: back on hand
    ok, s = change("RestockReservation", "ord-pay-1")
    assert ok and s["state"] == "restocked", s
    assert stock(a) == (10, 0) and stock(b) == (3, 0)
    ok, again = change("RestockReservation", "ord-pay-1")
    assert ok and again == s, again
    assert stock(a) == (10, 0) and stock(b) == (3, 0)
    ok, again = change("CommitReservation", "ord-pay-1")
    assert ok and again == s, again      # the payment was taken already
    ok, r2 = change("ReleaseReservation", "ord-pay-1")
    assert not ok, r2
    assert_error(r2, "failed_precondition", "reservation_committed")
    assert stock(a) == (10, 0) and stock(b) == (3, 0)
    assert_books_balance()


def test_release_and_refusals():
    a, _ = new_sku(6)
    ok, r = reserve("ord-cancel-1", [(a, 5)])
    assert ok, r
    # not paid: no restock
    ok, r2 = change("RestockReservation", "ord-cancel-1")
    assert not ok, r2
    assert_error(r2, "failed_precondition", "reservation_not_committed")
    assert stock(a) == (6, 5)
    ok, rel = change("ReleaseReservation", "ord-cancel-1", key="resv-release-1")
    assert ok and rel["state"] == "released", rel
    assert stock(a) == (6, 0)
    ok, again = change("ReleaseReservation", "ord-cancel-1", key="resv-release-1")
    assert ok and again == rel, again
    ok, again = change("ReleaseReservation", "ord-cancel-1")
    assert ok and again == rel, again
    assert stock(a) == (6, 0)
    before = books()
    for method in ("CommitReservation", "RestockReservation"):
        ok, r2 = change(method, "ord-cancel-1")
        assert not ok, (method, r2)
        assert_error(r2, "failed_precondition", "reservation_released")
    assert books() == before
    # a repeat of the reservation answers the released one; it is not renewed
    ok, again = reserve("ord-cancel-1", [(a, 5)])
    assert ok and again == rel, again
    assert stock(a) == (6, 0)
    for method in ("CommitReservation", "ReleaseReservation", "RestockReservation"):
        ok, r2 = change(method, "ord-no-such-order")
        assert not ok, r2
        assert_error(r2, "not_found")
    assert_books_balance()


def test_bad_input_writes_nothing():
    a, _ = new_sku(5)
    missing = int(sql("SELECT coalesce(max(id), 0) + 1000 FROM sku")[0][0])
    soon = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 600))
    past = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
    far = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 40 * 86400))
    good = [{"skuId": a, "quantity": 1}]
    cases = [
        ({"orderId": "ord-bad-1", "lines": []}, "invalid_argument", "lines"),
        ({"orderId": "ord-bad-1"}, "invalid_argument", "lines"),
        ({"orderId": "ord-bad-1", "lines": good * 101}, "invalid_argument", "lines"),
        ({"orderId": "ord-bad-1", "lines": [{"skuId": a, "quantity": 0}]},
         "invalid_argument", "lines[0].quantity"),
        ({"orderId": "ord-bad-1", "lines": [{"skuId": a, "quantity": -1}]},
         "invalid_argument", "lines[0].quantity"),
        ({"orderId": "ord-bad-1", "lines": [{"skuId": a, "quantity": 1000}]},
         "invalid_argument", "lines[0].quantity"),
        ({"orderId": "ord-bad-1", "lines": [{"skuId": a, "quantity": 2 ** 31}]},
         "invalid_argument", "lines[0].quantity"),
        ({"orderId": "ord-bad-1", "lines": [{"skuId": a, "quantity": 10 ** 30}]},
         "invalid_argument", None),
        ({"orderId": "ord-bad-1", "lines": [{"skuId": 0, "quantity": 1}]},
         "invalid_argument", "lines[0].skuId"),
        ({"orderId": "ord-bad-1", "lines": [{"skuId": -7, "quantity": 1}]},
         "invalid_argument", "lines[0].skuId"),
        ({"orderId": "ord-bad-1", "lines": [{"skuId": 2 ** 63, "quantity": 1}]},
         "invalid_argument", None),
        ({"orderId": "ord-bad-1", "lines": [{"skuId": "12abc", "quantity": 1}]},
         "invalid_argument", "lines[0].skuId"),
        ({"orderId": "ord-bad-1", "lines": good + [{"skuId": a, "quantity": 2}]},
         "invalid_argument", "lines[1].skuId"),
        ({"orderId": "ord-bad-1", "lines": [{"skuId": missing, "quantity": 1}]},
         "not_found", None),
        ({"orderId": "ord-bad-1", "lines": [{"skuId": 2 ** 63 - 1, "quantity": 1}]},
         "not_found", None),
        ({"orderId": "", "lines": good}, "invalid_argument", "orderId"),
        ({"lines": good}, "invalid_argument", "orderId"),
        ({"orderId": "x" * 65, "lines": good}, "invalid_argument", "orderId"),
        ({"orderId": "ord bad", "lines": good}, "invalid_argument", "orderId"),
        ({"orderId": "x'; DROP TABLE sku; --", "lines": good}, "invalid_argument", "orderId"),
        ({"orderId": "ord%' OR '1'='1", "lines": good}, "invalid_argument", "orderId"),
        ({"orderId": "주문-1", "lines": good}, "invalid_argument", "orderId"),
        ({"orderId": "ord\udcff", "lines": good}, "invalid_argument", None),
        ({"orderId": "ord\u0000x", "lines": good}, "invalid_argument", None),
        ({"orderId": "../../etc", "lines": good}, "invalid_argument", "orderId"),
        ({"orderId": "ord-bad-1", "lines": good, "expiresAt": "tomorrow"},
         "invalid_argument", "expiresAt"),
        ({"orderId": "ord-bad-1", "lines": good, "expiresAt": soon.replace("T", " ")},
         "invalid_argument", "expiresAt"),
        ({"orderId": "ord-bad-1", "lines": good, "expiresAt": soon[:-1]},
         "invalid_argument", "expiresAt"),
        ({"orderId": "ord-bad-1", "lines": good, "expiresAt": "2030-02-30T00:00:00Z"},
         "invalid_argument", "expiresAt"),
        ({"orderId": "ord-bad-1", "lines": good, "expiresAt": "2030-01-01T24:00:00Z"},
         "invalid_argument", "expiresAt"),
        ({"orderId": "ord-bad-1", "lines": good, "expiresAt": past},
         "invalid_argument", "expiresAt"),
        ({"orderId": "ord-bad-1", "lines": good, "expiresAt": far},
         "invalid_argument", "expiresAt"),
        ({"orderId": "ord-bad-1", "lines": good, "colour": "red"}, "invalid_argument", "colour"),
    ]
    before = books()
    for req, code, field in cases:
        ok, r = rpc("ReserveStock", req, mutating=True)
        assert not ok, (req, r)
        assert_error(r, code, field=field)
        assert books() == before, req
    for method in ("CommitReservation", "ReleaseReservation", "RestockReservation",
                   "GetReservation"):
        for order in ("", "x" * 65, "x'; DROP TABLE reservation; --", "주문"):
            ok, r = rpc(method, {"orderId": order}, mutating=method != "GetReservation")
            assert not ok, (method, order, r)
            assert_error(r, "invalid_argument", field="orderId")
    assert books() == before
    assert sql("SELECT count(*) FROM sku WHERE id = %d" % a) == [("1",)]
    # the boundaries themselves are fine
    ok, r = reserve("O" * 64, [(a, 1)])
    assert ok, r
    ok, r = rpc("ReserveStock", {"orderId": "ord-bad-max", "lines": [
        {"skuId": new_sku(999)[0], "quantity": 999}]}, mutating=True)
    assert ok, r
    assert_books_balance()


def test_product_availability_changes_at_once():
    gw = env()["gw"]
    sid, slug = new_sku(3)

    def page():
        """(product available, sku available) on the storefront's product page"""
        r = gw.get("/api/v1/products/" + slug)
        assert r.status == 200, r
        (s,) = r.body["skus"]
        return r.body["available"], s["available"]

    def detail():
        """(product available, on hand, reserved, available) from GetProduct"""
        ok, p = rpc("GetProduct", {"idOrSlug": slug})
        assert ok, p
        (s,) = p["skus"]
        return p["available"], s["onHand"], s["reserved"], s["available"]

    def listed():
        r = gw.get("/api/v1/products?category=resv&pageSize=100")
        (p,) = [p for p in r.body["products"] if p["slug"] == slug]
        return p["available"]

    # each read twice: the second comes from the catalog's reply cache
    for _ in range(2):
        assert page() == (True, 3) and detail() == (True, 3, 0, 3) and listed() is True
    ok, r = reserve("ord-page-1", [(sid, 2)])
    assert ok, r
    assert page() == (True, 1) and detail() == (True, 3, 2, 1)
    ok, r = reserve("ord-page-2", [(sid, 1)])
    assert ok, r
    assert page() == (False, 0) and detail() == (False, 3, 3, 0) and listed() is False
    ok, r = change("ReleaseReservation", "ord-page-1")
    assert ok, r
    assert page() == (True, 2) and detail() == (True, 3, 1, 2) and listed() is True
    ok, r = change("CommitReservation", "ord-page-2")
    assert ok, r
    assert page() == (True, 2) and detail() == (True, 2, 0, 2)
    ok, r = change("RestockReservation", "ord-page-2")
    assert ok, r
    assert page() == (True, 3) and detail() == (True, 3, 0, 3)


def test_set_stock_never_below_reserved():
    cat = env()["cat"]
    sid, slug = new_sku(10)
    code = slug.upper()
    ok, r = reserve("ord-setstock-1", [(sid, 6)])
    assert ok, r
    ok, r = rpc("SetStock", {"skuCode": code, "onHand": 5}, mutating=True)
    assert not ok, r
    assert_error(r, "failed_precondition", "stock_reserved")
    assert r["error"]["details"] == {"reserved": 6}, r
    assert stock(sid) == (10, 6)
    p = harness.mallctl("catalog", "set-stock", code, "5", catalog=cat, check=False)
    assert p.returncode == 1 and "stock_reserved" in p.stderr, p
    out = harness.mallctl("catalog", "set-stock", code, "6", catalog=cat).stdout
    assert "on hand 6, reserved 6, available 0" in out, out
    # the database refuses it too, whoever writes
    code_, _, err = cat.db.cluster.sql("UPDATE sku SET on_hand = 5 WHERE id = %d" % sid,
                                       dbname=cat.db.name, check=False)
    assert code_ != 0 and "check" in err.lower(), err
    code_, _, err = cat.db.cluster.sql("UPDATE sku SET reserved = -1 WHERE id = %d" % sid,
                                       dbname=cat.db.name, check=False)
    assert code_ != 0 and "check" in err.lower(), err
    ok, r = change("ReleaseReservation", "ord-setstock-1")
    assert ok, r
    out = harness.mallctl("catalog", "set-stock", code, "0", catalog=cat).stdout
    assert "on hand 0, reserved 0, available 0" in out, out
    assert_books_balance()


def test_kill9_during_concurrent_reservations():
    cat = env()["cat"]
    skus = [new_sku(40)[0] for _ in range(3)]
    rng = random.Random(7)
    plans = []
    for i in range(150):
        picked = rng.sample(skus, rng.randint(1, 3))
        plans.append(("ord-kill-%03d" % i, "resv-kill-key-%03d" % i,
                      [(s, rng.randint(1, 3)) for s in picked],
                      rng.choice(["keep", "commit", "release"]), rng.random() * 1.5))
    outcomes = {}
    started = threading.Event()

    def client(plan):
        order, key, lines, then, delay = plan
        started.wait()
        time.sleep(delay)
        ok, r = reserve(order, lines, key=key, timeout_ms=4000)
        if ok and then != "keep":
            method = "CommitReservation" if then == "commit" else "ReleaseReservation"
            ok, r = change(method, order, key=key + "-" + then, timeout_ms=4000)
        outcomes[order] = (ok, r)

    threads = [threading.Thread(target=client, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    started.set()
    harness.wait_until(lambda: int(sql("SELECT count(*) FROM reservation "
                                       "WHERE order_id LIKE 'ord-kill-%'")[0][0]) >= 10,
                       timeout=30, what="the first reservations")
    cat.kill9()
    for t in threads:
        t.join()
    assert_books_balance()
    cat.restart()
    assert_books_balance()
    failed = [p for p in plans if not outcomes[p[0]][0]]
    assert failed, "the catalog was killed after every call had ended"
    # the calls that failed, retried with their keys: the books still balance
    for order, key, lines, then, _ in plans:
        ok, r = reserve(order, lines, key=key)
        if ok and then != "keep":
            ok, r = change("CommitReservation" if then == "commit" else "ReleaseReservation",
                           order, key=key + "-" + then)
        if not ok:
            assert r["error"].get("reason") == "out_of_stock", (order, r)
    assert_books_balance()
    rows = sql("SELECT state, count(*) FROM reservation WHERE order_id LIKE 'ord-kill-%' "
               "GROUP BY state")
    assert rows, rows


harness.run()
