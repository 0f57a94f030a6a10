"""The signed-in member's own profile and address book through the gateway
(/api/v1/me, /api/v1/me/addresses) against a real member service,
PostgreSQL and Redis: every route is 401 without a session or with an
anonymous one; the member id comes from the session only (a body naming id
or memberId is 400); PATCH changes only the keys sent (they become the
update mask); unsafe requests need X-CSRF-Token (403, nothing changed); a
second member cannot read, change or delete the first one's address (404);
a bad postal code is 400 naming postalCode and writes nothing."""

import time

import harness

_env = {}
PASSWORD = "correct horse 1"


def env():
    """One member service + gateway, shared by the tests of this file."""
    if not _env:
        mem = harness.start_service("member")
        cat = harness.start_catalog()
        gw = harness.start_gateway(catalog=[cat], member=[mem],
                                   env={"MALL_GATEWAY_LOGIN_MAX_PER_IP": "100000"})
        _env.update(mem=mem, cat=cat, gw=gw, n=0)
    return _env


def unique_email(prefix="me"):
    env()["n"] += 1
    return "%s%d.%d@example.com" % (prefix, env()["n"], int(time.time() * 1000) % 1000000)


class Client:
    """Keeps the gateway's cookies and sends X-CSRF-Token (the mall_csrf
    cookie) when csrf is on."""

    def __init__(self):
        self.gw = env()["gw"]
        self.cookies = {}

    def request(self, method, path, body=None, csrf=True, headers=None):
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        if csrf and "mall_csrf" in self.cookies and "X-CSRF-Token" not in h:
            h["X-CSRF-Token"] = self.cookies["mall_csrf"]
        r = harness.http(method, self.gw.url + path, body=body, headers=h)
        for line in r.headers.get_all("Set-Cookie") or []:
            name, _, rest = line.partition("=")
            if "Max-Age=0" in line:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = rest.split(";", 1)[0]
        return r


def logged_in():
    """Signs up a new member and logs in: (client, member)."""
    email = unique_email()
    r = harness.http("POST", env()["gw"].url + "/api/v1/members",
                     body={"email": email, "password": PASSWORD, "name": "김민수",
                           "phone": "010-1234-5678",
                           "marketingConsent": {"email": False, "sms": True}})
    assert r.status == 201, r
    c = Client()
    r = c.request("POST", "/api/v1/session", {"email": email, "password": PASSWORD})
    assert r.status == 200, r
    return c, r.body["member"]


def assert_error(r, status, code, field=None):
    assert r.status == status, r
    assert r.body["error"]["code"] == code, r
    if field is not None:
        assert field in (r.body["error"].get("fields") or {}), r


ADDRESS = {"recipient": "김민수", "phone": "01012345678", "postalCode": "06236",
           "address1": "서울 강남구 테헤란로 152", "address2": "12층"}


def address_rows(member_id):
    return env()["mem"].db.sql(
        "SELECT id, recipient, postal_code, address2 FROM address WHERE member_id = %d "
        "ORDER BY id" % member_id)


# --------------------------------------------------------------------------

ROUTES = [("GET", "/api/v1/me", None), ("PATCH", "/api/v1/me", {"name": "x"}),
          ("GET", "/api/v1/me/addresses", None), ("POST", "/api/v1/me/addresses", ADDRESS),
          ("PATCH", "/api/v1/me/addresses/1", {"recipient": "x"}),
          ("DELETE", "/api/v1/me/addresses/1", None)]


def test_every_route_needs_a_signed_in_member():
    for method, path, body in ROUTES:
        r = harness.http(method, env()["gw"].url + path, body=body)
        assert_error(r, 401, "unauthenticated")
    anon = Client()
    assert anon.request("GET", "/api/v1/session").status == 200
    assert "mall_session" in anon.cookies
    for method, path, body in ROUTES:
        assert_error(anon.request(method, path, body), 401, "unauthenticated")


def test_get_me():
    c, member = logged_in()
    r = c.request("GET", "/api/v1/me")
    assert r.status == 200, r
    assert r.body["id"] == member["id"] and r.body["email"] == member["email"], r
    assert r.headers.get("Cache-Control") == "no-store", r.headers
    assert "password" not in r.text, r


def test_patch_me_changes_only_the_fields_sent():
    c, member = logged_in()
    r = c.request("PATCH", "/api/v1/me", {"name": "이영희"})
    assert r.status == 200, r
    assert r.body["name"] == "이영희", r
    assert r.body["phone"] == "010-1234-5678", r
    assert r.body["marketingConsent"]["sms"] is True, r
    r = c.request("PATCH", "/api/v1/me", {"phone": "01198765432",
                                          "marketingConsent": {"email": True}})
    assert r.status == 200, r
    assert r.body["name"] == "이영희" and r.body["phone"] == "011-9876-5432", r
    assert r.body["marketingConsent"]["email"] is True, r
    assert r.body["marketingConsent"]["sms"] is True, r  # not sent: unchanged
    r = c.request("GET", "/api/v1/me")
    assert r.body["name"] == "이영희" and r.body["phone"] == "011-9876-5432", r


def test_patch_me_bad_bodies_are_400():
    c, member = logged_in()
    assert_error(c.request("PATCH", "/api/v1/me", {}), 400, "invalid_argument")
    assert_error(c.request("PATCH", "/api/v1/me", {"nickname": "x"}), 400,
                 "invalid_argument", "nickname")
    assert_error(c.request("PATCH", "/api/v1/me", {"name": 5}), 400, "invalid_argument",
                 "name")
    assert_error(c.request("PATCH", "/api/v1/me", {"email": "b@example.com"}), 400,
                 "invalid_argument", "email")
    # the id comes from the session only
    assert_error(c.request("PATCH", "/api/v1/me", {"id": member["id"] + 1, "name": "x"}),
                 400, "invalid_argument", "id")
    assert_error(c.request("PATCH", "/api/v1/me", {"updateMask": ["name"]}), 400,
                 "invalid_argument", "updateMask")
    assert_error(c.request("PATCH", "/api/v1/me", "[1]"), 400, "invalid_argument")
    assert_error(c.request("PATCH", "/api/v1/me", {"phone": "12345"}), 400,
                 "invalid_argument", "phone")
    r = c.request("GET", "/api/v1/me")
    assert r.body["name"] == "김민수" and r.body["phone"] == "010-1234-5678", r


