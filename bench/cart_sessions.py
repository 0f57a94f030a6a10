#!/usr/bin/env python3
"""bench/cart_sessions.py URL MALLCTL OUT.lua: prepares the cart benchmark.

Makes BENCH_CART_GUESTS guest sessions and BENCH_CART_MEMBERS members with
BENCH_CART_LOGINS sessions each, picks BENCH_CART_SKUS purchasable SKUs of the
seeded catalog and raises their stock (mallctl catalog set-stock) so that no
add is refused, then writes a wrk script (OUT.lua) whose request() cycles over
(session, SKU) pairs.  BENCH_CART_MODE in the environment of wrk chooses the
request: "guest-add" or "member-add" (POST /api/v1/cart/items, quantity 1),
"member-get" (GET /api/v1/cart).  Stdlib only.
"""
import json
import os
import subprocess
import sys
import urllib.request
from http.cookies import SimpleCookie

URL, MALLCTL, OUT = sys.argv[1:4]
GUESTS = int(os.environ.get("BENCH_CART_GUESTS", "64"))
MEMBERS = int(os.environ.get("BENCH_CART_MEMBERS", "32"))
LOGINS = int(os.environ.get("BENCH_CART_LOGINS", "2"))
NSKUS = int(os.environ.get("BENCH_CART_SKUS", "8"))


def call(method, path, body=None, cookie=None, csrf=None):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(URL + path, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if cookie:
        req.add_header("Cookie", cookie)
    if csrf:
        req.add_header("X-CSRF-Token", csrf)
    with urllib.request.urlopen(req, timeout=30) as r:
        jar = SimpleCookie()
        for h in r.headers.get_all("Set-Cookie") or []:
            jar.load(h)
        return json.loads(r.read() or b"null"), jar


def session_of(jar):
    return "mall_session=%s; mall_csrf=%s" % (jar["mall_session"].value,
                                               jar["mall_csrf"].value), jar["mall_csrf"].value


guests = []
for _ in range(GUESTS):
    body, jar = call("GET", "/api/v1/session")
    guests.append(session_of(jar))

members = []
for m in range(MEMBERS):
    email = "bench%d@example.com" % m
    call("POST", "/api/v1/members", {"email": email, "password": "bench-password",
                                     "name": "벤치", "phone": "010-1234-%04d" % m,
                                     "marketingConsent": {"email": False, "sms": False}})
    for _ in range(LOGINS):
        body, jar = call("POST", "/api/v1/session", {"email": email, "password": "bench-password"})
        members.append(session_of(jar))

skus = []
page = 1
while len(skus) < NSKUS:
    listing, _ = call("GET", "/api/v1/products?pageSize=100&page=%d" % page)
    if not listing.get("products"):
        break
    for p in listing["products"]:
        detail, _ = call("GET", "/api/v1/products/%s" % p["slug"])
        for s in detail.get("skus", []):
            if len(skus) < NSKUS:
                skus.append((int(s["id"]), s["code"]))
    page += 1
if not skus:
    sys.exit("no SKUs in the catalog")
for _, code in skus:
    subprocess.run([MALLCTL, "catalog", "set-stock", code, "1000000"], check=True,
                   stdout=subprocess.DEVNULL)


def lua_sessions(name, sessions):
    rows = ",\n".join('  {%s, %s}' % (json.dumps(c), json.dumps(t)) for c, t in sessions)
    return "local %s = {\n%s\n}\n" % (name, rows)


with open(OUT, "w") as f:
    f.write(lua_sessions("guests", guests))
    f.write(lua_sessions("members", members))
    f.write("local skus = {%s}\n" % ", ".join(str(i) for i, _ in skus))
    f.write(r'''
local mode = os.getenv("BENCH_CART_MODE") or "guest-add"
local sessions = mode == "guest-add" and guests or members
local n = 0
local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("offset", threads * 7919)
end
function request()
  n = n + 1
  local i = (offset or 0) + n
  local s = sessions[i % #sessions + 1]
  local h = {["Cookie"] = s[1], ["X-CSRF-Token"] = s[2]}
  if mode == "member-get" then
    return wrk.format("GET", "/api/v1/cart", h)
  end
  h["Content-Type"] = "application/json"
  local sku = skus[math.floor(i / #sessions) % #skus + 1]
  return wrk.format("POST", "/api/v1/cart/items", h,
                    '{"skuId":' .. sku .. ',"quantity":1}')
end
''')
print("%d guest sessions, %d member sessions, %d SKUs" % (len(guests), len(members), len(skus)))
