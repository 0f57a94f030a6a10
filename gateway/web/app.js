// mall storefront: the product list and pages, the cart, login and signup,
// checkout and the PG's payment window, orders, over the JSON API
// (/api/v1/...).
//
// Routes: the list and a product live in the query string (?category=&q=
// &sort=&page= or ?product=slug), so every view is a plain link; the cart,
// login, signup, checkout and orders are hash routes (#/cart, #/login,
// #/signup, #/checkout, #/orders, #/orders/<number>) on top of it.  The PG's
// window returns to /?checkout=success or /?checkout=fail with its own
// parameters (paymentKey, orderId, amount; code, message).
//
// Session: on load GET /api/v1/session makes (or finds) the session; the
// gateway keeps it in the HttpOnly cookie mall_session and hands out a CSRF
// token (the answer's csrfToken, also the readable cookie mall_csrf) that
// every write sends back in X-CSRF-Token.  Each write also carries an
// Idempotency-Key, one per user action (a retry reuses it).
//
// API text is only ever put into the page as text (textContent), never as
// HTML.
"use strict";

const PAGE_SIZE = 24;
const QTY_MAX = 99;
const won = new Intl.NumberFormat("ko-KR");

// formatPrice: {amount: 12900, currency: "KRW"} -> "12,900원".
function formatPrice(money) {
  if (!money) return "";
  const amount = Number(money.amount || 0);
  if (!money.currency || money.currency === "KRW") return won.format(amount) + "원";
  return won.format(amount) + " " + money.currency;
}

// amountOf: a Money's amount as a number (0 when absent).
function amountOf(money) {
  return money ? Number(money.amount || 0) : 0;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

// href: the page's URL with params changed (empty values dropped).
function href(params) {
  const q = new URLSearchParams(location.search);
  q.delete("product");
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === "") q.delete(k);
    else q.set(k, String(v));
  }
  const s = q.toString();
  return "/" + (s ? "?" + s : "");
}

// ---------------------------------------------------------------------------
// The API

const state = {
  csrf: "",         // the session's CSRF token (the mall_csrf cookie wins)
  member: null,     // the signed-in member, null for a guest
  cart: null,       // the last Cart the API answered
  cartError: null,  // why the cart could not be loaded
  ready: null,      // settles once the session and the cart were loaded
  flash: "",        // a message for the next view (after a signup)
  focusKey: "",     // the cart control to focus again once the cart is redrawn
  loginEmail: "",   // prefills the login form after a signup
};

class ApiError extends Error {
  constructor(status, body, retryAfter) {
    const e = body && body.error ? body.error : {};
    super(e.message || String(status));
    this.status = status;
    this.code = e.code || "";
    this.fields = e.fields || null;
    this.details = e.details || null;
    this.retryAfter = retryAfter;
  }
}

function cookie(name) {
  for (const part of document.cookie.split(";")) {
    const [k, ...v] = part.trim().split("=");
    if (k === name) return decodeURIComponent(v.join("="));
  }
  return "";
}

// newKey: a random UUID (v4) for Idempotency-Key; crypto.randomUUID needs a
// secure context, getRandomValues does not.
function newKey() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
}

// request: one API call; resolves to the parsed body (null for 204), rejects
// with an ApiError (or a TypeError when the network failed).
async function request(method, path, body, key) {
  const headers = { Accept: "application/json" };
  const init = { method, headers, credentials: "same-origin", cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  if (method !== "GET" && method !== "HEAD") {
    const csrf = cookie("mall_csrf") || state.csrf;
    if (csrf) headers["X-CSRF-Token"] = csrf;
    if (key) headers["Idempotency-Key"] = key;
  }
  const res = await fetch(path, init);
  // read every body, a 204's empty one too: an unread body counts as aborted
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch (_) {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, data, res.headers.get("Retry-After"));
  return data;
}

function api(path) {
  return request("GET", path);
}

// write: an unsafe request for one user action.  A 403 may mean our CSRF
// token went stale (the session expired, another tab logged in): fetch the
// session again and retry once with the same Idempotency-Key.
async function write(method, path, body) {
  return writeKeyed(method, path, body, newKey());
}

// writeKeyed: write with the caller's Idempotency-Key (a retry of the same
// submission sends the same key again).
async function writeKeyed(method, path, body, key) {
  await state.ready;
  try {
    return await request(method, path, body, key);
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 403) throw err;
    await loadSession();
    return await request(method, path, body, key);
  }
}

// errorText: a Korean sentence for an error no view knows better.
function errorText(err) {
  if (!(err instanceof ApiError)) return "서버에 연결하지 못했습니다. 네트워크를 확인하고 다시 시도해 주세요.";
  if (err.status === 503 || err.status === 504 || err.status === 502)
    return "서비스에 잠시 문제가 있습니다. 잠시 후 다시 시도해 주세요.";
  if (err.status === 429) return "요청이 너무 많습니다. 잠시 후 다시 시도해 주세요.";
  if (err.status === 403) return "요청이 거부되었습니다. 페이지를 새로 고친 뒤 다시 시도해 주세요.";
  if (err.status >= 500) return "일시적인 오류가 발생했습니다. 잠시 후 다시 시도해 주세요.";
  let t = err.message;
  if (err.fields) t += " (" + Object.entries(err.fields).map(([k, v]) => k + ": " + v).join(", ") + ")";
  return t;
}

function setStatus(text, isError) {
  const s = document.getElementById("status");
  s.textContent = text || "";
  s.classList.toggle("error", !!isError);
}

// say: text (or nodes) into a message element; error marks it red.
function say(node, content, isError) {
  if (!node) return;
  if (content instanceof Node || Array.isArray(content)) node.replaceChildren(...[].concat(content));
  else node.textContent = content || "";
  node.classList.toggle("error", !!isError);
}

// ---------------------------------------------------------------------------
// Session and header

async function loadSession() {
  const s = await api("/api/v1/session");
  state.csrf = (s && s.csrfToken) || "";
  state.member = (s && s.member) || null;
  renderHeader();
  return s;
}

async function loadCart() {
  try {
    setCart(await api("/api/v1/cart"));
    state.cartError = null;
  } catch (err) {
    state.cartError = err;
    renderHeader();
  }
  return state.cart;
}

function setCart(cart) {
  state.cart = cart;
  renderHeader();
}

function renderHeader() {
  const m = state.member;
  const name = document.getElementById("member-name");
  name.textContent = m ? (m.name || m.email) + "님" : "";
  name.hidden = !m;
  document.getElementById("login-link").hidden = !!m;
  document.getElementById("signup-link").hidden = !!m;
  document.getElementById("logout").hidden = !m;
  document.getElementById("orders-link").textContent = m ? "주문 내역" : "주문 조회";
  const count = document.getElementById("cart-count");
  const link = document.getElementById("cart-link");
  if (state.cart) {
    const n = Number(state.cart.itemCount || 0);
    count.textContent = won.format(n);
    count.hidden = false;
    link.setAttribute("aria-label", "장바구니, 상품 " + won.format(n) + "개");
  } else {
    count.hidden = true;
    link.removeAttribute("aria-label");
  }
}

async function logout() {
  const btn = document.getElementById("logout");
  btn.disabled = true;
  try {
    await write("DELETE", "/api/v1/session");
  } catch (err) {
    btn.disabled = false;
    setStatus("로그아웃하지 못했습니다. " + errorText(err), true);
    return;
  }
  state.member = null;
  state.cart = null;
  renderHeader();
  state.flash = "로그아웃되었습니다.";
  // the member's orders and checkout are no longer theirs to see here
  if (/^#\/(orders|checkout)/.test(location.hash) || new URLSearchParams(location.search).has("checkout"))
    history.replaceState(null, "", "/");
  try {
    // a fresh anonymous session (and CSRF token) with its own, empty cart
    await loadSession();
    await loadCart();
  } catch (err) {
    state.cartError = err;
  } finally {
    route();
    btn.disabled = false;
  }
}

// ---------------------------------------------------------------------------
// Views

const VIEWS = {
  list: [".toolbar", "#products", "#pager"],
  product: ["#product"],
  cart: ["#cart"],
  login: ["#login"],
  signup: ["#signup"],
  checkout: ["#checkout"],
  order: ["#order"],
  orders: ["#orders"],
};

function showView(name) {
  for (const [view, sels] of Object.entries(VIEWS))
    for (const sel of sels) document.querySelector(sel).hidden = view !== name;
  // forms leave no typed passwords (nor duplicate ids) behind
  for (const form of ["login", "signup"])
    if (form !== name) document.getElementById(form).replaceChildren();
  const link = document.getElementById("cart-link");
  if (name === "cart") link.setAttribute("aria-current", "page");
  else link.removeAttribute("aria-current");
  const orders = document.getElementById("orders-link");
  if (name === "orders" || name === "order") orders.setAttribute("aria-current", "page");
  else orders.removeAttribute("aria-current");
  // a message left for this view by the last action (login, logout, signup)
  const flash = state.flash;
  state.flash = "";
  setStatus(flash);
  return flash;
}

async function loadCategories(current) {
  const ul = document.getElementById("categories");
  try {
    const data = await api("/api/v1/categories");
    ul.replaceChildren(
      el("li", {}, el("a", { href: href({ category: "", page: "" }), "aria-current": current === "" ? "page" : null }, "전체")),
      ...data.categories.map((c) =>
        el("li", {}, el("a", {
          href: href({ category: c.slug, page: "" }),
          "aria-current": current === c.slug || current === String(c.id) ? "page" : null,
        }, c.name)))
    );
    const cur = data.categories.find((c) => c.slug === current || String(c.id) === current);
    if (cur) document.getElementById("heading").textContent = cur.name;
  } catch (_) {
    // the view shows its own errors; the links stay at "all"
  }
}

// image: an <img>, replaced by a grey box when it has no URL or fails to load.
function image(img, fallbackAlt, attrs) {
  const box = () => el("div", { class: "noimg", "aria-hidden": "true" });
  if (!img || !img.url) return box();
  const e = el("img", Object.assign({ src: img.url, alt: img.alt || fallbackAlt }, attrs || {}));
  e.addEventListener("error", () => e.replaceWith(box()), { once: true });
  return e;
}

function productHref(slugOrId) {
  return "/?product=" + encodeURIComponent(slugOrId);
}

function productCard(p) {
  const img = image(p.thumbnail, p.name, { loading: "lazy" });
  return el("li", { class: "card" },
    el("a", { href: productHref(p.slug || p.id) },
      img,
      el("div", { class: "body" },
        el("h2", { class: "name" }, p.name),
        el("span", { class: "price" }, formatPrice(p.price)),
        p.available ? null : el("span", { class: "soldout" }, "품절"))));
}

function renderPager(page, pageSize, total) {
  const pager = document.getElementById("pager");
  const pages = Math.max(1, Math.ceil(total / pageSize));
  const items = [];
  if (page > 1) items.push(el("a", { href: href({ page: page - 1 }) }, "이전"));
  const from = Math.max(1, page - 4), to = Math.min(pages, page + 4);
  for (let i = from; i <= to; i++)
    items.push(i === page ? el("span", { "aria-current": "page" }, i) : el("a", { href: href({ page: i }) }, i));
  if (page < pages) items.push(el("a", { href: href({ page: page + 1 }) }, "다음"));
  pager.replaceChildren(...(pages > 1 ? items : []));
}

async function showList(params) {
  const flash = showView("list");
  document.title = "mall";
  const q = params.get("q") || "";
  const category = params.get("category") || "";
  const sort = params.get("sort") || "newest";
  const page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);

  document.getElementById("q").value = q;
  document.getElementById("sort").value = sort;
  document.getElementById("heading").textContent = q ? "‘" + q + "’ 검색 결과" : "전체 상품";
  loadCategories(category);

  const query = new URLSearchParams();
  if (category) query.set("category", category);
  if (q) query.set("q", q);
  if (sort !== "newest") query.set("sort", sort);
  query.set("page", String(page));
  query.set("pageSize", String(PAGE_SIZE));

  setStatus("불러오는 중…");
  try {
    const data = await api("/api/v1/products?" + query.toString());
    const list = document.getElementById("products");
    list.replaceChildren(...data.products.map(productCard));
    setStatus(flash || (data.products.length ? "상품 " + won.format(Number(data.totalCount)) + "개" : "상품이 없습니다."));
    renderPager(data.page || page, data.pageSize || PAGE_SIZE, Number(data.totalCount));
  } catch (err) {
    setStatus(err.status === 503 || err.status === 504
      ? "상품 정보를 불러오지 못했습니다. 잠시 후 다시 시도해 주세요." : errorText(err), true);
  }
}

