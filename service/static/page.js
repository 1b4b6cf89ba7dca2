// qualia's search page: plain JavaScript over the HTTP API, no framework and no build step.
// What it shows follows its address (?profile=P&q=WORDS|like=ID&modality=M, or &view=report),
// so every search can be reloaded and shared.
"use strict";

const K = 24;
const KEY_STORE = "qualia.key";
const MODALITIES = ["image", "text", "any"];
const DEGREES = { 0: "the person", 1: "degree 1 · theirs", 2: "degree 2 · one hop away" };

const $ = (id) => document.getElementById(id);
let key = sessionStorage.getItem(KEY_STORE);
let profiles = [];
let objectUrls = []; // pictures fetched with the key; freed when the results they show are replaced
let searchSeq = 0; // only the newest search may draw its results
let lastQuery = null; // {body, description}: what the feedback marks refer to

class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

function authHeaders() {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

async function api(path, body) {
  const init = { headers: authHeaders() };
  if (body !== undefined) {
    init.method = "POST";
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "the server cannot be reached");
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const detail = typeof answer.detail === "string" ? answer.detail
      : Array.isArray(answer.detail) ? answer.detail.map((d) => d.msg).join("; ")
      : response.statusText;
    throw new ApiError(response.status, detail);
  }
  return answer;
}

function profilePath(profile, rest) {
  return `/v1/profiles/${encodeURIComponent(profile)}/${rest}`;
}

// --- messages -------------------------------------------------------------------------------------

function say(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
}

// A key reaches one profile; the API answers any other as if it did not exist (404), so say both.
function explain(error, profile) {
  if (error.status === 401) {
    askForKey(key ? "The key was not accepted: it is invalid or has been revoked. Enter another." : "");
    return;
  }
  if (error.status === 404 && /^no profile/.test(error.message)) {
    say(key ? `No such profile "${profile}", or the key does not open it.` : `No such profile "${profile}".`);
    return;
  }
  say(error.message || `the server answered ${error.status}`);
}

// --- the key --------------------------------------------------------------------------------------

function askForKey(reason) {
  key = null;
  document.body.classList.add("asking-key");
  sessionStorage.removeItem(KEY_STORE);
  say(reason);
  $("key-view").hidden = false;
  $("search-view").hidden = true;
  $("report-view").hidden = true;
  $("forget-key").hidden = true;
  $("key").focus();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  key = $("key").value.trim();
  $("key").value = "";
  if (!key) return;
  sessionStorage.setItem(KEY_STORE, key);
  $("key-view").hidden = true;
  say("");
  start();
});

$("forget-key").addEventListener("click", () => askForKey(""));

// --- the address ----------------------------------------------------------------------------------

function readAddress() {
  const params = new URLSearchParams(location.search);
  const modality = params.get("modality");
  return {
    profile: params.get("profile") || "",
    q: params.get("q") || "",
    like: params.get("like") || "",
    modality: MODALITIES.includes(modality) ? modality : "any",
    view: params.get("view") === "report" ? "report" : "search",
  };
}

function addressOf(state) {
  const params = new URLSearchParams();
  if (state.profile) params.set("profile", state.profile);
  if (state.view === "report") params.set("view", "report");
  else {
    if (state.q) params.set("q", state.q);
    else if (state.like) params.set("like", state.like);
    if (state.modality !== "any") params.set("modality", state.modality);
  }
  const query = params.toString();
  return query ? `?${query}` : location.pathname;
}

function follow(state, push) {
  const address = addressOf(state);
  if (address === location.search || (address === location.pathname && !location.search)) return;
  if (push) history.pushState(null, "", address);
  else history.replaceState(null, "", address);
}

function currentProfile() {
  return $("profile").value;
}

function currentModality() {
  return document.querySelector('input[name="modality"]:checked').value;
}

function updateTabs(view) {
  const profile = currentProfile();
  $("tab-search").href = addressOf({ profile, view: "search", modality: currentModality() });
  $("tab-report").href = addressOf({ profile, view: "report" });
  $("tab-search").removeAttribute("aria-current");
  $("tab-report").removeAttribute("aria-current");
  $(view === "report" ? "tab-report" : "tab-search").setAttribute("aria-current", "page");
}

