"""The catalog's JSON API through the gateway: list, paging, category filter,
Korean substring search, sort, detail by id and slug, categories, and the
errors a user meets (404, 400, 413, 503 and recovery), against a real
PostgreSQL, the real catalog and the real gateway, seeded with the demo
catalog by mallctl.  GetSkus, which no route reaches (the cart calls it), is
called directly with rpc_call."""

import json
import os
import socket
import subprocess
import time
import urllib.parse

import harness

SEED = os.path.join(harness.source_dir(), "deploy", "seed", "catalog.json")
_env = {}


def env():
    """One catalog + gateway, seeded, shared by the tests of this file."""
    if not _env:
        cat = harness.start_catalog()
        harness.mallctl("catalog", "seed", SEED, catalog=cat)
        gw = harness.start_gateway(catalog=[cat])
        with open(SEED, encoding="utf-8") as f:
            seed = json.load(f)
        _env.update(cat=cat, gw=gw, seed=seed)
    return _env


def get(path, **kw):
    return harness.http("GET", env()["gw"].url + path, **kw)


def q(text):
    return urllib.parse.quote(text)


def assert_error(r, status, code, field=None):
    assert r.status == status, r
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    assert isinstance(r.body, dict) and "error" in r.body, r
    assert r.body["error"]["code"] == code, r
    assert r.body["error"]["message"], r
    if field:
        assert field in r.body["error"].get("fields", {}), r


def published_count(seed, slugs=None):
    return sum(1 for p in seed["products"]
               if p["published"] and p["skus"] and (slugs is None or p["categorySlug"] in slugs))


def test_list_first_page():
    r = get("/api/v1/products")
    assert r.status == 200, r
    b = r.body
    assert b["page"] == 1 and b["pageSize"] == 20, b
    assert b["totalCount"] == published_count(env()["seed"]), b["totalCount"]
    assert len(b["products"]) == 20
    p = b["products"][0]
    for key in ("id", "slug", "name", "price", "summary", "categoryId", "available", "createdAt"):
        assert key in p, (key, p)
    assert p["price"]["currency"] == "KRW" and isinstance(p["price"]["amount"], int), p
    assert r.headers.get("Cache-Control") == "no-store", r.headers


def test_paging_covers_every_product_once():
    total = get("/api/v1/products").body["totalCount"]
    seen = []
    page = 1
    while True:
        r = get("/api/v1/products?pageSize=7&page=%d" % page)
        assert r.status == 200, r
        assert r.body["pageSize"] == 7 and r.body["page"] == page
        if not r.body["products"]:
            break
        seen += [p["id"] for p in r.body["products"]]
        page += 1
    assert len(seen) == total and len(set(seen)) == total, (len(seen), total)
    last = get("/api/v1/products?pageSize=100&page=50")
    assert last.status == 200 and last.body["products"] == [] and last.body["totalCount"] == total


def test_category_filter_includes_subcategories():
    seed = env()["seed"]
    meat = get("/api/v1/products?category=meat&pageSize=100")
    assert meat.status == 200, meat
    subs = {c["slug"] for c in seed["categories"] if c["parentSlug"] == "meat"} | {"meat"}
    assert meat.body["totalCount"] == published_count(seed, subs) > 0
    beef = get("/api/v1/products?category=beef&pageSize=100")
    assert beef.body["totalCount"] == published_count(seed, {"beef"})
    assert beef.body["totalCount"] < meat.body["totalCount"]
    cats = {c["slug"]: c["id"] for c in get("/api/v1/categories").body["categories"]}
    assert {p["categoryId"] for p in beef.body["products"]} == {cats["beef"]}
    by_id = get("/api/v1/products?category=%d&pageSize=100" % cats["beef"])
    assert by_id.body["totalCount"] == beef.body["totalCount"]


def test_korean_substring_search():
    seed = env()["seed"]
    for term in ("한우", "등심", "제주", "배", "고기"):
        r = get("/api/v1/products?pageSize=100&q=" + q(term))
        assert r.status == 200, r
        expected = {p["slug"] for p in seed["products"] if term in p["name"] and p["published"]}
        got = {p["slug"] for p in r.body["products"]}
        assert got == expected and r.body["totalCount"] == len(expected), (term, got, expected)
    assert "hanwoo-sirloin" in {p["slug"] for p in
                              get("/api/v1/products?q=" + q("1++ 등심")).body["products"]}
    none = get("/api/v1/products?q=" + q("없는상품"))
    assert none.status == 200 and none.body["totalCount"] == 0 and none.body["products"] == []
    # LIKE wildcards are searched for literally
    assert get("/api/v1/products?q=" + q("%")).body["totalCount"] == 0
    assert get("/api/v1/products?q=_").body["totalCount"] == 0