// ---------------------------------------------------------------------------
// Quantities and stock

// parseQuantity: the whole number typed in an input, or NaN.
function parseQuantity(text) {
  const t = String(text).trim();
  return /^\d{1,3}$/.test(t) ? parseInt(t, 10) : NaN;
}

const QTY_RANGE_TEXT = "수량은 1개부터 " + QTY_MAX + "개까지 입력할 수 있습니다.";

function inCart(skuId) {
  const items = (state.cart && state.cart.items) || [];
  const line = items.find((i) => String(i.skuId) === String(skuId));
  return line ? Number(line.quantity) : 0;
}

// quantityErrorText: why the cart refused a quantity, for the shopper.  The
// details: "available", what the line may hold in all (the stock, at most
// 99), and "inCart", what it holds now.  adding: the quantity was to be added
// to the line (POST), not set (PATCH).
function quantityErrorText(err, skuId, adding) {
  if (!(err instanceof ApiError)) return errorText(err);
  const d = err.details || {};
  const has = d.inCart !== undefined ? Number(d.inCart) : inCart(skuId);
  const already = adding && has > 0 ? " 장바구니에 이미 " + won.format(has) + "개가 담겨 있습니다." : "";
  switch (err.code) {
  case "out_of_stock": {
    if (d.available === undefined) return "재고가 부족합니다." + already;
    const left = Number(d.available);
    if (left <= 0) return "품절되어 담을 수 없습니다.";
    return "재고가 부족합니다. 남은 수량은 " + won.format(left) + "개입니다." + already;
  }
  case "quantity_limit":
    return "한 상품은 " + QTY_MAX + "개까지 담을 수 있습니다." + already;
  case "unavailable":
    return "지금은 구매할 수 없는 상품입니다.";
  case "cart_full":
    return "장바구니에 담을 수 있는 상품 종류를 넘었습니다. 다른 상품을 삭제한 뒤 담아 주세요.";
  }
  if (err.status === 400 && err.fields && err.fields.quantity) return QTY_RANGE_TEXT;
  if (err.status === 404) return adding ? "판매하지 않는 상품입니다." : "장바구니에 없는 상품입니다.";
  return errorText(err);
}

function optionText(sku) {
  return (sku.optionValues || []).map((o) => o.option + ": " + o.value).join(", ");
}

function skuChoiceText(sku) {
  const avail = Number(sku.available || 0);
  let t = (optionText(sku) || "기본") + " · " + formatPrice(sku.price);
  if (avail <= 0) t += " (품절)";
  else if (avail < 10) t += " (" + won.format(avail) + "개 남음)";
  return t;
}

// ---------------------------------------------------------------------------
// Product page

async function showProduct(idOrSlug) {
  showView("product");
  loadCategories(null);
  setStatus("불러오는 중…");
  const sec = document.getElementById("product");
  sec.replaceChildren();
  try {
    const p = await api("/api/v1/products/" + encodeURIComponent(idOrSlug));
    document.title = p.name + " - mall";
    const img = p.images && p.images.length ? image(p.images[0], p.name, { width: 320 }) : null;
    sec.replaceChildren(
      el("p", {}, el("a", { href: "/" }, "← 목록")),
      el("div", { class: "detail" },
        img,
        el("div", { class: "info" },
          el("h1", {}, p.name),
          el("p", { class: "price" }, formatPrice(p.price)),
          el("p", {}, p.summary || ""),
          buyForm(p))));
    setStatus("");
  } catch (err) {
    setStatus(err.status === 404 ? "상품을 찾을 수 없습니다." : errorText(err), true);
  }
}

// buyForm: option (SKU) select, quantity and "add to cart".
function buyForm(p) {
  const skus = p.skus || [];
  const form = el("form", { class: "buy", novalidate: true, "aria-label": "구매 옵션" });
  if (!skus.length) {
    form.append(el("p", { class: "soldout" }, "판매 준비 중인 상품입니다."));
    return form;
  }
  const firstAvailable = skus.find((s) => Number(s.available) > 0) || skus[0];
  const select = el("select", { id: "buy-sku", name: "sku" },
    skus.map((s) => el("option", {
      value: String(s.id),
      disabled: Number(s.available) <= 0,
      selected: s === firstAvailable,
    }, skuChoiceText(s))));
  const qty = el("input", {
    id: "buy-qty", name: "quantity", type: "number", min: 1, max: QTY_MAX, step: 1, value: 1,
    inputmode: "numeric", required: true, "aria-describedby": "buy-message",
  });
  const total = el("strong", { id: "buy-total" });
  const button = el("button", { type: "submit", id: "buy-add" }, "장바구니 담기");
  const message = el("p", { id: "buy-message", class: "message", role: "status" });
  // one SKU without options: nothing to choose
  const single = skus.length === 1 && !optionText(skus[0]);
  form.append(
    el("div", { class: "field", hidden: single }, el("label", { for: "buy-sku" }, "옵션"), select),
    el("div", { class: "field" }, el("label", { for: "buy-qty" }, "수량"), qty),
    el("p", { class: "buy-total" }, "총 상품 금액 ", total),
    button,
    message);

  const selected = () => skus.find((s) => String(s.id) === select.value);
  const update = () => {
    const s = selected();
    const n = parseQuantity(qty.value);
    total.textContent = s && n >= 1 && n <= QTY_MAX
      ? formatPrice({ amount: amountOf(s.price) * n, currency: (s.price || {}).currency }) : "-";
    const soldOut = !s || Number(s.available) <= 0;
    button.disabled = soldOut;
    button.textContent = soldOut ? "품절" : "장바구니 담기";
  };
  select.addEventListener("change", () => { say(message, ""); update(); });
  qty.addEventListener("input", () => { qty.removeAttribute("aria-invalid"); update(); });
  update();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const s = selected();
    const n = parseQuantity(qty.value);
    if (!(n >= 1 && n <= QTY_MAX)) {
      qty.setAttribute("aria-invalid", "true");
      say(message, QTY_RANGE_TEXT, true);
      qty.focus();
      return;
    }
    button.disabled = true;
    say(message, "담는 중…");
    try {
      setCart(await write("POST", "/api/v1/cart/items", { skuId: Number(s.id), quantity: n }));
      say(message, ["장바구니에 담았습니다. ", el("a", { href: "/#/cart" }, "장바구니 보기")]);
    } catch (err) {
      say(message, quantityErrorText(err, s.id, true), true);
    } finally {
      update();
    }
  });
  return form;
}

// ---------------------------------------------------------------------------
// Cart

const AVAILABILITY = ["available", "insufficient_stock", "sold_out", "unavailable"];

// availability: a line's state as a lower-case name (the API writes enums as
// lower-case strings; numbers and other cases are accepted too).
function availability(v) {
  if (v === undefined || v === null || v === "") return "available";
  if (typeof v === "number") return AVAILABILITY[v] || "unavailable";
  return String(v).toLowerCase();
}

function availabilityBadge(item) {
  switch (availability(item.availability)) {
  case "available":
    return null;
  case "insufficient_stock":
    return el("span", { class: "badge warn" },
      "재고 부족 (남은 수량 " + won.format(Number(item.availableQuantity || 0)) + "개)");
  case "sold_out":
    return el("span", { class: "badge" }, "품절");
  default:
    return el("span", { class: "badge" }, "판매 중지");
  }
}

const COUPON_REASONS = {
  coupon_inactive: "더 이상 사용할 수 없는 쿠폰입니다.",
  coupon_members_only: "회원 전용 쿠폰입니다. 로그인 후 사용해 주세요.",
  coupon_not_started: "아직 사용 기간이 아닌 쿠폰입니다.",
  coupon_expired: "사용 기간이 지난 쿠폰입니다.",
  coupon_exhausted: "준비된 수량이 모두 소진된 쿠폰입니다.",
  coupon_member_limit: "이미 사용 가능한 횟수만큼 사용한 쿠폰입니다.",
  coupon_min_spend: "최소 주문 금액을 채우지 않아 할인되지 않습니다.",
};

// couponReasonText: why a coupon does not apply.  reason is a slug of
// cart.proto, or a sentence; details.minSubtotal names the minimum spend.
function couponReasonText(reason, details) {
  const min = details && details.minSubtotal !== undefined ? Number(details.minSubtotal) : NaN;
  if (reason === "coupon_min_spend" && min > 0)
    return won.format(min) + "원 이상 구매 시 사용할 수 있는 쿠폰입니다.";
  if (COUPON_REASONS[reason]) return COUPON_REASONS[reason];
  // a sentence rather than a slug: its minimum spend, if it names one
  const m = /([\d,]+)\s*won/.exec(reason || "");
  if (m && /subtotal|spend/.test(reason)) return m[1] + "원 이상 구매 시 사용할 수 있는 쿠폰입니다.";
  return reason ? "사용할 수 없는 쿠폰입니다. (" + reason + ")" : "사용할 수 없는 쿠폰입니다.";
}

function couponErrorText(err) {
  if (!(err instanceof ApiError)) return errorText(err);
  if (err.status === 404) return "존재하지 않거나 사용할 수 없는 쿠폰 코드입니다.";
  if (err.status === 400 && err.fields && err.fields.code) return "쿠폰 코드를 확인해 주세요 (영문, 숫자 3~32자).";
  if (err.code.startsWith("coupon_")) return couponReasonText(err.code, err.details);
  return errorText(err);
}

function cartSkeleton() {
  const sec = document.getElementById("cart");
  if (!sec.firstChild)
    sec.append(
      el("h1", { id: "cart-heading", tabindex: -1 }, "장바구니"),
      el("p", { id: "cart-message", class: "message", role: "status" }),
      el("div", { id: "cart-body" }));
  return sec;
}

function cartMessage(content, isError) {
  say(document.getElementById("cart-message"), content, isError);
}

async function showCart(useLoaded) {
  showView("cart");
  document.title = "장바구니 - mall";
  loadCategories(null);
  cartSkeleton();
  cartMessage("");
  const body = document.getElementById("cart-body");
  if (!useLoaded || !state.cart) body.replaceChildren(el("p", {}, "불러오는 중…"));
  await state.ready;
  if (!useLoaded || !state.cart) await loadCart();
  if (!state.cart) {
    body.replaceChildren();
    cartMessage("장바구니를 불러오지 못했습니다. " + errorText(state.cartError), true);
    return;
  }
  renderCart();
}

