// The studio page: photo or prompt in, a generation with live progress, the model out.

import * as api from "./api.js";
import { BatchView } from "./batch.js";
import { JobsList } from "./jobs.js";
import { TERMINAL, watchJob } from "./progress.js";
import { etaText, failureText, madePictureOnly, statusText, validDimensions } from "./text.js";
import { MeshTools } from "./tools.js";

const $ = (id) => document.getElementById(id);
const PHOTO_TYPES = ["image/png", "image/jpeg", "image/webp"];
const ACTIVE = new Set(["queued", "running"]);
const MAX_BATCH = 16;

const state = {
  photo: null, // a File chosen here, not uploaded yet
  photos: [], // several Files chosen at once: a batch
  views: {}, // photos of the same subject from other sides, by view name (left, back, ...)
  sourceJobId: null, // the job Generate runs: an upload, a text-to-image result or an opened job
  job: null, // the job shown
  watcher: null,
  busy: false,
  viewer: null,
  shownPicture: null, // the job whose stored picture the preview shows
  variant: null, // the version of the job shown: null for its model, or a variant id
};

const jobs = new JobsList($("jobs"), { onOpen: openJob });
const tools = new MeshTools({
  onVersion: (variant) => {
    state.variant = variant;
    if (state.job) {
      setDownloads(state.job);
      showModel(state.job.job_id);
    }
  },
  onError: (text) => showMessage(text),
});
const batch = new BatchView({
  onOpen: (jobId) => openJob({ job_id: jobId }),
  onEnd: () => {
    setBusy(false);
    jobs.load();
  },
  onError: (text) => showMessage(text),
});

// ---- the API key -----------------------------------------------------------

/** Ask for a key: the service answered 401 (`error.keySent`: the key in use was refused). */
function askForKey(error) {
  if (error.keySent) api.forgetApiKey();
  showKeyStatus();
  $("key-reason").textContent = error.keySent
    ? "The API key in use was not accepted by this server. Enter a valid key."
    : "This server asks for an API key before it answers.";
  const dialog = $("key-dialog");
  if (!dialog.open) {
    $("key-message").hidden = true;
    dialog.showModal();
  }
  $("api-key").focus();
}

function showKeyStatus() {
  $("key-status").hidden = !api.apiKey();
}

$("key-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("api-key");
  const message = $("key-message");
  const key = input.value.trim();
  if (!key) {
    message.textContent = "Enter the key first.";
    message.hidden = false;
    return;
  }
  $("key-submit").disabled = true;
  message.hidden = true;
  try {
    if (!(await api.checkKey(key))) {
      message.textContent = "That key was not accepted by this server. Check it and try again.";
      message.hidden = false;
      input.select();
      return;
    }
    api.setApiKey(key);
    input.value = "";
    $("key-dialog").close();
    showKeyStatus();
    clearMessage();
    showMessage("API key accepted: it is kept in this tab until you close it.", "info");
    jobs.load();
  } catch (err) {
    message.textContent = `Could not check the key: ${err.message}`;
    message.hidden = false;
  } finally {
    $("key-submit").disabled = false;
  }
});

$("key-forget").addEventListener("click", () => {
  api.forgetApiKey();
  showKeyStatus();
  jobs.load();
});

api.onUnauthorized(askForKey);
showKeyStatus();

// ---- messages --------------------------------------------------------------

function showMessage(text, kind = "error") {
  const box = $("message");
  box.textContent = text;
  box.dataset.kind = kind;
  box.hidden = false;
}

function clearMessage() {
  $("message").hidden = true;
  $("message").textContent = "";
}

// ---- the photo -------------------------------------------------------------

function setPhoto(file) {
  clearMessage();
  if (!PHOTO_TYPES.includes(file.type)) {
    showMessage(`"${file.name}" is not a PNG, JPEG or WebP photo.`);
    return;
  }
  state.photo = file;
  state.photos = [];
  state.views = {};
  state.sourceJobId = null;
  state.shownPicture = null;
  $("make-3d-button").hidden = true;
  $("views-panel").hidden = false;
  showViews();
  showPreview(URL.createObjectURL(file), `${file.name} (${Math.ceil(file.size / 1024)} KB)`);
  $("status-text").textContent = "Ready: choose the options and press Generate.";
}