// --- pictures -------------------------------------------------------------------------------------

// <img> cannot send the key: with one, a picture is fetched with it and shown from a blob.
async function showPicture(img, url) {
  if (!key) {
    img.src = url;
    return;
  }
  try {
    const response = await fetch(url, { headers: authHeaders() });
    if (!response.ok) throw new Error(String(response.status));
    const blob = await response.blob();
    if (!img.isConnected) return; // replaced by newer results while it came
    const blobUrl = URL.createObjectURL(blob);
    objectUrls.push(blobUrl);
    img.src = blobUrl;
  } catch (e) {
    img.alt = `${img.alt} (the picture could not be loaded)`;
    img.classList.add("broken");
  }
}

function freePictures() {
  objectUrls.forEach((url) => URL.revokeObjectURL(url));
  objectUrls = [];
}

// --- search ---------------------------------------------------------------------------------------

// What a search was, in words: for the summary line, and as the query a feedback mark refers to.
function describe(body, words) {
  if (body.text) return `"${body.text}"`;
  if (body.id) {
    const shown = words ? `"${words.length > 60 ? `${words.slice(0, 60)}…` : words}"` : body.id.slice(0, 16) + "…";
    return `more like ${shown}`;
  }
  return "the picture";
}

async function search(body, description, push) {
  const profile = currentProfile();
  if (!profile) return;
  const state = { profile, view: "search", modality: currentModality(), q: body.text || "", like: body.id || "" };
  follow(state, push);
  updateTabs("search");
  showView("search");
  const seq = ++searchSeq;
  lastQuery = { body, description };
  say("");
  $("results").setAttribute("aria-busy", "true");
  $("summary").textContent = `Searching ${profile} for ${description}…`;
  try {
    const answer = await api(profilePath(profile, "search"), { ...body, k: K, modality: state.modality });
    if (seq !== searchSeq) return;
    renderResults(profile, answer);
    const by = answer.adapter ? `adapter ${answer.adapter}` : "the backbone alone (no adapter yet)";
    $("summary").textContent =
      `${answer.results.length} results for ${description} · ${by} · ${Math.round(answer.took_ms)} ms`;
  } catch (error) {
    if (seq !== searchSeq) return;
    $("summary").textContent = "";
    renderResults(profile, { results: [] });
    explain(error, profile);
  } finally {
    if (seq === searchSeq) $("results").removeAttribute("aria-busy");
  }
}

function renderResults(profile, answer) {
  freePictures();
  const list = $("results");
  list.replaceChildren(...answer.results.map((hit, i) => resultCard(profile, hit, i + 1)));
}

function resultCard(profile, hit, rank) {
  const words = hit.text || "";
  const isPicture = hit.modality === "image";
  const label = isPicture ? (words ? `Picture: ${words}` : "A picture with no words") : `Text: ${words}`;
  const more = el("button", {
    type: "button", class: "more", title: "More like this",
    "aria-label": `More like this: ${label}`,
    onclick: () => {
      $("q").value = "";
      clearQueryPicture();
      search({ id: hit.id }, describe({ id: hit.id }, words), true);
    },
  });
  if (isPicture && hit.image) {
    const img = el("img", { alt: label, loading: "lazy", class: "thumb" });
    more.append(img);
    showPicture(img, hit.image);
  } else {
    more.append(el("span", { class: "words", text: words || "(no words)" }));
    if (hit.image) {
      const img = el("img", { alt: "the picture these words describe", loading: "lazy", class: "described" });
      more.append(img);
      showPicture(img, hit.image);
    }
  }
  const source = hit.source_url
    ? el("a", { href: hit.source_url, target: "_blank", rel: "noopener noreferrer", class: "source" },
      `found on ${hit.source || "the web"}`)
    : el("span", { class: "source" }, hit.source ? `from ${hit.source}` : "");
  return el("li", { class: `result ${isPicture ? "picture" : "text"}`, "data-id": hit.id, "data-rank": rank },
    more,
    isPicture && words ? el("p", { class: "caption", text: words }) : null,
    el("p", { class: "meta" },
      el("span", { class: "score", title: "similarity to the query (higher is closer)", text: hit.score.toFixed(3) }),
      hit.degree === null || hit.degree === undefined ? null
        : el("span", { class: "degree", text: DEGREES[hit.degree] || `degree ${hit.degree}` }),
      source),
    // only words can become training pairs: a picture or "more like this" search offers no marks
    lastQuery && lastQuery.body.text ? feedback(profile, hit, lastQuery.body.text) : null);
}

