"""The storefront in a real browser.  Starts the catalog, member, cart, order
and payment services, the sandbox PG (tests/fakes/sandbox_pg.py, whose
payment window the browser visits) and the gateway the way the integration
tests do (through tests/integration/harness.py: fresh databases in the
throwaway cluster, the test Redis, free ports), seeds a small catalog
(seed.json) and the cart's
promotions (promotions.json: shipping policy, coupon, gift rule), then runs
test_storefront.mjs, which drives Debian's headless Chromium with
playwright-core through a shopper's visit (see its header).

Needs /usr/bin/chromium, node and tests/browser/node_modules; script/bootstrap
--test installs all three, and a missing one FAILS the test saying so.  The
screenshots go to the harness's work folder and are copied to
MALL_BUILD_DIR/tests/browser/screenshots/ (for people; nothing is compared).
"""

import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness  # noqa: E402

CHROMIUM = os.environ.get("MALL_TEST_CHROMIUM", "/usr/bin/chromium")
NODE_TIMEOUT = 240  # seconds for the whole browser session


def need_browser_tools():
    """node, Chromium and the npm packages, or a failure naming the fix."""
    fix = ("run script/bootstrap --test (it installs chromium and nodejs and runs npm ci "
           "in tests/browser)")
    node = shutil.which("node")
    if node is None and os.access("/usr/bin/node", os.X_OK):
        node = "/usr/bin/node"
    if node is None:
        raise harness.HarnessError("node not found: " + fix)
    if not os.access(CHROMIUM, os.X_OK):
        raise harness.HarnessError("%s not found: %s" % (CHROMIUM, fix))
    pkg = os.path.join(HERE, "node_modules", "playwright-core", "package.json")
    if not os.path.exists(pkg):
        raise harness.HarnessError("%s is missing: %s" % (os.path.dirname(pkg), fix))
    return node


def rpc(svc, method, body):
    """One mutating call to the cart service through tests/integration/rpc_call."""
    p = subprocess.run(
        [harness.binary("tests/integration/rpc_call"), "--addrs", svc.addr,
         "--service", "mall.cart.CartService", "--method", method, "--mutating",
         json.dumps(body, ensure_ascii=False)],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, "%s %s failed: %s%s" % (method, body, p.stdout, p.stderr)
    return json.loads(p.stdout)


def sku_ids(gw, seed):
    """SKU code -> id, as the catalog numbered them."""
    ids = {}
    for product in seed["products"]:
        r = gw.get("/api/v1/products/" + product["slug"])
        assert r.status == 200, r
        for s in r.body["skus"]:
            ids[s["code"]] = s["id"]
    return ids


def seed_promotions(cart, ids):
    with open(os.path.join(HERE, "promotions.json")) as f:
        promos = json.load(f)
    rpc(cart, "SetShippingPolicy", promos["shippingPolicy"])
    for c in promos["coupons"]:
        rpc(cart, "CreateCoupon", c)
    for g in promos["giftRules"]:
        rule = {k: v for k, v in g.items() if k != "giftSkuCode"}
        rule["giftSkuId"] = ids[g["giftSkuCode"]]
        rpc(cart, "CreateGiftRule", rule)


def keep_screenshots(workdir):
    shots = sorted(f for f in os.listdir(workdir) if f.endswith(".png"))
    if not shots:
        return
    out = os.path.join(harness.build_dir(), "tests", "browser", "screenshots")
    os.makedirs(out, exist_ok=True)
    for f in shots:
        shutil.copy(os.path.join(workdir, f), os.path.join(out, f))
    print("screenshots: %s (%s)" % (out, ", ".join(shots)), flush=True)


def test_storefront_in_chromium():
    node = need_browser_tools()
    seed_path = os.path.join(HERE, "seed.json")
    with open(seed_path) as f:
        seed = json.load(f)

    cat = harness.start_catalog()
    harness.mallctl("catalog", "seed", seed_path, catalog=cat)
    mem = harness.start_service("member")
    cart = harness.start_service("cart", env={"MALL_CATALOG_ADDRS": cat.addr})
    # the payment service reads orders and the order service follows the
    # payment service's events: the order service's address is picked first
    # and the sandbox PG sends its deposit callbacks to the gateway: its port too
    order_addr = "tcp://127.0.0.1:%d" % harness.free_port()
    gw_port = harness.free_port()
    pg = harness.start_sandbox_pg(
        webhook_url="http://127.0.0.1:%d/webhooks/payments/toss" % gw_port,
        env={"MALL_SANDBOX_PG_WEBHOOK_BACKOFF": "100ms"})
    pay = harness.start_service("payment", env={
        "MALL_ORDER_ADDRS": order_addr, "MALL_PAYMENT_PG_URL": pg.url,
        "MALL_PAYMENT_PG_SECRET_KEY": pg.secret_key, "MALL_PAYMENT_PG_CLIENT_KEY": pg.client_key,
        "MALL_RPC_TIMEOUT": "5s"})
    harness.start_service("order", env={
        "MALL_ORDER_LISTEN": order_addr,
        "MALL_CATALOG_ADDRS": cat.addr, "MALL_CART_ADDRS": cart.addr,
        "MALL_MEMBER_ADDRS": mem.addr, "MALL_PAYMENT_ADDRS": pay.addr,
        "MALL_PAYMENT_EVENTS_ADDRS": pay.events_addr, "MALL_RPC_TIMEOUT": "5s"})
    # failed logins of other tests from 127.0.0.1 count in the shared Redis
    g = harness.start_gateway(catalog=[cat], member=[mem], cart=[cart], order=[order_addr],
                              payment=[pay],
                              env={"MALL_GATEWAY_LISTEN": "127.0.0.1:%d" % gw_port,
                                   "MALL_GATEWAY_LOGIN_MAX_PER_IP": "100000",
                                   "MALL_PAYMENT_PG_CLIENT_KEY": pg.client_key,
                                   "MALL_GATEWAY_PG_WINDOW_URL": pg.url + "/sandbox/pay"},
                              wait=False)
    gw = harness.Gateway(g.proc, gw_port)
    harness.wait_http(gw.url + "/readyz", 200, 60, proc=gw.proc)
    seed_promotions(cart, sku_ids(gw, seed))

    work = harness.workdir()
    browser = harness.start_process(
        "node", [node, os.path.join(HERE, "test_storefront.mjs"), gw.url, work],
        env={"PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1", "MALL_TEST_CHROMIUM": CHROMIUM,
             "MALL_TEST_MALLCTL": harness.binary("tools/mallctl/mallctl"),
             "MALL_CATALOG_ADDRS": cat.addr, "MALL_TEST_PG_URL": pg.url},
        cwd=HERE, check=False)
    try:
        code = browser.wait(NODE_TIMEOUT)
    except harness.HarnessError:
        browser.kill9()
        raise
    finally:
        print(browser.output(), end="", flush=True)
        keep_screenshots(work)
    assert code == 0, "test_storefront.mjs exited with status %s" % code


harness.run()