def test_search_combines_with_category():
    r = get("/api/v1/products?category=fruit&q=" + q("제주"))
    assert r.status == 200
    slugs = {p["slug"] for p in r.body["products"]}
    assert slugs == {"tangerine", "hallabong"}, slugs


def test_sort_by_price_and_newest():
    asc = [p["price"]["amount"] for p in get("/api/v1/products?sort=price_asc&pageSize=100").body["products"]]
    desc = [p["price"]["amount"] for p in get("/api/v1/products?sort=price_desc&pageSize=100").body["products"]]
    assert asc == sorted(asc) and desc == sorted(desc, reverse=True) and asc != desc, (asc, desc)
    newest = get("/api/v1/products?sort=newest&pageSize=100").body["products"]
    keys = [(p["createdAt"], p["id"]) for p in newest]
    assert keys == sorted(keys, reverse=True)
    assert get("/api/v1/products").body["products"][0]["id"] == newest[0]["id"]


def test_detail_by_slug_and_id():
    r = get("/api/v1/products/hanwoo-sirloin")
    assert r.status == 200, r
    p = r.body
    assert p["name"] == "한우 1++ 등심" and p["slug"] == "hanwoo-sirloin"
    assert len(p["skus"]) == 3, p["skus"]
    s = p["skus"][0]
    for key in ("id", "code", "optionValues", "price", "available"):
        assert key in s, (key, s)
    assert s["optionValues"] == [{"option": "중량", "value": "300g"}], s
    assert p["options"] == [{"name": "중량", "values": ["300g", "600g", "1.2kg"]}], p["options"]
    assert p["price"]["amount"] == min(x["price"]["amount"] for x in p["skus"])
    by_id = get("/api/v1/products/%d" % p["id"])
    assert by_id.status == 200 and by_id.body == p


def test_sold_out_product_shows_unavailable():
    p = get("/api/v1/products/watermelon").body
    assert p["available"] is False and all(s["available"] == 0 for s in p["skus"]), p
    listed = [x for x in get("/api/v1/products?pageSize=100&q=" + q("수박")).body["products"]]
    assert listed and listed[0]["available"] is False


def test_stock_change_shows_at_once():
    cat = env()["cat"]
    code = "WATERMELON"
    out = harness.mallctl("catalog", "set-stock", code, "7", catalog=cat).stdout
    assert "on hand 7" in out and "available 7" in out, out
    p = get("/api/v1/products/watermelon").body
    assert p["available"] is True and p["skus"][0]["available"] == 7, p
    out = harness.mallctl("catalog", "stock", code, catalog=cat).stdout
    assert "on hand 7, reserved 0, available 7" in out, out
    harness.mallctl("catalog", "set-stock", code, "0", catalog=cat)
    assert get("/api/v1/products/watermelon").body["available"] is False


def test_mallctl_errors():
    cat = env()["cat"]
    p = harness.mallctl("catalog", "stock", "NO-SUCH-SKU", catalog=cat, check=False)
    assert p.returncode == 1 and "not_found" in p.stderr and "NO-SUCH-SKU" in p.stderr, p
    p = harness.mallctl("catalog", "set-stock", "WATERMELON", "-3", catalog=cat, check=False)
    assert p.returncode == 2 and "whole number" in p.stderr, p
    p = harness.mallctl("catalog", "set-stock", "WATERMELON", "abc", catalog=cat, check=False)
    assert p.returncode == 2, p
    p = harness.mallctl("catalog", "sell-everything", catalog=cat, check=False)
    assert p.returncode == 2 and "usage" in p.stderr, p
    ping = harness.mallctl("ping", "catalog", catalog=cat)
    assert "catalog: ok" in ping.stdout, ping.stdout


