"""Member signup through the gateway (POST /api/v1/members) against a real
PostgreSQL, the real member service and the real gateway: the 201 answer and
what is stored (an argon2id hash, a lower-cased email, a normalized phone,
one member.signed_up outbox row), every kind of bad input answered 400 with
the field named and nothing written, taken emails 409 (also when only the
case differs, also for two signups racing), SQL meta-characters stored as
given, idempotency keys (a replay gets the same member; the record keeps no
fast hash of the password), and the member service going away (503)."""

import hashlib
import json
import threading
import time

import harness

_env = {}


def env():
    """One member service + gateway, shared by the tests of this file."""
    if not _env:
        mem = harness.start_service("member")
        cat = harness.start_catalog()
        gw = harness.start_gateway(catalog=[cat], member=[mem])
        _env.update(mem=mem, gw=gw, n=0)
    return _env


def unique_email(prefix="user"):
    env()["n"] += 1
    return "%s%d.%d@example.com" % (prefix, env()["n"], int(time.time() * 1000) % 100000)


def body(**over):
    b = {"email": unique_email(), "password": "correct horse 1", "name": "김민수",
         "phone": "010-1234-5678", "marketingConsent": {"email": True, "sms": False}}
    b.update(over)
    return b


def post(payload, headers=None):
    return harness.http("POST", env()["gw"].url + "/api/v1/members", body=payload,
                        headers=headers)


def db():
    return env()["mem"].db


def counts():
    """Rows that a signup writes: members, outbox events, idempotency records."""
    return db().sql("SELECT (SELECT count(*) FROM member), (SELECT count(*) FROM outbox),"
                    " (SELECT count(*) FROM rpc_idempotency)")[0]


def assert_error(r, status, code, field=None):
    assert r.status == status, r
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    assert isinstance(r.body, dict) and "error" in r.body, r
    assert r.body["error"]["code"] == code, r
    assert r.body["error"]["message"], r
    if field is not None:
        assert field in r.body["error"].get("fields", {}), (field, r)


# --------------------------------------------------------------------------
# protobuf, as much as the tests need to read an event and pack a request

def _varint(data, i):
    v = shift = 0
    while True:
        b = data[i]
        i += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, i


def pb_fields(data):
    """Field number -> value (int for varints, bytes for length-delimited)."""
    out, i = {}, 0
    while i < len(data):
        key, i = _varint(data, i)
        num, wire = key >> 3, key & 7
        if wire == 0:
            out[num], i = _varint(data, i)
        elif wire == 2:
            n, i = _varint(data, i)
            out[num], i = data[i:i + n], i + n
        else:
            raise AssertionError("unexpected wire type %d in %r" % (wire, data))
    return out


def _put_varint(v):
    out = b""
    while v >= 0x80:
        out += bytes([(v & 0x7F) | 0x80])
        v >>= 7
    return out + bytes([v])


def _ld(num, data):
    return _put_varint(num << 3 | 2) + _put_varint(len(data)) + data


def pack_sign_up(b):
    """mall.member.SignUpRequest packed as protobuf-c packs it (fields in
    number order, proto3 defaults left out)."""
    out = b""
    for num, key in ((1, "email"), (2, "password"), (3, "name"), (4, "phone")):
        if b[key]:
            out += _ld(num, b[key].encode())
    consent = b""
    if b["marketingConsent"]["email"]:
        consent += b"\x08\x01"
    if b["marketingConsent"]["sms"]:
        consent += b"\x10\x01"
    return out + _ld(5, consent)


def bytea(text):
    assert text.startswith("\\x"), text
    return bytes.fromhex(text[2:])


# --------------------------------------------------------------------------

