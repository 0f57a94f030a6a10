// mall storefront: the product list and pages, the cart, login and signup,
// over the JSON API (/api/v1/...).
//
// Routes: the list and a product live in the query string (?category=&q=
// &sort=&page= or ?product=slug), so every view is a plain link; the cart,
// login and signup are hash routes (#/cart, #/login, #/signup) on top of it.
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
  const key = newKey();
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
    unorderable);
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
