// Live job progress: a WebSocket first, then Server-Sent Events, then polling job-status.
//
// Each channel delivers job objects shaped like `GET /api/job-status/{id}` (a message may
// also carry only the changed fields, or wrap the job in `job` or `data`). A channel that
// cannot open, or ends before the job does, hands over to the next one; polling goes on
// until the job ends.

import { ApiError, apiKey, jobStatus, socketProtocols, socketUrl } from "./api.js";

export const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const OPEN_TIMEOUT_MS = 4000;
const POLL_MS = 700;
const POLL_MAX_BACKOFF_MS = 8000;

/**
 * Watch `jobId` until it ends. `onUpdate(job)` gets every state; `onChannel(name, why)`
 * says which channel carries the updates; `onTrouble(message | null)` reports (and
 * clears) connection problems while polling retries. Returns `{ done, stop }`; `done`
 * resolves with the final job, or with null when stopped.
 */
export function watchJob(jobId, { onUpdate, onChannel = () => {}, onTrouble = () => {} }) {
  const channels = [
    ["WebSocket", viaWebSocket],
    ["Server-Sent Events", viaEventSource],
    ["polling", viaPolling],
  ];
  let stopped = false;
  let latest = {};
  let close = () => {};
  let resolveDone;
  const done = new Promise((resolve) => (resolveDone = resolve));

  const finish = (job) => {
    if (stopped) return;
    stopped = true;
    close();
    resolveDone(job);
  };
  const update = (event) => {
    if (stopped) return;
    latest = { ...latest, ...event };
    onUpdate(latest);
    if (TERMINAL.has(latest.status)) finish(latest);
  };
  const next = (why) => {
    if (stopped) return;
    close();
    const [name, open] = channels.shift();
    onChannel(name, why);
    close = open(jobId, { update, fail: next, trouble: onTrouble, finish });
  };

  next(null);
  return {
    done,
    stop() {
      if (stopped) return;
      stopped = true;
      close();
      resolveDone(null);
    },
  };
}

/** A job (or part of one) from a WebSocket or SSE message, or null for anything else. */
export function parseEvent(text) {
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    return null;
  }
  if (!data || typeof data !== "object") return null;
  for (const key of ["job", "data", "payload"]) {
    if (data[key] && typeof data[key] === "object" && !Array.isArray(data[key])) {
      data = data[key];
      break;
    }
  }
  const known = ["status", "stage", "progress", "eta_seconds"];
  return known.some((key) => key in data) ? data : null;
}

function viaWebSocket(jobId, { update, fail }) {
  if (!("WebSocket" in window)) {
    queueMicrotask(() => fail("this browser has no WebSocket"));
    return () => {};
  }
  let socket;
  try {
    socket = new WebSocket(socketUrl(jobId), socketProtocols());
  } catch (err) {
    queueMicrotask(() => fail(`WebSocket refused: ${err.message}`));
    return () => {};
  }
  let opened = false;
  let ended = false;
  const timer = setTimeout(() => end("the WebSocket did not open in time"), OPEN_TIMEOUT_MS);
  const end = (why) => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    socket.onclose = socket.onerror = socket.onmessage = null;
    socket.close();
    fail(why);
  };
  socket.onopen = () => {
    opened = true;
    clearTimeout(timer);
  };
  socket.onmessage = (message) => {
    const job = parseEvent(message.data);
    if (job) update(job);
  };
  socket.onerror = () => end(opened ? "the WebSocket broke" : "no WebSocket at this server");
  socket.onclose = () => end(opened ? "the WebSocket closed early" : "no WebSocket at this server");
  return () => {
    ended = true;
    clearTimeout(timer);
    socket.onclose = socket.onerror = socket.onmessage = null;
    socket.close();
  };
}

function viaEventSource(jobId, { update, fail }) {
  if (!("EventSource" in window)) {
    queueMicrotask(() => fail("this browser has no EventSource"));
    return () => {};
  }
  if (apiKey()) {
    // An EventSource cannot send headers, so it cannot carry the key.
    queueMicrotask(() => fail("an event stream cannot carry the API key"));
    return () => {};
  }
  const source = new EventSource(`api/jobs/${jobId}/events`);
  let opened = false;
  let ended = false;
  const timer = setTimeout(() => end("the event stream did not open in time"), OPEN_TIMEOUT_MS);
  const end = (why) => {
    if (ended) return;
    ended = true;
    clearTimeout(timer);
    source.close();
    fail(why);
  };
  const onMessage = (message) => {
    const job = parseEvent(message.data);
    if (job) update(job);
  };
  for (const name of ["message", "status", "progress", "job", "update", "end"]) {
    source.addEventListener(name, onMessage);
  }
  source.onopen = () => {
    opened = true;
    clearTimeout(timer);
  };
  // EventSource would reconnect on its own; polling is the steadier fallback.
  source.onerror = () => end(opened ? "the event stream broke" : "no event stream at this server");
  return () => {
    ended = true;
    clearTimeout(timer);
    source.close();
  };
}

function viaPolling(jobId, { update, trouble, finish }) {
  let timer = null;
  let ended = false;
  let delay = POLL_MS;
  const controller = new AbortController();
  const poll = async () => {
    try {
      const job = await jobStatus(jobId, { signal: controller.signal });
      if (ended) return;
      delay = POLL_MS;
      trouble(null);
      update(job);
    } catch (err) {
      if (ended || err.name === "AbortError") return;
      if (err instanceof ApiError && err.status === 404) {
        trouble(err.message);
        finish(null);
        return;
      }
      delay = Math.min(delay * 2, POLL_MAX_BACKOFF_MS);
      trouble(`${err.message}; trying again in ${Math.round(delay / 1000)} s`);
    }
    if (!ended) timer = setTimeout(poll, delay);
  };
  poll();
  return () => {
    ended = true;
    clearTimeout(timer);
    controller.abort();
  };
}