def test_signup_answers_201_with_the_member():
    b = body(email="Kim.MinSu.%d@Example.COM" % int(time.time() * 1000), phone="01098765432",
             marketingConsent={"email": True, "sms": False})
    before = counts()
    r = post(b)
    assert r.status == 201, r
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    assert r.headers.get("Cache-Control") == "no-store", r.headers
    m = r.body
    assert set(m) == {"id", "email", "name", "phone", "marketingConsent", "grade", "createdAt",
                      "lastLoginAt"}, m
    assert isinstance(m["id"], int) and m["id"] > 0, m
    assert m["email"] == b["email"].lower(), m
    assert m["name"] == "김민수" and m["phone"] == "010-9876-5432", m
    c = m["marketingConsent"]
    assert c["email"] is True and c["sms"] is False, c
    assert c["emailConsentedAt"].endswith("Z") and c["smsConsentedAt"] == "", c
    assert m["grade"]["code"] == "basic" and m["grade"]["name"] == "일반", m["grade"]
    assert m["createdAt"].endswith("Z") and m["lastLoginAt"] == "", m
    low = r.text.lower()
    assert "password" not in low and "argon2" not in low and "hash" not in low, r.text

    rows = db().sql("SELECT email, name, phone, password_hash, grade_code, email_consent,"
                    " sms_consent, sms_consented_at IS NULL FROM member WHERE id = %d" % m["id"])
    assert len(rows) == 1, rows
    email, name, phone, pw_hash, grade, ec, sc, sms_null = rows[0]
    assert email == b["email"].lower() and name == "김민수" and phone == "010-9876-5432", rows
    assert pw_hash.startswith("$argon2id$"), pw_hash
    assert b["password"] not in pw_hash
    assert grade == "basic" and ec == "t" and sc == "f" and sms_null == "t", rows
    after = counts()
    assert int(after[0]) == int(before[0]) + 1 and int(after[1]) == int(before[1]) + 1, \
        (before, after)


def test_signed_up_event_in_the_outbox():
    r = post(body(name="이벤트", marketingConsent={"email": False, "sms": True}))
    assert r.status == 201, r
    m = r.body
    rows = db().sql("SELECT type, payload, event_id FROM outbox ORDER BY seq")
    mine = [row for row in rows if pb_fields(bytea(row[1])).get(1) == m["id"]]
    assert len(mine) == 1, rows
    typ, payload, event_id = mine[0]
    assert typ == "member.signed_up" and len(event_id) == 36, mine
    ev = pb_fields(bytea(payload))
    assert ev[2].decode() == m["email"] and ev[3].decode() == "이벤트", ev
    assert ev[4].decode() == m["phone"] and ev[6] == b"basic", ev
    assert ev[7].decode() == m["createdAt"], ev
    consent = pb_fields(ev[5])
    assert consent.get(1, 0) == 0 and consent.get(2) == 1, consent
    assert consent[4].decode() == m["marketingConsent"]["smsConsentedAt"] != "", consent
    # one event per member, each with its own id
    members, events, distinct = db().sql(
        "SELECT (SELECT count(*) FROM member), (SELECT count(*) FROM outbox"
        " WHERE type = 'member.signed_up'), (SELECT count(DISTINCT event_id) FROM outbox)")[0]
    assert members == events == distinct, (members, events, distinct)


def test_each_password_hash_is_salted():
    a = post(body(password="same password 1"))
    b = post(body(password="same password 1"))
    assert a.status == 201 and b.status == 201, (a, b)
    rows = db().sql("SELECT password_hash FROM member WHERE id IN (%d, %d)"
                    % (a.body["id"], b.body["id"]))
    assert len(rows) == 2 and rows[0][0] != rows[1][0], rows
    assert all(r[0].startswith("$argon2id$v=19$m=65536,t=2,p=1$") for r in rows), rows