def test_mallctl_rpc_any_method():
    cat = env()["cat"]
    p = harness.mallctl("rpc", "catalog", "GetStock", '{"skuCode":"WATERMELON"}', catalog=cat)
    sku = json.loads(p.stdout)
    assert sku["code"] == "WATERMELON" and "onHand" in sku, sku
    # the same key twice: the second answer is the first one's
    a = harness.mallctl("rpc", "--key", "test-rpc-key-1", "catalog", "SetStock",
                        '{"skuCode":"WATERMELON","onHand":11}', catalog=cat)
    harness.mallctl("catalog", "set-stock", "WATERMELON", "0", catalog=cat)
    b = harness.mallctl("rpc", "--key", "test-rpc-key-1", "catalog", "SetStock",
                        '{"skuCode":"WATERMELON","onHand":11}', catalog=cat)
    assert json.loads(a.stdout) == json.loads(b.stdout), (a.stdout, b.stdout)
    assert "on hand 0" in harness.mallctl("catalog", "stock", "WATERMELON", catalog=cat).stdout
    p = harness.mallctl("rpc", "catalog", "GetStock", '{"skuCode":"WATERMELON","bogus":1}',
                        catalog=cat, check=False)
    assert p.returncode == 1 and "invalid_argument" in p.stderr and "bogus" in p.stderr, p
    p = harness.mallctl("rpc", "catalog", "DropEverything", catalog=cat, check=False)
    assert p.returncode == 2 and "no method" in p.stderr, p
    p = harness.mallctl("rpc", "nowhere", "Ping", catalog=cat, check=False)
    assert p.returncode == 2, p


def test_seed_twice_changes_nothing():
    before = get("/api/v1/products?pageSize=1").body["totalCount"]
    cats_before = len(get("/api/v1/categories").body["categories"])
    harness.mallctl("catalog", "seed", SEED, catalog=env()["cat"])
    assert get("/api/v1/products?pageSize=1").body["totalCount"] == before
    assert len(get("/api/v1/categories").body["categories"]) == cats_before


