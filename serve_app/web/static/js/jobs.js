// The recent jobs list: one page of `GET /api/jobs`, newest first, with paging, and a
// thumbnail of each completed job's model.

import { apiKey, fetchFile, listJobs, thumbnailUrl } from "./api.js";
import { element, openButton, statusBadge } from "./dom.js";

const PAGE_SIZE = 8;

export class JobsList {
  /**
   * `root` holds a list (`[data-jobs-list]`), a summary (`[data-jobs-summary]`) and the
   * buttons `[data-jobs-newer]`, `[data-jobs-older]`, `[data-jobs-refresh]`.
   * `onOpen(job)` is called when a job's "Open" button is pressed.
   */
  constructor(root, { onOpen, onError }) {
    this.list = root.querySelector("[data-jobs-list]");
    this.summary = root.querySelector("[data-jobs-summary]");
    this.newer = root.querySelector("[data-jobs-newer]");
    this.older = root.querySelector("[data-jobs-older]");
    this.onOpen = onOpen;
    this.onError = onError;
    this.offset = 0;
    this.total = 0;
    this.blobUrls = [];
    this.newer.addEventListener("click", () => this.load(this.offset - PAGE_SIZE));
    this.older.addEventListener("click", () => this.load(this.offset + PAGE_SIZE));
    root.querySelector("[data-jobs-refresh]").addEventListener("click", () => this.load());
  }

  /** Show the page at `offset` (default: the current one). */
  async load(offset = this.offset) {
    let page;
    try {
      page = await listJobs({ offset: Math.max(0, offset), limit: PAGE_SIZE });
    } catch (err) {
      this.summary.textContent = `Could not load the recent jobs: ${err.message}`;
      this.onError?.(err);
      return;
    }
    if (page.jobs.length === 0 && page.offset > 0 && page.total > 0) {
      return this.load(Math.max(0, page.total - PAGE_SIZE));
    }
    this.offset = page.offset;
    this.total = page.total;
    this.revokeThumbnails();
    this.list.replaceChildren(...page.jobs.map((job) => this.item(job)));
    const first = page.total ? page.offset + 1 : 0;
    const last = page.offset + page.jobs.length;
    this.summary.textContent = page.total ? `${first}–${last} of ${page.total}` : "No jobs yet.";
    this.newer.disabled = page.offset === 0;
    this.older.disabled = last >= page.total;
  }

  item(job) {
    const li = element("li", "job");
    li.dataset.jobId = job.job_id;
    const title = element("span", "job-id", job.job_id.slice(0, 8));
    title.title = job.job_id;
    const origin = job.source === "prompt" ? "prompt" : null;
    const meta = element(
      "span",
      "job-meta",
      [origin, job.generator, job.format && job.format.toUpperCase(), job.quality && `q${job.quality}`, when(job)]
        .filter(Boolean)
        .join(" · "),
    );
    const label = `Open job ${job.job_id.slice(0, 8)} (${job.status})`;
    const open = openButton("small", label, () => this.onOpen(job));
    li.append(thumbnail(job, this), title, statusBadge(job), meta, open);
    return li;
  }

  revokeThumbnails() {
    for (const url of this.blobUrls || []) URL.revokeObjectURL(url);
    this.blobUrls = [];
  }
}

/** The job's thumbnail (a completed job's model), or an empty frame (no model: still
 * running, failed, or a text job that made only its picture). */
function thumbnail(job, list) {
  const img = document.createElement("img");
  img.className = "thumb";
  img.width = 40;
  img.height = 40;
  img.alt = "";
  if (job.status !== "completed" || Object.keys(job.outputs || {}).length === 0) {
    img.dataset.empty = "true";
    return img;
  }
  img.alt = `Model of job ${job.job_id.slice(0, 8)}`;
  img.loading = "lazy";
  img.onerror = () => {
    img.dataset.empty = "true";
    img.removeAttribute("src");
  };
  if (!apiKey()) {
    img.src = thumbnailUrl(job.job_id);
    return img;
  }
  // An image element cannot send the key: fetch it, then show the bytes.
  fetchFile(thumbnailUrl(job.job_id))
    .then(({ blob }) => {
      const url = URL.createObjectURL(blob);
      list.blobUrls.push(url);
      img.src = url;
    })
    .catch(() => {
      img.dataset.empty = "true";
    });
  return img;
}

function when(job) {
  const time = new Date(job.updated_at || job.created_at);
  if (Number.isNaN(time.getTime())) return "";
  return time.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}