function renderCart() {
  cartSkeleton();
  const body = document.getElementById("cart-body");
  const cart = state.cart;
  const items = cart.items || [];
  // the control in use before the redraw (it was disabled meanwhile)
  const focused = state.focusKey;
  state.focusKey = "";
  if (!items.length) {
    body.replaceChildren(...[
      el("p", { class: "empty" }, "장바구니가 비어 있습니다."),
      el("p", {}, el("a", { href: "/", class: "button" }, "쇼핑 계속하기")),
      state.member ? null : loginNudge()].filter(Boolean));
    return;
  }
  body.replaceChildren(...[
    el("table", { class: "cart-items" },
      el("caption", { class: "visually-hidden" }, "담은 상품"),
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "상품"),
        el("th", { scope: "col" }, "옵션"),
        el("th", { scope: "col", class: "num" }, "판매가"),
        el("th", { scope: "col" }, "수량"),
        el("th", { scope: "col", class: "num" }, "합계"),
        el("th", { scope: "col" }, el("span", { class: "visually-hidden" }, "삭제")))),
      el("tbody", {}, items.map(cartRow))),
    giftsSection(cart),
    couponSection(cart),
    summarySection(cart),
    state.member ? null : loginNudge()].filter(Boolean));
  if (focused) {
    const again = body.querySelector('[data-focus-key="' + CSS.escape(focused) + '"]');
    if (again && !again.disabled) again.focus();
  }
}

function loginNudge() {
  return el("p", { class: "nudge" },
    el("a", { href: "/#/login" }, "로그인"), "하면 담은 상품이 계정에 저장됩니다.");
}

function cartRow(item) {
  const id = String(item.id || item.skuId);
  const name = item.name || item.skuCode;
  const avail = availability(item.availability);
  const qtyId = "qty-" + id;
  const errId = "qty-error-" + id;
  const qty = el("input", {
    id: qtyId, type: "number", min: 1, max: QTY_MAX, step: 1, value: Number(item.quantity),
    inputmode: "numeric", class: "qty", "aria-describedby": errId, "data-focus-key": "qty:" + id,
  });
  const minus = el("button", { type: "button", class: "step", "aria-label": name + " 수량 줄이기",
    "data-focus-key": "minus:" + id, disabled: Number(item.quantity) <= 1 }, "−");
  const plus = el("button", { type: "button", class: "step", "aria-label": name + " 수량 늘리기",
    "data-focus-key": "plus:" + id, disabled: Number(item.quantity) >= QTY_MAX }, "+");
  const error = el("p", { id: errId, class: "field-error" });
  const remove = el("button", { type: "button", class: "link", "data-focus-key": "remove:" + id,
    "aria-label": name + (item.optionText ? " " + item.optionText : "") + " 삭제" }, "삭제");
  const row = el("tr", { "data-sku-id": id, class: avail === "available" ? null : "unavailable" },
    el("td", {}, el("div", { class: "item-name" },
      item.imageUrl ? el("img", { src: item.imageUrl, alt: "", width: 56, height: 56, loading: "lazy" }) : null,
      el("a", { href: productHref(item.productSlug || item.productId) }, name),
      availabilityBadge(item))),
    el("td", { class: "item-option" }, item.optionText || "-"),
    el("td", { class: "num" }, formatPrice(item.unitPrice)),
    el("td", { class: "item-qty" },
      el("label", { for: qtyId, class: "visually-hidden" }, name + " 수량"),
      el("span", { class: "stepper" }, minus, qty, plus),
      error),
    el("td", { class: "num line-total" }, formatPrice(item.lineTotal)),
    el("td", {}, remove));

  const controls = [qty, minus, plus, remove];
  let pending = false;
  const busy = (on) => {
    pending = on;
    if (on) state.focusKey = (document.activeElement && document.activeElement.dataset.focusKey) || "";
    for (const c of controls) c.disabled = on;
  };
  const change = async (n) => {
    if (pending) return;
    const before = Number(item.quantity);
    if (!(n >= 1 && n <= QTY_MAX)) {
      qty.value = before;
      qty.setAttribute("aria-invalid", "true");
      error.textContent = QTY_RANGE_TEXT;
      cartMessage(name + ": " + QTY_RANGE_TEXT, true);
      return;
    }
    if (n === before) return;
    busy(true);
    try {
      setCart(await write("PATCH", "/api/v1/cart/items/" + encodeURIComponent(id), { quantity: n }));
      renderCart();
      cartMessage(name + " 수량을 " + won.format(n) + "개로 변경했습니다.");
    } catch (err) {
      busy(false);
      minus.disabled = before <= 1;
      plus.disabled = before >= QTY_MAX;
      qty.value = before;
      qty.setAttribute("aria-invalid", "true");
      const text = quantityErrorText(err, item.skuId, false);
      error.textContent = text;
      cartMessage(name + ": " + text, true);
      if (err instanceof ApiError && err.status === 404) refreshCart();
    }
  };
  qty.addEventListener("change", () => change(parseQuantity(qty.value)));
  qty.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") { ev.preventDefault(); change(parseQuantity(qty.value)); }
  });
  minus.addEventListener("click", () => change(Number(item.quantity) - 1));
  plus.addEventListener("click", () => change(Number(item.quantity) + 1));
  remove.addEventListener("click", async () => {
    if (pending) return;
    busy(true);
    try {
      setCart(await write("DELETE", "/api/v1/cart/items/" + encodeURIComponent(id)));
      state.focusKey = "";
      renderCart();
      document.getElementById("cart-heading").focus();
      cartMessage(name + " 상품을 장바구니에서 삭제했습니다.");
    } catch (err) {
      busy(false);
      cartMessage(name + "을(를) 삭제하지 못했습니다. " + errorText(err), true);
      if (err instanceof ApiError && err.status === 404) refreshCart();
    }
  });
  return row;
}

// refreshCart: the cart changed under us (another tab): show it as it is.
async function refreshCart() {
  await loadCart();
  if (state.cart) renderCart();
}

function giftsSection(cart) {
  const gifts = cart.gifts || [];
  if (!gifts.length) return null;
  return el("section", { class: "gifts", "aria-labelledby": "gifts-heading" },
    el("h2", { id: "gifts-heading" }, "사은품"),
    el("ul", {}, gifts.map((g) => el("li", {},
      el("span", { class: "badge gift" }, "증정"), " ",
      g.name, g.optionText ? " (" + g.optionText + ")" : "",
      " × " + won.format(Number(g.quantity || 1)) + "개",
      g.ruleName ? el("span", { class: "muted" }, " · " + g.ruleName) : null))));
}

function couponSection(cart) {
  const c = cart.coupon;
  const input = el("input", { id: "coupon-code", name: "code", type: "text", maxlength: 32,
    autocomplete: "off", autocapitalize: "characters", spellcheck: "false",
    "aria-describedby": "coupon-error", placeholder: "쿠폰 코드" });
  const apply = el("button", { type: "submit" }, c ? "다른 쿠폰 적용" : "적용");
  const error = el("p", { id: "coupon-error", class: "field-error", role: "status" });
  const form = el("form", { class: "coupon-form", novalidate: true },
    el("label", { for: "coupon-code" }, "쿠폰 코드"), input, apply, error);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const code = input.value.trim();
    if (!code) {
      input.setAttribute("aria-invalid", "true");
      error.textContent = "쿠폰 코드를 입력해 주세요.";
      input.focus();
      return;
    }
    apply.disabled = true;
    try {
      setCart(await write("PUT", "/api/v1/cart/coupon", { code }));
      renderCart();
      const now = state.cart.coupon;
      if (now && now.applicable === false)
        cartMessage("쿠폰을 등록했지만 지금은 할인되지 않습니다: " + couponReasonText(now.reason), true);
      else cartMessage("쿠폰을 적용했습니다.");
    } catch (err) {
      apply.disabled = false;
      input.setAttribute("aria-invalid", "true");
      error.textContent = couponErrorText(err);
      input.focus();
    }
  });

  let applied = null;
  if (c) {
    const remove = el("button", { type: "button", class: "link" }, "쿠폰 삭제");
    remove.addEventListener("click", async () => {
      remove.disabled = true;
      try {
        setCart(await write("DELETE", "/api/v1/cart/coupon"));
        renderCart();
        cartMessage("쿠폰을 삭제했습니다.");
      } catch (err) {
        remove.disabled = false;
        cartMessage("쿠폰을 삭제하지 못했습니다. " + errorText(err), true);
      }
    });
    const ok = c.applicable !== false;
    applied = el("div", { class: "coupon-applied" + (ok ? "" : " not-applicable"), id: "coupon-applied" },
      el("p", {},
        el("strong", {}, c.name || c.code), " ", el("span", { class: "muted" }, "(" + c.code + ")"), " ",
        ok ? el("span", { class: "discount" }, "-" + formatPrice(c.discount) + " 할인")
          : el("span", { class: "coupon-reason" }, "적용 안 됨: " + couponReasonText(c.reason))),
      remove);
  }
  return el("section", { class: "coupon", "aria-labelledby": "coupon-heading" },
    el("h2", { id: "coupon-heading" }, "쿠폰"), applied, form);
}

function summarySection(cart) {
  const fee = amountOf(cart.shippingFee);
  const toFree = amountOf(cart.amountToFreeShipping);
  const threshold = amountOf(cart.freeShippingThreshold);
  const subtotal = amountOf(cart.subtotal);
  const discount = amountOf(cart.discount);
  let note = null;
  if (toFree > 0)
    note = el("p", { class: "free-shipping", id: "free-shipping" },
      el("strong", {}, formatPrice(cart.amountToFreeShipping)), " 더 담으면 무료배송");
  else if (threshold > 0 && subtotal >= threshold)
    note = el("p", { class: "free-shipping reached", id: "free-shipping" }, "무료배송 조건을 채웠습니다.");
  const unorderable = cart.orderable === false && (cart.items || []).length
    ? el("p", { class: "field-error" }, "구매할 수 없는 상품이 있습니다. 수량을 줄이거나 삭제해 주세요.") : null;
  return el("section", { class: "summary", "aria-labelledby": "summary-heading" },
    el("h2", { id: "summary-heading" }, "결제 예정 금액"),
    el("dl", {},
      el("div", {}, el("dt", {}, "상품 금액"), el("dd", { id: "cart-subtotal" }, formatPrice(cart.subtotal))),
      el("div", {}, el("dt", {}, "쿠폰 할인"), el("dd", { id: "cart-discount" },
        discount > 0 ? "-" + formatPrice(cart.discount) : formatPrice(cart.discount || { amount: 0 }))),
      el("div", {}, el("dt", {}, "배송비"), el("dd", { id: "cart-shipping" },
        fee > 0 ? formatPrice(cart.shippingFee) : subtotal > 0 ? "무료" : formatPrice({ amount: 0 }))),
      el("div", { class: "total" }, el("dt", {}, "합계"), el("dd", { id: "cart-total" }, formatPrice(cart.total)))),
    note,
    unorderable,
    el("p", { class: "order-action" }, cart.orderable === false
      ? el("button", { type: "button", id: "cart-order", disabled: true }, "주문하기")
      : el("a", { href: "/#/checkout", class: "button primary", id: "cart-order" }, "주문하기")));
}