/** One photo, or several at once: a batch (the service checks each and says why not). */
function setPhotos(files) {
  if (files.length <= 1) {
    if (files.length) setPhoto(files[0]);
    return;
  }
  clearMessage();
  if (files.length > MAX_BATCH) {
    showMessage(`A batch holds at most ${MAX_BATCH} photos; ${files.length} were chosen.`);
    return;
  }
  state.photo = null;
  state.photos = files;
  state.views = {};
  $("views-panel").hidden = true;
  state.sourceJobId = null;
  const first = files.find((f) => PHOTO_TYPES.includes(f.type));
  showPreview(first ? URL.createObjectURL(first) : "", `${files.length} photos: ${files.map((f) => f.name).join(", ")}`);
  $("status-text").textContent = `Ready: press Generate to make ${files.length} models.`;
  $("generate-button").textContent = `Generate ${files.length}`;
}

// ---- photos from other sides (views) ------------------------------------------

/** List the views added to the photo, each with a button that takes it away again. */
function showViews() {
  const list = $("view-list");
  list.replaceChildren();
  for (const [view, file] of Object.entries(state.views)) {
    const item = document.createElement("li");
    item.dataset.view = view;
    item.append(`${view}: ${file.name}`);
    const remove = document.createElement("button");
    remove.type = "button";
    remove.className = "link-button";
    remove.textContent = "remove";
    remove.setAttribute("aria-label", `Remove the ${view} photo`);
    remove.addEventListener("click", () => {
      delete state.views[view];
      state.sourceJobId = null; // the next run uploads the photos as they are now
      showViews();
    });
    item.append(" ", remove);
    list.append(item);
  }
  for (const option of $("view-name").options) option.disabled = option.value in state.views;
  const free = [...$("view-name").options].find((o) => !o.disabled);
  if (free) $("view-name").value = free.value;
  $("view-input").disabled = !free;
}

$("view-input").addEventListener("change", (event) => {
  const [file] = event.target.files;
  event.target.value = "";
  if (!file) return;
  clearMessage();
  if (!PHOTO_TYPES.includes(file.type)) {
    showMessage(`"${file.name}" is not a PNG, JPEG or WebP photo.`);
    return;
  }
  state.views[$("view-name").value] = file;
  state.sourceJobId = null;
  showViews();
});

function showPreview(url, caption) {
  const img = $("preview");
  if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  img.hidden = !url;
  if (url) img.src = url;
  img.onerror = () => {
    img.hidden = true;
    $("photo-name").textContent = `${caption}: this browser cannot show it as a picture`;
  };
  $("photo-name").textContent = caption;
}

$("photo-input").addEventListener("change", (event) => {
  $("generate-button").textContent = "Generate";
  setPhotos([...event.target.files]);
});

const dropZone = $("drop-zone");
for (const name of ["dragenter", "dragover"]) {
  dropZone.addEventListener(name, (event) => {
    event.preventDefault();
    dropZone.classList.add("dragging");
  });
}
dropZone.addEventListener("dragleave", () => dropZone.classList.remove("dragging"));
dropZone.addEventListener("drop", (event) => {
  event.preventDefault();
  dropZone.classList.remove("dragging");
  $("generate-button").textContent = "Generate";
  setPhotos([...event.dataTransfer.files]);
});
// A photo dropped beside the zone must not replace the page.
window.addEventListener("dragover", (event) => event.preventDefault());
window.addEventListener("drop", (event) => event.preventDefault());

// ---- text to image ---------------------------------------------------------

$("prompt-form").addEventListener("submit", (event) => {
  event.preventDefault();
  startFromPrompt(false);
});
$("prompt-3d-button").addEventListener("click", () => startFromPrompt(true));
$("prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    startFromPrompt(false);
  }
});
// The picture made from a prompt, modelled with the options below.
$("make-3d-button").addEventListener("click", () => $("generate-form").requestSubmit());

/** A text job: the picture of the prompt, and with `toModel` a model of it, in one job. */
async function startFromPrompt(toModel) {
  if (state.busy) return;
  const prompt = $("prompt").value;
  if (!prompt.trim()) {
    showMessage("Type a description first.");
    $("prompt").focus();
    return;
  }
  clearMessage();
  let model;
  if (toModel) {
    const options = modelOptions();
    if (options.error) {
      showMessage(options.error);
      return;
    }
    model = options.value;
  }
  setBusy(true);
  starting();
  $("status-text").textContent = toModel
    ? "Starting: a picture from the prompt, then a model of it…"
    : "Starting: a picture from the prompt…";
  try {
    const job = await api.textToImage(prompt, model);
    state.photo = null;
    state.views = {};
    $("views-panel").hidden = true;
    state.sourceJobId = job.job_id;
    state.shownPicture = null;
    $("make-3d-button").hidden = true;
    showPreview("", `The picture of job ${job.job_id.slice(0, 8)} is being made…`);
    jobs.offset = 0;
    follow(job);
  } catch (err) {
    $("status-text").textContent = "No image was made.";
    showMessage(promptError(err));
    setBusy(false);
  }
}

