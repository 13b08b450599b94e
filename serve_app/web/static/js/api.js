// The HTTP API of ORFEAS Serve, as small async functions that throw ApiError with words.
//
// Addresses are relative to the page's base (the application's route prefix). When the
// service asks for API keys, the key the user gave is kept in sessionStorage (this tab
// only) and sent as `Authorization: Bearer` on every request; browsers cannot give a
// WebSocket headers, so `socketProtocols` offers it as a subprotocol token instead (not in
// the URL, where proxy logs would record it).

const KEY_STORAGE = "orfeas.apiKey";
let unauthorizedHandler = null;

/** The API key in use, or null. */
export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORAGE) || null;
  } catch {
    return null; // storage turned off: no key is kept
  }
}

export function setApiKey(key) {
  sessionStorage.setItem(KEY_STORAGE, key);
}

export function forgetApiKey() {
  try {
    sessionStorage.removeItem(KEY_STORAGE);
  } catch {
    // nothing was kept
  }
}

/** Headers that carry `key` (default: the key in use). */
export function authHeaders(key = apiKey()) {
  return key ? { Authorization: `Bearer ${key}` } : {};
}

/** `handler(error)` runs on every 401; `error.keySent` says whether a key went with it. */
export function onUnauthorized(handler) {
  unauthorizedHandler = handler;
}

/** An API or network failure: `code` is the server's error code (or a local one). */
export class ApiError extends Error {
  constructor(message, { code = "error", status = 0, details = {} } = {}) {
    super(message);
    this.name = "ApiError";
    this.code = code;
    this.status = status;
    this.details = details;
  }
}

/** Fetch `path` and return its JSON body; any non-2xx answer becomes an ApiError. */
export async function request(
  path,
  { method = "GET", json, body, signal, key = apiKey(), notify = true } = {},
) {
  const init = { method, signal, headers: { Accept: "application/json", ...authHeaders(key) } };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError(`could not reach the server (${err.message})`, { code: "network_error" });
  }
  if (response.status === 401) throw unauthorized(response, key, notify);
  if (!response.ok) throw await errorFrom(response);
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("application/json")) return response.json();
  return response;
}

/** The error for a 401, in words that say what to do; the handler hears of it first. */
function unauthorized(response, key, notify = true) {
  const error = key
    ? new ApiError("the API key was not accepted by the server", { code: "key_rejected", status: 401 })
    : new ApiError("this server needs an API key", { code: "key_required", status: 401 });
  error.keySent = Boolean(key);
  response.body?.cancel();
  if (notify) unauthorizedHandler?.(error);
  return error;
}

/** Whether the server accepts `key`: true, false (401), or an ApiError for anything else. */
export async function checkKey(key) {
  try {
    await request("api/jobs?limit=1", { key, notify: false });
    return true;
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) return false;
    throw err;
  }
}

/** Turn an error response into an ApiError, reading `{"error": {"code", "message"}}`. */
export async function errorFrom(response) {
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    // not JSON: fall back to the status line
  }
  const error = payload && typeof payload.error === "object" ? payload.error : null;
  if (error && error.message) {
    const { code, message, ...details } = error;
    return new ApiError(message, { code: code || "error", status: response.status, details });
  }
  const text = response.statusText || "error";
  return new ApiError(`the server answered ${response.status} ${text}`, {
    code: `http_${response.status}`,
    status: response.status,
  });
}

/** `POST /api/upload-image`: the photo (the front) and photos from other views by name. */
export function uploadImage(file, views = {}) {
  const form = new FormData();
  form.append("image", file, file.name || "photo.png");
  for (const [view, photo] of Object.entries(views)) form.append(view, photo, photo.name || `${view}.png`);
  return request("api/upload-image", { method: "POST", body: form });
}

/** `POST /api/generate-3d`; `generator` and `seed` are left out when not given. */
export function generate3d(jobId, { format, quality, dimensions, generator, seed }) {
  const json = { job_id: jobId, format, quality, dimensions };
  if (generator) json.generator = generator;
  if (seed !== undefined && seed !== null) json.seed = seed;
  return request("api/generate-3d", { method: "POST", json });
}

/** `GET /api/generators`: the enabled shape generators, the default, which are loaded. */
export function generators() {
  return request("api/generators");
}

export function jobStatus(jobId, { signal } = {}) {
  return request(`api/job-status/${jobId}`, { signal });
}

export function cancelJob(jobId) {
  return request(`api/jobs/${jobId}/cancel`, { method: "POST" });
}

