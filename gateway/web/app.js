// mall storefront: lists products from the JSON API (/api/v1/...).
// State lives in the page's own query string (?category=&q=&sort=&page= or
// ?product=slug), so every view is a plain link.  API text is only ever put
// into the page as text (textContent), never as HTML.
"use strict";

const PAGE_SIZE = 24;
const won = new Intl.NumberFormat("ko-KR");

// formatPrice: {amount: 12900, currency: "KRW"} -> "12,900원".
function formatPrice(money) {
  if (!money) return "";
  const amount = Number(money.amount);
  if (!money.currency || money.currency === "KRW") return won.format(amount) + "원";
  return won.format(amount) + " " + money.currency;
}

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
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

async function api(path) {
  const res = await fetch(path, { headers: { Accept: "application/json" } });
  let body = null;
  try {
    body = await res.json();
  } catch (_) {
    body = null;
  }
  if (!res.ok) {
    const msg = body && body.error ? body.error.message : res.status + " " + res.statusText;
    const err = new Error(msg);
    err.status = res.status;
    err.fields = body && body.error ? body.error.fields : undefined;
    throw err;
  }
  return body;
}

function setStatus(text, isError) {
  const s = document.getElementById("status");
  s.textContent = text || "";
  s.classList.toggle("error", !!isError);
}

function errorText(err) {
  if (err.status === 503 || err.status === 504)
    return "상품 정보를 불러오지 못했습니다. 잠시 후 다시 시도해 주세요.";
  let t = err.message;
  if (err.fields) t += " (" + Object.entries(err.fields).map(([k, v]) => k + ": " + v).join(", ") + ")";
  return t;
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
    // the product list shows the error; the links stay at "all"
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

function productCard(p) {
  const img = image(p.thumbnail, p.name, { loading: "lazy" });
  return el("li", { class: "card" },
    el("a", { href: "/?product=" + encodeURIComponent(p.slug || p.id) },
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
  const q = params.get("q") || "";
  const category = params.get("category") || "";
  const sort = params.get("sort") || "newest";
  const page = Math.max(1, parseInt(params.get("page") || "1", 10) || 1);

  document.getElementById("q").value = q;
  const sortSel = document.getElementById("sort");
  sortSel.value = sort;
  sortSel.addEventListener("change", () => { location.href = href({ sort: sortSel.value, page: "" }); });
  if (q) document.getElementById("heading").textContent = "‘" + q + "’ 검색 결과";
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
    setStatus(data.products.length ? "상품 " + won.format(Number(data.totalCount)) + "개" : "상품이 없습니다.");
    renderPager(data.page || page, data.pageSize || PAGE_SIZE, Number(data.totalCount));
  } catch (err) {
    setStatus(errorText(err), true);
  }
}

async function showProduct(idOrSlug) {
  document.querySelector(".toolbar").hidden = true;
  loadCategories(null);
  setStatus("불러오는 중…");
  const sec = document.getElementById("product");
  try {
    const p = await api("/api/v1/products/" + encodeURIComponent(idOrSlug));
    document.title = p.name + " - mall";
    const rows = (p.skus || []).map((s) =>
      el("tr", {},
        el("td", {}, (s.optionValues || []).map((o) => o.option + ": " + o.value).join(", ") || s.code),
        el("td", { class: "price" }, formatPrice(s.price)),
        el("td", {}, Number(s.available) > 0 ? "구매 가능" : "품절")));
    const img = p.images && p.images.length ? image(p.images[0], p.name, { width: 320 }) : null;
    sec.replaceChildren(
      el("p", {}, el("a", { href: "/" }, "← 목록")),
      img,
      el("h1", {}, p.name),
      el("p", { class: "price" }, formatPrice(p.price)),
      el("p", {}, p.summary || ""),
      rows.length ? el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "옵션"), el("th", {}, "가격"), el("th", {}, "재고"))), el("tbody", {}, ...rows)) : null);
    sec.hidden = false;
    setStatus("");
  } catch (err) {
    setStatus(err.status === 404 ? "상품을 찾을 수 없습니다." : errorText(err), true);
  }
}

function main() {
  const params = new URLSearchParams(location.search);
  const product = params.get("product");
  if (product) showProduct(product);
  else showList(params);
}

if (typeof document !== "undefined") {
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", main);
  else main();
}
if (typeof module !== "undefined") module.exports = { formatPrice };