// ---------------------------------------------------------------------------
// Login and signup

// field: a labelled input with its error line (aria-describedby).
function field(form, name, label, attrs, hint) {
  const id = form + "-" + name;
  const input = el("input", Object.assign({ id, name, "data-field": name, "aria-describedby": id + "-error" + (hint ? " " + id + "-hint" : "") }, attrs));
  return el("div", { class: "field" },
    el("label", { for: id }, label),
    input,
    hint ? el("p", { id: id + "-hint", class: "hint" }, hint) : null,
    el("p", { id: id + "-error", class: "field-error" }));
}

function clearErrors(form) {
  for (const e of form.querySelectorAll(".field-error")) e.textContent = "";
  for (const i of form.querySelectorAll("[aria-invalid]")) i.removeAttribute("aria-invalid");
}

// showFieldErrors: each message next to its field (the element
// "<prefix>-<field>-error", field the first part of a dotted name); marks the
// field's inputs invalid and focuses the first.  Returns the messages no
// field took.
function showFieldErrors(form, prefix, errors) {
  const rest = [];
  let first = null;
  for (const [name, text] of Object.entries(errors)) {
    const key = name.split(".")[0];
    const out = document.getElementById(prefix + "-" + key + "-error");
    if (!out) {
      rest.push(text);
      continue;
    }
    const inputs = form.querySelectorAll('[data-field="' + CSS.escape(key) + '"]');
    for (const input of inputs) input.setAttribute("aria-invalid", "true");
    const input = inputs[0];
    out.textContent = out.textContent ? out.textContent + " " + text : text;
    if (!first && input) first = input;
  }
  if (first) first.focus();
  return rest;
}

const SIGNUP_FIELD_TEXT = {
  email: "이메일 주소를 name@example.com 형식으로 입력해 주세요.",
  password: "비밀번호는 8자 이상 128자 이하로 입력해 주세요.",
  name: "이름은 1자 이상 50자 이하로 입력해 주세요.",
  phone: "휴대폰 번호를 010-1234-5678 형식으로 입력해 주세요.",
};

// apiFieldErrors: the API's field errors in Korean where we know the field.
function apiFieldErrors(err, texts) {
  const out = {};
  for (const [name, msg] of Object.entries(err.fields || {})) {
    const key = name.split(".")[0];
    if (key === "email" && err.code === "already_exists") out[key] = "이미 가입된 이메일입니다.";
    else out[name] = texts[key] || msg;
  }
  return out;
}

function showLogin() {
  showView("login");
  document.title = "로그인 - mall";
  loadCategories(null);
  const sec = document.getElementById("login");
  const message = el("p", { id: "login-message", class: "message", role: "status" });
  const button = el("button", { type: "submit" }, "로그인");
  const form = el("form", { novalidate: true, "aria-labelledby": "login-heading" },
    field("login", "email", "이메일", { type: "email", autocomplete: "username", required: true, value: state.loginEmail }),
    field("login", "password", "비밀번호", { type: "password", autocomplete: "current-password", required: true }),
    button,
    message);
  sec.replaceChildren(
    el("h1", { id: "login-heading" }, "로그인"),
    form,
    el("p", {}, "아직 회원이 아니신가요? ", el("a", { href: "/#/signup" }, "회원가입")));
  if (state.member) say(message, (state.member.name || state.member.email) + "님으로 로그인되어 있습니다.");
  (state.loginEmail ? form.elements.password : form.elements.email).focus();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const email = form.elements.email.value.trim();
    const password = form.elements.password.value;
    const missing = {};
    if (!email) missing.email = "이메일을 입력해 주세요.";
    if (!password) missing.password = "비밀번호를 입력해 주세요.";
    if (Object.keys(missing).length) {
      showFieldErrors(form, "login", missing);
      say(message, "입력한 내용을 확인해 주세요.", true);
      return;
    }
    button.disabled = true;
    say(message, "로그인 중…");
    const guestItems = state.cart && !state.member ? Number(state.cart.itemCount || 0) : 0;
    try {
      const s = await write("POST", "/api/v1/session", { email, password });
      state.csrf = s.csrfToken || "";
      state.member = s.member || null;
      state.loginEmail = "";
      renderHeader();
      await loadCart();
      state.flash = "로그인되었습니다." + (guestItems > 0 ? " 비회원으로 담은 상품을 장바구니에 합쳤습니다." : "");
      if (state.cart && Number(state.cart.itemCount) > 0) navigate("#/cart");
      else navigate("/");
    } catch (err) {
      button.disabled = false;
      form.elements.password.value = "";
      if (err instanceof ApiError && err.status === 401) {
        say(message, "이메일 또는 비밀번호가 올바르지 않습니다.", true);
        form.elements.password.focus();
      } else if (err instanceof ApiError && err.status === 429) {
        const mins = Math.max(1, Math.ceil(Number(err.retryAfter || 60) / 60));
        say(message, "로그인 시도가 너무 많습니다. " + mins + "분 후에 다시 시도해 주세요.", true);
      } else if (err instanceof ApiError && err.status === 400 && err.fields) {
        const rest = showFieldErrors(form, "login", apiFieldErrors(err, { email: "이메일 주소를 확인해 주세요." }));
        say(message, ["입력한 내용을 확인해 주세요."].concat(rest).join(" "), true);
      } else {
        say(message, errorText(err), true);
      }
    }
  });
}

function showSignup() {
  showView("signup");
  document.title = "회원가입 - mall";
  loadCategories(null);
  const sec = document.getElementById("signup");
  const message = el("p", { id: "signup-message", class: "message", role: "status" });
  const button = el("button", { type: "submit" }, "가입하기");
  const form = el("form", { novalidate: true, "aria-labelledby": "signup-heading" },
    field("signup", "email", "이메일", { type: "email", autocomplete: "email", required: true, maxlength: 254 }),
    field("signup", "password", "비밀번호", { type: "password", autocomplete: "new-password", required: true, maxlength: 128 },
      "8자 이상 입력해 주세요."),
    field("signup", "passwordConfirm", "비밀번호 확인", { type: "password", autocomplete: "new-password", required: true, maxlength: 128 }),
    field("signup", "name", "이름", { type: "text", autocomplete: "name", required: true, maxlength: 50 }),
    field("signup", "phone", "휴대폰 번호", { type: "tel", autocomplete: "tel", required: true, placeholder: "010-1234-5678" }),
    el("fieldset", { class: "consent" },
      el("legend", {}, "마케팅 정보 수신 동의 (선택)"),
      el("label", {}, el("input", { type: "checkbox", name: "consentEmail", id: "signup-consentEmail", "data-field": "marketingConsent", "aria-describedby": "signup-marketingConsent-error" }), " 이메일 수신"),
      el("label", {}, el("input", { type: "checkbox", name: "consentSms", id: "signup-consentSms", "data-field": "marketingConsent", "aria-describedby": "signup-marketingConsent-error" }), " 문자(SMS) 수신"),
      el("p", { id: "signup-marketingConsent-error", class: "field-error" })),
    button,
    message);
  sec.replaceChildren(
    el("h1", { id: "signup-heading" }, "회원가입"),
    form,
    el("p", {}, "이미 회원이신가요? ", el("a", { href: "/#/login" }, "로그인")));
  form.elements.email.focus();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const f = form.elements;
    const body = {
      email: f.email.value.trim(),
      password: f.password.value,
      name: f.name.value.trim(),
      phone: f.phone.value.trim(),
      marketingConsent: { email: f.consentEmail.checked, sms: f.consentSms.checked },
    };
    const errors = {};
    if (!body.email) errors.email = "이메일을 입력해 주세요.";
    if (!body.password) errors.password = "비밀번호를 입력해 주세요.";
    if (body.password && f.passwordConfirm.value !== body.password)
      errors.passwordConfirm = "비밀번호가 일치하지 않습니다.";
    if (!body.name) errors.name = "이름을 입력해 주세요.";
    if (!body.phone) errors.phone = "휴대폰 번호를 입력해 주세요.";
    if (Object.keys(errors).length) {
      showFieldErrors(form, "signup", errors);
      say(message, "입력한 내용을 확인해 주세요.", true);
      return;
    }
    button.disabled = true;
    say(message, "가입하는 중…");
    try {
      await write("POST", "/api/v1/members", body);
      state.flash = "회원가입이 완료되었습니다. 로그인해 주세요.";
      state.loginEmail = body.email;
      navigate("#/login");
    } catch (err) {
      button.disabled = false;
      if (err instanceof ApiError && err.fields) {
        const rest = showFieldErrors(form, "signup", apiFieldErrors(err, SIGNUP_FIELD_TEXT));
        say(message, (err.code === "already_exists" ? "이미 가입된 이메일입니다." : "입력한 내용을 확인해 주세요.") +
          (rest.length ? " " + rest.join(" ") : ""), true);
      } else {
        say(message, "가입하지 못했습니다. " + errorText(err), true);
      }
    }
  });
}

// ---------------------------------------------------------------------------
// Checkout, the PG's payment window, and orders
//
// The trip to the PG: POST /api/v1/orders places the order (pending_payment)
// and answers what the payment window needs (payment: orderId, amount,
// orderName, clientKey, windowUrl...).  The page then goes to windowUrl with
// those fields, the method, and successUrl/failUrl back here (/?checkout=
// success or fail; the PG adds its parameters to their query).  The success
// page confirms (POST /api/v1/payments/confirm) and shows the order; the fail
// page shows the PG's message and can open the window again for the same
// order.  What the return needs (the window's fields, the orderer's phone
// for a guest's reads, a virtual account once issued) is kept per order in
// this tab's sessionStorage, never the card or any secret.

const PAY_METHODS = { card: "카드", virtual_account: "가상계좌", easy_pay: "간편결제" };
const EASY_PAY_PROVIDERS = { tosspay: "토스페이", kakaopay: "카카오페이" };
const ORDER_STATUS = {
  pending_payment: "결제 대기",
  awaiting_deposit: "입금 대기",
  paid: "결제 완료",
  preparing: "배송 준비 중",
  shipped: "배송 중",
  delivered: "배송 완료",
  cancelled: "주문 취소",
  refunded: "환불 완료",
  partially_refunded: "부분 환불",
};
// orders the shopper may ask to cancel (a paid one is refunded first; the
// API answers 409 where it cannot be)
const CANCELLABLE = ["pending_payment", "awaiting_deposit", "paid", "preparing"];
// the PG's bank codes (tests/fakes/README.md, as Toss)
const BANKS = {
  "088": "신한은행", "004": "KB국민은행", "020": "우리은행", "081": "하나은행", "011": "NH농협은행",
  "003": "IBK기업은행", "090": "카카오뱅크", "092": "토스뱅크",
};
const ORDER_MEMO = "mall.orders";
const ORDER_MEMO_MAX = 20;

function enumName(v) {
  return v === undefined || v === null ? "" : String(v).toLowerCase();
}

function statusText(status) {
  const s = enumName(status);
  return ORDER_STATUS[s] || s || "-";
}

// dateTime: an RFC 3339 time in Korean time, "2026. 11. 29. 오후 3:00".
function dateTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  return d.toLocaleString("ko-KR", { timeZone: "Asia/Seoul", year: "numeric", month: "numeric",
    day: "numeric", hour: "numeric", minute: "2-digit" });
}

