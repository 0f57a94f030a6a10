// test_storefront.mjs: a shopper's visit to the storefront (gateway/web/) in
// headless Chromium, driven by playwright-core.
//
//   node test_storefront.mjs <gateway url> <work dir>
//
// test_storefront.py starts the services and the gateway, seeds seed.json and
// promotions.json, and runs this; the prices, stock, shipping policy, coupon
// and gift rule expected below come from those two files.  The visit: browse
// the list, open a product, add to the cart as a guest (and over the stock),
// see the totals, shipping fee and free-shipping hint, change quantities (to
// free shipping and a gift, over the stock), apply coupons (unknown, valid,
// no longer applicable), sign up (with field errors first), log in (wrong
// password first) and find the guest cart merged, reload, log out, add as a
// guest again and log in to a merge with the member's cart, remove a line;
// then check out: as the member (the address book, field errors from the
// API, a double click that places one order, a virtual account's bank and
// number, the order list and page, cancelling the unpaid order), as a guest
// by card in the sandbox PG's window (paid, the cart emptied), a sold-out
// line stopping the order, a payment failing in the window and paid again,
// one the card company declines and paid again, easy pay, a virtual account
// paid by deposit and cancelled with a refund account, and a guest's order
// lookup by number and phone in a new tab, cancelling the paid order.
// Every write must carry X-CSRF-Token and an Idempotency-Key; no script error
// may happen on the page.  Screenshots go to the work dir, for people only.
//
// Prints "ok <step>" per step, or "FAIL <step>: why" and exits 1.
// MALL_TEST_CHROMIUM: the browser (default /usr/bin/chromium); MALL_TEST_MALLCTL
// and MALL_CATALOG_ADDRS: mallctl and the catalog, to change stock meanwhile;
// MALL_TEST_PG_URL: the sandbox PG, where the shopper's bank deposit is made.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { chromium } from "playwright-core";

const here = path.dirname(fileURLToPath(import.meta.url));
const [base, workdir] = process.argv.slice(2);
if (!base || !workdir) {
  console.error("usage: node test_storefront.mjs <gateway url> <work dir>");
  process.exit(2);
}
const CHROMIUM = process.env.MALL_TEST_CHROMIUM || "/usr/bin/chromium";
const MALLCTL = process.env.MALL_TEST_MALLCTL;
const PG = process.env.MALL_TEST_PG_URL; // the sandbox PG, to pay a virtual account
assert.ok(MALLCTL && process.env.MALL_CATALOG_ADDRS && PG,
  "MALL_TEST_MALLCTL, MALL_CATALOG_ADDRS and MALL_TEST_PG_URL must be set");
const TIMEOUT = 15000; // ms for one expectation (the test build runs under ASan)

// ---- the fixture --------------------------------------------------------

const seed = JSON.parse(fs.readFileSync(path.join(here, "seed.json"), "utf8"));
const promos = JSON.parse(fs.readFileSync(path.join(here, "promotions.json"), "utf8"));
const product = (slug) => seed.products.find((p) => p.slug === slug);
const tangerine = product("bt-tangerine");
const rice = product("bt-brown-rice");
const gift = product("bt-cooler-bag");
const [small, big] = tangerine.skus; // 2kg in stock, 5kg sold out
const policy = promos.shippingPolicy;
const coupon = promos.coupons[0];
const FEE = policy.fee;
const FREE = policy.freeThreshold;

// The visit depends on these relations; a fixture edit that breaks one
// fails here, not somewhere puzzling below.
assert.ok(small.onHand >= 3 && small.onHand < 9, "2kg stock must be 3..8");
assert.equal(big.onHand, 0, "5kg must be sold out");
assert.ok(2 * small.price < FREE && 3 * small.price >= FREE, "2 under, 3 over free shipping");
assert.equal(coupon.minSubtotal, FREE, "the coupon's minimum is the free-shipping threshold");
assert.ok(promos.giftRules[0].minSubtotal <= 3 * small.price);

const won = (n) => String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ",") + "원";
const optionText = (sku) => sku.optionValues.map((o) => o.option + ": " + o.value).join(", ");

const member = {
  email: `shopper.${Date.now()}.${process.pid}@example.com`,
  password: "correct horse 1",
  name: "김민수",
  phone: "010-1234-5678",
};

// ---- helpers -------------------------------------------------------------

const norm = (s) => (s || "").replace(/\s+/g, " ").trim();