BAD = [
    # field, bad value, what
    ("email", "not-an-email", "no @"),
    ("email", "a@b", "no dot in the domain"),
    ("email", "a@@example.com", "two @"),
    ("email", "a..b@example.com", "two dots"),
    ("email", ".a@example.com", "leading dot"),
    ("email", "a@-example.com", "label starts with -"),
    ("email", "a@example..com", "empty label"),
    ("email", "a b@example.com", "space"),
    ("email", "김@example.com", "not ASCII"),
    ("email", "a" * 250 + "@example.com", "over 254 characters"),
    ("email", "", "missing"),
    ("password", "short7!", "7 characters"),
    ("password", "가나다라마바사", "7 Korean characters"),
    ("password", "p" * 129, "129 characters"),
    ("password", "", "missing"),
    ("name", "", "missing"),
    ("name", "가" * 10000, "10,000 characters"),
    ("name", "   ", "blank"),
    ("name", "a\u0007b", "a control character"),
    ("name", "a\nb", "a newline"),
    ("phone", "010-1234-567", "too short"),
    ("phone", "02-123-4567", "a landline"),
    ("phone", "010-12345-6789", "5-digit middle group"),
    ("phone", "010 1234 5678", "spaces"),
    ("phone", "010-12345678", "one hyphen"),
    ("phone", "+82-10-1234-5678", "international form"),
    ("phone", "015-1234-5678", "no such prefix"),
    ("phone", "010-1234-5678'; --", "SQL after the number"),
    ("phone", "", "missing"),
]


def test_bad_fields_are_400_with_the_field_named_and_nothing_written():
    before = counts()
    for field, value, what in BAD:
        r = post(body(**{field: value}))
        assert_error(r, 400, "invalid_argument", field)
        assert list(r.body["error"]["fields"]) == [field], (what, r)
    assert counts() == before, (before, counts())


def test_every_bad_field_at_once():
    before = counts()
    r = post({"email": "x", "password": "short", "name": "", "phone": "123",
              "marketingConsent": {"email": False, "sms": False}})
    assert_error(r, 400, "invalid_argument")
    assert set(r.body["error"]["fields"]) == {"email", "password", "name", "phone"}, r
    r = post({})
    assert_error(r, 400, "invalid_argument")
    assert set(r.body["error"]["fields"]) == {"email", "password", "name", "phone",
                                              "marketingConsent"}, r
    assert counts() == before


def test_bad_json_is_400_and_nothing_written():
    before = counts()
    cases = [
        (dict(body(), isAdmin=True), "isAdmin"),
        (dict(body(), grade="vip"), "grade"),
        (body(email=5), "email"),
        (body(name=["김민수"]), "name"),
        (body(password={"a": 1}), "password"),
        (body(marketingConsent="yes"), "marketingConsent"),
        (body(marketingConsent={"email": "yes", "sms": False}), "marketingConsent.email"),
        (body(marketingConsent={"email": True, "sms": False, "fax": True}),
         "marketingConsent.fax"),
    ]
    for payload, field in cases:
        assert_error(post(payload), 400, "invalid_argument", field)
    # not JSON, not an object, not declared JSON, duplicate keys
    for raw, headers in [(b"not json", None), (b"[]", None), (b"", None),
                         (b'{"email": "a@example.com"', None),
                         (b'{"email":"a@example.com","email":"b@example.com"}', None),
                         (b'{"email":"a@example.com"}', {"Content-Type": "text/plain"})]:
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        assert_error(post(raw, headers=h), 400, "invalid_argument")
    assert counts() == before


def test_invalid_utf8_is_400_and_nothing_written():
    before = counts()
    b = body(name="NAME")
    raw = json.dumps(b).encode().replace(b"NAME", b"\xff\xfe\xc3(")
    r = post(raw, headers={"Content-Type": "application/json"})
    assert_error(r, 400, "invalid_argument")
    assert "UTF-8" in r.body["error"]["message"], r
    # a lone surrogate escape is not a character either
    raw = json.dumps(b).encode().replace(b"NAME", b"\\udc80")
    assert_error(post(raw, headers={"Content-Type": "application/json"}), 400,
                 "invalid_argument")
    assert counts() == before


def test_taken_email_is_409_also_in_another_case():
    b = body()
    first = post(b)
    assert first.status == 201, first
    before = counts()
    for email in (b["email"], b["email"].upper(), b["email"].capitalize()):
        r = post(body(email=email, name="다른사람"))
        assert_error(r, 409, "already_exists", "email")
    assert counts() == before
    assert db().sql("SELECT count(*) FROM member WHERE lower(email) = lower('%s')"
                    % b["email"])[0][0] == "1"


