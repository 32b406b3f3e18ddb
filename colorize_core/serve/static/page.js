// The page of `colorize serve`: uploads photos to POST /colorize, re-decodes the shown one at
// each temperature with GET /colorize/{id} (no network pass: previews while the slider moves, the
// full resolution where it stops), and compares before | after.
"use strict";

const $ = (id) => document.getElementById(id);
const photos = [];          // {file, name, originalUrl, id, colourInput, size, error, element}
let current = null;         // the photo in the viewer
let shownUrl = null;        // object URL of the colour image on screen
let wanted = null;          // {T, preview}: what the slider asks for next
let decoding = false;       // a re-decode is in flight

async function reason(response) {
  try { return (await response.json()).detail; } catch { return `${response.status} ${response.statusText}`; }
}

async function loadModel() {
  const model = await (await fetch("/api/model")).json();
  $("temperature").value = model.default_T;
  $("temperature-value").textContent = Number(model.default_T).toFixed(2);
  const card = model.card;
  $("model-name").textContent = card ? card.name : `${model.arch}, epoch ${model.epoch} (${model.checkpoint})`;
  const facts = card ? card.facts : {architecture: model.arch, checkpoint: model.checkpoint};
  for (const key of ["architecture", "trained on", "training", "checkpoint"].filter((k) => k in facts)) {
    $("model-facts").append(Object.assign(document.createElement("dt"), {textContent: key}),
                            Object.assign(document.createElement("dd"), {textContent: facts[key]}));
  }
  if (card) {
    $("quality-caption").textContent = card.quality.caption;
    const row = (cells, tag) => {
      const tr = document.createElement("tr");
      cells.forEach((text) => tr.append(Object.assign(document.createElement(tag), {textContent: text})));
      return tr;
    };
    $("quality").append(row(card.quality.columns, "th"), ...card.quality.rows.map((cells) => row(cells, "td")));
  }
}

function temperature() { return Number($("temperature").value); }

function addFiles(files) {
  for (const file of files) {
    const photo = {file, name: file.name, originalUrl: URL.createObjectURL(file)};
    photo.element = document.createElement("li");
    photo.element.addEventListener("click", () => photo.id && show(photo));
    $("photos").append(photo.element);
    photos.push(photo);
    describe(photo, "waiting");
  }
  uploadAll();
}

function describe(photo, status) {
  photo.element.replaceChildren(Object.assign(document.createElement("img"), {src: photo.originalUrl, alt: ""}));
  const text = document.createElement("span");
  text.append(photo.name, Object.assign(document.createElement("small"), {textContent: status}));
  photo.element.append(text);
  photo.element.classList.toggle("failed", Boolean(photo.error));
  photo.element.classList.toggle("current", photo === current);
}

let uploading = false;
async function uploadAll() {    // one upload at a time: the server runs one network pass at a time anyway
  if (uploading) return;
  uploading = true;
  for (const photo of photos.filter((p) => !p.id && !p.error)) {
    describe(photo, "colorizing…");
    const T = temperature();
    const started = performance.now();
    const response = await post(photo, T);
    if (!response.ok) {
      photo.error = await reason(response);
      describe(photo, photo.error);
      continue;
    }
    describe(photo, `${photo.size.replace("x", " × ")}`);
    if (!current) show(photo, await response.blob(), T, performance.now() - started);
  }
  uploading = false;
}

async function post(photo, T) {
  const response = await fetch(`/colorize?T=${T}&format=jpg`, {method: "POST", body: photo.file,
                                                               headers: {"Content-Type": "application/octet-stream"}});
  if (response.ok) {
    photo.id = response.headers.get("X-Image-Id");
    photo.colourInput = response.headers.get("X-Colour-Input") === "1";
    photo.size = response.headers.get("X-Image-Size");
  }
  return response;
}

function show(photo, blob = null, T = null, milliseconds = null) {
  const previous = current;
  current = photo;
  if (previous) describe(previous, previous.size.replace("x", " × "));
  describe(photo, photo.size.replace("x", " × "));
  $("viewer").hidden = false;
  $("before-choice").hidden = !photo.colourInput;
  $("before-kind").value = photo.colourInput ? "original" : "gray";
  showBefore();
  if (blob) display(blob, T, milliseconds, "colorized");
  else redecode();
}

function showBefore() {
  const original = current.colourInput && $("before-kind").value === "original";
  $("before").src = original ? current.originalUrl : `/colorize/${current.id}/gray`;
  $("before-tag").textContent = original ? "original" : "gray input";
}

function display(blob, T, milliseconds, what, preview = false) {
  const image = $("after");
  const url = URL.createObjectURL(blob);
  image.onload = () => {
    image.dataset[preview ? "preview" : "temperature"] = String(T);   // what the tests wait for
    if (shownUrl) URL.revokeObjectURL(shownUrl);
    shownUrl = url;
  };
  image.src = url;
  $("timing").textContent = `${what} at T = ${T.toFixed(2)} in ${Math.round(milliseconds)} ms`;
  updateDownload();
}

async function redecode(asPreview = false) {   // the newest slider value wins; one request in flight
  wanted = {T: temperature(), preview: asPreview};
  if (decoding || !current) return;
  decoding = true;
  while (wanted !== null) {
    const [photo, {T, preview}] = [current, wanted];
    wanted = null;
    const started = performance.now();
    let response = await fetch(`/colorize/${photo.id}?T=${T}&format=jpg&preview=${preview}`);
    if (response.status === 404) response = await post(photo, T);   // dropped from the cache: send it again
    if (!response.ok) { $("message").textContent = await reason(response); continue; }
    const what = preview ? "preview re-decoded" : "re-decoded";
    if (photo === current) display(await response.blob(), T, performance.now() - started, what, preview);
  }
  decoding = false;
}

function updateDownload() {
  const format = $("format").value;
  const stem = current.name.replace(/\.[^.]*$/, "");
  $("download").href = `/colorize/${current.id}?T=${temperature()}&format=${format}&download=1`;
  $("download").download = `${stem}_color.${format}`;
}

function split() {
  const percent = Number($("split").value);
  $("before").style.clipPath = `inset(0 ${100 - percent}% 0 0)`;
  $("divider").style.left = `${percent}%`;
}

$("files").addEventListener("change", (event) => { addFiles(event.target.files); event.target.value = ""; });
const drop = $("drop");
["dragenter", "dragover"].forEach((name) => drop.addEventListener(name, (event) => {
  event.preventDefault();
  drop.classList.add("over");
}));
["dragleave", "drop"].forEach((name) => drop.addEventListener(name, () => drop.classList.remove("over")));
drop.addEventListener("drop", (event) => { event.preventDefault(); addFiles(event.dataTransfer.files); });
$("temperature").addEventListener("input", () => {      // while it moves: previews
  $("temperature-value").textContent = temperature().toFixed(2);
  redecode(true);
});
$("temperature").addEventListener("change", () => redecode(false));   // where it stops: full resolution
$("split").addEventListener("input", split);
$("before-kind").addEventListener("change", showBefore);
$("format").addEventListener("change", updateDownload);
split();
loadModel().catch((error) => { $("message").textContent = `cannot read the model: ${error}`; });