// Marks go to POST /v1/profiles/{p}/feedback as {query, id, fits}; the next training learns from them.
function feedback(profile, hit, query) {
  const status = el("span", { class: "feedback-status", role: "status" });
  const mark = async (fits, button) => {
    status.textContent = "Saving…";
    try {
      await api(profilePath(profile, "feedback"), { query, id: hit.id, fits });
      status.textContent = fits ? "Noted: fits." : "Noted: does not fit.";
      button.setAttribute("aria-pressed", "true");
    } catch (error) {
      if (error.status === 401) return explain(error, profile);
      status.textContent = `Not saved (${error.status || "no answer"}): ${error.message}`;
      status.classList.add("error");
    }
  };
  const fitsButton = el("button", { type: "button", class: "fits", "aria-pressed": "false" }, "Fits");
  const notButton = el("button", { type: "button", class: "not-fits", "aria-pressed": "false" }, "Does not fit");
  fitsButton.addEventListener("click", () => mark(true, fitsButton));
  notButton.addEventListener("click", () => mark(false, notButton));
  return el("div", { class: "feedback", role: "group", "aria-label": "Does this fit the query?" },
    fitsButton, notButton, status);
}

// --- searching by a picture -----------------------------------------------------------------------

function clearQueryPicture() {
  const preview = $("query-picture");
  if (preview.src) URL.revokeObjectURL(preview.src);
  preview.removeAttribute("src");
  preview.hidden = true;
}

function searchByPicture(file) {
  if (!file || !file.type.startsWith("image/")) {
    say("That is not a picture: drop or choose an image file.");
    return;
  }
  const reader = new FileReader();
  reader.onload = () => {
    const base64 = String(reader.result).split(",", 2)[1] || "";
    clearQueryPicture();
    const preview = $("query-picture");
    preview.src = URL.createObjectURL(file);
    preview.alt = `the picture searched for: ${file.name || "pasted"}`;
    preview.hidden = false;
    $("q").value = "";
    search({ image_base64: base64 }, `the picture ${file.name ? `"${file.name}"` : "pasted"}`, true);
  };
  reader.onerror = () => say("The picture could not be read.");
  reader.readAsDataURL(file);
}

$("picture").addEventListener("change", (event) => {
  searchByPicture(event.target.files[0]);
  event.target.value = ""; // the same file chosen again searches again
});

const drop = $("drop");
["dragenter", "dragover"].forEach((type) => drop.addEventListener(type, (event) => {
  event.preventDefault();
  drop.classList.add("over");
}));
["dragleave", "drop"].forEach((type) => drop.addEventListener(type, () => drop.classList.remove("over")));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  searchByPicture(event.dataTransfer.files[0]);
});

document.addEventListener("paste", (event) => {
  const file = [...(event.clipboardData ? event.clipboardData.files : [])].find((f) => f.type.startsWith("image/"));
  if (file) {
    event.preventDefault();
    searchByPicture(file);
  }
});

$("search-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("q").value.trim();
  if (!text) {
    $("q").focus();
    return;
  }
  clearQueryPicture();
  search({ text }, describe({ text }), true);
});

document.querySelectorAll('input[name="modality"]').forEach((radio) => radio.addEventListener("change", () => {
  if (lastQuery) search(lastQuery.body, lastQuery.description, true);
  else updateTabs("search");
}));

// --- the report -----------------------------------------------------------------------------------

const percent = (x) => (typeof x === "number" ? `${(100 * x).toFixed(1)}%` : "–");
const plain = (x) => (typeof x === "number" ? x.toFixed(3) : "–");