// expectText: waits until the element's text contains expected (a string)
// or matches it (a RegExp).
async function expectText(locator, expected, what) {
  const deadline = Date.now() + TIMEOUT;
  let text = "";
  for (;;) {
    try {
      text = norm(await locator.first().textContent({ timeout: 1000 }));
    } catch (_) {
      text = "(no such element)";
    }
    const ok = expected instanceof RegExp ? expected.test(text) : text.includes(expected);
    if (ok) return text;
    if (Date.now() > deadline)
      throw new assert.AssertionError({
        message: `${what || locator}: expected ${expected instanceof RegExp ? expected : JSON.stringify(expected)}, got ${JSON.stringify(text)}`,
      });
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function expectValue(locator, expected, what) {
  const deadline = Date.now() + TIMEOUT;
  let v;
  for (;;) {
    v = await locator.inputValue({ timeout: TIMEOUT });
    if (v === String(expected)) return;
    if (Date.now() > deadline)
      throw new assert.AssertionError({ message: `${what}: expected value ${expected}, got ${v}` });
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function expectGone(locator, what) {
  await locator.first().waitFor({ state: "detached", timeout: TIMEOUT }).catch(() => {
    throw new assert.AssertionError({ message: `${what} is still there` });
  });
}

let shotNo = 0;
async function shot(page, name) {
  shotNo += 1;
  const file = path.join(workdir, `storefront-${String(shotNo).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path: file, fullPage: true }).catch(() => {});
  return file;
}

// Every form control on the page has an accessible name.
async function expectLabelled(page, where) {
  const unnamed = await page.locator("main input, main select, main button, header input, header button")
    .evaluateAll((els) => els
      .filter((e) => e.offsetParent !== null && e.type !== "hidden")
      .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") &&
        !e.getAttribute("aria-labelledby") && !(e.tagName === "BUTTON" && e.textContent.trim()))
      .map((e) => e.outerHTML.slice(0, 80)));
  assert.deepEqual(unnamed, [], `${where}: controls without a label`);
}

// ---- the visit -------------------------------------------------------------

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // playwright gives every launch a fresh profile (--user-data-dir) of its own
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ baseURL: base, locale: "ko-KR", viewport: { width: 1100, height: 900 } });
context.setDefaultTimeout(TIMEOUT);
const page = await context.newPage();

const pageErrors = [];
const writes = [];
page.on("pageerror", (e) => pageErrors.push(e.message));
page.on("request", (req) => {
  if (req.url().includes("/api/") && !["GET", "HEAD"].includes(req.method()))
    writes.push({ what: req.method() + " " + new URL(req.url()).pathname, headers: req.headers() });
});
page.on("response", (res) => {
  if (res.url().includes("/api/") && res.status() >= 400)
    console.log(`     (api ${res.status()} ${res.request().method()} ${new URL(res.url()).pathname})`);
});
page.on("requestfailed", (req) => console.log(`     (request failed: ${req.method()} ${req.url()} ${req.failure()?.errorText})`));

const header = {
  count: page.locator("#cart-count"),
  cartLink: page.locator("#cart-link"),
  member: page.locator("#member-name"),
  login: page.locator("#login-link"),
  logout: page.getByRole("button", { name: "로그아웃" }),
};
const cart = {
  row: (name) => page.locator("#cart-body tbody tr", { hasText: name }),
  qty: (name) => page.getByLabel(name + " 수량", { exact: true }),
  subtotal: page.locator("#cart-subtotal"),
  discount: page.locator("#cart-discount"),
  shipping: page.locator("#cart-shipping"),
  total: page.locator("#cart-total"),
  freeShipping: page.locator("#free-shipping"),
  message: page.locator("#cart-message"),
  gifts: page.locator("section.gifts"),
  couponInput: page.getByLabel("쿠폰 코드"),
  couponSubmit: page.locator(".coupon-form button[type=submit]"),
  couponError: page.locator("#coupon-error"),
  couponApplied: page.locator("#coupon-applied"),
};

async function expectTotals(subtotal, discount, shipping, total) {
  await expectText(cart.subtotal, won(subtotal), "subtotal");
  await expectText(cart.discount, discount ? "-" + won(discount) : won(0), "discount");
  await expectText(cart.shipping, shipping ? won(shipping) : "무료", "shipping fee");
  await expectText(cart.total, won(total), "total");
}

async function setQuantity(name, n) {
  const input = cart.qty(name);
  await input.fill(String(n));
  await input.press("Enter");
}

// setStock: the catalog's stock of a SKU, as the back office would change it.
function setStock(code, n) {
  execFileSync(MALLCTL, ["catalog", "set-stock", code, String(n)], { stdio: ["ignore", "ignore", "inherit"] });
}

async function login(password) {
  await page.getByLabel("이메일", { exact: true }).fill(member.email);
  await page.getByLabel("비밀번호", { exact: true }).fill(password);
  await page.getByRole("button", { name: "로그인", exact: true }).click();
}

async function addToCart(qty) {
  await page.getByLabel("수량", { exact: true }).fill(String(qty));
  await page.getByRole("button", { name: "장바구니 담기" }).click();
}

const steps = [];
const step = (name, fn) => steps.push([name, fn]);

step("browse the product list", async () => {
  await page.goto("/");
  await page.getByRole("link", { name: new RegExp(tangerine.name) }).waitFor();
  await expectText(page.locator("#status"), /상품 \d+개/, "list status");
  await expectText(header.count, "0", "cart count of a new guest");
  await expectText(header.login, "로그인", "login link");
});

step("open a product: options with price and stock", async () => {
  await page.getByRole("link", { name: new RegExp(tangerine.name) }).click();
  await page.waitForURL(/\?product=bt-tangerine/);
  await expectText(page.locator("#product h1"), tangerine.name, "product heading");
  const select = page.getByLabel("옵션", { exact: true });
  const options = await select.locator("option").evaluateAll((os) => os.map((o) => ({ text: o.textContent, disabled: o.disabled })));
  assert.equal(options.length, 2, "two options");
  assert.ok(options[0].text.includes(optionText(small)) && options[0].text.includes(won(small.price)), options[0].text);
  assert.ok(options[0].text.includes(`${small.onHand}개 남음`), options[0].text);
  assert.ok(options[1].disabled && options[1].text.includes("품절"), "the sold-out option is disabled");
  assert.equal(await select.inputValue(), String(await select.locator("option").first().getAttribute("value")));
  await expectLabelled(page, "product page");
});

step("quantity outside 1..99 is refused in the page", async () => {
  await addToCart(0);
  await expectText(page.locator("#buy-message"), "1개부터 99개까지", "range message");
  await expectText(header.count, "0", "nothing added");
});

step("add to the cart as a guest", async () => {
  await page.getByLabel("수량", { exact: true }).fill("2");
  await expectText(page.locator("#buy-total"), won(2 * small.price), "price of the choice");
  await page.getByRole("button", { name: "장바구니 담기" }).click();
  await expectText(page.locator("#buy-message"), "장바구니에 담았습니다", "added message");
  await expectText(header.count, "2", "cart count");
});

step("adding beyond the stock says how many are left", async () => {
  await addToCart(small.onHand - 1); // 2 in the cart + (stock - 1) > stock
  await expectText(page.locator("#buy-message"), "재고가 부족합니다", "stock message");
  // "available" is what the line may hold in all: the stock
  const text = await expectText(page.locator("#buy-message"), `남은 수량은 ${small.onHand}개`, "left count");
  assert.ok(text.includes("장바구니에 이미 2개"), text);
  assert.ok(await page.locator("#buy-message").evaluate((e) => e.classList.contains("error")));
  await expectText(header.count, "2", "cart count unchanged");
  await shot(page, "product");
});

step("the cart: line, totals, shipping fee and the free-shipping hint", async () => {
  await header.cartLink.click();
  await page.waitForURL(/#\/cart$/);
  const row = cart.row(tangerine.name);
  await expectText(row, optionText(small), "option");
  await expectText(row.locator("td").nth(2), won(small.price), "unit price");
  await expectValue(cart.qty(tangerine.name), 2, "quantity");
  await expectText(row.locator(".line-total"), won(2 * small.price), "line total");
  await expectTotals(2 * small.price, 0, FEE, 2 * small.price + FEE);
  await expectText(cart.freeShipping, `${won(FREE - 2 * small.price)} 더 담으면 무료배송`, "free-shipping hint");
  assert.equal(await cart.gifts.count(), 0, "no gift under the minimum");
  assert.equal(await row.locator(".badge").count(), 0, "no availability badge");
  await expectLabelled(page, "cart");
});

step("more quantity: free shipping and the gift", async () => {
  await setQuantity(tangerine.name, 3);
  await expectTotals(3 * small.price, 0, 0, 3 * small.price);
  await expectText(cart.freeShipping, "무료배송 조건을 채웠습니다", "free shipping reached");
  await expectText(cart.gifts, gift.name, "gift");
  await expectText(cart.gifts, "사은품", "gift heading");
  await expectText(header.count, "3", "cart count");
  await expectText(cart.message, "3개로 변경", "change message");
  // the redrawn cart gives the keyboard its place back
  assert.equal(await page.evaluate(() => document.activeElement && document.activeElement.getAttribute("aria-describedby")),
    await cart.qty(tangerine.name).getAttribute("aria-describedby"), "focus back on the quantity");
});

step("+ and - buttons", async () => {
  await page.getByRole("button", { name: tangerine.name + " 수량 늘리기" }).click();
  await expectValue(cart.qty(tangerine.name), 4, "quantity after +");
  await expectTotals(4 * small.price, 0, 0, 4 * small.price);
  await page.getByRole("button", { name: tangerine.name + " 수량 줄이기" }).click();
  await expectValue(cart.qty(tangerine.name), 3, "quantity after -");
  await expectTotals(3 * small.price, 0, 0, 3 * small.price);
});

step("a quantity above the stock is refused with what is left", async () => {
  await setQuantity(tangerine.name, 9);
  const row = cart.row(tangerine.name);
  await expectText(row.locator(".field-error"), "재고가 부족합니다", "row error");
  await expectText(row.locator(".field-error"), `${small.onHand}개`, "left count");
  await expectText(cart.message, "재고가 부족합니다", "cart message");
  await expectValue(cart.qty(tangerine.name), 3, "quantity back to 3");
  assert.equal(await cart.qty(tangerine.name).getAttribute("aria-invalid"), "true");
  await expectTotals(3 * small.price, 0, 0, 3 * small.price);
});

step("an unknown coupon is refused", async () => {
  await cart.couponInput.fill("NOPE-123");
  await cart.couponSubmit.click();
  await expectText(cart.couponError, "존재하지 않거나", "unknown coupon");
  assert.equal(await cart.couponApplied.count(), 0);
});

step("a coupon takes its discount off", async () => {
  await cart.couponInput.fill(coupon.code.toLowerCase()); // codes are case-insensitive
  await cart.couponSubmit.click();
  await expectText(cart.couponApplied, coupon.name, "applied coupon");
  await expectText(cart.couponApplied, `-${won(coupon.amount)} 할인`, "coupon discount");
  await expectTotals(3 * small.price, coupon.amount, 0, 3 * small.price - coupon.amount);
});

step("below its minimum the coupon stays, says why and takes nothing", async () => {
  await setQuantity(tangerine.name, 2);
  await expectText(cart.couponApplied, "적용 안 됨", "not applicable");
  await expectText(cart.couponApplied, new RegExp(`${won(coupon.minSubtotal)} 이상|최소 주문 금액`), "minimum spend");
  await expectTotals(2 * small.price, 0, FEE, 2 * small.price + FEE);
  await expectText(cart.freeShipping, `${won(FREE - 2 * small.price)} 더 담으면 무료배송`, "hint again");
  assert.equal(await cart.gifts.count(), 0, "the gift is gone");
  await setQuantity(tangerine.name, 3);
  await expectTotals(3 * small.price, coupon.amount, 0, 3 * small.price - coupon.amount);
});

step("sign up: field errors next to the fields, then success", async () => {
  await page.getByRole("link", { name: "회원가입" }).first().click();
  await page.waitForURL(/#\/signup$/);
  await page.getByLabel("이메일", { exact: true }).fill(member.email);
  await page.getByLabel("비밀번호", { exact: true }).fill(member.password);
  await page.getByLabel("비밀번호 확인").fill("something else 1");
  await page.getByLabel("이름").fill(member.name);
  await page.getByLabel("휴대폰 번호").fill("12345");
  await page.getByLabel("이메일 수신").check();
  await page.getByRole("button", { name: "가입하기" }).click();
  await expectText(page.locator("#signup-passwordConfirm-error"), "일치하지 않습니다", "confirm error (in the page)");
  await page.getByLabel("비밀번호 확인").fill(member.password);
  await page.getByRole("button", { name: "가입하기" }).click();
  // the API's error, next to its field
  await expectText(page.locator("#signup-phone-error"), "010-1234-5678 형식", "phone error (from the API)");
  assert.equal(await page.getByLabel("휴대폰 번호").getAttribute("aria-invalid"), "true");
  assert.equal(await page.locator("#signup-email-error").textContent(), "");
  await expectLabelled(page, "signup");
  await shot(page, "signup-errors");
  await page.getByLabel("휴대폰 번호").fill(member.phone);
  await page.getByRole("button", { name: "가입하기" }).click();
  await page.waitForURL(/#\/login$/);
  await expectText(page.locator("#status"), "회원가입이 완료되었습니다", "signup done");
  await expectValue(page.getByLabel("이메일", { exact: true }), member.email, "email prefilled");
});

step("a wrong password is refused", async () => {
  await login("wrong horse 1");
  await expectText(page.locator("#login-message"), "이메일 또는 비밀번호가 올바르지 않습니다", "401 message");
  await expectLabelled(page, "login");
  assert.ok(await header.login.isVisible(), "still logged out");
});

step("log in: the guest cart is merged into the member's", async () => {
  await login(member.password);
  await page.waitForURL(/#\/cart$/);
  await expectText(header.member, member.name + "님", "member in the header");
  assert.ok(await header.logout.isVisible());
  assert.ok(!(await header.login.isVisible()));
  await expectText(page.locator("#status"), "합쳤습니다", "merge message");
  await expectValue(cart.qty(tangerine.name), 3, "merged quantity");
  await expectText(header.count, "3", "cart count");
  await expectText(cart.couponApplied, coupon.name, "the guest's coupon came along");
  await expectTotals(3 * small.price, coupon.amount, 0, 3 * small.price - coupon.amount);
});

step("reload: still logged in, the cart intact", async () => {
  await page.reload();
  await expectText(header.member, member.name + "님", "member after reload");
  await expectValue(cart.qty(tangerine.name), 3, "quantity after reload");
  await expectTotals(3 * small.price, coupon.amount, 0, 3 * small.price - coupon.amount);
  await expectText(header.count, "3", "cart count after reload");
});

step("log out: a guest again, with an empty cart", async () => {
  await header.logout.click();
  await header.login.waitFor({ state: "visible" });
  await expectText(page.locator("#status"), "로그아웃되었습니다", "logout message");
  await expectText(header.count, "0", "guest cart count");
  await expectText(page.locator("#cart-body"), "장바구니가 비어 있습니다", "empty cart");
  assert.ok(!(await header.member.isVisible()));
});

step("the same email cannot sign up twice", async () => {
  await page.goto("/#/signup");
  await page.getByLabel("이메일", { exact: true }).fill(member.email.toUpperCase());
  await page.getByLabel("비밀번호", { exact: true }).fill(member.password);
  await page.getByLabel("비밀번호 확인").fill(member.password);
  await page.getByLabel("이름").fill("이영희");
  await page.getByLabel("휴대폰 번호").fill("01022223333");
  await page.getByRole("button", { name: "가입하기" }).click();
  await expectText(page.locator("#signup-email-error"), "이미 가입된 이메일입니다", "duplicate email");
});

step("a guest adds more, logs in: both carts merge", async () => {
  await page.goto("/?product=bt-brown-rice");
  await expectText(page.locator("#product h1"), rice.name, "rice page");
  assert.ok(!(await page.getByLabel("옵션", { exact: true }).isVisible()), "no option to choose");
  await addToCart(1);
  await expectText(page.locator("#buy-message"), "장바구니에 담았습니다", "added");
  await expectText(header.count, "1", "guest count");
  await header.login.click();
  await page.waitForURL(/#\/login$/);
  await login(member.password);
  await page.waitForURL(/#\/cart$/);
  await expectValue(cart.qty(tangerine.name), 3, "member's line");
  await expectValue(cart.qty(rice.name), 1, "guest's line");
  await expectText(header.count, "4", "merged count");
  const subtotal = 3 * small.price + rice.skus[0].price;
  await expectTotals(subtotal, coupon.amount, 0, subtotal - coupon.amount);
});

step("remove a line", async () => {
  await cart.row(rice.name).getByRole("button", { name: /삭제$/ }).click();
  await expectGone(cart.row(rice.name), "the removed line");
  await expectText(header.count, "3", "count after removal");
  await expectText(cart.message, "삭제했습니다", "removal message");
  await expectTotals(3 * small.price, coupon.amount, 0, 3 * small.price - coupon.amount);
});

step("stock running low or out shows on the line and leaves it out of the total", async () => {
  const row = cart.row(tangerine.name);
  setStock(small.code, 2); // the line holds 3
  await page.reload();
  await expectText(row.locator(".badge"), "재고 부족 (남은 수량 2개)", "insufficient badge");
  await expectText(page.locator("#cart-body"), "구매할 수 없는 상품이 있습니다", "not orderable");
  await expectText(cart.subtotal, won(0), "subtotal without the line");
  await shot(page, "cart-low-stock");
  setStock(small.code, 0);
  await page.reload();
  await expectText(row.locator(".badge"), "품절", "sold-out badge");
  setStock(small.code, small.onHand);
  await page.reload();
  await expectValue(cart.qty(tangerine.name), 3, "quantity kept");
  assert.equal(await row.locator(".badge").count(), 0, "no badge once in stock");
  await expectTotals(3 * small.price, coupon.amount, 0, 3 * small.price - coupon.amount);
});

// ---- checkout and orders ---------------------------------------------------

const guest = { name: "이영희", phone: "010-2222-3333", email: "guest@example.com" };
const address = { recipient: "김민수", phone: "010-1234-5678", postalCode: "06236",
  address1: "서울 강남구 테헤란로 152", address2: "12층" };
const bookAddress = { recipient: "김민수", phone: "010-1234-5678", postalCode: "04524",
  address1: "서울 중구 세종대로 110", address2: "3층", isDefault: true };
const sandboxWindow = /\/sandbox\/pay\?/;
const orderNumber = /^\d{8}-\d{6}$/;
const order = {
  number: page.locator("#order-number"),
  status: page.locator("#order-status"),
  message: page.locator("#order-message"),
  lines: page.locator("#order-lines"),
  total: page.locator("#order-total"),
};
const placed = () => writes.filter((w) => w.what === "POST /api/v1/orders").length;

// fillCheckout: the checkout form (orderer only for a guest: a member's is
// prefilled), a typed-in address, the method and the agreement.
async function fillCheckout(who, addr, method) {
  if (who) {
    await page.getByLabel("이름", { exact: true }).fill(who.name);
    await page.getByLabel("휴대폰 번호", { exact: true }).fill(who.phone);
    await page.getByLabel("이메일", { exact: true }).fill(who.email);
  }
  const typeIn = page.getByRole("radio", { name: "새 배송지 입력" });
  if (await typeIn.count()) await typeIn.check(); // a member with an address book
  await page.getByLabel("받는 분", { exact: true }).fill(addr.recipient);
  await page.getByLabel("받는 분 휴대폰 번호").fill(addr.phone);
  await page.getByLabel("우편번호").fill(addr.postalCode);
  await page.getByLabel("주소", { exact: true }).fill(addr.address1);
  await page.getByLabel("상세 주소").fill(addr.address2);
  await page.getByRole("radio", { name: method }).check();
  await page.getByRole("checkbox", { name: /결제에 동의/ }).check();
}

async function toCheckout() {
  await page.goto("/#/cart");
  await page.locator("#cart-order").click();
  await page.waitForURL(/#\/checkout$/);
  await page.locator("#checkout-submit").waitFor();
}

// inWindow: the sandbox PG's payment window shows the order; returns its number.
async function inWindow(method, amount) {
  await page.waitForURL(sandboxWindow);
  await expectText(page.locator("#method"), method, "method in the window");
  await expectText(page.locator("#amount"), won(amount), "amount in the window");
  const number = norm(await page.locator("#order-id").textContent());
  assert.match(number, orderNumber);
  return number;
}

let memberOrder = "";
let guestOrder = "";
const memberTotal = 3 * small.price - coupon.amount;
const riceTotal = (n) => n * rice.skus[0].price + (n * rice.skus[0].price >= FREE ? 0 : FEE);

step("checkout as a member: prefilled orderer, the address book, the API's field errors next to the fields", async () => {
  // an address in the member's book (there is no page for the book yet)
  await page.evaluate(async (a) => {
    const csrf = decodeURIComponent(document.cookie.split("; ").find((c) => c.startsWith("mall_csrf=")).slice(10));
    const res = await fetch("/api/v1/me/addresses", { method: "POST", body: JSON.stringify(a),
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf, "Idempotency-Key": crypto.randomUUID() } });
    const text = await res.text(); // an unread body counts as aborted
    if (res.status !== 201) throw new Error("adding an address: " + res.status + " " + text);
  }, bookAddress);
  await toCheckout();
  assert.ok(await page.getByRole("radio", { name: /세종대로 110/ }).isChecked(), "the default address is chosen");
  assert.ok(!(await page.getByLabel("우편번호").isVisible()), "no address to type in");
  await expectValue(page.getByLabel("이름", { exact: true }), member.name, "orderer name");
  await expectValue(page.getByLabel("휴대폰 번호", { exact: true }), member.phone, "orderer phone");
  await expectValue(page.getByLabel("이메일", { exact: true }), member.email, "orderer email");
  await expectText(page.locator("#checkout-total"), won(memberTotal), "checkout total");
  await expectText(page.locator("#checkout-discount"), "-" + won(coupon.amount), "checkout discount");
  await expectText(page.locator(".checkout-form .order-lines"), tangerine.name, "lines");
  await expectText(page.locator("#checkout-submit"), won(memberTotal) + " 결제하기", "button");
  // nothing agreed, nothing typed: the page says so without calling the API
  await page.getByRole("radio", { name: "새 배송지 입력" }).check();
  await page.locator("#checkout-submit").click();
  await expectText(page.locator("#checkout-agree-error"), "동의", "agreement");
  await expectText(page.locator("#checkout-shippingAddress-address1-error"), "주소를 입력", "address");
  assert.equal(placed(), 0, "no order request yet");
  // a postal code of 4 digits: the API's 400, next to the field
  await fillCheckout(null, { ...address, postalCode: "0623" }, "가상계좌");
  await page.locator("#checkout-submit").click();
  await expectText(page.locator("#checkout-shippingAddress-postalCode-error"), "우편번호 5자리", "postal code (API)");
  assert.equal(await page.getByLabel("우편번호").getAttribute("aria-invalid"), "true");
  await expectText(page.locator("#checkout-message"), "입력한 내용을 확인해 주세요", "form message");
  await expectLabelled(page, "checkout");
  await shot(page, "checkout-errors");
});

step("a double click places one order; a virtual account shows bank, account number, due date", async () => {
  await page.getByRole("radio", { name: /세종대로 110/ }).check(); // back to the book's address
  const before = placed();
  await page.locator("#checkout-submit").dblclick();
  memberOrder = await inWindow("가상계좌", memberTotal);
  assert.equal(placed() - before, 1, "one POST /api/v1/orders");
  await page.locator("#pay").click();
  await page.waitForURL(/\?checkout=success/);
  await expectText(order.status, "입금 대기", "status");
  await expectText(order.number, memberOrder, "order number");
  await expectText(page.locator("#deposit-bank"), /은행|뱅크/, "bank");
  await expectText(page.locator("#deposit-account-number"), /^\d{10,16}$/, "account number");
  await expectText(page.locator("#deposit-due"), /\d{4}\. \d+\. \d+\./, "due date");
  await expectText(order.total, won(memberTotal), "total");
  await expectText(page.locator(".order-detail"), bookAddress.address1, "the book's address");
  await shot(page, "virtual-account");
  // the member's orders: exactly the one
  await page.locator("#orders-link").click();
  await page.waitForURL(/#\/orders$/);
  await expectText(page.locator("#order-list"), memberOrder, "order in the list");
  assert.equal(await page.locator("#order-list li").count(), 1, "one order");
  await expectText(page.locator("#order-list li").first(), "입금 대기", "status in the list");
});

step("the order's page: lines and total; an unpaid order is cancelled from it", async () => {
  await page.locator("#order-list a").first().click();
  await page.waitForURL(new RegExp("#/orders/" + memberOrder + "$"));
  await expectText(order.status, "입금 대기", "status");
  await expectText(order.lines, tangerine.name, "line");
  await expectText(order.lines, gift.name, "gift line");
  await expectText(order.total, won(memberTotal), "total");
  await page.getByRole("button", { name: "주문 취소", exact: true }).click();
  await page.getByRole("button", { name: "주문 취소하기" }).click();
  await expectText(order.status, "주문 취소", "cancelled");
  await expectText(order.message, "주문을 취소했습니다", "cancel message");
  assert.equal(await page.locator("#order-cancel").count(), 0, "no cancel button any more");
});

step("a guest pays by card in the sandbox window: 결제 완료 with the order number", async () => {
  await header.logout.click();
  await header.login.waitFor({ state: "visible" });
  await page.goto("/?product=bt-brown-rice");
  await addToCart(1);
  await expectText(page.locator("#buy-message"), "장바구니에 담았습니다", "added");
  await toCheckout();
  await expectValue(page.getByLabel("이름", { exact: true }), "", "a guest's orderer is empty");
  await fillCheckout(guest, address, "카드");
  await page.locator("#checkout-submit").click();
  guestOrder = await inWindow("카드", riceTotal(1));
  await page.locator("#pay").click();
  await page.waitForURL(/\?checkout=success/);
  await expectText(order.status, "결제 완료", "status");
  await expectText(order.number, orderNumber, "order number");
  assert.equal(norm(await order.number.textContent()), guestOrder);
  await expectText(order.lines, rice.name, "line");
  await expectText(order.total, won(riceTotal(1)), "total");
  await expectText(order.message, "결제가 완료되었습니다", "message");
  await shot(page, "paid");
});

step("after paying, the cart no longer holds the ordered line", async () => {
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    await page.goto("/#/cart");
    const text = await expectText(page.locator("#cart-body"), /비어 있습니다|합계/, "cart");
    if (text.includes("비어 있습니다")) break;
    assert.ok(Date.now() < deadline, "the paid line is still in the cart");
    await new Promise((r) => setTimeout(r, 500));
  }
  await expectText(header.count, "0", "cart count");
});

step("a sold-out line stops the order with a clear message", async () => {
  await page.goto("/?product=bt-brown-rice");
  await addToCart(2);
  await expectText(page.locator("#buy-message"), "장바구니에 담았습니다", "added");
  await toCheckout();
  await fillCheckout(guest, address, "카드");
  setStock(rice.skus[0].code, 1);
  await page.locator("#checkout-submit").click();
  await expectText(page.locator("#checkout-message"), /재고|구매할 수 없는 상품/, "409 message");
  assert.ok(await page.locator("#checkout-message").evaluate((e) => e.classList.contains("error")));
  await expectText(page.locator(".to-cart"), "장바구니 확인", "link to the cart");
  setStock(rice.skus[0].code, rice.skus[0].onHand);
});

step("a payment failing in the window: the fail page, then paying the same order again", async () => {
  await page.locator("#checkout-submit").click();
  const number = await inWindow("카드", riceTotal(2));
  await page.locator("#fail").click();
  await page.waitForURL(/\?checkout=fail/);
  await expectText(order.message, "사용자에 의해 결제가 취소되었습니다", "the PG's message");
  await expectText(order.number, number, "order number");
  await shot(page, "payment-failed");
  await page.getByRole("button", { name: "다시 결제하기" }).click();
  assert.equal(await inWindow("카드", riceTotal(2)), number, "the same order");
  await page.locator("#pay").click();
  await page.waitForURL(/\?checkout=success/);
  await expectText(order.status, "결제 완료", "paid on the second try");
  await expectText(order.number, number, "order number");
});

step("a payment the card company declines: the page says so, paying again succeeds", async () => {
  await page.goto("/?product=bt-brown-rice");
  await addToCart(1);
  await expectText(page.locator("#buy-message"), "장바구니에 담았습니다", "added");
  await toCheckout();
  await fillCheckout(guest, address, "카드");
  await page.locator("#checkout-submit").click();
  const number = await inWindow("카드", riceTotal(1));
  await page.locator("#reject").click();
  await page.waitForURL(/\?checkout=success/);
  await expectText(page.locator("#order-heading"), "결제하지 못했습니다", "heading");
  await expectText(order.message, "승인하지 않았습니다", "declined message");
  await page.getByRole("button", { name: "다시 결제하기" }).click();
  assert.equal(await inWindow("카드", riceTotal(1)), number, "the same order");
  await page.locator("#pay").click();
  await page.waitForURL(/\?checkout=success/);
  await expectText(order.status, "결제 완료", "paid on the second try");
});

step("easy pay with KakaoPay", async () => {
  await page.goto("/?product=bt-brown-rice");
  await addToCart(1);
  await expectText(page.locator("#buy-message"), "장바구니에 담았습니다", "added");
  await toCheckout();
  await fillCheckout(guest, address, "간편결제");
  await page.getByRole("radio", { name: "카카오페이" }).check();
  await page.locator("#checkout-submit").click();
  await inWindow("간편결제 (카카오페이)", riceTotal(1));
  await page.locator("#pay").click();
  await page.waitForURL(/\?checkout=success/);
  await expectText(order.status, "결제 완료", "status");
  await expectText(page.locator(".order-detail"), "간편결제 (카카오페이)", "method");
});

step("a virtual account paid by deposit; cancelling it asks for the refund account", async () => {
  await page.goto("/?product=bt-brown-rice");
  await addToCart(1);
  await expectText(page.locator("#buy-message"), "장바구니에 담았습니다", "added");
  await toCheckout();
  await fillCheckout(guest, address, "가상계좌");
  await page.locator("#checkout-submit").click();
  const number = await inWindow("가상계좌", riceTotal(1));
  await page.locator("#pay").click();
  await page.waitForURL(/\?checkout=success/);
  await expectText(order.status, "입금 대기", "awaiting the deposit");
  // the shopper pays into the account: the PG calls the gateway's webhook
  const paymentKey = new URL(page.url()).searchParams.get("paymentKey");
  const res = await fetch(PG + "/sandbox/v1/deposits", { method: "POST",
    headers: { "Content-Type": "application/json" }, body: JSON.stringify({ paymentKey }) });
  assert.equal(res.status, 200, "deposit: " + await res.text());
  const deadline = Date.now() + TIMEOUT;
  for (;;) {
    await page.goto("/#/orders/" + number);
    const text = await expectText(order.status, /입금 대기|결제 완료/, "status");
    if (text.includes("결제 완료")) break;
    assert.ok(Date.now() < deadline, "the deposit never paid the order");
    await new Promise((r) => setTimeout(r, 300));
  }
  await page.getByRole("button", { name: "주문 취소", exact: true }).click();
  await page.getByLabel("계좌번호").waitFor();
  await page.getByRole("button", { name: "주문 취소하기" }).click();
  await expectText(page.locator("#cancel-refundAccount-bank-error"), "은행을 선택", "bank required");
  await page.getByLabel("은행", { exact: true }).selectOption({ label: "신한은행" });
  await page.getByLabel("계좌번호").fill("110-123-456789");
  await expectValue(page.getByLabel("예금주"), guest.name, "holder prefilled");
  await expectLabelled(page, "refund account");
  await shot(page, "refund-account");
  await page.getByRole("button", { name: "주문 취소하기" }).click();
  await expectText(order.message, "주문을 취소했습니다", "cancel message");
  await expectText(order.status, /주문 취소|환불 완료/, "cancelled and refunded");
});

step("a guest looks an order up by number and phone, and cancels it (refunded)", async () => {
  // a new tab remembers nothing of the orders placed in this one
  const tab = await context.newPage();
  tab.on("pageerror", (e) => pageErrors.push(e.message));
  try {
    await tab.goto("/#/orders");
    await tab.getByLabel("주문번호").fill(guestOrder);
    await tab.getByLabel("주문자 휴대폰 번호").fill("010-9999-0000");
    await tab.getByRole("button", { name: "조회하기" }).click();
    await expectText(tab.locator("#orders-message"), "맞는 주문이 없습니다", "wrong phone");
    await tab.getByLabel("주문자 휴대폰 번호").fill(guest.phone.replace(/-/g, ""));
    await tab.getByRole("button", { name: "조회하기" }).click();
    await tab.waitForURL(new RegExp("#/orders/" + guestOrder + "$"));
    await expectText(tab.locator("#order-status"), "결제 완료", "status");
    await expectText(tab.locator("#order-number"), guestOrder, "number");
    await expectText(tab.locator("#order-lines"), rice.name, "line");
    await expectLabelled(tab, "order page");
    // a paid order is refunded when cancelled
    await tab.getByRole("button", { name: "주문 취소", exact: true }).click();
    await expectText(tab.locator(".confirm-cancel"), "환불", "refund notice");
    await tab.getByRole("button", { name: "주문 취소하기" }).click();
    await expectText(tab.locator("#order-message"), "주문을 취소했습니다", "cancel message");
    await expectText(tab.locator("#order-status"), /주문 취소|환불 완료/, "cancelled and refunded");
  } finally {
    await tab.close();
  }
});

step("every write sent X-CSRF-Token and an Idempotency-Key", async () => {
  assert.ok(writes.length >= 15, `only ${writes.length} writes seen`);
  const keys = new Set();
  for (const w of writes) {
    assert.match(w.headers["x-csrf-token"] || "", /^[0-9a-f]{64}$/, `${w.what} without X-CSRF-Token`);
    const key = w.headers["idempotency-key"] || "";
    assert.match(key, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/, `${w.what} without Idempotency-Key`);
    keys.add(key);
  }
  // one key per action: only a retry after a 403 may repeat one
  assert.ok(keys.size >= writes.length - 1, "Idempotency-Keys repeat");
});

let failed = false;
try {
  for (const [name, fn] of steps) {
    const t0 = Date.now();
    try {
      await fn();
      if (pageErrors.length) throw new Error("script error on the page: " + pageErrors.join("; "));
      console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(2)}s)`);
    } catch (err) {
      failed = true;
      const file = await shot(page, "failure");
      console.log(`FAIL ${name}: ${err.message}`);
      console.log(`     page ${page.url()}, screenshot ${file}`);
      console.log(`     status: ${norm(await page.locator("#status").textContent().catch(() => ""))}`);
      break;
    }
  }
  if (!failed) await shot(page, "cart");
} finally {
  await browser.close();
}
console.log(failed ? "browser test failed" : `${steps.length} steps passed`);
process.exit(failed ? 1 : 0);