function promptError(err) {
  if (err.code === "model_not_configured") {
    return `Text-to-image is not configured on this server: ${err.message}`;
  }
  if (err.code === "validation_error") return `The prompt or its options were refused: ${err.message}`;
  return `Text-to-image failed: ${err.message}`;
}

/** Show the job's stored picture (once per job): fetched with the key when one is in use. */
async function showPicture(job) {
  if (state.shownPicture === job.job_id || !job.image_url) return;
  state.shownPicture = job.job_id;
  const made = job.source === "prompt";
  const caption = made
    ? `Picture made from the prompt (job ${job.job_id.slice(0, 8)})`
    : `Photo of job ${job.job_id.slice(0, 8)} (stored on the server)`;
  let url = api.imageUrl(job.job_id);
  try {
    if (api.apiKey()) url = URL.createObjectURL((await api.fetchFile(url)).blob);
  } catch (err) {
    showPreview("", `${caption}: it could not be fetched (${err.message})`);
    return;
  }
  if (state.shownPicture === job.job_id) showPreview(url, caption);
}

// ---- shape generators -------------------------------------------------------

const generatorInfo = new Map(); // name → { summary, default, loaded, error, parameters }

/** Offer the service's enabled generators (its default chosen); on failure, its default. */
async function loadGenerators() {
  let answer;
  try {
    answer = await api.generators();
  } catch (err) {
    $("generator-hint").textContent = `The list of generators is unavailable (${err.message}).`;
    return;
  }
  const select = $("generator");
  select.replaceChildren();
  for (const info of answer.generators) {
    generatorInfo.set(info.name, info);
    const option = document.createElement("option");
    option.value = info.name;
    option.textContent = info.name + (info.default ? " (default)" : "")
      + (info.loaded ? "" : " (not loaded)");
    option.selected = info.default;
    select.append(option);
  }
  showGenerator();
}

function showGenerator() {
  const info = generatorInfo.get($("generator").value);
  $("seed-field").hidden = !info?.parameters.includes("seed");
  if (!info) {
    $("generator-hint").textContent = "";
  } else if (info.loaded) {
    $("generator-hint").textContent = info.summary;
  } else {
    const why = info.error || "no worker has loaded it yet";
    $("generator-hint").textContent = `${info.summary}. Not loaded: ${why}`;
  }
}

$("generator").addEventListener("change", showGenerator);

/** The seed field's value: undefined when empty or hidden, or an error in words. */
function chosenSeed() {
  const text = $("seed").value.trim();
  if ($("seed-field").hidden || !text) return { value: undefined };
  const seed = Number(text);
  if (!Number.isInteger(seed) || seed < 0 || seed > 4294967295) {
    return { error: "The seed is a whole number from 0 to 4294967295." };
  }
  return { value: seed };
}

// ---- generate, progress, cancel ---------------------------------------------

$("quality").addEventListener("input", (event) => {
  $("quality-value").textContent = event.target.value;
});

/** The model options of the form: `{ value }`, or `{ error }` in words. */
function modelOptions() {
  const dimensions = validDimensions(["width", "height", "depth"].map((id) => $(id)));
  if (dimensions.error) return { error: dimensions.error };
  const seed = chosenSeed();
  if (seed.error) return { error: seed.error };
  return {
    value: {
      format: $("format").value,
      quality: Number($("quality").value),
      dimensions: dimensions.value,
      generator: $("generator").value || undefined,
      seed: seed.value,
    },
  };
}

