"""Login sessions through the gateway (/api/v1/session) against a real member
service, PostgreSQL and Redis: login sets the HttpOnly session cookie and the
readable CSRF cookie, GET shows the member, wrong password and unknown email
get the identical 401, unsafe requests carrying a session need X-CSRF-Token
(403 and nothing changed otherwise), logout deletes the session, the session
id changes at login, sessions expire after the (sliding) TTL, failed logins
are throttled per account and per IP before the member service is asked
(429 + Retry-After) while successful logins are never throttled, and Redis
being unreachable is 503."""

import hashlib
import re
import time

import harness

_env = {}
PASSWORD = "correct horse 1"


def env():
    """One member service + gateway, shared by the tests of this file; the
    per-IP limit is high here (every test logs in from 127.0.0.1) and tested
    on a gateway of its own."""
    if not _env:
        mem = harness.start_service("member")
        cat = harness.start_catalog()
        gw = harness.start_gateway(catalog=[cat], member=[mem],
                                   env={"MALL_GATEWAY_LOGIN_MAX_PER_IP": "100000"})
        _env.update(mem=mem, cat=cat, gw=gw, n=0)
    return _env


def unique_email(prefix="sess"):
    env()["n"] += 1
    return "%s%d.%d@example.com" % (prefix, env()["n"], int(time.time() * 1000) % 1000000)


class Client:
    """A browser of sorts: keeps the cookies the gateway sets, sends them back,
    and sends X-CSRF-Token (the mall_csrf cookie) when csrf is on."""

    def __init__(self, gw=None):
        self.gw = gw or env()["gw"]
        self.cookies = {}
        self.last_set = []

    def request(self, method, path, body=None, csrf=True, headers=None):
        h = dict(headers or {})
        if self.cookies:
            h["Cookie"] = "; ".join("%s=%s" % kv for kv in self.cookies.items())
        if csrf and "mall_csrf" in self.cookies and "X-CSRF-Token" not in h:
            h["X-CSRF-Token"] = self.cookies["mall_csrf"]
        r = harness.http(method, self.gw.url + path, body=body, headers=h)
        self.last_set = r.headers.get_all("Set-Cookie") or []
        for line in self.last_set:
            name, _, rest = line.partition("=")
            value = rest.split(";", 1)[0]
            if "Max-Age=0" in line:
                self.cookies.pop(name, None)
            else:
                self.cookies[name] = value
        return r

    def login(self, email, password=PASSWORD, **kw):
        return self.request("POST", "/api/v1/session", {"email": email, "password": password},
                            **kw)

    def session(self):
        return self.request("GET", "/api/v1/session")


def signup(email=None):
    email = email or unique_email()
    r = harness.http("POST", env()["gw"].url + "/api/v1/members",
                     body={"email": email, "password": PASSWORD, "name": "김민수",
                           "phone": "010-1234-5678",
                           "marketingConsent": {"email": False, "sms": False}})
    assert r.status == 201, r
    return email, r.body


def logged_in():
    email, member = signup()
    c = Client()
    r = c.login(email)
    assert r.status == 200, r
    return c, email, member


def assert_error(r, status, code):
    assert r.status == status, r
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    assert r.body["error"]["code"] == code, r


def redis_key(token):
    return "sess:" + hashlib.sha256(token.encode()).hexdigest()


def set_cookie(c, name):
    for line in c.last_set:
        if line.startswith(name + "="):
            return line
    raise AssertionError("no Set-Cookie for %s in %r" % (name, c.last_set))


# --------------------------------------------------------------------------

def test_login_sets_cookies_and_answers_the_member():
    email, member = signup()
    c = Client()
    r = c.login(email.upper())  # any case
    assert r.status == 200, r
    assert r.body["member"]["id"] == member["id"], r
    assert r.body["member"]["email"] == email, r
    assert "password" not in r.text and "hash" not in r.text.lower(), r
    sess = set_cookie(c, "mall_session")
    attrs = [a.strip() for a in sess.split(";")[1:]]
    assert "HttpOnly" in attrs and "SameSite=Lax" in attrs and "Path=/" in attrs, sess
    assert "Secure" not in attrs, sess
    assert re.fullmatch(r"[0-9a-f]{64}", c.cookies["mall_session"]), sess
    csrf = set_cookie(c, "mall_csrf")
    assert "HttpOnly" not in csrf and "SameSite=Lax" in csrf, csrf
    assert r.body["csrfToken"] == c.cookies["mall_csrf"], r
    assert r.headers.get("Cache-Control") == "no-store", r.headers

    # Redis holds the token's hash, not the token
    red = harness.Redis()
    try:
        assert red("EXISTS", redis_key(c.cookies["mall_session"])) == 1
        assert red("EXISTS", "sess:" + c.cookies["mall_session"]) == 0
        fields = red("HGETALL", redis_key(c.cookies["mall_session"]))
        d = dict(zip(fields[::2], fields[1::2]))
        assert d[b"member_id"] == str(member["id"]).encode(), d
        assert d[b"csrf"] == c.cookies["mall_csrf"].encode(), d
        ttl = red("PTTL", redis_key(c.cookies["mall_session"]))
        assert 29 * 60000 < ttl <= 30 * 60000, ttl
    finally:
        red.close()

    r = c.session()
    assert r.status == 200, r
    assert r.body["member"]["id"] == member["id"], r
    assert r.body["csrfToken"] == c.cookies["mall_csrf"], r


