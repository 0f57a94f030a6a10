"""The member service's RPCs that no HTTP route reaches yet, called directly
with rpc_call against a real PostgreSQL: the login check (one answer for an
unknown email and a wrong password, taking as long; the login time
recorded), profile reads and partial updates (consent times kept, set and
cleared), the grade list, and the address book (the first address and a new
default take the default flag, an address of another member is not found,
field errors write nothing, at most 20 addresses, idempotent adds)."""

import json
import re
import statistics
import subprocess
import time

import harness

_env = {}


def mem():
    if "mem" not in _env:
        _env["mem"] = harness.start_service("member")
    return _env["mem"]


def call(method, req, key=None, mutating=False, timed=False):
    """(ok, reply-or-error JSON) of mall.member.Member/<method>; timed: also
    the milliseconds the call itself took."""
    argv = [harness.binary("tests/integration/rpc_call"), "--addrs", mem().addr,
            "--service", "mall.member.Member", "--method", method]
    if key:
        argv += ["--key", key]
    elif mutating:
        argv.append("--mutating")
    p = subprocess.run(argv + [json.dumps(req)], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode in (0, 1), "rpc_call %s: %d %s %s" % (method, p.returncode, p.stdout,
                                                              p.stderr)
    if timed:
        m = re.search(r"rpc_call: took ([0-9.]+) ms", p.stderr)
        assert m, p.stderr
        return p.returncode == 0, json.loads(p.stdout), float(m.group(1))
    return p.returncode == 0, json.loads(p.stdout)


def ok(method, req, **kw):
    good, r = call(method, req, **kw)
    assert good, (method, req, r)
    return r


def error(method, req, code, fields=None, **kw):
    good, r = call(method, req, **kw)
    assert not good and r["error"]["code"] == code, (method, req, r)
    if fields is not None:
        assert set(r["error"].get("fields", {})) == set(fields), (method, req, r)
    return r["error"]


def sign_up(**over):
    _env["n"] = _env.get("n", 0) + 1
    req = {"email": "m%d.%d@example.com" % (_env["n"], int(time.time() * 1000) % 10 ** 6),
           "password": "correct horse 1", "name": "회원", "phone": "010-1111-2222",
           "marketingConsent": {"email": False, "sms": False}}
    req.update(over)
    return ok("SignUp", req, mutating=True)


def sql(q):
    return mem().db.sql(q)


def test_verify_login():
    m = sign_up(email="Login.Test.%d@Example.com" % int(time.time() * 1000),
                password="비밀번호 correct 1")
    assert m["lastLoginAt"] == ""
    got = ok("VerifyLogin", {"email": m["email"].upper(), "password": "비밀번호 correct 1"})
    assert got["id"] == m["id"] and got["lastLoginAt"].endswith("Z"), got
    assert sql("SELECT last_login_at IS NOT NULL FROM member WHERE id = %d" % m["id"]) == [("t",)]
    wrong = error("VerifyLogin", {"email": m["email"], "password": "비밀번호 correct 2"},
                  "unauthenticated")
    unknown = error("VerifyLogin", {"email": "nobody.%d@example.com" % time.time_ns(),
                                    "password": "비밀번호 correct 1"}, "unauthenticated")
    malformed = error("VerifyLogin", {"email": "not an email", "password": "x"},
                      "unauthenticated")
    assert wrong == unknown == malformed, (wrong, unknown, malformed)
    assert "fields" not in wrong, wrong
    error("VerifyLogin", {"email": "", "password": ""}, "invalid_argument",
          ["email", "password"])


def test_unknown_email_takes_as_long_as_a_wrong_password():
    m = sign_up()

    def took(email):
        good, r, ms = call("VerifyLogin", {"email": email, "password": "wrong password 9"},
                           timed=True)
        assert not good and r["error"]["code"] == "unauthenticated", r
        return ms
    wrong, unknown = [], []
    for _ in range(5):   # interleaved, so that both see the same load
        wrong.append(took(m["email"]))
        unknown.append(took("nobody.%d@example.com" % time.time_ns()))
    wrong, unknown = statistics.median(wrong), statistics.median(unknown)
    # both verify an argon2id hash (~0.1 s); without the stand-in hash an
    # unknown email would answer in a millisecond or two
    assert unknown > 0.3 * wrong, (wrong, unknown)


def test_get_member():
    m = sign_up()
    assert ok("GetMember", {"id": m["id"]}) == m
    error("GetMember", {"id": 999999999}, "not_found")
    error("GetMember", {"id": 0}, "invalid_argument", ["id"])


def test_update_member():
    m = sign_up()
    events = sql("SELECT count(*) FROM outbox")
    u = ok("UpdateMember", {"id": m["id"], "updateMask": ["name"], "name": "새 이름",
                            "phone": "010-9999-9999"}, mutating=True)
    assert u["name"] == "새 이름" and u["phone"] == m["phone"], u
    u = ok("UpdateMember", {"id": m["id"], "updateMask": ["phone"], "phone": "01055556666"},
           mutating=True)
    assert u["phone"] == "010-5555-6666" and u["name"] == "새 이름", u

    def consent_times():
        return sql("SELECT email_consented_at::text, sms_consented_at::text FROM member"
                   " WHERE id = %d" % m["id"])[0]
    u = ok("UpdateMember", {"id": m["id"], "updateMask": ["marketingConsent.email"],
                            "marketingConsent": {"email": True, "sms": True}}, mutating=True)
    c = u["marketingConsent"]
    assert c["email"] is True and c["emailConsentedAt"] and c["sms"] is False, c
    first = consent_times()
    assert first[0] is not None and first[1] is None, first
    # consenting again keeps the first time; the whole object sets both
    u = ok("UpdateMember", {"id": m["id"], "updateMask": ["marketingConsent"],
                            "marketingConsent": {"email": True, "sms": True}}, mutating=True)
    again = consent_times()
    assert again[0] == first[0] and again[1] is not None, (first, again)
    assert u["marketingConsent"]["sms"] is True, u
    # withdrawing clears the time
    u = ok("UpdateMember", {"id": m["id"], "updateMask": ["marketingConsent.sms"],
                            "marketingConsent": {"email": False, "sms": False}}, mutating=True)
    assert u["marketingConsent"]["email"] is True and u["marketingConsent"]["sms"] is False
    assert u["marketingConsent"]["smsConsentedAt"] == "" and consent_times()[1] is None, u

    before = ok("GetMember", {"id": m["id"]})
    error("UpdateMember", {"id": m["id"], "updateMask": ["email"]}, "invalid_argument",
          ["updateMask"], mutating=True)
    error("UpdateMember", {"id": m["id"], "updateMask": []}, "invalid_argument",
          ["updateMask"], mutating=True)
    error("UpdateMember", {"id": m["id"], "updateMask": ["name", "phone"], "name": "",
                           "phone": "02-123-4567"}, "invalid_argument", ["name", "phone"],
          mutating=True)
    error("UpdateMember", {"id": m["id"], "updateMask": ["marketingConsent"]},
          "invalid_argument", ["marketingConsent"], mutating=True)
    error("UpdateMember", {"id": 999999999, "updateMask": ["name"], "name": "x"}, "not_found",
          mutating=True)
    assert ok("GetMember", {"id": m["id"]}) == before
    # updates are no signups: no event
    assert sql("SELECT count(*) FROM outbox") == events


def test_writes_need_an_idempotency_key():
    m = sign_up()
    error("UpdateMember", {"id": m["id"], "updateMask": ["name"], "name": "x"},
          "invalid_argument")
    assert ok("GetMember", {"id": m["id"]})["name"] == m["name"]


def test_list_grades():
    g = ok("ListGrades", {})["grades"]
    assert [x["code"] for x in g] == ["basic", "silver", "gold", "vip"], g
    assert [x["isDefault"] for x in g] == [True, False, False, False], g
    assert g[0]["name"] == "일반", g


def address(**over):
    a = {"recipient": "김민수", "phone": "01012345678", "postalCode": "06236",
         "address1": "서울특별시 강남구 테헤란로 152", "address2": "10층"}
    a.update(over)
    return a


def defaults(member_id):
    return sql("SELECT count(*) FROM address WHERE member_id = %d AND is_default" % member_id)


def test_address_book():
    a, b = sign_up(), sign_up()
    assert ok("ListAddresses", {"memberId": a["id"]}) == {"addresses": []}
    a1 = ok("AddAddress", dict(address(), memberId=a["id"]), mutating=True)
    assert a1["isDefault"] is True and a1["phone"] == "010-1234-5678", a1
    assert a1["memberId"] == a["id"] and a1["address2"] == "10층", a1
    a2 = ok("AddAddress", dict(address(recipient="두번째"), memberId=a["id"], isDefault=True),
            mutating=True)
    a3 = ok("AddAddress", dict(address(recipient="세번째", address2=""), memberId=a["id"]),
            mutating=True)
    assert a2["isDefault"] is True and a3["isDefault"] is False, (a2, a3)
    listed = ok("ListAddresses", {"memberId": a["id"]})["addresses"]
    assert [x["id"] for x in listed] == [a2["id"], a3["id"], a1["id"]], listed
    assert defaults(a["id"]) == [("1",)]

    u = ok("UpdateAddress", {"memberId": a["id"], "id": a3["id"], "updateMask": ["isDefault"],
                             "isDefault": True}, mutating=True)
    assert u["isDefault"] is True and u["recipient"] == "세번째", u
    assert defaults(a["id"]) == [("1",)]
    error("UpdateAddress", {"memberId": a["id"], "id": a3["id"], "updateMask": ["isDefault"],
                            "isDefault": False}, "invalid_argument", ["isDefault"],
          mutating=True)
    u = ok("UpdateAddress", {"memberId": a["id"], "id": a1["id"],
                             "updateMask": ["postalCode", "address2"], "postalCode": "63534",
                             "address2": "", "recipient": "ignored"}, mutating=True)
    assert u["postalCode"] == "63534" and u["address2"] == "" and u["recipient"] == "김민수", u
    error("UpdateAddress", {"memberId": a["id"], "id": a1["id"],
                            "updateMask": ["postalCode", "phone", "colour"],
                            "postalCode": "1234", "phone": "1234"}, "invalid_argument",
          ["postalCode", "phone", "updateMask"], mutating=True)

    # another member's address is not found, whatever the call
    before = sql("SELECT id, member_id, recipient, is_default FROM address ORDER BY id")
    for method, req in [
            ("UpdateAddress", {"memberId": b["id"], "id": a1["id"], "updateMask": ["recipient"],
                               "recipient": "도둑"}),
            ("UpdateAddress", {"memberId": b["id"], "id": a1["id"], "updateMask": ["isDefault"],
                               "isDefault": True}),
            ("DeleteAddress", {"memberId": b["id"], "id": a1["id"]}),
            ("DeleteAddress", {"memberId": a["id"], "id": 999999999})]:
        error(method, req, "not_found", mutating=True)
    assert ok("ListAddresses", {"memberId": b["id"]}) == {"addresses": []}
    assert sql("SELECT id, member_id, recipient, is_default FROM address ORDER BY id") == before

    # deleting the default hands the flag to the newest other address
    assert ok("DeleteAddress", {"memberId": a["id"], "id": a3["id"]}, mutating=True) == {}
    listed = ok("ListAddresses", {"memberId": a["id"]})["addresses"]
    assert [(x["id"], x["isDefault"]) for x in listed] == [(a2["id"], True), (a1["id"], False)]
    ok("DeleteAddress", {"memberId": a["id"], "id": a1["id"]}, mutating=True)
    ok("DeleteAddress", {"memberId": a["id"], "id": a2["id"]}, mutating=True)
    assert ok("ListAddresses", {"memberId": a["id"]}) == {"addresses": []}


def test_bad_addresses_write_nothing():
    m = sign_up()
    before = sql("SELECT count(*) FROM address")
    error("AddAddress", {"memberId": m["id"], "recipient": "", "phone": "123",
                         "postalCode": "1234a", "address1": "", "address2": "가" * 201},
          "invalid_argument", ["recipient", "phone", "postalCode", "address1", "address2"],
          mutating=True)
    for code in ("1234", "123456", "12 34", "１２３４５", "abcde", ""):
        error("AddAddress", dict(address(postalCode=code), memberId=m["id"]),
              "invalid_argument", ["postalCode"], mutating=True)
    error("AddAddress", dict(address(recipient="가" * 51), memberId=m["id"]),
          "invalid_argument", ["recipient"], mutating=True)
    error("AddAddress", dict(address(), memberId=999999999), "not_found", mutating=True)
    error("AddAddress", dict(address(), memberId=0), "invalid_argument", ["memberId"],
          mutating=True)
    error("ListAddresses", {"memberId": 999999999}, "not_found")
    assert sql("SELECT count(*) FROM address") == before
    odd = "'); DELETE FROM address; -- %_\\"
    got = ok("AddAddress", dict(address(address1=odd, address2=odd), memberId=m["id"]),
             mutating=True)
    assert got["address1"] == odd and got["address2"] == odd, got
    assert sql("SELECT address1 FROM address WHERE id = %d" % got["id"]) == [(odd,)]


def test_at_most_twenty_addresses():
    m = sign_up()
    for i in range(20):
        ok("AddAddress", dict(address(recipient="수령인%d" % i), memberId=m["id"]),
           mutating=True)
    error("AddAddress", dict(address(), memberId=m["id"]), "failed_precondition",
          mutating=True)
    assert sql("SELECT count(*) FROM address WHERE member_id = %d" % m["id"]) == [("20",)]
    assert defaults(m["id"]) == [("1",)]


def test_add_address_is_idempotent():
    m = sign_up()
    key = "add-address-%d" % time.time_ns()
    first = ok("AddAddress", dict(address(), memberId=m["id"]), key=key)
    again = ok("AddAddress", dict(address(), memberId=m["id"]), key=key)
    assert first == again, (first, again)
    assert sql("SELECT count(*) FROM address WHERE member_id = %d" % m["id"]) == [("1",)]


def test_mallctl_pings_the_member_service():
    p = harness.mallctl("ping", "member", env={"MALL_MEMBER_ADDRS": mem().addr})
    assert p.stdout.startswith("member: ok"), p.stdout
    bad = harness.mallctl("ping", "warehouse", check=False)
    assert bad.returncode == 1 and "known: catalog, member" in bad.stderr, bad


harness.run()