// orderMemos: what this tab remembers of its orders, by number.
function orderMemos() {
  try {
    return JSON.parse(sessionStorage.getItem(ORDER_MEMO) || "{}") || {};
  } catch (_) {
    return {};
  }
}

function orderMemo(number) {
  return orderMemos()[number] || null;
}

function rememberOrder(number, patch) {
  const all = orderMemos();
  all[number] = Object.assign(all[number] || {}, patch, { at: Date.now() });
  const numbers = Object.keys(all).sort((a, b) => all[b].at - all[a].at);
  for (const n of numbers.slice(ORDER_MEMO_MAX)) delete all[n];
  try {
    sessionStorage.setItem(ORDER_MEMO, JSON.stringify(all));
  } catch (_) {
    // storage full or off: the pages then ask for the phone again
  }
}

// orderPath: the API path of one order; a guest's reads need the phone.
function orderPath(number, suffix) {
  const memo = orderMemo(number);
  const phone = memo && memo.phone ? "?phone=" + encodeURIComponent(memo.phone) : "";
  return "/api/v1/orders/" + encodeURIComponent(number) + (suffix || "") + phone;
}

// openPaymentWindow: to the PG's window for the order in memo (the 201's
// payment object, the method and the easy-pay provider).
function openPaymentWindow(memo) {
  const pay = memo.pay;
  const url = new URL(pay.windowUrl, location.href);
  const q = url.searchParams;
  q.set("clientKey", pay.clientKey);
  q.set("orderId", pay.orderId);
  q.set("orderName", pay.orderName);
  q.set("amount", String(pay.amount));
  q.set("method", memo.method);
  if (memo.method === "easy_pay" && memo.provider) q.set("provider", memo.provider);
  if (pay.customerName) q.set("customerName", pay.customerName);
  if (pay.customerEmail) q.set("customerEmail", pay.customerEmail);
  if (memo.method === "virtual_account" && memo.dueAt) {
    // the account's due time is the order's deposit window
    const left = Math.floor((Date.parse(memo.dueAt) - Date.now()) / 1000);
    if (left > 0) q.set("dueInSeconds", String(Math.min(left, 90 * 86400)));
  }
  q.set("successUrl", location.origin + "/?checkout=success");
  q.set("failUrl", location.origin + "/?checkout=fail");
  location.assign(url.toString());
}

function canPayAgain(memo) {
  return !!(memo && memo.pay && memo.pay.windowUrl && memo.method);
}

// ---- the checkout form -----------------------------------------------------

const CHECKOUT_FIELD_TEXT = {
  ordererName: "주문자 이름을 50자 이내로 입력해 주세요.",
  ordererPhone: "휴대폰 번호를 010-1234-5678 형식으로 입력해 주세요.",
  ordererEmail: "이메일 주소를 name@example.com 형식으로 입력해 주세요.",
  "shippingAddress.recipient": "받는 분 이름을 50자 이내로 입력해 주세요.",
  "shippingAddress.phone": "받는 분 휴대폰 번호를 010-1234-5678 형식으로 입력해 주세요.",
  "shippingAddress.postalCode": "우편번호 5자리를 숫자로 입력해 주세요.",
  "shippingAddress.address1": "주소를 200자 이내로 입력해 주세요.",
  "shippingAddress.address2": "상세 주소는 200자까지 입력할 수 있습니다.",
  shippingAddress: "배송지를 입력해 주세요.",
  addressId: "선택한 배송지를 찾을 수 없습니다. 다시 선택해 주세요.",
  deliveryNote: "배송 요청사항은 200자까지 입력할 수 있습니다.",
  paymentMethod: "결제 수단을 선택해 주세요.",
};

const DELIVERY_NOTES = ["문 앞에 놓아 주세요.", "경비실에 맡겨 주세요.", "배송 전에 연락 주세요.", "부재 시 문 앞에 놓아 주세요."];

// fieldId: the element id of a (dotted) field: "checkout-shippingAddress-postalCode".
function fieldId(prefix, name) {
  return prefix + "-" + name.replace(/\./g, "-");
}

// dottedField: a labelled input named after its (dotted) API field, its
// error line "<prefix>-<field>-error".
function dottedField(prefix, name, label, attrs, hint) {
  const id = fieldId(prefix, name);
  const input = el("input", Object.assign({ id, name, "data-field": name,
    "aria-describedby": id + "-error" + (hint ? " " + id + "-hint" : "") }, attrs));
  return el("div", { class: "field" },
    el("label", { for: id }, label),
    input,
    hint ? el("p", { id: id + "-hint", class: "hint" }, hint) : null,
    el("p", { id: id + "-error", class: "field-error" }));
}

function checkoutField(name, label, attrs, hint) {
  return dottedField("checkout", name, label, attrs, hint);
}

// showDottedErrors: each message next to its field (the dotted name's own
// element, else its first part's); returns what no field took.
function showDottedErrors(form, prefix, errors) {
  const rest = [];
  let first = null;
  for (const [name, text] of Object.entries(errors)) {
    let key = name;
    let out = document.getElementById(fieldId(prefix, key) + "-error");
    if (!out) {
      key = name.split(".")[0];
      out = document.getElementById(fieldId(prefix, key) + "-error");
    }
    if (!out) {
      rest.push(text);
      continue;
    }
    out.textContent = out.textContent ? out.textContent + " " + text : text;
    const inputs = form.querySelectorAll('[data-field="' + CSS.escape(key) + '"]');
    for (const input of inputs) input.setAttribute("aria-invalid", "true");
    if (!first && inputs[0]) first = inputs[0];
  }
  if (first) first.focus();
  return rest;
}

// clearOnEdit: a field's error goes once the shopper changes it.
function clearOnEdit(form) {
  const clear = (ev) => {
    const input = ev.target;
    if (!input.hasAttribute || !input.hasAttribute("aria-invalid")) return;
    input.removeAttribute("aria-invalid");
    const out = document.getElementById(input.id + "-error");
    if (out) out.textContent = "";
  };
  form.addEventListener("input", clear);
  form.addEventListener("change", clear);
}

function showCheckoutErrors(form, errors) {
  return showDottedErrors(form, "checkout", errors);
}

function checkoutLines(cart) {
  const items = (cart.items || []).filter((i) => availability(i.availability) === "available");
  return el("table", { class: "cart-items order-lines" },
    el("caption", { class: "visually-hidden" }, "주문 상품"),
    el("thead", {}, el("tr", {},
      el("th", { scope: "col" }, "상품"),
      el("th", { scope: "col" }, "옵션"),
      el("th", { scope: "col", class: "num" }, "수량"),
      el("th", { scope: "col", class: "num" }, "금액"))),
    el("tbody", {},
      items.map((i) => el("tr", {},
        el("td", {}, i.name || i.skuCode),
        el("td", {}, i.optionText || "-"),
        el("td", { class: "num" }, won.format(Number(i.quantity)) + "개"),
        el("td", { class: "num" }, formatPrice(i.lineTotal)))),
      (cart.gifts || []).map((g) => el("tr", {},
        el("td", {}, el("span", { class: "badge gift" }, "증정"), " ", g.name),
        el("td", {}, g.optionText || "-"),
        el("td", { class: "num" }, won.format(Number(g.quantity || 1)) + "개"),
        el("td", { class: "num" }, "0원")))));
}

function totalsList(m, ids) {
  const fee = amountOf(m.shippingFee);
  const discount = amountOf(m.discount);
  return el("dl", {},
    el("div", {}, el("dt", {}, "상품 금액"), el("dd", { id: ids + "-subtotal" }, formatPrice(m.subtotal))),
    el("div", {}, el("dt", {}, "할인"), el("dd", { id: ids + "-discount" },
      discount > 0 ? "-" + formatPrice(m.discount) : formatPrice({ amount: 0 }))),
    el("div", {}, el("dt", {}, "배송비"), el("dd", { id: ids + "-shipping" }, fee > 0 ? formatPrice(m.shippingFee) : "무료")),
    el("div", { class: "total" }, el("dt", {}, "결제 금액"), el("dd", { id: ids + "-total" }, formatPrice(m.total))));
}

function sectionSkeleton(id, title) {
  const sec = document.getElementById(id);
  sec.replaceChildren(
    el("h1", { id: id + "-heading", tabindex: -1 }, title),
    el("p", { id: id + "-message", class: "message", role: "status" }),
    el("div", { id: id + "-body" }));
  return [document.getElementById(id + "-body"), document.getElementById(id + "-message")];
}

async function loadAddresses() {
  if (!state.member) return [];
  try {
    const data = await api("/api/v1/me/addresses");
    return (data && data.addresses) || [];
  } catch (_) {
    return []; // typed in then
  }
}

function addressText(a) {
  return "(" + a.postalCode + ") " + a.address1 + (a.address2 ? " " + a.address2 : "");
}

async function showCheckout() {
  showView("checkout");
  document.title = "주문/결제 - mall";
  loadCategories(null);
  const [body, message] = sectionSkeleton("checkout", "주문/결제");
  body.replaceChildren(el("p", {}, "불러오는 중…"));
  await state.ready;
  await loadCart();
  const cart = state.cart;
  if (!cart) {
    body.replaceChildren();
    say(message, "장바구니를 불러오지 못했습니다. " + errorText(state.cartError), true);
    return;
  }
  if (!(cart.items || []).length) {
    body.replaceChildren(el("p", { class: "empty" }, "장바구니가 비어 있습니다."),
      el("p", {}, el("a", { href: "/", class: "button" }, "쇼핑 계속하기")));
    return;
  }
  if (cart.orderable === false) {
    body.replaceChildren(el("p", {}, el("a", { href: "/#/cart", class: "button" }, "장바구니로 돌아가기")));
    say(message, "구매할 수 없는 상품이 장바구니에 있습니다. 장바구니에서 수량을 줄이거나 삭제해 주세요.", true);
    return;
  }
  const addresses = await loadAddresses();
  renderCheckout(body, message, cart, addresses);
}