def test_patch_without_csrf_token_is_403():
    c, member = logged_in()
    r = c.request("PATCH", "/api/v1/me", {"name": "침입자"}, csrf=False)
    assert_error(r, 403, "permission_denied")
    r = c.request("POST", "/api/v1/me/addresses", ADDRESS, csrf=False)
    assert_error(r, 403, "permission_denied")
    assert c.request("GET", "/api/v1/me").body["name"] == "김민수"
    assert address_rows(member["id"]) == []


def test_address_book():
    c, member = logged_in()
    r = c.request("GET", "/api/v1/me/addresses")
    assert r.status == 200 and r.body.get("addresses", []) == [], r
    r = c.request("POST", "/api/v1/me/addresses", ADDRESS)
    assert r.status == 201, r
    a = r.body
    assert a["recipient"] == "김민수" and a["postalCode"] == "06236", r
    assert a["phone"] == "010-1234-5678" and a["isDefault"] is True, r
    assert a["memberId"] == member["id"], r
    r = c.request("POST", "/api/v1/me/addresses", dict(ADDRESS, recipient="박철수"))
    assert r.status == 201, r
    b = r.body
    r = c.request("GET", "/api/v1/me/addresses")
    assert r.status == 200, r
    assert sorted(x["id"] for x in r.body["addresses"]) == sorted([a["id"], b["id"]]), r

    # PATCH changes only the fields sent
    r = c.request("PATCH", "/api/v1/me/addresses/%d" % b["id"], {"address2": "13층"})
    assert r.status == 200, r
    assert r.body["address2"] == "13층" and r.body["recipient"] == "박철수", r
    assert r.body["postalCode"] == "06236" and r.body["address1"] == ADDRESS["address1"], r
    assert_error(c.request("PATCH", "/api/v1/me/addresses/%d" % b["id"], {}), 400,
                 "invalid_argument")
    assert_error(c.request("PATCH", "/api/v1/me/addresses/%d" % b["id"],
                           {"memberId": member["id"] + 1}), 400, "invalid_argument",
                 "memberId")

    r = c.request("DELETE", "/api/v1/me/addresses/%d" % a["id"])
    assert r.status == 204, r
    rows = address_rows(member["id"])
    assert [int(x[0]) for x in rows] == [b["id"]], rows
    assert_error(c.request("DELETE", "/api/v1/me/addresses/%d" % a["id"]), 404, "not_found")
    for bad in ("abc", "0", "-1", "1x", "99999999999999999999999"):
        r = c.request("DELETE", "/api/v1/me/addresses/" + bad)
        assert r.status in (400, 404), (bad, r)


def test_idempotency_key_replays_an_add():
    c, member = logged_in()
    h = {"Idempotency-Key": "me-add-%d" % member["id"]}
    r1 = c.request("POST", "/api/v1/me/addresses", ADDRESS, headers=h)
    r2 = c.request("POST", "/api/v1/me/addresses", ADDRESS, headers=h)
    assert r1.status == 201 and r2.status == 201, (r1, r2)
    assert r1.body["id"] == r2.body["id"], (r1, r2)
    assert len(address_rows(member["id"])) == 1
    r = c.request("POST", "/api/v1/me/addresses", ADDRESS, headers={"Idempotency-Key": "b a d"})
    assert_error(r, 400, "invalid_argument", "Idempotency-Key")


def test_another_members_address_is_404():
    c1, m1 = logged_in()
    c2, m2 = logged_in()
    r = c1.request("POST", "/api/v1/me/addresses", ADDRESS)
    assert r.status == 201, r
    aid = r.body["id"]
    r = c2.request("GET", "/api/v1/me/addresses")
    assert r.status == 200 and r.body.get("addresses", []) == [], r
    assert_error(c2.request("PATCH", "/api/v1/me/addresses/%d" % aid, {"recipient": "도둑"}),
                 404, "not_found")
    assert_error(c2.request("DELETE", "/api/v1/me/addresses/%d" % aid), 404, "not_found")
    rows = address_rows(m1["id"])
    assert len(rows) == 1 and rows[0][1] == "김민수", rows
    r = c2.request("GET", "/api/v1/me")
    assert r.body["id"] == m2["id"], r


def test_bad_postal_code_is_400_and_writes_nothing():
    c, member = logged_in()
    r = c.request("POST", "/api/v1/me/addresses", dict(ADDRESS, postalCode="1234"))
    assert_error(r, 400, "invalid_argument", "postalCode")
    assert address_rows(member["id"]) == []
    r = c.request("POST", "/api/v1/me/addresses", dict(ADDRESS, postalCode=12345))
    assert_error(r, 400, "invalid_argument", "postalCode")
    assert address_rows(member["id"]) == []
    r = c.request("POST", "/api/v1/me/addresses", ADDRESS)
    assert r.status == 201, r
    aid = r.body["id"]
    r = c.request("PATCH", "/api/v1/me/addresses/%d" % aid, {"postalCode": "abcde"})
    assert_error(r, 400, "invalid_argument", "postalCode")
    rows = address_rows(member["id"])
    assert rows[0][2] == "06236", rows


harness.run()