def test_secure_cookies_setting():
    gw = harness.start_gateway(catalog=[env()["cat"]], member=[env()["mem"]],
                               env={"MALL_GATEWAY_SECURE_COOKIES": "on"}, name="gw-secure")
    c = Client(gw)
    assert c.session().status == 200
    assert "; Secure" in set_cookie(c, "mall_session")
    assert "; Secure" in set_cookie(c, "mall_csrf")
    assert gw.terminate() == 0


def test_wrong_password_and_unknown_email_are_the_same_401():
    email, _ = signup()
    a = Client().login(email, "wrong horse 1")
    b = Client().login(unique_email("nobody"), PASSWORD)
    assert_error(a, 401, "unauthenticated")
    assert_error(b, 401, "unauthenticated")
    assert a.raw == b.raw, (a.raw, b.raw)
    assert a.body["error"]["message"] == "wrong email or password", a
    assert not a.headers.get_all("Set-Cookie"), a.headers


def test_bad_login_body_is_400():
    c = Client()
    assert_error(c.request("POST", "/api/v1/session", {"email": "a@example.com"}), 400,
                 "invalid_argument")
    assert_error(c.request("POST", "/api/v1/session", {"email": "a@example.com",
                                                       "password": "x", "extra": 1}),
                 400, "invalid_argument")


def test_get_session_makes_an_anonymous_one():
    c = Client()
    r = c.session()
    assert r.status == 200, r
    assert r.body["member"] is None, r
    assert re.fullmatch(r"[0-9a-f]{64}", r.body["csrfToken"]), r
    assert r.body["csrfToken"] == c.cookies["mall_csrf"]
    token = c.cookies["mall_session"]
    # the same session next time: no new cookies
    r = c.session()
    assert r.status == 200 and r.body["member"] is None, r
    assert c.last_set == [] and c.cookies["mall_session"] == token, c.last_set


def test_unsafe_requests_with_a_session_need_the_csrf_token():
    c, email, member = logged_in()
    for hdr in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": c.cookies["mall_csrf"][:-1]}):
        # logout refused: still logged in
        r = c.request("DELETE", "/api/v1/session", csrf=False, headers=hdr)
        assert_error(r, 403, "permission_denied")
        assert c.session().body["member"]["id"] == member["id"]
        # signup refused: nothing written
        other = unique_email("csrf")
        r = c.request("POST", "/api/v1/members", csrf=False, headers=hdr,
                      body={"email": other, "password": PASSWORD, "name": "이영희",
                            "phone": "010-2222-3333",
                            "marketingConsent": {"email": False, "sms": False}})
        assert_error(r, 403, "permission_denied")
        rows = env()["mem"].db.sql("SELECT count(*) FROM member WHERE email = '%s'" % other)
        assert rows[0][0] == "0", rows
        # login refused too (an anonymous session counts)
        r = c.login(email, csrf=False, headers=hdr)
        assert_error(r, 403, "permission_denied")
    # with the token: allowed
    assert c.request("DELETE", "/api/v1/session").status == 204
    # without any session cookie: signup needs no token
    signup()


def test_logout_deletes_the_session():
    c, _, member = logged_in()
    token = c.cookies["mall_session"]
    r = c.request("DELETE", "/api/v1/session")
    assert r.status == 204, r
    assert "Max-Age=0" in set_cookie(c, "mall_session"), c.last_set
    assert "Max-Age=0" in set_cookie(c, "mall_csrf"), c.last_set
    red = harness.Redis()
    try:
        assert red("EXISTS", redis_key(token)) == 0
    finally:
        red.close()
    # the old cookie (kept by a careless client) is no longer logged in
    old = Client()
    old.cookies = {"mall_session": token}
    r = old.session()
    assert r.status == 200 and r.body["member"] is None, r
    assert old.cookies["mall_session"] != token  # a new anonymous session
    r = c.session()
    assert r.status == 200 and r.body["member"] is None, r


