// A batch of photos: one request for all, then its jobs followed together until they end.

import * as api from "./api.js";
import { element, openButton, statusBadge } from "./dom.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;

export class BatchView {
  /** `onOpen(jobId)` opens one of its jobs; `onEnd(batch)` when none is queued or running. */
  constructor({ onOpen, onEnd, onError }) {
    this.root = $("batch");
    this.onOpen = onOpen;
    this.onEnd = onEnd;
    this.onError = onError;
    this.timer = null;
    this.batchId = null;
  }

  /** Send `files` with `params`; follow the batch the service made. */
  async start(files, params) {
    this.stop();
    this.root.hidden = false;
    $("batch-summary").textContent = `Sending ${files.length} photos…`;
    const created = await api.batchGenerate(files, params);
    this.batchId = created.batch_id;
    this.root.dataset.batchId = created.batch_id;
    this.show({ status: "running", progress: 0, counts: {}, jobs: created.jobs });
    this.poll();
    return created;
  }

  stop() {
    clearTimeout(this.timer);
    this.timer = null;
    this.batchId = null;
  }

  async poll() {
    const batchId = this.batchId;
    if (!batchId) return;
    let batch;
    try {
      batch = await api.batchStatus(batchId);
    } catch (err) {
      if (this.batchId !== batchId) return;
      $("batch-summary").textContent = `Lost contact with the batch: ${err.message}; retrying`;
      this.timer = setTimeout(() => this.poll(), POLL_MS * 3);
      return;
    }
    if (this.batchId !== batchId) return;
    this.show(batch);
    if (batch.status === "running") {
      this.timer = setTimeout(() => this.poll(), POLL_MS);
    } else {
      this.root.dataset.status = batch.status;
      this.onEnd?.(batch);
    }
  }

  show(batch) {
    const counts = Object.entries(batch.counts || {})
      .map(([status, n]) => `${n} ${status}`)
      .join(", ");
    const percent = Math.round(Number(batch.progress) || 0);
    $("batch-summary").textContent = `${batch.status}, ${percent} %` + (counts ? ` (${counts})` : "");
    this.root.dataset.status = batch.status;
    $("batch-list").replaceChildren(...batch.jobs.map((job) => this.item(job)));
  }

  item(job) {
    const li = element("li", "batch-job");
    li.dataset.status = job.status;
    const name = element("span", "job-id", `#${job.index + 1} ${job.job_id ? job.job_id.slice(0, 8) : ""}`);
    li.append(name, statusBadge(job));
    if (job.error && job.status !== "completed") li.append(element("span", "job-meta", job.error.message));
    if (job.job_id) {
      const label = `Open job ${job.job_id.slice(0, 8)} of the batch`;
      li.append(openButton("small secondary", label, () => this.onOpen(job.job_id)));
    }
    return li;
  }
}