def test_seed_with_bad_fields_writes_nothing(tmp=None):
    db = env()["cat"].db
    count = db.sql("SELECT count(*) FROM product")[0][0]
    bad = {"categories": [], "products": [
        {"slug": "bad-one", "name": "이상한 상품", "categorySlug": "fruit", "colour": "red",
         "skus": []}]}
    path = os.path.join(harness.workdir(), "bad_seed.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(bad, f, ensure_ascii=False)
    p = harness.mallctl("catalog", "seed", path, catalog=env()["cat"], check=False)
    assert p.returncode == 1 and "colour" in p.stderr, p
    bad["products"][0] = {"slug": "bad-two", "name": 12, "categorySlug": "fruit", "skus": []}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(bad, f)
    p = harness.mallctl("catalog", "seed", path, catalog=env()["cat"], check=False)
    assert p.returncode == 1 and "name" in p.stderr, p
    bad["products"][0] = {"slug": "Bad Slug'; DROP TABLE product; --", "name": "x",
                          "categorySlug": "fruit", "skus": []}
    with open(path, "w", encoding="utf-8") as f:
        json.dump(bad, f)
    p = harness.mallctl("catalog", "seed", path, catalog=env()["cat"], check=False)
    assert p.returncode == 1 and "slug" in p.stderr, p
    assert db.sql("SELECT count(*) FROM product")[0][0] == count


def test_categories():
    r = get("/api/v1/categories")
    assert r.status == 200, r
    cats = r.body["categories"]
    seed = env()["seed"]["categories"]
    assert len(cats) == len(seed)
    by_slug = {c["slug"]: c for c in cats}
    assert by_slug["beef"]["parentId"] == by_slug["meat"]["id"]
    assert by_slug["meat"]["parentId"] == 0 and by_slug["meat"]["name"] == "정육"


def test_not_found():
    assert_error(get("/api/v1/products/no-such-product"), 404, "not_found")
    assert_error(get("/api/v1/products/999999999"), 404, "not_found")
    assert_error(get("/api/v1/products?category=no-such-category"), 404, "not_found")
    assert_error(get("/api/v1/nothing-here"), 404, "not_found")
    assert get("/no-such-file.html").status == 404


def test_bad_query_values():
    for query, field in [("pageSize=0", "pageSize"), ("pageSize=101", "pageSize"),
                         ("pageSize=abc", "pageSize"), ("page=-1", "page"),
                         ("page=0", "page"), ("page=99999999999", "page"),
                         ("sort=cheapest", "sort"), ("colour=red", "colour"),
                         ("q=%FF%FE", "q"), ("q=" + q("가" * 101), "q")]:
        r = get("/api/v1/products?" + query)
        assert_error(r, 400, "invalid_argument")
        assert field in r.body["error"].get("fields", {}), (query, r)
    for query in ("q=%zz", "q=%", "pageSize=1&pageSize=%G1"):
        assert_error(get("/api/v1/products?" + query), 400, "invalid_argument")


def test_body_too_large_by_content_length():
    gw = env()["gw"]
    head = ("POST /api/v1/products HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % (2 * 1024 * 1024)).encode()
    r = harness.parse_response(gw.raw(head))  # no body sent: decided before reading it
    assert r.status == 413 and r.body["error"]["message"], r
    # any path, any method
    r = harness.parse_response(gw.raw(head.replace(b"POST /api/v1/products", b"PUT /whatever")))
    assert r.status == 413, r
    assert get("/healthz").status == 200


def test_body_too_large_chunked():
    gw = env()["gw"]
    head = (b"POST /api/v1/products HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\n\r\n")
    chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
    with harness.RawConnection(gw.host, gw.port, timeout=10) as c:
        c.send(head)
        sent = 0
        try:
            while sent < 4 * 1024 * 1024:   # the limit is 1 MiB; the answer must come before 4
                c.send(chunk)
                sent += 64 * 1024
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = c.read_response(timeout=10)
    assert r is not None and r.status == 413, r
    assert get("/healthz").status == 200


def test_no_host_header():
    r = harness.parse_response(env()["gw"].raw(b"GET /api/v1/products HTTP/1.1\r\n\r\n"))
    assert_error(r, 400, "bad_request")


def test_path_traversal_refused():
    gw = env()["gw"]
    for path in (b"/../../../../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd",
                 b"/..%2f..%2f..%2fetc%2fpasswd", b"/static/%2e%2e/%2e%2e/etc/passwd"):
        data = gw.raw(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b"root:" not in data, path
        r = harness.parse_response(data)
        assert r.status in (400, 403, 404), (path, r)


def test_static_storefront():
    r = get("/")
    assert r.status == 200 and r.headers.get("Content-Type", "").startswith("text/html"), r
    r = get("/api/v1/openapi.json")
    assert r.status == 200 and r.body["openapi"].startswith("3.1"), r
    for path in ("/api/v1/products", "/api/v1/products/{idOrSlug}", "/api/v1/categories"):
        assert path in r.body["paths"], path


def test_slow_client_is_dropped_and_others_served():
    gw = env()["gw"]
    s = socket.create_connection((gw.host, gw.port))
    s.sendall(b"GET /api/v1/products HTTP/1.1\r\nHo")   # then nothing
    t0 = time.monotonic()
    assert get("/api/v1/products?pageSize=1").status == 200   # others are served meanwhile
    s.settimeout(30)
    try:
        data = s.recv(4096)
        while data:          # the gateway answers 408 or just closes
            data = s.recv(4096)
    except (ConnectionResetError, socket.timeout):
        pass
    s.close()
    assert time.monotonic() - t0 < 30, "a slow client was kept for 30 s or more"


def rpc(method, req, mutating=False):
    """(ok, reply-or-error JSON) of mall.catalog.Catalog/<method> via rpc_call."""
    argv = [harness.binary("tests/integration/rpc_call"), "--addrs", env()["cat"].addr,
            "--service", "mall.catalog.Catalog", "--method", method]
    if mutating:
        argv.append("--mutating")
    p = subprocess.run(argv + [json.dumps(req)], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert p.returncode in (0, 1), "rpc_call %s: %d %s %s" % (method, p.returncode, p.stdout,
                                                              p.stderr)
    return p.returncode == 0, json.loads(p.stdout)


def get_skus(ids):
    good, r = rpc("GetSkus", {"ids": ids})
    assert good, (ids, r)
    return r["skus"]


def detail_skus(slug):
    r = get("/api/v1/products/" + slug)
    assert r.status == 200, r
    return r.body, {s["id"]: s for s in r.body["skus"]}


def test_get_skus_in_request_order():
    sirloin, by_id = detail_skus("hanwoo-sirloin")
    honey, honey_skus = detail_skus("honey")
    ids = [honey["skus"][0]["id"], sirloin["skus"][2]["id"], sirloin["skus"][0]["id"]]
    views = get_skus(ids)
    assert [v["sku"]["id"] for v in views] == ids, views
    for v in views:
        s = v["sku"]
        want = by_id.get(s["id"]) or honey_skus[s["id"]]
        p = sirloin if s["id"] in by_id else honey
        for key in ("code", "price", "available", "optionValues", "productId"):
            assert s[key] == want[key], (key, s, want)
        assert s["onHand"] == s["available"] and s["reserved"] == 0, s
        assert v["productName"] == p["name"] and v["productSlug"] == p["slug"], v
        assert v["purchasable"] is True, v
        assert v["thumbnail"] == p["images"][0], (v, p["images"])
    assert views[1]["productName"] == "한우 1++ 등심"
    assert views[1]["sku"]["price"] == {"amount": 179600, "currency": "KRW"}, views[1]
    assert get_skus([]) == []


def test_get_skus_unknown_left_out_repeats_once():
    _, by_id = detail_skus("hanwoo-sirloin")
    a, b = sorted(by_id)[:2]
    missing = int(env()["cat"].db.sql("SELECT coalesce(max(id), 0) + 1000 FROM sku")[0][0])
    views = get_skus([b, missing, a, b, a, missing])
    assert [v["sku"]["id"] for v in views] == [b, a], views
    assert get_skus([missing]) == []


def test_get_skus_unpublished_is_not_purchasable():
    good, p = rpc("CreateProduct", {"slug": "getskus-hidden", "name": "숨은 상품",
                                    "categorySlug": "fruit", "published": False}, mutating=True)
    assert good, p
    good, sku = rpc("CreateSku", {"productId": p["id"], "code": "GETSKUS-HIDDEN",
                                  "price": 1234, "onHand": 5}, mutating=True)
    assert good, sku
    _, by_id = detail_skus("hanwoo-sirloin")
    views = get_skus([sku["id"], min(by_id)])
    assert [v["sku"]["id"] for v in views] == [sku["id"], min(by_id)], views
    hidden = views[0]
    assert hidden["purchasable"] is False and views[1]["purchasable"] is True, views
    assert hidden["productName"] == "숨은 상품" and hidden["productSlug"] == "getskus-hidden"
    assert "thumbnail" not in hidden, hidden   # a product without images
    assert hidden["sku"]["price"]["amount"] == 1234 and hidden["sku"]["available"] == 5


def test_get_skus_stock_is_current():
    cat = env()["cat"]
    _, by_id = detail_skus("watermelon")
    (sid,) = by_id
    assert get_skus([sid])[0]["sku"]["available"] == by_id[sid]["available"]
    harness.mallctl("catalog", "set-stock", "WATERMELON", "9", catalog=cat)
    s = get_skus([sid])[0]["sku"]
    assert s["available"] == 9 and s["onHand"] == 9, s
    # available is on hand minus reserved (reservations are the cart's, later)
    cat.db.sql("UPDATE sku SET reserved = 4 WHERE id = %d" % sid)
    s = get_skus([sid])[0]["sku"]
    assert (s["onHand"], s["reserved"], s["available"]) == (9, 4, 5), s
    cat.db.sql("UPDATE sku SET reserved = 0 WHERE id = %d" % sid)
    harness.mallctl("catalog", "set-stock", "WATERMELON", "0", catalog=cat)
    s = get_skus([sid])[0]["sku"]
    assert s["available"] == 0 and s["onHand"] == 0, s


def test_get_skus_bad_ids():
    _, by_id = detail_skus("hanwoo-sirloin")
    sid = min(by_id)
    good, r = rpc("GetSkus", {"ids": [sid] * 200})
    assert good and [v["sku"]["id"] for v in r["skus"]] == [sid], r
    for ids, field in (([sid] * 201, "ids"), (list(range(1, 202)), "ids"),
                       ([sid, 0], "ids[1]"), ([-5], "ids[0]")):
        good, r = rpc("GetSkus", {"ids": ids})
        assert not good and r["error"]["code"] == "invalid_argument", (ids[:3], r)
        assert set(r["error"].get("fields", {})) == {field}, (ids[:3], r)


def test_catalog_down_is_503_and_recovers():
    e = env()
    e["cat"].kill9()
    t0 = time.monotonic()
    r = get("/api/v1/products")
    assert_error(r, 503, "unavailable")
    assert time.monotonic() - t0 < 5, "503 took %.1f s" % (time.monotonic() - t0)
    assert_error(get("/api/v1/products/hanwoo-sirloin"), 503, "unavailable")
    assert get("/healthz").status == 200
    e["cat"].restart()
    harness.wait_until(lambda: get("/api/v1/products").status == 200, timeout=20,
                       what="the gateway to reach the restarted catalog")
    assert get("/api/v1/products/hanwoo-sirloin").status == 200


harness.run()