export function listJobs({ offset = 0, limit = 8 } = {}) {
  return request(`api/jobs?offset=${offset}&limit=${limit}`);
}

/**
 * `POST /api/text-to-image`: a job that makes the picture of `prompt`, and with `model`
 * (generate-3d's options) goes on to a model of it. `generator` and `seed` are left out
 * when not given.
 */
export function textToImage(prompt, model) {
  const json = { prompt };
  if (model) {
    const { format, quality, dimensions, generator, seed } = model;
    json.generate_3d = { format, quality, dimensions };
    if (generator) json.generate_3d.generator = generator;
    if (seed !== undefined && seed !== null) json.generate_3d.seed = seed;
  }
  return request("api/text-to-image", { method: "POST", json });
}

/** Where the job's model (or its variant `variant`) is downloaded as `format`. */
export function downloadUrl(jobId, format, variant = null) {
  return variant ? `download/${jobId}/${format}?variant=${variant}` : `download/${jobId}/${format}`;
}

// ---- mesh tools --------------------------------------------------------------

/** `GET /api/materials`: the presets. */
export function materials() {
  return request("api/materials");
}

/** `POST /api/analyze-stl` for a job's model (or its variant). */
export function analyzeJob(jobId, variant = null) {
  return request("api/analyze-stl", { method: "POST", json: withVariant({ job_id: jobId }, variant) });
}

/** `POST /api/optimize-mesh`: a variant with at most `targetFaces` faces. */
export function optimizeMesh(jobId, variant, targetFaces, repair = true) {
  const json = withVariant({ job_id: jobId, target_faces: targetFaces, repair }, variant);
  return request("api/optimize-mesh", { method: "POST", json });
}

/** `POST /api/apply-material`: `material` is a preset name or `{base_color, metallic, roughness}`. */
export function applyMaterial(jobId, variant, material) {
  const json = withVariant({ job_id: jobId, material }, variant);
  return request("api/apply-material", { method: "POST", json });
}

/** `POST /api/preview-3d`: the picture as a Blob. */
export async function preview3d(jobId, variant, view) {
  const response = await request("api/preview-3d", {
    method: "POST",
    json: withVariant({ job_id: jobId, ...view }, variant),
  });
  return response.blob();
}

/** The address of a completed job's thumbnail (a link needs the key: see `fetchFile`). */
export function thumbnailUrl(jobId) {
  return `api/jobs/${jobId}/thumbnail`;
}

function withVariant(body, variant) {
  return variant ? { ...body, variant } : body;
}

// ---- batches -------------------------------------------------------------------

/** `POST /api/batch-generate` with several photos and one set of options. */
export function batchGenerate(files, params) {
  const form = new FormData();
  for (const file of files) form.append("images", file, file.name || "photo.png");
  form.append("params", JSON.stringify(params));
  return request("api/batch-generate", { method: "POST", body: form });
}

export function batchStatus(batchId) {
  return request(`api/batches/${batchId}`);
}

/** The job's picture: its upload, or the one made from its prompt. */
export function imageUrl(jobId) {
  return `api/jobs/${jobId}/image`;
}

/** The job's live-events WebSocket address (no key in it). */
export function socketUrl(jobId) {
  const url = new URL(`ws/jobs/${jobId}`, document.baseURI);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

/** The WebSocket subprotocols to offer: the service's own, and the API key as a token
 * (`orfeas.key.` + the key in base64url); the server answers with `orfeas.v1`. */
export function socketProtocols() {
  const key = apiKey();
  if (!key) return ["orfeas.v1"];
  const bytes = new TextEncoder().encode(key);
  const base64 = btoa(String.fromCharCode(...bytes));
  const token = base64.replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return ["orfeas.v1", `orfeas.key.${token}`];
}

/** Fetch a file the server keeps (with the API key): `{ blob, filename }`. */
export async function fetchFile(path) {
  let response;
  try {
    response = await fetch(path, { headers: authHeaders() });
  } catch (err) {
    throw new ApiError(`could not reach the server (${err.message})`, { code: "network_error" });
  }
  if (response.status === 401) throw unauthorized(response, apiKey());
  if (!response.ok) throw await errorFrom(response);
  const disposition = response.headers.get("Content-Disposition") || "";
  const named = /filename="?([^";]+)"?/.exec(disposition);
  const filename = named ? named[1] : path.split("/").filter(Boolean).pop();
  return { blob: await response.blob(), filename };
}
