"""Durable events end to end: the member service's outbox, its relay and its
built-in Events.Since, consumed by event_consumer (a tiny consumer process
built on lib/consumer.h) into a database of its own, where each application
of an event adds 1 to that event's row.  Nothing may be lost and nothing
applied twice when the consumer is down, doubled, killed mid-stream, or when
the producer is killed while it writes; Since pages and checks its limit;
a wake-up over PUB brings an event well before the one-second pull."""

import base64
import concurrent.futures
import json
import subprocess
import threading
import time

import harness

_n = [0]
_n_lock = threading.Lock()


def rpc(addr, service, method, req, mutating=False, timeout_ms=5000, try_timeout_ms=None):
    """(ok, reply-or-error JSON) of one call through rpc_call."""
    argv = [harness.binary("tests/integration/rpc_call"), "--addrs", addr, "--service", service,
            "--method", method, "--timeout-ms", str(timeout_ms)]
    if try_timeout_ms:
        argv += ["--try-timeout-ms", str(try_timeout_ms)]
    if mutating:
        argv.append("--mutating")
    p = subprocess.run(argv + [json.dumps(req)], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode in (0, 1), "rpc_call %s: %d %s %s" % (method, p.returncode, p.stdout,
                                                              p.stderr)
    return p.returncode == 0, json.loads(p.stdout)


def since(addr, after_seq=0, limit=None):
    req = {"afterSeq": after_seq}
    if limit is not None:
        req["limit"] = limit
    return rpc(addr, "mall.rpc.Events", "Since", req)


def sign_up(mem, timeout_ms=30000):
    """One signup; (ok, reply).  A failure (the service killed) is no error here.
    Each signup hashes a password (about 0.1 s of CPU and 64 MiB): on a
    loaded machine one attempt may take seconds, so attempts get long."""
    with _n_lock:
        _n[0] += 1
        n = _n[0]
    req = {"email": "ev%d.%d@example.com" % (n, int(time.time() * 1000) % 10 ** 7),
           "password": "correct horse 1", "name": "회원", "phone": "010-1111-2222",
           "marketingConsent": {"email": False, "sms": False}}
    return rpc(mem.addr, "mall.member.Member", "SignUp", req, mutating=True,
               timeout_ms=timeout_ms, try_timeout_ms=min(timeout_ms, 10000))


def sign_up_many(mem, n, parallel=4):
    with concurrent.futures.ThreadPoolExecutor(parallel) as ex:
        results = list(ex.map(lambda _: sign_up(mem), range(n)))
    bad = [r for ok, r in results if not ok]
    assert not bad, bad[:3]
    return [r for _, r in results]


def start_consumer(mem, db, name="consumer", delay_ms=0, poll_ms=0):
    argv = [harness.binary("tests/integration/event_consumer"), "--db", db.conninfo]
    if delay_ms:
        argv += ["--delay-ms", str(delay_ms)]
    if poll_ms:
        argv += ["--poll-ms", str(poll_ms)]
    p = harness.start_process(name, argv, env={"MALL_MEMBER_ADDRS": mem.addr,
                                               "MALL_MEMBER_EVENTS_ADDRS": mem.events_addr})
    p.wait_log("event_consumer ready", 30)
    return p


def applied(db):
    """{member_id: applications} of what the consumer applied."""
    return {int(m): int(n) for m, n in db.sql("SELECT member_id, applications FROM signed_up")}


def members(mem):
    return {int(r[0]) for r in mem.db.sql("SELECT id FROM member")}


def wait_applied(db, expected, timeout=60):
    """Waits until the consumer applied exactly the members in expected."""
    def done():
        got = applied(db) if table_exists(db) else {}
        return set(got) == expected and got
    try:
        return harness.wait_until(done, timeout, "%d events applied" % len(expected), 0.1)
    except AssertionError:
        got = applied(db) if table_exists(db) else {}
        raise AssertionError("applied %d of %d events (missing %s, unexpected %s)" % (
            len(set(got) & expected), len(expected), sorted(expected - set(got))[:10],
            sorted(set(got) - expected)[:10]))


def table_exists(db):
    return db.sql("SELECT to_regclass('signed_up') IS NOT NULL")[0][0] == "t"


def assert_once_each(db, mem):
    got = applied(db)
    twice = {m: n for m, n in got.items() if n != 1}
    assert not twice, "applied more than once: %s" % twice
    inbox = db.sql("SELECT count(*), count(DISTINCT event_id) FROM inbox WHERE source = 'member'")
    assert inbox == [(str(len(got)), str(len(got)))], inbox
    last = mem.db.sql("SELECT CASE WHEN bool_or(pub_seq IS NULL) THEN 9223372036854775807 ELSE coalesce(max(pub_seq), 0) END FROM outbox")[0][0]
    cursor = db.sql("SELECT after_seq FROM event_cursor WHERE source = 'member'")
    assert cursor == [(last,)], (cursor, last)


def test_a_consumer_down_gets_everything_when_it_starts():
    mem = harness.start_service("member")
    sign_up_many(mem, 50)
    expected = members(mem)
    assert len(expected) == 50
    db = harness.cluster().create_database("consumer")
    c = start_consumer(mem, db)
    wait_applied(db, expected)
    assert_once_each(db, mem)
    c.terminate()


def test_b_two_consumers_at_once_apply_each_event_once():
    mem = harness.start_service("member")
    db = harness.cluster().create_database("consumer")
    c1 = start_consumer(mem, db, "consumer-1")
    c2 = start_consumer(mem, db, "consumer-2")
    sign_up_many(mem, 50)
    expected = members(mem)
    wait_applied(db, expected)
    time.sleep(1.5)  # a late duplicate would show by now
    assert set(applied(db)) == expected
    assert_once_each(db, mem)
    for c in (c1, c2):
        assert c.alive()
        c.terminate()


def test_c_consumer_killed_mid_stream_loses_and_doubles_nothing():
    mem = harness.start_service("member")
    sign_up_many(mem, 50)
    expected = members(mem)
    db = harness.cluster().create_database("consumer")
    # 60 ms an event: the stream takes 3 s, the kill lands in the middle
    c = start_consumer(mem, db, delay_ms=60)
    harness.wait_until(lambda: table_exists(db) and len(applied(db)) >= 10, 30,
                       "10 events applied")
    c.kill9()
    n = len(applied(db))
    assert 10 <= n < 50, n
    c = start_consumer(mem, db, "consumer-again")
    wait_applied(db, expected)
    assert_once_each(db, mem)
    c.terminate()


def test_d_producer_killed_while_producing_delivers_every_committed_event():
    mem = harness.start_service("member")
    db = harness.cluster().create_database("consumer")
    c = start_consumer(mem, db)
    results = []
    stop = threading.Event()

    def produce():
        while not stop.is_set():
            results.append(sign_up(mem, timeout_ms=5000)[0])

    threads = [threading.Thread(target=produce) for _ in range(4)]
    for t in threads:
        t.start()
    harness.wait_until(lambda: sum(results) >= 15, 60, "15 signups")
    mem.kill9()
    time.sleep(1)
    mem.start()
    harness.wait_until(lambda: sum(results) >= 30, 60, "30 signups in all")
    stop.set()
    for t in threads:
        t.join(60)
    expected = members(mem)
    assert len(expected) >= 30, len(expected)
    # a call cut by the kill may have committed or not: what counts is the table
    wait_applied(db, expected)
    assert_once_each(db, mem)
    c.terminate()


def test_e_since_pages_and_checks_its_limit():
    mem = harness.start_service("member")
    made = sign_up_many(mem, 5, parallel=1)
    ok, r = since(mem.addr, 0, 2)
    assert ok, r
    assert len(r["events"]) == 2 and int(r["lastSeq"]) >= 5, r
    ev = r["events"][0]
    assert ev["type"] == "member.signed_up" and ev["source"] == "member", ev
    assert len(ev["eventId"]) == 36 and ev["createdAt"].endswith("Z"), ev
    assert made[0]["email"].encode() in base64.b64decode(ev["payload"]), ev

    # page through with limit 2: 2 + 2 + 1, in seq order, then nothing
    seen, after, pages = [], 0, 0
    while True:
        ok, r = since(mem.addr, after, 2)
        assert ok, r
        if not r.get("events"):
            break
        pages += 1
        seqs = [int(e["seq"]) for e in r["events"]]
        assert seqs == sorted(seqs) and seqs[0] > after, r
        seen += r["events"]
        after = seqs[-1]
    assert pages == 3 and len({e["eventId"] for e in seen}) == 5, seen
    assert after == int(r["lastSeq"]), r
    emails = {m["email"] for m in made}
    assert sum(1 for e in seen for m in emails if m.encode() in base64.b64decode(e["payload"])) == 5

    # limit 0 is the default (100); 1000 is the most
    ok, r = since(mem.addr, 0)
    assert ok and len(r["events"]) == 5, r
    ok, r = since(mem.addr, 0, 1000)
    assert ok and len(r["events"]) == 5, r
    for bad, field in (({"limit": 1001}, "limit"), ({"limit": -1}, "limit"),
                       ({"afterSeq": -1}, "afterSeq")):
        ok, r = rpc(mem.addr, "mall.rpc.Events", "Since", bad)
        assert not ok and r["error"]["code"] == "invalid_argument", (bad, r)
        assert set(r["error"]["fields"]) == {field}, (bad, r)

    # every service answers it: the catalog writes no events yet
    cat = harness.start_catalog()
    ok, r = since(cat.addr, 0)
    assert ok and not r.get("events") and int(r.get("lastSeq", 0)) == 0, r


def test_f_a_wake_up_brings_an_event_without_a_pull():
    mem = harness.start_service("member")
    db = harness.cluster().create_database("consumer")
    # it pulls on its own only once a minute (and once at start): within the
    # waits below, only the relay's PUB wake-up can bring an event
    c = start_consumer(mem, db, poll_ms=60000)
    harness.wait_until(lambda: table_exists(db), 10, "the consumer's table")
    time.sleep(0.5)  # past the consumer's first pull
    for _ in range(3):
        ok, m = sign_up(mem)
        assert ok, m
        harness.wait_until(lambda: m["id"] in applied(db), 20, "member %s applied" % m["id"],
                           0.01)
    assert_once_each(db, mem)
    c.terminate()


harness.run()