function get(object, path) {
  return path.split(".").reduce((o, part) => (o && typeof o === "object" ? o[part] : undefined), object);
}

function changeOf(base, adapter, format) {
  if (typeof base !== "number" || typeof adapter !== "number") return "";
  const delta = adapter - base;
  const shown = format === percent ? `${(100 * delta).toFixed(1)} pts` : delta.toFixed(3);
  return delta > 0 ? `+${shown}` : shown;
}

function table(caption, head, rows) {
  return el("table", { class: "figures" },
    el("caption", { text: caption }),
    el("thead", {}, el("tr", {}, head.map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, rows));
}

function countsTable(caption, counts, label) {
  const rows = Object.entries(counts || {}).map(([name, n]) =>
    el("tr", { "data-count": name }, el("th", { scope: "row", text: label(name) }), el("td", { text: String(n) })));
  return table(caption, ["", "items"], rows);
}

const COMPARED = [
  ["t2i.r1", "words → picture, recall@1", percent],
  ["t2i.r5", "words → picture, recall@5", percent],
  ["t2i.r10", "words → picture, recall@10", percent],
  ["i2t.r1", "picture → words, recall@1", percent],
  ["i2t.r5", "picture → words, recall@5", percent],
  ["i2t.r10", "picture → words, recall@10", percent],
  ["gap", "modality gap (distance of the two centroids; lower is closer)", plain],
  ["mixed.image_share", "words over pictures and texts: share of pictures in the top 10", percent],
  ["mixed.r10", "words over pictures and texts: recall@10 of the paired picture", percent],
  ["mixed_centered_calibrated.image_share", "… centered and calibrated: share of pictures in the top 10", percent],
  ["mixed_centered_calibrated.r10", "… centered and calibrated: recall@10", percent],
  ["generic.t2i.r10", "generic pictures (what the backbone knew), words → picture recall@10", percent],
  ["generic.i2t.r10", "generic pictures, picture → words recall@10", percent],
];

function renderReport(profile, report) {
  const box = $("report");
  const training = report.training || {};
  const data = training.data || {};
  const corpus = report.corpus || {};
  const parts = [];
  parts.push(el("p", { class: "lede" },
    `Adapter ${report.version}`,
    training.backbone ? ` on ${training.backbone} (${training.pretrained})` : "",
    training.epochs_run ? `, ${training.epochs_run} epochs run, epoch ${training.best_epoch} kept` : "",
    data.pairs ? `, from ${data.pairs} pairs (${data.pairs_train} to train on, ${data.pairs_val} held out)` : "",
    "."));
  if (report.corpus) {
    parts.push(el("h3", { text: "What was collected" }),
      el("div", { class: "tables" },
        countsTable("by source", corpus.items, (s) => s),
        countsTable("by degree", corpus.by_degree, (d) => DEGREES[d] || `degree ${d}`),
        table("besides", ["", ""], [
          el("tr", { "data-count": "images" }, el("th", { scope: "row", text: "pictures" }),
            el("td", { text: String(corpus.images) })),
          el("tr", { "data-count": "edges" }, el("th", { scope: "row", text: "links between items" }),
            el("td", { text: String(corpus.edges) })),
        ])));
  }
  const rows = COMPARED.filter(([path]) => get(report.base, path) !== undefined || get(report.adapter, path) !== undefined)
    .map(([path, label, format]) => {
      const base = get(report.base, path);
      const adapter = get(report.adapter, path);
      return el("tr", { "data-metric": path },
        el("th", { scope: "row", text: label }),
        el("td", { class: "base", text: format(base) }),
        el("td", { class: "adapter", text: format(adapter) }),
        el("td", { class: "change", text: changeOf(base, adapter, format) }));
    });
  const retention = get(report.adapter, "retention");
  if (typeof retention === "number") {
    rows.push(el("tr", { "data-metric": "retention" },
      el("th", { scope: "row", text: "retention of generic recall (adapter ÷ backbone; 100% = nothing lost)" }),
      el("td", { class: "base", text: "" }), el("td", { class: "adapter", text: percent(retention) }),
      el("td", { class: "change", text: "" })));
  }
  parts.push(el("h3", { text: "What the adapter changed" }),
    table(`on ${report.pairs} held-out pairs`, ["", "backbone", "with adapter", "change"], rows));
  if ((report.plots || []).length) {
    parts.push(el("h3", { text: "What training drew" }),
      el("div", { class: "plots" }, report.plots.map((plot) => {
        const img = el("img", { alt: plot.title, class: "plot", "data-plot": plot.name });
        showPicture(img, plot.url);
        return el("figure", {}, img, el("figcaption", { text: plot.title }));
      })));
  }
  box.replaceChildren(...parts);
}

async function showReport(push) {
  const profile = currentProfile();
  follow({ profile, view: "report" }, push);
  updateTabs("report");
  showView("report");
  say("");
  freePictures();
  $("report").replaceChildren(el("p", { text: `Reading the report of ${profile}…` }));
  try {
    renderReport(profile, await api(profilePath(profile, "report")));
  } catch (error) {
    $("report").replaceChildren();
    if (error.status === 404 && /no trained adapter/.test(error.message)) {
      $("report").append(el("p", {}, `${profile} has no adapter yet: `, el("code", { text: `qualia train ${profile}` }),
        " trains one, and its report shows here."));
    } else explain(error, profile);
  }
}

// --- views and start ------------------------------------------------------------------------------

function showView(view) {
  document.body.classList.remove("asking-key");
  $("key-view").hidden = true;
  $("search-view").hidden = view !== "search";
  $("report-view").hidden = view !== "report";
  $("forget-key").hidden = !key;
}

$("tab-search").addEventListener("click", (event) => {
  event.preventDefault();
  follow({ profile: currentProfile(), view: "search", modality: currentModality() }, true);
  render();
});

$("tab-report").addEventListener("click", (event) => {
  event.preventDefault();
  showReport(true);
});

$("profile").addEventListener("change", () => {
  const view = readAddress().view;
  $("results").replaceChildren();
  $("summary").textContent = "";
  lastQuery = null;
  if (view === "report") showReport(true);
  else if ($("q").value.trim()) search({ text: $("q").value.trim() }, describe({ text: $("q").value.trim() }), true);
  else follow({ profile: currentProfile(), view: "search", modality: currentModality() }, true);
});

// Draw what the address asks for, without adding to the history (on load, reload and Back/Forward).
function render() {
  const state = readAddress();
  const select = $("profile");
  if (state.profile && !profiles.some((p) => p.name === state.profile)) {
    say(key ? `No such profile "${state.profile}", or the key does not open it.`
      : `No such profile "${state.profile}" (or it has no index yet: qualia index ${state.profile}).`);
    showView(state.view);
    return;
  }
  if (state.profile) select.value = state.profile;
  document.querySelector(`input[name="modality"][value="${state.modality}"]`).checked = true;
  $("q").value = state.q;
  updateTabs(state.view);
  if (state.view === "report") showReport(false);
  else if (state.q) search({ text: state.q }, describe({ text: state.q }), false);
  else if (state.like) search({ id: state.like }, describe({ id: state.like }), false);
  else {
    showView("search");
    freePictures();
    clearQueryPicture();
    $("results").replaceChildren();
    $("summary").textContent = "";
    lastQuery = null;
    follow({ ...state, profile: currentProfile() }, false);
  }
}

async function start() {
  say("");
  try {
    profiles = (await api("/v1/profiles")).profiles;
  } catch (error) {
    explain(error, "");
    return;
  }
  const select = $("profile");
  select.replaceChildren(...profiles.map((p) =>
    el("option", { value: p.name }, `${p.name} (${p.counts.image || 0} pictures, ${p.counts.text || 0} texts)`)));
  select.disabled = profiles.length === 0;
  if (!profiles.length) {
    say(key ? "The key's profile has no index to search yet (qualia index PROFILE)."
      : "No profile has an index to search yet: run qualia index PROFILE.");
    return;
  }
  render();
}

window.addEventListener("popstate", render);
start();