function renderCheckout(body, message, cart, addresses) {
  const m = state.member;
  const orderer = el("fieldset", { class: "group" },
    el("legend", {}, "주문자 정보"),
    checkoutField("ordererName", "이름", { type: "text", autocomplete: "name", maxlength: 50, value: m ? m.name : null }),
    checkoutField("ordererPhone", "휴대폰 번호", { type: "tel", autocomplete: "tel", placeholder: "010-1234-5678", value: m ? m.phone : null },
      m ? null : "비회원 주문은 주문번호와 이 번호로 조회합니다."),
    checkoutField("ordererEmail", "이메일", { type: "email", autocomplete: "email", maxlength: 254, value: m ? m.email : null }));

  // the address book's entries (default first) or a new address
  const book = addresses.slice().sort((a, b) => (b.isDefault ? 1 : 0) - (a.isDefault ? 1 : 0));
  const choices = book.length ? el("div", { class: "address-choices", role: "radiogroup", "aria-label": "배송지 선택" },
    book.map((a, i) => el("label", { class: "choice" },
      el("input", { type: "radio", name: "addressChoice", value: String(a.id), checked: i === 0, "data-field": "addressId" }),
      el("span", {}, el("strong", {}, a.recipient), a.isDefault ? el("span", { class: "badge" }, "기본 배송지") : null,
        el("br"), addressText(a), el("br"), el("span", { class: "muted" }, a.phone)))),
    el("label", { class: "choice" },
      el("input", { type: "radio", name: "addressChoice", value: "new", "data-field": "addressId" }), " 새 배송지 입력"),
    el("p", { id: "checkout-addressId-error", class: "field-error" })) : null;
  const newAddress = el("div", { class: "new-address", hidden: book.length > 0 },
    checkoutField("shippingAddress.recipient", "받는 분", { type: "text", autocomplete: "shipping name", maxlength: 50 }),
    checkoutField("shippingAddress.phone", "받는 분 휴대폰 번호", { type: "tel", autocomplete: "shipping tel", placeholder: "010-1234-5678" }),
    checkoutField("shippingAddress.postalCode", "우편번호", { type: "text", autocomplete: "shipping postal-code", inputmode: "numeric", maxlength: 5, class: "short" }),
    checkoutField("shippingAddress.address1", "주소", { type: "text", autocomplete: "shipping address-line1", maxlength: 200 }),
    checkoutField("shippingAddress.address2", "상세 주소", { type: "text", autocomplete: "shipping address-line2", maxlength: 200 }),
    el("p", { id: "checkout-shippingAddress-error", class: "field-error" }));
  const noteList = el("datalist", { id: "delivery-notes" }, DELIVERY_NOTES.map((n) => el("option", { value: n })));
  const shipping = el("fieldset", { class: "group" },
    el("legend", {}, "배송지"),
    choices,
    newAddress,
    checkoutField("deliveryNote", "배송 요청사항 (선택)", { type: "text", maxlength: 200, list: "delivery-notes" }),
    noteList);

  const methodRadio = (value, checked) => el("label", { class: "choice inline" },
    el("input", { type: "radio", name: "paymentMethod", value, checked, "data-field": "paymentMethod" }), " " + PAY_METHODS[value]);
  const providers = el("fieldset", { class: "providers", hidden: true },
    el("legend", {}, "간편결제 서비스"),
    Object.entries(EASY_PAY_PROVIDERS).map(([v, t], i) => el("label", { class: "choice inline" },
      el("input", { type: "radio", name: "provider", value: v, checked: i === 0 }), " " + t)));
  const payment = el("fieldset", { class: "group" },
    el("legend", {}, "결제 수단"),
    el("div", { class: "methods" }, methodRadio("card", true), methodRadio("virtual_account"), methodRadio("easy_pay")),
    providers,
    el("p", { id: "checkout-paymentMethod-hint", class: "hint" }, "가상계좌는 발급된 계좌로 입금 기한 안에 입금하면 결제가 완료됩니다."),
    el("p", { id: "checkout-paymentMethod-error", class: "field-error" }));

  const agree = el("input", { type: "checkbox", id: "checkout-agree", name: "agree", "data-field": "agree", "aria-describedby": "checkout-agree-error" });
  const button = el("button", { type: "submit", id: "checkout-submit" }, formatPrice(cart.total) + " 결제하기");
  const summary = el("section", { class: "summary", "aria-labelledby": "checkout-summary-heading" },
    el("h2", { id: "checkout-summary-heading" }, "주문 상품"),
    checkoutLines(cart),
    cart.coupon && cart.coupon.applicable !== false
      ? el("p", { class: "muted" }, "쿠폰: " + (cart.coupon.name || cart.coupon.code)) : null,
    totalsList(cart, "checkout"));
  const form = el("form", { class: "checkout-form", novalidate: true, "aria-labelledby": "checkout-heading" },
    orderer, shipping, payment, summary,
    el("div", { class: "agree" },
      el("label", { for: "checkout-agree" }, agree, " 주문 상품과 결제 금액을 확인했으며 결제에 동의합니다."),
      el("p", { id: "checkout-agree-error", class: "field-error" })),
    button,
    el("p", {}, el("a", { href: "/#/cart" }, "← 장바구니로 돌아가기")));
  body.replaceChildren(form);
  clearOnEdit(form);

  const f = form.elements;
  const method = () => (form.querySelector('input[name="paymentMethod"]:checked') || {}).value || "";
  const addressChoice = () => (form.querySelector('input[name="addressChoice"]:checked') || {}).value || "new";
  form.addEventListener("change", (ev) => {
    if (ev.target.name === "paymentMethod") providers.hidden = method() !== "easy_pay";
    if (ev.target.name === "addressChoice") newAddress.hidden = addressChoice() !== "new";
  });

  // One submission, one Idempotency-Key: the same body sent again (after a
  // network error, a 5xx, a double click) reuses it, so it can only ever be
  // one order; a changed form or a definite refusal starts a new key.
  let sent = null; // {key, json}
  let submitting = false;

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    if (submitting) return;
    clearErrors(form);
    say(message, "");
    const order = {
      paymentMethod: method(),
      ordererName: f.ordererName.value.trim(),
      ordererPhone: f.ordererPhone.value.trim(),
      ordererEmail: f.ordererEmail.value.trim(),
    };
    const missing = {};
    const choice = addressChoice();
    if (choice !== "new") {
      order.addressId = Number(choice);
    } else {
      const a = {
        recipient: f["shippingAddress.recipient"].value.trim(),
        phone: f["shippingAddress.phone"].value.trim(),
        postalCode: f["shippingAddress.postalCode"].value.trim(),
        address1: f["shippingAddress.address1"].value.trim(),
        address2: f["shippingAddress.address2"].value.trim(),
      };
      order.shippingAddress = a;
      if (!a.recipient) missing["shippingAddress.recipient"] = "받는 분 이름을 입력해 주세요.";
      if (!a.phone) missing["shippingAddress.phone"] = "받는 분 휴대폰 번호를 입력해 주세요.";
      if (!a.postalCode) missing["shippingAddress.postalCode"] = "우편번호를 입력해 주세요.";
      if (!a.address1) missing["shippingAddress.address1"] = "주소를 입력해 주세요.";
    }
    const note = f.deliveryNote.value.trim();
    if (note) order.deliveryNote = note;
    if (!order.ordererName) missing.ordererName = "주문자 이름을 입력해 주세요.";
    if (!order.ordererPhone) missing.ordererPhone = "휴대폰 번호를 입력해 주세요.";
    if (!order.ordererEmail) missing.ordererEmail = "이메일을 입력해 주세요.";
    if (!order.paymentMethod) missing.paymentMethod = "결제 수단을 선택해 주세요.";
    if (!agree.checked) missing.agree = "주문 내용 확인 및 결제에 동의해 주세요.";
    if (Object.keys(missing).length) {
      showCheckoutErrors(form, missing);
      say(message, "입력한 내용을 확인해 주세요.", true);
      return;
    }
    const provider = (form.querySelector('input[name="provider"]:checked') || {}).value || "tosspay";
    const json = JSON.stringify(order);
    if (!sent || sent.json !== json) sent = { key: newKey(), json };
    submitting = true;
    button.disabled = true;
    say(message, "주문하는 중…");
    try {
      const placed = await writeKeyed("POST", "/api/v1/orders", order, sent.key);
      const o = placed.order;
      const memo = { pay: placed.payment, method: enumName(o.paymentMethod) || order.paymentMethod, provider,
        phone: o.ordererPhone || order.ordererPhone, dueAt: o.paymentDueAt };
      rememberOrder(o.number, memo);
      say(message, "주문번호 " + o.number + " 결제창으로 이동합니다…");
      openPaymentWindow(memo);
      // the page is leaving; the button stays disabled
    } catch (err) {
      submitting = false;
      button.disabled = false;
      const retryable = !(err instanceof ApiError) || err.status >= 500;
      if (!retryable) sent = null;
      say(message, placeErrorText(err, form), true);
      if (err instanceof ApiError && err.status === 409) refreshCheckoutCart(form);
    }
  });
}

// placeErrorText: why the order was not placed (field errors go next to
// their fields).
function placeErrorText(err, form) {
  if (!(err instanceof ApiError)) return "주문하지 못했습니다. " + errorText(err) + " 같은 주문은 한 번만 접수됩니다.";
  switch (err.code) {
  case "out_of_stock":
    return "재고가 부족한 상품이 있어 주문하지 못했습니다. 장바구니에서 수량을 확인해 주세요.";
  case "cart_not_orderable":
    return "구매할 수 없는 상품이 장바구니에 있어 주문하지 못했습니다. 장바구니에서 수량을 줄이거나 삭제해 주세요.";
  case "cart_empty":
    return "장바구니가 비어 있습니다.";
  case "too_many_lines":
    return "한 번에 주문할 수 있는 상품 종류를 넘었습니다. 일부는 나누어 주문해 주세요.";
  case "idempotency_key_reused":
    return "주문 내용이 바뀌었습니다. 다시 결제하기를 눌러 주세요.";
  }
  if (err.status === 400 && err.fields) {
    const texts = {};
    for (const [name, msg] of Object.entries(err.fields)) texts[name] = CHECKOUT_FIELD_TEXT[name] || msg;
    const rest = showCheckoutErrors(form, texts);
    return ["입력한 내용을 확인해 주세요."].concat(rest).join(" ");
  }
  if (err.status === 404 && err.fields && err.fields.addressId) {
    showCheckoutErrors(form, { addressId: CHECKOUT_FIELD_TEXT.addressId });
    return "선택한 배송지를 찾을 수 없습니다.";
  }
  if (err.status >= 500) return "주문하지 못했습니다. " + errorText(err) + " 같은 주문은 한 번만 접수됩니다.";
  return "주문하지 못했습니다. " + errorText(err);
}

// refreshCheckoutCart: after a 409 the cart is not what the page shows: the
// header count, and a link to the cart where the lines say what changed.
async function refreshCheckoutCart(form) {
  await loadCart();
  if (!form.querySelector(".to-cart"))
    form.querySelector("#checkout-submit").after(" ", el("a", { href: "/#/cart", class: "button to-cart" }, "장바구니 확인"));
}

// ---- the order as the shopper sees it ----------------------------------------

function depositBox(account, order) {
  if (!account || !account.accountNumber) return null;
  return el("section", { class: "deposit", id: "deposit-account", "aria-labelledby": "deposit-heading" },
    el("h2", { id: "deposit-heading" }, "입금하실 계좌"),
    el("dl", {},
      el("div", {}, el("dt", {}, "은행"), el("dd", { id: "deposit-bank" }, BANKS[account.bank] || account.bank)),
      el("div", {}, el("dt", {}, "계좌번호"), el("dd", { id: "deposit-account-number" }, account.accountNumber)),
      account.customerName ? el("div", {}, el("dt", {}, "입금자명"), el("dd", {}, account.customerName)) : null,
      el("div", {}, el("dt", {}, "입금 금액"), el("dd", {}, formatPrice(order.total))),
      el("div", {}, el("dt", {}, "입금 기한"), el("dd", { id: "deposit-due" }, dateTime(account.dueDate || order.paymentDueAt)))),
    el("p", { class: "hint" }, "입금 기한이 지나면 주문이 자동으로 취소됩니다."));
}