$("generate-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (state.busy) return;
  clearMessage();
  const options = modelOptions();
  if (options.error) {
    showMessage(options.error);
    return;
  }
  if (state.photos.length > 1) {
    startBatch(options.value);
    return;
  }
  if (!state.photo && !state.sourceJobId) {
    showMessage("Choose or drop a photo first (or make one from a text prompt).");
    return;
  }
  setBusy(true);
  try {
    if (!state.sourceJobId) {
      $("status-text").textContent = "Uploading the photo…";
      state.sourceJobId = (await api.uploadImage(state.photo, state.views)).job_id;
      state.shownPicture = state.sourceJobId; // the preview shows that photo already
    }
    $("status-text").textContent = "Starting…";
    starting();
    const job = await api.generate3d(state.sourceJobId, options.value);
    jobs.offset = 0;
    follow(job);
  } catch (err) {
    $("status-text").textContent = "Not started.";
    showMessage(`Could not start the generation: ${err.message}`);
    setBusy(false);
  }
});

async function startBatch({ format, quality, dimensions, generator, seed }) {
  setBusy(true);
  const params = { format, quality, dimensions };
  if (generator) params.generator = generator;
  if (seed !== undefined && seed !== null) params.seed = seed;
  $("status-text").textContent = `Sending ${state.photos.length} photos…`;
  try {
    const created = await batch.start(state.photos, params);
    const refused = created.jobs.filter((j) => j.error);
    $("status-text").textContent = `Batch of ${created.jobs.length} started.`;
    if (refused.length) {
      showMessage(`${refused.length} of the photos were not started: `
        + refused.map((j) => `#${j.index + 1}: ${j.error.message}`).join("; "), "warning");
    }
    jobs.offset = 0;
    jobs.load();
  } catch (err) {
    $("status-text").textContent = "Not started.";
    showMessage(`Could not start the batch: ${err.message}`);
    setBusy(false);
  }
}

$("cancel-button").addEventListener("click", async () => {
  const job = state.job;
  if (!job) return;
  $("cancel-button").disabled = true;
  try {
    const answer = await api.cancelJob(job.job_id);
    if (answer && TERMINAL.has(answer.status)) follow({ ...state.job, ...answer });
  } catch (err) {
    if (err.status === 404 && err.code !== "job_not_found") {
      showMessage(`Cancel is not available on this server yet (${err.message}).`);
    } else {
      showMessage(`Could not cancel: ${err.message}`);
    }
    $("cancel-button").disabled = !ACTIVE.has(state.job?.status);
  }
});

/** Show `job` and follow it until it ends. */
function follow(job) {
  state.watcher?.stop();
  state.watcher = null;
  render(job);
  if (TERMINAL.has(job.status)) {
    finished(job);
    return;
  }
  if (!ACTIVE.has(job.status)) {
    setBusy(false);
    return;
  }
  setBusy(true);
  const watcher = watchJob(job.job_id, {
    onUpdate: (update) => render({ ...state.job, ...update }),
    onChannel: (name, why) => {
      const channel = $("channel-text");
      channel.textContent = `Live updates: ${name}`;
      channel.title = why ? `Switched to ${name}: ${why}` : "";
    },
    onTrouble: (trouble) => {
      if (trouble) showMessage(`Lost contact with the job: ${trouble}`);
      else if ($("message").textContent.startsWith("Lost contact")) clearMessage();
    },
  });
  state.watcher = watcher;
  watcher.done.then(async (last) => {
    if (state.watcher !== watcher) return;
    state.watcher = null;
    let final = last;
    try {
      final = await api.jobStatus(job.job_id); // the outputs, as the registry has them
    } catch {
      // keep what the stream said
    }
    if (final) {
      render(final);
      finished(final);
    } else {
      setBusy(false);
    }
  });
}

function finished(job) {
  setBusy(false);
  if (job.source === "prompt" && !job.image_url && job.job_id === state.sourceJobId) {
    showPreview("", `No picture was made for job ${job.job_id.slice(0, 8)}.`);
  }
  if (job.status === "completed" && madePictureOnly(job)) {
    $("make-3d-button").hidden = false;
    showMessage("The picture is ready: press Make 3D for a model of it (with the options below).", "info");
  } else if (job.status === "completed") {
    tools.show(job);
    showModel(job.job_id);
  } else if (job.status === "failed") {
    showMessage(failureText(job));
  } else if (job.status === "cancelled") {
    showMessage("The job was cancelled.", "info");
  }
}