def test_sql_meta_characters_are_stored_as_given():
    names = ["Robert'); DROP TABLE member;--", "%_\\ \"quoted\" $1 ;", "김'민\"수 -- /* */"]
    for name in names:
        email = "o'brien+%d.%s@example.com" % (env()["n"], int(time.time() * 1000) % 100000)
        env()["n"] += 1
        r = post(body(email=email, name=name))
        assert r.status == 201, (name, r)
        assert r.body["name"] == name and r.body["email"] == email, r
        rows = db().sql("SELECT name, email FROM member WHERE id = %d" % r.body["id"])
        assert rows == [(name, email)], rows
    assert db().sql("SELECT count(*) FROM member")[0][0] != "0"


def test_concurrent_signups_with_one_email():
    for attempt in range(3):
        email = unique_email("race")
        results = []
        start = threading.Barrier(2)

        def signup(e):
            start.wait()
            results.append(post(body(email=e)))
        threads = [threading.Thread(target=signup, args=(e,))
                   for e in (email, email.upper())]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status for r in results)
        assert statuses == [201, 409], results
        loser = [r for r in results if r.status == 409][0]
        assert_error(loser, 409, "already_exists", "email")
        assert db().sql("SELECT count(*) FROM member WHERE lower(email) = '%s'"
                        % email)[0][0] == "1"


def test_idempotency_key_replays_the_answer():
    key = "signup-%d" % int(time.time() * 1000000)
    b = body()
    first = post(b, headers={"Idempotency-Key": key})
    assert first.status == 201, first
    before = counts()
    again = post(b, headers={"Idempotency-Key": key})
    assert again.status == 201 and again.body == first.body, (first, again)
    assert counts() == before
    # the same key for another signup is refused (422, as on every route), and
    # writes nothing
    other = post(body(), headers={"Idempotency-Key": key})
    assert_error(other, 422, "idempotency_key_reused")
    assert counts() == before
    # a key the gateway cannot pass on
    for bad in ("has space", "x" * 65, "a/b"):
        r = post(body(), headers={"Idempotency-Key": bad})
        assert_error(r, 400, "invalid_argument", "Idempotency-Key")
    assert counts() == before


def test_idempotency_record_holds_no_fast_hash_of_the_password():
    key = "signup-pw-%d" % int(time.time() * 1000000)
    b = body(email="Hash.Check.%d@example.com" % int(time.time() * 1000))
    r = post(b, headers={"Idempotency-Key": key})
    assert r.status == 201, r
    rows = db().sql("SELECT method, request_hash FROM rpc_idempotency WHERE key = '%s'" % key)
    assert len(rows) == 1, rows
    method, stored = rows[0]
    assert method == "mall.member.Member/SignUp", method
    stored = bytea(stored)
    prefix = (method + "\n").encode()
    with_pw = hashlib.sha256(prefix + pack_sign_up(b)).digest()
    without_pw = hashlib.sha256(prefix + pack_sign_up(dict(b, password=""))).digest()
    # the record identifies the request with the password left out (the
    # second comparison shows the packing above is the service's)
    assert stored != with_pw
    assert stored == without_pw, (stored.hex(), without_pw.hex())


def test_other_methods_on_the_route():
    r = harness.http("GET", env()["gw"].url + "/api/v1/members")
    assert_error(r, 405, "method_not_allowed")
    assert r.headers.get("Allow") == "POST", r.headers
    doc = env()["gw"].get("/api/v1/openapi.json").body
    op = doc["paths"]["/api/v1/members"]["post"]
    assert {"201", "400", "409", "503"} <= set(op["responses"]), op["responses"]


def test_member_down_is_503_and_recovers():
    e = env()
    e["mem"].kill9()
    t0 = time.monotonic()
    assert_error(post(body()), 503, "unavailable")
    assert time.monotonic() - t0 < 5, "503 took %.1f s" % (time.monotonic() - t0)
    e["mem"].restart()
    harness.wait_until(lambda: post(body()).status == 201, timeout=20,
                       what="the gateway to reach the restarted member service")


harness.run()
