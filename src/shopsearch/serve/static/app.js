// The shopsearch web page: search, facet filters, markets, explanations, feedback events, pages.
// It talks only to the HTTP API: GET /domains, GET /search, GET /suggest and POST /events.

import { attachSuggestions } from "./suggest.js";

const PAGE_SIZE = 10;
const USER_KEY = "shopsearch.user";
const FACETS_SHOWN = 12;
const FACET_TITLES = { category: "Category", brand: "Brand", price: "Price" };
const EVENT_BUTTONS = [
  { kind: "click", label: "Click", done: "Click logged" },
  { kind: "add_to_cart", label: "Add to cart", done: "Added to cart" },
  { kind: "purchase", label: "Buy", done: "Purchase logged" },
];

const $ = (id) => document.getElementById(id);
const ui = {
  form: $("search-form"),
  query: $("q"),
  domain: $("domain"),
  user: $("user"),
  explain: $("explain"),
  facets: document.querySelector("[data-testid=facets]"),
  pane: document.querySelector("[data-testid=results-pane]"),
  error: $("error"),
  correction: $("correction"),
  intent: $("intent"),
  summary: $("summary"),
  chips: $("active-filters"),
  results: $("results"),
  pager: document.querySelector("[data-testid=pager]"),
  prev: $("prev"),
  next: $("next"),
  pageInfo: $("page-info"),
};

/** What is searched; mirrored in the page URL so a search can be shared and reloaded. */
const state = {
  q: "",
  domain: "",
  page: 1,
  category: null,
  brand: null,
  price: null,
  explain: false,
  correct: true, // false: search q as typed (the user turned the spelling correction down)
};
const domains = new Map(); // domain_id → {name, language, currency}
const expandedFacets = new Set();
let lastFacets = {};
const formatters = new Map();
let latest = 0; // number of the latest search; answers to older ones are dropped

// -- small helpers -------------------------------------------------------------------------------

/** Build an element: attributes (`on*` are listeners, `false`/`null` are left out) and children. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") el.className = value;
    else if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

class ApiError extends Error {
  constructor(message, parameter = null, status = null) {
    super(message);
    this.parameter = parameter;
    this.status = status;
  }
}

/** Call the API; a 4xx/5xx answer becomes an `ApiError` carrying the server's message. */
async function api(path, { method = "GET", body = undefined } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError("The server could not be reached. Is `shopsearch serve` running?");
  }
  const payload = await response.json().catch(() => null);
  if (!response.ok) {
    const error = payload?.error;
    const detail = typeof payload?.detail === "string" ? payload.detail : null;
    const message = error?.message ?? detail ?? `The server answered ${response.status}.`;
    throw new ApiError(message, error?.parameter ?? null, response.status);
  }
  return payload;
}

function makeFormatter(language, currency, whole) {
  const options = { style: "currency", currency };
  if (whole) options.maximumFractionDigits = 0;
  for (const locale of [language, undefined]) {
    try {
      return new Intl.NumberFormat(locale, options);
    } catch {
      // an unknown language tag or currency code: try the browser's locale, then plain numbers
    }
  }
  const plain = new Intl.NumberFormat(undefined, { maximumFractionDigits: whole ? 0 : 2 });
  return { format: (amount) => `${plain.format(amount)} ${currency}` };
}

/** An amount in the currency of `domainId` (plain number when the domain is unknown). */
function money(amount, domainId, whole = false) {
  const domain = domains.get(domainId);
  if (!domain) return amount.toFixed(whole ? 0 : 2);
  const key = `${domain.language}|${domain.currency}|${whole}`;
  if (!formatters.has(key)) formatters.set(key, makeFormatter(domain.language, domain.currency, whole));
  return formatters.get(key).format(amount);
}

/** A price bucket label (`25-50` or `1000+`) as a price range. */
function bucketRange(label) {
  if (label.endsWith("+")) return { min: Number(label.slice(0, -1)), max: null };
  const [min, max] = label.split("-").map(Number);
  return { min, max };
}

