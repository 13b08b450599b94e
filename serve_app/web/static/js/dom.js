// DOM builders the job and batch lists share: an element, a job's status badge, its "Open" button.

import { badgeText } from "./text.js";

/** A `tag` element of class `className` showing `text`. */
export function element(tag, className, text = "") {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = text;
  return node;
}

/** A job's status as a badge; a running job's shows its progress, a queued one its place. */
export function statusBadge(job) {
  return element("span", `badge badge-${job.status}`, badgeText(job));
}

/** An "Open" button of class `className`, read out as `label`, calling `onClick`. */
export function openButton(className, label, onClick) {
  const open = element("button", className, "Open");
  open.type = "button";
  open.setAttribute("aria-label", label);
  open.addEventListener("click", onClick);
  return open;
}