function render(job) {
  const changed = state.job?.job_id !== job.job_id || state.job?.status !== job.status;
  if (state.job?.job_id !== job.job_id) state.variant = null;
  state.job = job;
  if (changed) jobs.load();
  if (job.status !== "completed") tools.hide();
  const done = job.status === "completed";
  const percent = done ? 100 : Math.max(0, Math.min(100, Number(job.progress) || 0));
  $("status-text").textContent = statusText(job);
  $("percent-text").textContent = `${Math.round(percent)} %`;
  $("progress-fill").style.width = `${percent}%`;
  $("progress-bar").setAttribute("aria-valuenow", String(Math.round(percent)));
  $("progress").dataset.status = job.status;
  $("eta-text").textContent = etaText(job);
  const surface = { true: "closed mesh", false: "open mesh" }[String(job.watertight)];
  const about = [job.generator, surface].filter(Boolean).join(", ");
  $("job-label").textContent = `Job ${job.job_id}` + (about ? ` (${about})` : "");
  if (job.job_id === state.sourceJobId && job.image_url) showPicture(job);
  $("cancel-button").disabled = !ACTIVE.has(job.status);
  history.replaceState(null, "", `#job=${job.job_id}`);
  setDownloads(job);
}

/** The download links: the version shown of a completed job, else none. */
function setDownloads(job) {
  const done = job.status === "completed";
  for (const link of document.querySelectorAll(".downloads [data-format]")) {
    if (done) {
      link.href = api.downloadUrl(job.job_id, link.dataset.format, state.variant);
      link.setAttribute("download", "");
      link.removeAttribute("aria-disabled");
    } else {
      link.removeAttribute("href");
      link.setAttribute("aria-disabled", "true");
    }
  }
}

/** A new run is being asked for: the last job's outcome is no longer what the page shows. */
function starting() {
  delete $("progress").dataset.status;
  $("percent-text").textContent = "0 %";
  $("progress-fill").style.width = "0%";
  $("progress-bar").setAttribute("aria-valuenow", "0");
  $("eta-text").textContent = "";
}

function setBusy(busy) {
  state.busy = busy;
  for (const id of ["generate-button", "prompt-button", "prompt-3d-button", "make-3d-button"]) {
    $(id).disabled = busy;
  }
  if (busy) $("make-3d-button").hidden = true;
}

// A link cannot send the API key: with a key, downloads go through fetch.
for (const link of document.querySelectorAll(".downloads [data-format]")) {
  link.addEventListener("click", async (event) => {
    if (!api.apiKey() || !link.hasAttribute("href")) return;
    event.preventDefault();
    try {
      const { blob, filename } = await api.fetchFile(link.getAttribute("href"));
      const url = URL.createObjectURL(blob);
      const save = document.createElement("a");
      save.href = url;
      save.download = filename;
      document.body.append(save);
      save.click();
      save.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
    } catch (err) {
      showMessage(`Could not download the model: ${err.message}`);
    }
  });
}

// ---- the viewer ------------------------------------------------------------

async function showModel(jobId) {
  const placeholder = $("viewer-placeholder");
  placeholder.textContent = "Loading the model…";
  placeholder.hidden = false;
  try {
    if (!state.viewer) {
      const { ModelViewer, webglAvailable } = await import("./viewer.js").catch(() => {
        throw new Error("the three.js files are missing on the server (run `make setup`)");
      });
      if (!webglAvailable()) throw new Error("this browser has WebGL turned off");
      state.viewer = new ModelViewer($("viewer"));
    }
    const variant = state.variant;
    await state.viewer.load(api.downloadUrl(jobId, "glb", variant), api.authHeaders());
    placeholder.hidden = true;
    $("viewer").dataset.loaded = variant ? `${jobId}:${variant}` : jobId;
  } catch (err) {
    placeholder.textContent = "No 3D preview.";
    showMessage(`The model is ready, but it cannot be shown in 3D here: ${err.message}. `
      + "The download buttons still work.", "warning");
  }
}

// ---- jobs opened from the list or the address ----------------------------------

async function openJob(job) {
  clearMessage();
  state.photo = null;
  state.photos = [];
  state.views = {};
  $("views-panel").hidden = true;
  $("generate-button").textContent = "Generate";
  state.sourceJobId = job.job_id;
  state.shownPicture = null;
  $("make-3d-button").hidden = true;
  showPreview("", `Job ${job.job_id.slice(0, 8)} (stored on the server)`);
  try {
    follow(await api.jobStatus(job.job_id));
  } catch (err) {
    showMessage(`Could not open job ${job.job_id.slice(0, 8)}: ${err.message}`);
  }
}

const fromAddress = /^#job=([0-9a-f]{32})$/.exec(location.hash);
if (fromAddress) openJob({ job_id: fromAddress[1] });
jobs.load();
loadGenerators();