function bucketLabel(label) {
  if (!state.domain) return label.replace("-", " – ");
  const { min, max } = bucketRange(label);
  const low = money(min, state.domain, true);
  return max === null ? `${low} and up` : `${low} – ${money(max, state.domain, true)}`;
}

function compareCategoryPaths(a, b) {
  const x = a.split(" > ");
  const y = b.split(" > ");
  for (let i = 0; i < Math.min(x.length, y.length); i += 1) {
    const order = x[i].localeCompare(y[i]);
    if (order !== 0) return order;
  }
  return x.length - y.length;
}

// -- the user ------------------------------------------------------------------------------------

function randomUserId() {
  const bytes = crypto.getRandomValues(new Uint8Array(5));
  return `web-${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function storedUser() {
  try {
    return localStorage.getItem(USER_KEY);
  } catch {
    return null; // storage disabled: the id lives for this page only
  }
}

function setUser(value) {
  const user = value.trim() || randomUserId();
  ui.user.value = user;
  try {
    localStorage.setItem(USER_KEY, user);
  } catch {
    // storage disabled
  }
}

// -- the URL -------------------------------------------------------------------------------------

function readUrl() {
  const url = new URLSearchParams(location.search);
  state.q = url.get("q") ?? "";
  state.domain = url.get("domain") ?? "";
  state.page = Math.max(1, Number.parseInt(url.get("page") ?? "1", 10) || 1);
  state.category = url.get("category");
  state.brand = url.get("brand");
  state.price = url.get("price");
  state.explain = url.get("explain") === "1";
  state.correct = url.get("correct") !== "0";
}

function writeUrl() {
  const url = new URLSearchParams();
  for (const key of ["q", "domain", "category", "brand", "price"]) {
    if (state[key]) url.set(key, state[key]);
  }
  if (state.page > 1) url.set("page", String(state.page));
  if (state.explain) url.set("explain", "1");
  if (!state.correct) url.set("correct", "0");
  const next = url.toString() ? `?${url}` : location.pathname;
  if (next !== location.search) history.pushState(null, "", next);
}

function showState() {
  ui.query.value = state.q;
  ui.domain.value = state.domain;
  ui.explain.checked = state.explain;
}

// -- searching -----------------------------------------------------------------------------------

function searchQuery() {
  const params = new URLSearchParams({ q: state.q, page: state.page, size: PAGE_SIZE });
  if (state.domain) params.set("domain", state.domain);
  params.set("user", ui.user.value);
  if (state.category) params.set("category", state.category);
  if (state.brand) params.set("brand", state.brand);
  if (state.price) {
    const { min, max } = bucketRange(state.price);
    params.set("price_min", String(min));
    if (max !== null) params.set("price_max", String(max));
  }
  params.set("explain", state.explain ? "1" : "0");
  if (!state.correct) params.set("correct", "false");
  return params;
}

async function search({ remember = true } = {}) {
  if (remember) writeUrl();
  showChips();
  if (!state.q.trim()) {
    latest += 1; // an answer still on its way is for an older search
    showError(null);
    showEmpty("Type a query to search the catalog.");
    return;
  }
  const mine = ++latest;
  ui.pane.setAttribute("aria-busy", "true");
  try {
    const body = await api(`/search?${searchQuery()}`);
    if (mine !== latest) return;
    showError(null);
    showResponse(body);
  } catch (error) {
    if (mine !== latest) return;
    showError(error);
    showEmpty("No results to show.");
  } finally {
    if (mine === latest) ui.pane.removeAttribute("aria-busy");
  }
}

function toggleFacet(name, value) {
  state[name] = state[name] === value ? null : value;
  state.page = 1;
  search();
}

function clearFilters() {
  state.category = null;
  state.brand = null;
  state.price = null;
}

// -- rendering -----------------------------------------------------------------------------------

function showError(error) {
  if (!error) {
    ui.error.hidden = true;
    ui.error.replaceChildren();
    return;
  }
  const where = error.parameter ? h("strong", {}, `${error.parameter}: `) : null;
  const status = error.status ? h("span", { class: "muted" }, ` (HTTP ${error.status})`) : null;
  ui.error.replaceChildren(where, error.message, status);
  ui.error.hidden = false;
}

function showEmpty(message) {
  showCorrection(null);
  ui.summary.textContent = message;
  ui.results.replaceChildren();
  ui.facets.replaceChildren(h("p", { class: "muted" }, "Filters appear with results."));
  ui.pager.hidden = true;
}

function showChips() {
  const chips = ["category", "brand", "price"]
    .filter((name) => state[name])
    .map((name) => {
      const label = name === "price" ? bucketLabel(state.price) : state[name];
      return h(
        "li",
        {},
        h(
          "button",
          {
            type: "button",
            class: "chip",
            "data-testid": "active-filter",
            "data-facet": name,
            "aria-label": `Remove filter ${FACET_TITLES[name]}: ${label}`,
            onclick: () => toggleFacet(name, state[name]),
          },
          `${FACET_TITLES[name]}: ${label}`,
          h("span", { "aria-hidden": "true" }, " ×"),
        ),
      );
    });
  ui.chips.replaceChildren(...chips);
}

function showResponse(body) {
  const where = body.domain ? ` in ${domains.get(body.domain)?.name ?? body.domain}` : "";
  const count = body.total === 1 ? "1 result" : `${body.total} results`;
  const searched = body.correction ?? body.query; // a corrected query searched its correction
  const summary = [`${count} for “${searched}”${where}`];
  if (state.explain) {
    const timings = Object.entries(body.timings_ms)
      .map(([stage, ms]) => `${stage} ${ms.toFixed(1)} ms`)
      .join(" · ");
    summary.push(h("span", { class: "timings", "data-testid": "timings" }, timings));
  }
  if (body.total === 0) summary.splice(0, 1, noResults(body));
  ui.summary.replaceChildren(...summary);
  showCorrection(body.correction);
  showIntent(body.intents ?? []);
  ui.results.replaceChildren(...body.items.map((item) => resultItem(item, body.request_id)));
  showFacets(body.facets ?? {});
  showPager(body.pages, body.page);
}

/** "Showing results for <corrected> · Search instead for <typed>" when the query was corrected;
 * the link searches the query as typed (`correct=false`). */
function showCorrection(corrected) {
  if (!corrected) {
    ui.correction.hidden = true;
    ui.correction.replaceChildren();
    return;
  }
  const asTyped = new URLSearchParams(location.search);
  asTyped.set("correct", "0");
  asTyped.delete("page");
  const link = h(
    "a",
    {
      href: `?${asTyped}`,
      "data-testid": "search-as-typed",
      onclick: (event) => {
        event.preventDefault();
        state.correct = false;
        state.page = 1;
        search();
      },
    },
    state.q,
  );
  ui.correction.replaceChildren(
    "Showing results for ",
    h("b", { "data-testid": "corrected-query" }, corrected),
    " · Search instead for ",
    link,
  );
  ui.correction.hidden = false;
}

/** Least probability of the predicted category offered as a filter ("Search in Power Tools"). */
const INTENT_SUGGESTION_MIN = 0.5;

/** "Search in <category>" when query understanding is confident what category the query is
 * after and no category filter is set; the link filters the results to it. */
function showIntent(intents) {
  const top = intents[0];
  if (!top || state.category || top.probability < INTENT_SUGGESTION_MIN) {
    ui.intent.hidden = true;
    ui.intent.replaceChildren();
    return;
  }
  const link = h(
    "a",
    {
      href: "#",
      "data-testid": "intent-link",
      "data-category": top.category,
      title: top.category,
      onclick: (event) => {
        event.preventDefault();
        toggleFacet("category", top.category);
      },
    },
    top.category.split(" > ").at(-1),
  );
  ui.intent.replaceChildren("Search in ", link, ` (${Math.round(top.probability * 100)}% likely)`);
  ui.intent.hidden = false;
}

function resultItem(item, requestId) {
  const status = h("span", { class: "event-status", role: "status", "data-testid": "event-status" });
  const categoryPath = item.category.join(" › ");
  const stock = item.in_stock
    ? h("span", { class: "badge in-stock" }, "In stock")
    : h("span", { class: "badge out-of-stock" }, "Out of stock");
  const market = state.domain ? null : h("span", { class: "badge market" }, item.domain);
  return h(
    "li",
    {
      class: "result",
      "data-testid": "result",
      "data-product-id": item.product_id,
      "data-domain": item.domain,
    },
    h(
      "div",
      { class: "result-head" },
      h("span", { class: "position", "aria-label": `Position ${item.position}` }, item.position),
      h(
        "div",
        { class: "result-text" },
        h("h3", { class: "title", "data-testid": "result-title" }, item.title),
        h(
          "p",
          { class: "meta" },
          item.brand ? h("span", { class: "brand", "data-testid": "result-brand" }, item.brand) : null,
          categoryPath
            ? h("span", { class: "category", "data-testid": "result-category" }, categoryPath)
            : null,
          market,
        ),
      ),
      h(
        "div",
        { class: "price-col" },
        h(
          "span",
          { class: "price", "data-testid": "result-price" },
          item.price === null ? "No price" : money(item.price, item.domain),
        ),
        stock,
      ),
    ),
    state.explain ? stages(item) : null,
    h(
      "div",
      { class: "actions" },
      EVENT_BUTTONS.map((spec) =>
        h(
          "button",
          {
            type: "button",
            class: spec.kind === "purchase" ? "action primary" : "action",
            "data-testid": `event-${spec.kind}`,
            "aria-label": `${spec.label}: ${item.title}`,
            onclick: (event) => sendEvent(spec, item, requestId, event.currentTarget, status),
          },
          spec.label,
        ),
      ),
      status,
    ),
  );
}

function stages(item) {
  const rows = Object.entries(item.stages ?? {}).map(([stage, score]) =>
    h(
      "div",
      { class: "stage", "data-testid": "stage", "data-stage": stage },
      h("dt", {}, stage),
      h("dd", {}, score === null ? "—" : score.toFixed(4)),
    ),
  );
  rows.push(
    h(
      "div",
      { class: "stage final", "data-stage": "score" },
      h("dt", {}, "score"),
      h("dd", {}, item.score.toFixed(4)),
    ),
  );
  return h("dl", { class: "stages", "data-testid": "stages", "aria-label": "Score per stage" }, rows);
}

function showFacets(facets) {
  lastFacets = facets;
  const groups = ["category", "brand", "price"].map((name) => {
    const counts = Object.entries(facets[name] ?? {});
    if (name === "category") counts.sort(([a], [b]) => compareCategoryPaths(a, b));
    const entries = counts.map(([value, count]) => ({
      value,
      count,
      label: name === "category" ? value.split(" > ").at(-1) : name === "price" ? bucketLabel(value) : value,
      depth: name === "category" ? value.split(" > ").length - 1 : 0,
    }));
    return facetGroup(name, entries);
  });
  const shown = groups.filter(Boolean);
  ui.facets.replaceChildren(
    ...(shown.length ? shown : [h("p", { class: "muted" }, "No filters for these results.")]),
  );
}

function facetGroup(name, entries) {
  if (!entries.length) return null;
  const expanded = expandedFacets.has(name);
  const titleId = `facet-${name}-title`;
  const list = h(
    "ul",
    { class: "facet-list" },
    entries.map((entry, i) =>
      h(
        "li",
        { hidden: !expanded && i >= FACETS_SHOWN },
        h(
          "button",
          {
            type: "button",
            class: "facet-value",
            style: `--depth: ${entry.depth}`,
            title: entry.value,
            "aria-pressed": String(state[name] === entry.value),
            "data-testid": "facet-value",
            "data-facet": name,
            "data-value": entry.value,
            onclick: () => toggleFacet(name, entry.value),
          },
          h("span", { class: "facet-label" }, entry.label),
          h("span", { class: "count", "aria-label": `${entry.count} results` }, entry.count),
        ),
      ),
    ),
  );
  const more =
    entries.length > FACETS_SHOWN
      ? h(
          "button",
          {
            type: "button",
            class: "link",
            "aria-expanded": String(expanded),
            onclick: () => {
              if (expanded) expandedFacets.delete(name);
              else expandedFacets.add(name);
              showFacets(lastFacets);
            },
          },
          expanded ? "Show fewer" : `Show all ${entries.length}`,
        )
      : null;
  return h(
    "section",
    { class: "facet", "data-testid": `facet-${name}`, "aria-labelledby": titleId },
    h("h2", { id: titleId }, FACET_TITLES[name]),
    list,
    more,
  );
}

/** "No results for …", with the search without the filters when that one has results. */
function noResults(body) {
  const parts = [h("span", { "data-testid": "notice" }, body.notice ?? `No results for “${body.query}”`)];
  const wider = body.suggestion;
  if (wider) {
    const count = wider.total === 1 ? "1 result" : `${wider.total} results`;
    const link = h("button", { type: "button", class: "link", "data-testid": "suggestion" },
      `Search without ${wider.dropped.join(", ")} (${count})`);
    link.addEventListener("click", () => {
      state.page = 1;
      clearFilters();
      search();
    });
    parts.push(" · ", link);
  }
  return h("span", {}, ...parts);
}

function showPager(pages, page) {
  ui.pager.hidden = pages <= 1;
  ui.prev.disabled = page <= 1;
  ui.next.disabled = page >= pages;
  ui.pageInfo.textContent = `Page ${page} of ${pages}`;
}

// -- feedback events -----------------------------------------------------------------------------

async function sendEvent(spec, item, requestId, button, status) {
  const event = {
    request_id: requestId,
    product_id: item.product_id,
    kind: spec.kind,
    user_id: ui.user.value,
  };
  if (spec.kind === "purchase" && item.price !== null) event.value = item.price;
  button.disabled = true;
  status.className = "event-status";
  status.textContent = "Sending…";
  try {
    const body = await api("/events", { method: "POST", body: { events: [event] } });
    const ok = body?.accepted === 1;
    status.className = ok ? "event-status ok" : "event-status failed";
    status.textContent = ok ? `✓ ${spec.done}` : "✗ The server did not accept the event";
  } catch (error) {
    status.className = "event-status failed";
    status.textContent = `✗ ${error.parameter ? `${error.parameter}: ` : ""}${error.message}`;
  } finally {
    button.disabled = false;
  }
}

// -- start ---------------------------------------------------------------------------------------

async function loadDomains() {
  try {
    const body = await api("/domains");
    for (const d of body.domains) {
      domains.set(d.domain_id, { name: d.name, language: d.language, currency: d.currency });
      ui.domain.append(h("option", { value: d.domain_id }, `${d.name} · ${d.currency}`));
    }
    // one market at a time: the URL's, else the first (what the API searches by default)
    if (!domains.has(state.domain)) state.domain = body.domains[0]?.domain_id ?? "";
    ui.domain.dataset.loaded = "true";
  } catch (error) {
    showError(error);
  }
}

function wire() {
  attachSuggestions({ input: ui.query, form: ui.form, list: $("autocomplete"), domain: ui.domain });
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.q = ui.query.value.trim();
    state.page = 1;
    state.correct = true; // a new query may be corrected again
    clearFilters();
    search();
  });
  ui.domain.addEventListener("change", () => {
    state.domain = ui.domain.value;
    state.page = 1;
    clearFilters(); // categories, brands and prices differ between markets
    search();
  });
  ui.explain.addEventListener("change", () => {
    state.explain = ui.explain.checked;
    search();
  });
  ui.user.addEventListener("change", () => setUser(ui.user.value));
  ui.prev.addEventListener("click", () => {
    state.page = Math.max(1, state.page - 1);
    search().then(() => ui.pane.scrollIntoView({ block: "start" }));
  });
  ui.next.addEventListener("click", () => {
    state.page += 1;
    search().then(() => ui.pane.scrollIntoView({ block: "start" }));
  });
  window.addEventListener("popstate", () => {
    readUrl();
    showState();
    search({ remember: false });
  });
}

async function start() {
  setUser(storedUser() ?? "");
  readUrl();
  wire();
  await loadDomains();
  showState();
  document.body.dataset.ready = "true";
  if (state.q) await search({ remember: false });
  ui.query.focus();
}

start();
