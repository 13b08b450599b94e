// Mesh tools for a completed job: its analysis as a table, lighter versions (optimize),
// other finishes (materials) and rendered previews. Each new version is a variant of the
// job, chosen in the "Version" list; the page's viewer and downloads follow the choice.

import * as api from "./api.js";

const $ = (id) => document.getElementById(id);
const MIN_FACES = 100;
const MAX_FACES = 1000000;

/** A variant in words, for the version list. */
export function variantLabel(variant) {
  const p = variant.params || {};
  const closed = variant.watertight === false ? ", open" : "";
  if (variant.operation === "optimize") {
    return `Optimized: ${variant.faces.toLocaleString("en")} faces${closed}`;
  }
  const finish = p.name && p.name !== "custom" ? p.name.replaceAll("_", " ") : p.base_color || "custom";
  return `Material: ${finish} (${variant.faces.toLocaleString("en")} faces)`;
}

/** The rows of the analysis table: [label, value] in words. */
export function analysisRows(a) {
  const box = a.bounding_box_mm;
  const mm = (x) => Number(x).toLocaleString("en", { maximumFractionDigits: 1 });
  const yes = (x) => (x ? "yes" : "no");
  return [
    ["Triangles", a.triangles.toLocaleString("en")],
    ["Vertices", a.vertices.toLocaleString("en")],
    ["Size (mm)", `${mm(box.x)} × ${mm(box.y)} × ${mm(box.z)}`],
    ["Volume (mm³)", a.volume_mm3 === null ? "— (not closed)" : mm(a.volume_mm3)],
    ["Surface (mm²)", mm(a.surface_area_mm2)],
    ["Closed", yes(a.watertight)],
    ["Consistent winding", yes(a.winding_consistent)],
    ["Pieces", String(a.components)],
    ["Printable", yes(a.printable)],
    ["Issues", a.issues.length ? a.issues.map((i) => i.message).join("; ") : "none"],
  ];
}

export class MeshTools {
  /** `onVersion(variantId | null)` when another version is chosen; `onError(text)`. */
  constructor({ onVersion, onError }) {
    this.root = $("tools");
    this.onVersion = onVersion;
    this.onError = onError;
    this.job = null;
    this.variant = null;
    this.materialsLoaded = false;
    this.previewUrl = null;
    $("version").addEventListener("change", () => this.choose($("version").value || null));
    $("analyze-button").addEventListener("click", () => this.analyze());
    $("optimize-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.optimize();
    });
    $("material").addEventListener("change", () => this.showCustom());
    $("material-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.applyMaterial();
    });
    $("preview-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.preview();
    });
  }

  /** Offer the tools for `job` (completed), keeping the version chosen if it is the same job. */
  show(job) {
    const same = this.job?.job_id === job.job_id;
    this.job = job;
    if (!same) {
      this.variant = null;
      this.clearResults();
    }
    this.fillVersions(job.variants || []);
    this.root.hidden = false;
    if (!this.materialsLoaded) this.loadMaterials();
  }

  hide() {
    this.root.hidden = true;
    this.job = null;
    this.variant = null;
    this.clearResults();
  }

  fillVersions(variants) {
    const select = $("version");
    const model = new Option("The model", "");
    const options = variants.map((v) => new Option(variantLabel(v), v.variant_id));
    select.replaceChildren(model, ...options);
    select.value = this.variant || "";
    $("version-hint").textContent = variants.length ? `${variants.length} made` : "";
  }

  choose(variant) {
    this.variant = variant;
    $("version").value = variant || "";
    this.clearResults();
    this.onVersion(variant);
  }

  clearResults() {
    $("analysis").hidden = true;
    $("analysis").tBodies[0].replaceChildren();
    $("preview-image").hidden = true;
    if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
    this.previewUrl = null;
    $("tools-message").textContent = "";
  }

  async loadMaterials() {
    try {
      const { presets } = await api.materials();
      const select = $("material");
      const custom = select.querySelector("option[value='custom']");
      for (const preset of presets) {
        const option = new Option(preset.name.replaceAll("_", " "), preset.name);
        option.title = preset.description || "";
        select.insertBefore(option, custom);
      }
      select.value = presets.length ? presets[0].name : "custom";
      this.materialsLoaded = true;
    } catch (err) {
      this.onError(`The material presets are unavailable: ${err.message}`);
    }
    this.showCustom();
  }

  showCustom() {
    $("custom-material").hidden = $("material").value !== "custom";
  }

  async run(button, what, work) {
    if (!this.job) return;
    button.disabled = true;
    $("tools-message").textContent = `${what}…`;
    try {
      await work();
    } catch (err) {
      $("tools-message").textContent = "";
      this.onError(`${what} failed: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  }

  analyze() {
    return this.run($("analyze-button"), "Analysing", async () => {
      const analysis = await api.analyzeJob(this.job.job_id, this.variant);
      const body = $("analysis").tBodies[0];
      body.replaceChildren(
        ...analysisRows(analysis).map(([label, value]) => {
          const row = document.createElement("tr");
          const th = document.createElement("th");
          th.scope = "row";
          th.textContent = label;
          const td = document.createElement("td");
          td.textContent = value;
          row.append(th, td);
          return row;
        }),
      );
      $("analysis").dataset.printable = String(analysis.printable);
      $("analysis").hidden = false;
      $("tools-message").textContent = "";
    });
  }

  optimize() {
    const faces = Number($("target-faces").value);
    if (!Number.isInteger(faces) || faces < MIN_FACES || faces > MAX_FACES) {
      this.onError(`The target is a whole number of faces from ${MIN_FACES} to ${MAX_FACES}.`);
      return;
    }
    return this.run($("optimize-button"), "Optimizing", async () => {
      const made = await api.optimizeMesh(this.job.job_id, this.variant, faces, $("repair").checked);
      this.added(made);
    });
  }

  applyMaterial() {
    const name = $("material").value;
    const material = name === "custom"
      ? {
          base_color: $("base-color").value,
          metallic: Number($("metallic").value),
          roughness: Number($("roughness").value),
        }
      : name;
    return this.run($("material-button"), "Applying the material", async () => {
      const made = await api.applyMaterial(this.job.job_id, this.variant, material);
      this.added(made);
    });
  }

  preview() {
    const view = {
      width: 384,
      height: 288,
      azimuth_deg: Number($("azimuth").value) || 0,
      elevation_deg: Math.max(-90, Math.min(90, Number($("elevation").value) || 0)),
      background: "#ffffff",
    };
    return this.run($("preview-button"), "Rendering", async () => {
      const blob = await api.preview3d(this.job.job_id, this.variant, view);
      if (this.previewUrl) URL.revokeObjectURL(this.previewUrl);
      this.previewUrl = URL.createObjectURL(blob);
      const img = $("preview-image");
      img.src = this.previewUrl;
      img.hidden = false;
      $("tools-message").textContent = "";
    });
  }

  /** A variant was made (or found): list it and make it the version shown. */
  added(made) {
    const variants = this.job.variants ? [...this.job.variants] : [];
    if (!variants.some((v) => v.variant_id === made.variant_id)) variants.push(made);
    this.job = { ...this.job, variants };
    this.fillVersions(variants);
    this.choose(made.variant_id);
    const closed = made.watertight ? "closed" : "not closed";
    $("tools-message").textContent = `Made: ${variantLabel(made)}, ${closed}.`;
  }
}