function orderDetails(o, extra) {
  const status = enumName(o.status);
  const a = o.shippingAddress || {};
  const method = PAY_METHODS[enumName(o.paymentMethod)] || enumName(o.paymentMethod);
  const provider = extra && extra.provider ? " (" + extra.provider + ")" : "";
  return el("div", { class: "order-detail" },
    el("dl", { class: "facts" },
      el("div", {}, el("dt", {}, "주문번호"), el("dd", { id: "order-number" }, o.number)),
      el("div", {}, el("dt", {}, "주문 상태"), el("dd", { id: "order-status", class: "status-" + status }, statusText(status))),
      el("div", {}, el("dt", {}, "결제 수단"), el("dd", {}, method + provider)),
      el("div", {}, el("dt", {}, "주문일시"), el("dd", {}, dateTime(o.placedAt))),
      (status === "pending_payment" || status === "awaiting_deposit") && o.paymentDueAt
        ? el("div", {}, el("dt", {}, status === "pending_payment" ? "결제 기한" : "입금 기한"),
          el("dd", {}, dateTime(o.paymentDueAt))) : null,
      o.paidAt ? el("div", {}, el("dt", {}, "결제일시"), el("dd", {}, dateTime(o.paidAt))) : null,
      o.cancelledAt ? el("div", {}, el("dt", {}, "취소일시"), el("dd", {}, dateTime(o.cancelledAt))) : null),
    status === "awaiting_deposit" || status === "pending_payment" ? depositBox(extra && extra.account, o) : null,
    el("h2", {}, "주문 상품"),
    el("table", { class: "cart-items order-lines", id: "order-lines" },
      el("caption", { class: "visually-hidden" }, "주문 상품"),
      el("thead", {}, el("tr", {},
        el("th", { scope: "col" }, "상품"),
        el("th", { scope: "col" }, "옵션"),
        el("th", { scope: "col", class: "num" }, "수량"),
        el("th", { scope: "col", class: "num" }, "금액"))),
      el("tbody", {}, (o.lines || []).map((l) => el("tr", {},
        el("td", {}, l.gift ? [el("span", { class: "badge gift" }, "증정"), " "] : null, l.name || l.skuCode),
        el("td", {}, l.optionText || "-"),
        el("td", { class: "num" }, won.format(Number(l.quantity)) + "개"),
        el("td", { class: "num" }, formatPrice(l.lineTotal)))))),
    el("section", { class: "summary" }, totalsList(o, "order")),
    el("h2", {}, "배송 정보"),
    el("dl", { class: "facts" },
      el("div", {}, el("dt", {}, "받는 분"), el("dd", {}, (a.recipient || "") + (a.phone ? " · " + a.phone : ""))),
      el("div", {}, el("dt", {}, "주소"), el("dd", {}, a.address1 ? addressText(a) : "-")),
      o.deliveryNote ? el("div", {}, el("dt", {}, "요청사항"), el("dd", {}, o.deliveryNote)) : null,
      el("div", {}, el("dt", {}, "주문자"), el("dd", {}, [o.ordererName, o.ordererPhone, o.ordererEmail].filter(Boolean).join(" · ")))));
}

// orderActions: pay again (an unpaid order this tab placed) and cancel.
function orderActions(o, message, redraw) {
  const status = enumName(o.status);
  const memo = orderMemo(o.number);
  const box = el("div", { class: "order-actions" });
  if (status === "pending_payment" && canPayAgain(memo)) {
    const pay = el("button", { type: "submit", id: "order-pay" }, "결제하기");
    pay.addEventListener("click", () => { pay.disabled = true; openPaymentWindow(memo); });
    box.append(pay, " ");
  }
  if (CANCELLABLE.includes(status)) {
    const paid = status === "paid" || status === "preparing";
    const cancel = el("button", { type: "button", id: "order-cancel" }, "주문 취소");
    // a paid virtual account is refunded to an account the shopper names
    const refund = el("fieldset", { class: "group refund-account",
      hidden: !(paid && enumName(o.paymentMethod) === "virtual_account") },
      el("legend", {}, "환불받을 계좌"),
      el("div", { class: "field" },
        el("label", { for: "cancel-refundAccount-bank" }, "은행"),
        el("select", { id: "cancel-refundAccount-bank", name: "refundAccount.bank", "data-field": "refundAccount.bank",
          "aria-describedby": "cancel-refundAccount-bank-error" },
          el("option", { value: "" }, "은행 선택"),
          Object.entries(BANKS).map(([code, name]) => el("option", { value: code }, name))),
        el("p", { id: "cancel-refundAccount-bank-error", class: "field-error" })),
      dottedField("cancel", "refundAccount.accountNumber", "계좌번호", { type: "text", inputmode: "numeric", maxlength: 24 }),
      dottedField("cancel", "refundAccount.holderName", "예금주", { type: "text", maxlength: 60, value: o.ordererName || null }));
    const yes = el("button", { type: "submit", id: "order-cancel-confirm" }, "주문 취소하기");
    const no = el("button", { type: "button", class: "link" }, "돌아가기");
    const confirmBox = el("form", { class: "confirm-cancel", hidden: true, novalidate: true, "aria-label": "주문 취소 확인" },
      el("p", {}, paid
        ? (refund.hidden ? "결제한 금액은 결제 수단으로 환불됩니다." : "결제한 금액은 입력한 계좌로 환불됩니다.") + " 주문을 취소할까요?"
        : "주문을 취소할까요? 주문한 상품의 재고와 쿠폰은 되돌려집니다."),
      refund, yes, " ", no);
    clearOnEdit(confirmBox);
    cancel.addEventListener("click", () => { confirmBox.hidden = false; cancel.hidden = true; yes.focus(); });
    no.addEventListener("click", () => { confirmBox.hidden = true; cancel.hidden = false; cancel.focus(); });
    confirmBox.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      clearErrors(confirmBox);
      const body = { reason: "고객 요청" };
      if (!refund.hidden) {
        const f = confirmBox.elements;
        body.refundAccount = {
          bank: f["refundAccount.bank"].value,
          accountNumber: f["refundAccount.accountNumber"].value.replace(/[\s-]/g, ""),
          holderName: f["refundAccount.holderName"].value.trim(),
        };
        const missing = {};
        if (!body.refundAccount.bank) missing["refundAccount.bank"] = "은행을 선택해 주세요.";
        if (!body.refundAccount.accountNumber) missing["refundAccount.accountNumber"] = "계좌번호를 입력해 주세요.";
        if (!body.refundAccount.holderName) missing["refundAccount.holderName"] = "예금주를 입력해 주세요.";
        if (Object.keys(missing).length) {
          showDottedErrors(confirmBox, "cancel", missing);
          say(message, "환불받을 계좌를 확인해 주세요.", true);
          return;
        }
      }
      yes.disabled = true;
      no.disabled = true;
      say(message, "주문을 취소하는 중…");
      try {
        const after = await write("POST", orderPath(o.number, "/cancel"), body);
        redraw(after);
        say(message, paid ? "주문을 취소했습니다. 결제한 금액은 환불됩니다." : "주문을 취소했습니다.");
      } catch (err) {
        yes.disabled = false;
        no.disabled = false;
        if (err instanceof ApiError && err.code === "refund_account_required") {
          refund.hidden = false;
          say(message, "가상계좌로 결제한 주문은 환불받을 계좌가 필요합니다. 계좌를 입력해 주세요.", true);
          confirmBox.elements["refundAccount.bank"].focus();
        } else if (err instanceof ApiError && err.status === 400 && err.fields) {
          const rest = showDottedErrors(confirmBox, "cancel", refundFieldTexts(err.fields));
          say(message, ["입력한 내용을 확인해 주세요."].concat(rest).join(" "), true);
        } else {
          say(message, cancelErrorText(err), true);
        }
      }
    });
    box.append(cancel, confirmBox);
  }
  return box.childNodes.length ? box : null;
}

const REFUND_FIELD_TEXT = {
  "refundAccount.bank": "은행을 선택해 주세요.",
  "refundAccount.accountNumber": "계좌번호를 숫자 6~20자리로 입력해 주세요.",
  "refundAccount.holderName": "예금주를 60자 이내로 입력해 주세요.",
};

function refundFieldTexts(fields) {
  const out = {};
  for (const [name, msg] of Object.entries(fields)) out[name] = REFUND_FIELD_TEXT[name] || msg;
  return out;
}

function cancelErrorText(err) {
  if (!(err instanceof ApiError)) return "주문을 취소하지 못했습니다. " + errorText(err);
  if (err.code === "refund_unavailable")
    return err.status >= 500
      ? "지금은 환불을 처리할 수 없어 주문을 취소하지 못했습니다. 잠시 후 다시 시도해 주세요."
      : "결제가 끝난 주문은 지금 온라인으로 취소할 수 없습니다. 고객센터로 문의해 주세요.";
  if (err.code === "illegal_transition")
    return "이미 배송이 시작되었거나 취소된 주문이라 취소할 수 없습니다.";
  if (err.status === 404) return "주문을 찾을 수 없습니다.";
  return "주문을 취소하지 못했습니다. " + errorText(err);
}

// renderOrder: the order and its actions into body.
function renderOrder(body, message, o) {
  const memo = orderMemo(o.number) || {};
  const provider = memo.provider && enumName(o.paymentMethod) === "easy_pay" ? EASY_PAY_PROVIDERS[memo.provider] : "";
  body.replaceChildren(...[
    orderDetails(o, { account: memo.account, provider }),
    orderActions(o, message, (after) => renderOrder(body, message, after)),
    el("p", { class: "order-links" },
      el("a", { href: "/#/orders" }, state.member ? "주문 내역" : "주문 조회"), " · ",
      el("a", { href: "/" }, "쇼핑 계속하기")),
  ].filter(Boolean));
}

// ---- the PG's return ---------------------------------------------------------

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// pollOrder: reads the order until it left pending_payment (the order service
// takes the payment in a moment after the confirm), a few times.
async function pollOrder(o, tries) {
  for (let i = 0; i < tries && enumName(o.status) === "pending_payment"; i++) {
    await sleep(1000);
    try {
      o = await api(orderPath(o.number));
    } catch (_) {
      // keep what we have
    }
  }
  return o;
}

function confirmErrorText(err) {
  if (!(err instanceof ApiError)) return "결제를 확인하지 못했습니다. " + errorText(err);
  switch (err.code) {
  case "payment_rejected":
    return "카드사 또는 결제 서비스에서 결제를 승인하지 않았습니다. 결제된 금액은 없습니다. 다시 결제하거나 다른 결제 수단을 이용해 주세요.";
  case "amount_mismatch":
    return "결제 금액이 주문 금액과 달라 결제하지 않았습니다.";
  case "order_not_payable":
    return "결제할 수 없는 주문입니다. 결제 기한이 지났거나 취소된 주문입니다.";
  case "already_paid":
    return "이미 결제가 끝난 주문입니다.";
  }
  if (err.status === 404) return "결제 정보를 찾을 수 없습니다. 결제 시간이 지났을 수 있습니다.";
  if (err.status >= 500) return "결제를 확인하지 못했습니다. 잠시 후 다시 시도해 주세요. 다시 시도해도 한 번만 결제됩니다.";
  return "결제를 확인하지 못했습니다. " + errorText(err);
}

