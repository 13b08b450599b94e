// The HTTP API of ORFEAS Serve, as small async functions that throw ApiError with words.

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
export async function request(path, { method = "GET", json, body, signal } = {}) {
  const init = { method, signal, headers: { Accept: "application/json" } };
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
  if (!response.ok) throw await errorFrom(response);
  const type = response.headers.get("Content-Type") || "";
  if (type.includes("application/json")) return response.json();
  return response;
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

export function uploadImage(file) {
  const form = new FormData();
  form.append("image", file, file.name || "photo.png");
  return request("/api/upload-image", { method: "POST", body: form });
}

/** `POST /api/generate-3d`; `generator` and `seed` are left out when not given. */
export function generate3d(jobId, { format, quality, dimensions, generator, seed }) {
  const json = { job_id: jobId, format, quality, dimensions };
  if (generator) json.generator = generator;
  if (seed !== undefined && seed !== null) json.seed = seed;
  return request("/api/generate-3d", { method: "POST", json });
}

/** `GET /api/generators`: the enabled shape generators, the default, which are loaded. */
export function generators() {
  return request("/api/generators");
}

export function jobStatus(jobId, { signal } = {}) {
  return request(`/api/job-status/${jobId}`, { signal });
}

export function cancelJob(jobId) {
  return request(`/api/jobs/${jobId}/cancel`, { method: "POST" });
}

export function listJobs({ offset = 0, limit = 8 } = {}) {
  return request(`/api/jobs?offset=${offset}&limit=${limit}`);
}

/** `POST /api/text-to-image`: JSON (a job) or an image body, returned as-is. */
export function textToImage(prompt) {
  return request("/api/text-to-image", { method: "POST", json: { prompt } });
}

export function downloadUrl(jobId, format) {
  return `/download/${jobId}/${format}`;
}