def test_session_id_rotates_at_login():
    email, member = signup()
    c = Client()
    anon = c.session()
    assert anon.body["member"] is None
    old_token, old_csrf = c.cookies["mall_session"], c.cookies["mall_csrf"]
    r = c.login(email)
    assert r.status == 200, r
    assert c.cookies["mall_session"] != old_token
    assert c.cookies["mall_csrf"] != old_csrf and r.body["csrfToken"] != old_csrf
    # the pre-login session id grants nothing
    fixated = Client()
    fixated.cookies = {"mall_session": old_token, "mall_csrf": old_csrf}
    assert fixated.session().body["member"] is None
    assert c.session().body["member"]["id"] == member["id"]
    # a second login rotates again
    t1 = c.cookies["mall_session"]
    assert c.login(email).status == 200
    stale = Client()
    stale.cookies = {"mall_session": t1}
    assert stale.session().body["member"] is None


def test_session_expires_after_the_ttl_and_slides():
    gw = harness.start_gateway(catalog=[env()["cat"]], member=[env()["mem"]],
                               env={"MALL_GATEWAY_SESSION_TTL": "2s",
                                    "MALL_GATEWAY_LOGIN_MAX_PER_IP": "100000"},
                               name="gw-ttl")
    email, member = signup()
    c = Client(gw)
    assert c.login(email).status == 200
    # sliding: used every 1.2 s, it outlives its 2 s
    for _ in range(3):
        time.sleep(1.2)
        assert c.session().body["member"]["id"] == member["id"]
    time.sleep(3)
    r = c.session()
    assert r.status == 200 and r.body["member"] is None, r
    assert gw.terminate() == 0


def test_failed_logins_per_account_are_limited():
    email, _ = signup()
    c = Client()
    for i in range(5):
        assert_error(c.login(email, "wrong horse %d" % i), 401, "unauthenticated")
    r = c.login(email, "wrong horse 6")
    assert_error(r, 429, "resource_exhausted")
    retry = int(r.headers.get("Retry-After"))
    assert 1 <= retry <= 600, r.headers
    # the right password is refused too, without asking the member service
    # (which would record the login time)
    r = c.login(email.upper())
    assert_error(r, 429, "resource_exhausted")
    rows = env()["mem"].db.sql("SELECT last_login_at IS NULL FROM member WHERE email = '%s'"
                               % email)
    assert rows == [("t",)], rows
    # other accounts from the same address still log in
    c2, _, _ = logged_in()
    assert c2.session().body["member"] is not None


def test_busy_ip_with_successful_logins_is_not_throttled():
    red = harness.start_redis()
    gw = harness.start_gateway(catalog=[env()["cat"]], member=[env()["mem"]],
                               env={"MALL_REDIS_ADDR": red.addr,
                                    "MALL_GATEWAY_LOGIN_MAX_PER_IP": "3",
                                    "MALL_GATEWAY_LOGIN_MAX_PER_ACCOUNT": "100",
                                    "MALL_GATEWAY_LOGIN_WINDOW": "1m"},
                               name="gw-ip")
    email, _ = signup()
    for _ in range(10):
        assert Client(gw).login(email).status == 200
    for _ in range(3):
        assert_error(Client(gw).login(unique_email("ghost")), 401, "unauthenticated")
    r = Client(gw).login(email)
    assert_error(r, 429, "resource_exhausted")
    assert 1 <= int(r.headers.get("Retry-After")) <= 60, r.headers
    assert gw.terminate() == 0


def test_redis_down_is_503():
    gw = harness.start_gateway(catalog=[env()["cat"]], member=[env()["mem"]],
                               env={"MALL_REDIS_ADDR": "127.0.0.1:%d" % harness.free_port()},
                               name="gw-noredis")
    c = Client(gw)
    assert_error(c.session(), 503, "unavailable")
    email, _ = signup()
    assert_error(c.login(email), 503, "unavailable")
    # a made-up session cookie on an unsafe request cannot be checked: 503
    c.cookies = {"mall_session": "a" * 64}
    assert_error(c.request("DELETE", "/api/v1/session"), 503, "unavailable")
    assert gw.terminate() == 0


def test_openapi_documents_the_session_routes():
    doc = env()["gw"].get("/api/v1/openapi.json").body
    item = doc["paths"]["/api/v1/session"]
    assert {"get", "post", "delete"} <= set(item), item.keys()
    assert {"200", "401", "403", "429"} <= set(item["post"]["responses"])


harness.run()
