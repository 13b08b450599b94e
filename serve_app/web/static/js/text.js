// Words for the page: job statuses, stages, time left, and checks of the size fields.

const STAGES = {
  text_to_image: "Making the picture",
  background_removal: "Removing the background",
  shape_generation: "Building the shape",
  texture_synthesis: "Painting the texture",
  export: "Writing the file",
};
const MAX_MM = 10000;

export function stageLabel(stage) {
  if (!stage) return "Working";
  return STAGES[stage] || stage.replaceAll("_", " ");
}

export function statusText(job) {
  switch (job.status) {
    case "uploaded":
      return "Photo uploaded: press Generate.";
    case "queued":
      return queueText(job.queue_position);
    case "running":
      return `${stageLabel(job.stage)}…`;
    case "completed":
      if (madePictureOnly(job)) return job.cached ? "Picture ready (from the cache)." : "Picture ready.";
      return job.cached ? "Done (from the cache)." : "Done.";
    case "failed":
      return "Failed.";
    case "cancelled":
      return "Cancelled.";
    default:
      return job.status || "";
  }
}

/** A queued run's place in words: "Queued, 3 ahead." for position 4 (1 is next to start). */
export function queueText(position) {
  if (!Number.isInteger(position) || position < 1) return "Queued: waiting for a worker…";
  const ahead = position - 1;
  return ahead === 0 ? "Queued, next to start." : `Queued, ${ahead} ahead.`;
}

/** A job's badge in the list: its status, a running job's percent, a queued one's place. */
export function badgeText(job) {
  if (job.status === "running") return `running ${Math.round(job.progress)} %`;
  if (job.status === "queued" && Number.isInteger(job.queue_position) && job.queue_position > 0) {
    const ahead = job.queue_position - 1;
    return ahead === 0 ? "queued, next" : `queued, ${ahead} ahead`;
  }
  return job.status;
}

/** A completed job whose run made a picture from a prompt and no model. */
export function madePictureOnly(job) {
  return Boolean(job.text_to_image?.made) && Object.keys(job.outputs || {}).length === 0;
}

/** Why a job failed, in words: where (its stage), what (its code) and the server's message. */
export function failureText(job) {
  const error = job.error || {};
  const where = error.stage ? ` while ${lowerFirst(stageLabel(error.stage))}` : "";
  const code = error.code ? ` (${error.code})` : "";
  return `Generation failed${where}${code}: ${error.message || "no reason was given"}`;
}

function lowerFirst(text) {
  return text.charAt(0).toLowerCase() + text.slice(1);
}

export function seconds(value) {
  if (value < 1) return "less than a second";
  if (value < 90) return `${Math.round(value)} s`;
  return `${Math.round(value / 60)} min`;
}

export function etaText(job) {
  if (job.status === "queued" && job.eta_seconds != null) {
    // The service's estimate counts the runs ahead of this one and what the running ones have left.
    return `About ${seconds(job.eta_seconds)} left, the wait included`;
  }
  if (job.status === "running") {
    return job.eta_seconds == null ? "Estimating the time left…" : `About ${seconds(job.eta_seconds)} left`;
  }
  if (job.status === "completed" && job.started_at && job.finished_at) {
    const took = (Date.parse(job.finished_at) - Date.parse(job.started_at)) / 1000;
    if (Number.isFinite(took)) return `Took ${seconds(took)}`;
  }
  return "";
}

/**
 * Read the width, height and depth inputs: `{ value: {width, height, depth} }` with null
 * for empty fields, or `{ error }` in words.
 */
export function validDimensions(inputs) {
  const value = {};
  for (const input of inputs) {
    const text = input.value.trim();
    if (text === "" && !input.validity.badInput) {
      value[input.name] = null;
      continue;
    }
    const number = Number(text);
    if (!Number.isFinite(number) || number <= 0 || number > MAX_MM) {
      input.focus();
      return { error: `${capital(input.name)} must be a number of millimetres above 0 and at most ${MAX_MM}.` };
    }
    value[input.name] = number;
  }
  return { value };
}

function capital(word) {
  return word.charAt(0).toUpperCase() + word.slice(1);
}