async function showPaymentSuccess(params) {
  showView("order");
  document.title = "결제 확인 - mall";
  loadCategories(null);
  const [body, message] = sectionSkeleton("order", "결제 확인");
  const heading = document.getElementById("order-heading");
  const paymentKey = params.get("paymentKey") || "";
  const orderId = params.get("orderId") || "";
  const amount = Number(params.get("amount") || 0);
  if (!paymentKey || !orderId || !(amount > 0)) {
    say(message, "결제 정보가 올바르지 않습니다. 주문 조회에서 주문 상태를 확인해 주세요.", true);
    body.replaceChildren(el("p", {}, el("a", { href: "/#/orders" }, "주문 조회")));
    return;
  }
  say(message, "결제를 확인하는 중입니다. 창을 닫지 마세요…");
  const key = newKey();
  let result = null;
  for (let attempt = 0; attempt < 3 && !result; attempt++) {
    try {
      result = await writeKeyed("POST", "/api/v1/payments/confirm", { paymentKey, orderId, amount }, key);
    } catch (err) {
      const retryable = !(err instanceof ApiError) || err.status >= 500;
      if (!retryable || attempt === 2) {
        heading.textContent = "결제하지 못했습니다";
        say(message, confirmErrorText(err), true);
        const memo = orderMemo(orderId);
        const actions = [];
        if (retryable) {
          const again = el("button", { type: "button", id: "confirm-again" }, "결제 확인 다시 시도");
          again.addEventListener("click", () => route());
          actions.push(again, " ");
        } else if (err.code !== "already_paid" && err.code !== "order_not_payable" && canPayAgain(memo)) {
          const pay = el("button", { type: "submit", id: "pay-again" }, "다시 결제하기");
          pay.addEventListener("click", () => { pay.disabled = true; openPaymentWindow(memo); });
          actions.push(pay, " ");
        }
        actions.push(el("a", { href: "/#/orders/" + encodeURIComponent(orderId), class: "button" }, "주문 보기"), " ",
          el("a", { href: "/#/cart", class: "button" }, "장바구니로 돌아가기"));
        body.replaceChildren(el("p", { class: "order-actions" }, actions));
        return;
      }
      await sleep(1000);
    }
  }
  const pay = result.payment || {};
  const patch = {};
  if (pay.virtualAccount && pay.virtualAccount.accountNumber) patch.account = pay.virtualAccount;
  if (pay.easyPayProvider) {
    const p = Object.entries(EASY_PAY_PROVIDERS).find(([, t]) => t === pay.easyPayProvider);
    if (p) patch.provider = p[0];
  }
  rememberOrder(orderId, patch);
  let o = result.order;
  const show = () => {
    const status = enumName(o.status);
    heading.textContent = status === "awaiting_deposit" ? "주문이 접수되었습니다"
      : status === "pending_payment" ? "결제를 확인하고 있습니다" : "주문이 완료되었습니다";
    renderOrder(body, message, o);
    if (status === "awaiting_deposit") say(message, "아래 계좌로 입금하시면 결제가 완료됩니다.");
    else if (status === "pending_payment") say(message, "결제 결과를 반영하는 중입니다. 잠시만 기다려 주세요…");
    else if (status === "paid") say(message, "결제가 완료되었습니다. 주문해 주셔서 감사합니다.");
    else say(message, "주문 상태: " + statusText(status));
  };
  show();
  heading.focus();
  if (enumName(o.status) === "pending_payment") {
    o = await pollOrder(o, 5);
    show();
    if (enumName(o.status) === "pending_payment")
      say(message, "결제는 접수되었고 주문에 반영되는 중입니다. 잠시 후 주문 조회에서 확인해 주세요.");
  }
  // a paid order's lines leave the cart (the order service does it a moment later)
  await loadCart();
  if (state.cart && Number(state.cart.itemCount) > 0) {
    await sleep(1500);
    await loadCart();
  }
}

async function showPaymentFail(params) {
  showView("order");
  document.title = "결제 실패 - mall";
  loadCategories(null);
  const [body, message] = sectionSkeleton("order", "결제하지 못했습니다");
  const orderId = params.get("orderId") || "";
  const code = params.get("code") || "";
  // the PG's own sentence for the shopper (a cancel, a limit...)
  const text = params.get("message") || "결제가 완료되지 않았습니다.";
  say(message, text, true);
  const memo = orderId ? orderMemo(orderId) : null;
  const actions = [];
  if (canPayAgain(memo)) {
    const pay = el("button", { type: "submit", id: "pay-again" }, "다시 결제하기");
    pay.addEventListener("click", () => { pay.disabled = true; openPaymentWindow(memo); });
    actions.push(pay, " ");
  }
  if (orderId) actions.push(el("a", { href: "/#/orders/" + encodeURIComponent(orderId), class: "button" }, "주문 보기"), " ");
  actions.push(el("a", { href: "/#/cart", class: "button" }, "장바구니로 돌아가기"));
  body.replaceChildren(
    el("dl", { class: "facts" },
      orderId ? el("div", {}, el("dt", {}, "주문번호"), el("dd", { id: "order-number" }, orderId)) : null,
      code ? el("div", {}, el("dt", {}, "사유 코드"), el("dd", { class: "muted" }, code)) : null),
    el("p", {}, "주문은 결제 기한까지 결제 대기 상태로 남아 있습니다. 같은 주문을 다시 결제하거나 장바구니로 돌아가 주문을 바꿀 수 있습니다."),
    el("p", { class: "order-actions" }, actions));
}

// ---- my orders, and a guest's lookup -------------------------------------------

async function showOrders() {
  showView("orders");
  document.title = (state.member ? "주문 내역" : "비회원 주문 조회") + " - mall";
  loadCategories(null);
  await state.ready;
  if (!state.member) return renderLookup();
  const [body, message] = sectionSkeleton("orders", "주문 내역");
  body.replaceChildren(el("p", {}, "불러오는 중…"));
  try {
    const data = await api("/api/v1/orders?page=1&pageSize=20");
    const orders = data.orders || [];
    if (!orders.length) {
      body.replaceChildren(el("p", { class: "empty" }, "주문한 내역이 없습니다."),
        el("p", {}, el("a", { href: "/", class: "button" }, "쇼핑하러 가기")));
      return;
    }
    body.replaceChildren(
      el("ul", { class: "order-list", id: "order-list" }, orders.map((o) => el("li", { "data-number": o.number },
        el("a", { href: "/#/orders/" + encodeURIComponent(o.number) },
          el("span", { class: "order-no" }, o.number),
          el("span", { class: "order-name" }, o.orderName),
          el("span", { class: "muted" }, dateTime(o.placedAt)),
          el("span", { class: "price" }, formatPrice(o.total)),
          el("span", { class: "badge status-" + enumName(o.status) }, statusText(o.status)))))),
      Number(data.totalCount) > orders.length
        ? el("p", { class: "muted" }, "최근 주문 " + orders.length + "건을 보여 드립니다 (전체 " + won.format(Number(data.totalCount)) + "건).") : null);
  } catch (err) {
    body.replaceChildren();
    say(message, "주문 내역을 불러오지 못했습니다. " + errorText(err), true);
  }
}

function renderLookup(number, note) {
  const [body, message] = sectionSkeleton("orders", "비회원 주문 조회");
  const button = el("button", { type: "submit" }, "조회하기");
  const form = el("form", { class: "lookup-form", novalidate: true, "aria-labelledby": "orders-heading" },
    field("lookup", "number", "주문번호", { type: "text", inputmode: "numeric", placeholder: "20261126-000123", maxlength: 15, value: number || null }),
    field("lookup", "phone", "주문자 휴대폰 번호", { type: "tel", autocomplete: "tel", placeholder: "010-1234-5678" }),
    button);
  body.replaceChildren(form, el("p", { class: "muted" }, "회원으로 주문하셨다면 ", el("a", { href: "/#/login" }, "로그인"), "하면 주문 내역을 볼 수 있습니다."));
  if (note) say(message, note, true);
  (number ? form.elements.phone : form.elements.number).focus();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    clearErrors(form);
    const n = form.elements.number.value.trim();
    const phone = form.elements.phone.value.trim();
    const errors = {};
    if (!/^\d{8}-\d{6}$/.test(n)) errors.number = "주문번호를 20261126-000123 형식으로 입력해 주세요.";
    if (!phone) errors.phone = "주문할 때 입력한 휴대폰 번호를 입력해 주세요.";
    if (Object.keys(errors).length) {
      showFieldErrors(form, "lookup", errors);
      say(message, "입력한 내용을 확인해 주세요.", true);
      return;
    }
    button.disabled = true;
    say(message, "조회하는 중…");
    try {
      await api("/api/v1/orders/" + encodeURIComponent(n) + "?phone=" + encodeURIComponent(phone));
      rememberOrder(n, { phone });
      navigate("#/orders/" + n);
    } catch (err) {
      button.disabled = false;
      if (err instanceof ApiError && err.status === 404) say(message, "주문번호와 휴대폰 번호에 맞는 주문이 없습니다.", true);
      else if (err instanceof ApiError && err.status === 400 && err.fields) {
        showFieldErrors(form, "lookup", { phone: "휴대폰 번호를 010-1234-5678 형식으로 입력해 주세요." });
        say(message, "입력한 내용을 확인해 주세요.", true);
      } else say(message, errorText(err), true);
    }
  });
}

async function showOrder(number) {
  showView("order");
  document.title = "주문 " + number + " - mall";
  loadCategories(null);
  await state.ready;
  const memo = orderMemo(number);
  if (!state.member && !(memo && memo.phone)) {
    showView("orders");
    return renderLookup(number);
  }
  const [body, message] = sectionSkeleton("order", "주문 상세");
  body.replaceChildren(el("p", {}, "불러오는 중…"));
  try {
    renderOrder(body, message, await api(orderPath(number)));
  } catch (err) {
    body.replaceChildren(el("p", {}, el("a", { href: "/#/orders" }, state.member ? "주문 내역" : "주문 조회")));
    say(message, err instanceof ApiError && err.status === 404 ? "주문을 찾을 수 없습니다." : errorText(err), true);
  }
}

// ---------------------------------------------------------------------------
// Routing

// navigate: to a hash route ("#/cart") or a page ("/").
function navigate(to) {
  if (to.startsWith("#")) {
    if (location.hash === to) route();
    else location.hash = to;
  } else if (to === "/" && location.pathname === "/") {
    history.pushState(null, "", "/");
    route();
  } else {
    location.href = to;
  }
}

let firstRoute = true;

function route() {
  const hash = location.hash.replace(/^#/, "");
  const params = new URLSearchParams(location.search);
  const useLoaded = firstRoute;
  firstRoute = false;
  if (hash === "/cart") return showCart(useLoaded);
  if (hash === "/login") return showLogin();
  if (hash === "/signup") return showSignup();
  if (hash === "/checkout") return showCheckout();
  if (hash === "/orders") return showOrders();
  const order = /^\/orders\/([0-9-]+)$/.exec(hash);
  if (order) return showOrder(order[1]);
  // the PG's window comes back to /?checkout=success|fail&...
  const checkout = params.get("checkout");
  if (!hash && checkout === "success") return showPaymentSuccess(params);
  if (!hash && checkout === "fail") return showPaymentFail(params);
  const product = params.get("product");
  if (product) return showProduct(product);
  return showList(params);
}

function main() {
  const sort = document.getElementById("sort");
  sort.addEventListener("change", () => { location.href = href({ sort: sort.value, page: "" }); });
  document.getElementById("logout").addEventListener("click", logout);
  window.addEventListener("hashchange", route);
  state.ready = loadSession()
    .then(loadCart)
    .catch((err) => { state.cartError = err; });
  route();
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
}
if (typeof module !== "undefined") module.exports = { formatPrice, couponReasonText, parseQuantity };
