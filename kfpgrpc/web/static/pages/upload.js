// The upload form of a compiled pipeline (YAML, JSON, .tar.gz or .zip): KFP's UploadPipeline
// (POST pipelines/upload?name&description, a new pipeline with its first version) or, given a
// pipeline id, UploadPipelineVersion (POST pipelines/upload_version?pipelineid&name&description).
// The file is the multipart part `uploadfile`, as kfp.Client sends it (kfpgrpc/http/pipelines.py).

import { ApiError, call } from "../api.js";
import { h } from "../util.js";
import { placeViolations } from "./parameters.js";

/** The form: uploadForm({pipelineId, onUploaded(answer)}). Without `pipelineId` it makes a
 * pipeline (answer: Pipeline), with one a version of it (answer: PipelineVersion). Errors are
 * shown in the form: `uploadfile` violations under the file, others under the form. */
export function uploadForm({ pipelineId = "", onUploaded }) {
  const file = h("input", { type: "file", name: "uploadfile", accept: ".yaml,.yml,.json,.tar.gz,.tgz,.zip", required: true });
  const name = h("input", { type: "text", name: "name", placeholder: pipelineId ? "v<N> when empty" : "the file's name when empty" });
  const description = h("input", { type: "text", name: "description", placeholder: "optional" });
  const submit = h("button", { type: "submit" }, pipelineId ? "Upload version" : "Upload pipeline");
  const general = h("p", { class: "form-error", role: "alert", hidden: true });
  const done = h("p", { class: "form-done", hidden: true });
  const form = h("form", { class: "upload-form", "data-testid": pipelineId ? "upload-version" : "upload-pipeline" },
    h("div", { class: "field", "data-field": "uploadfile" }, h("label", {}, "Compiled pipeline", file)),
    h("div", { class: "field", "data-field": "name" }, h("label", {}, pipelineId ? "Version name" : "Pipeline name", name)),
    h("div", { class: "field", "data-field": "description" }, h("label", {}, "Description", description)),
    h("div", { class: "field actions" }, submit),
    general, done);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    general.hidden = done.hidden = true;
    if (!file.files.length) {
      placeViolations(form, new Map([["uploadfile", "choose the compiled pipeline file"]]));
      return;
    }
    const body = new FormData();
    body.append("uploadfile", file.files[0]);
    const query = pipelineId
      ? { pipelineid: pipelineId, name: name.value.trim(), description: description.value.trim() }
      : { name: name.value.trim(), description: description.value.trim() };
    submit.disabled = true;
    try {
      const answer = await call(pipelineId ? "pipelines/upload_version" : "pipelines/upload", { method: "POST", query, body });
      placeViolations(form, new Map());
      form.reset();
      done.textContent = `Uploaded ${answer.display_name || answer.name || ""}.`;
      done.hidden = false;
      onUploaded?.(answer);
    } catch (error) {
      const problems = uploadProblems(error);
      const unplaced = placeViolations(form, problems);
      if (unplaced.length || !problems.length) {
        general.textContent = [error.message, ...unplaced].join("\n");
        general.hidden = false;
      }
    } finally {
      submit.disabled = false;
    }
  });
  return form;
}

/** An upload's field violations as [[form field, text]]: the server names them as a
 * CreatePipeline / CreatePipelineVersion body would, the file's spec under
 * `pipeline_version.pipeline_spec`, the names under `pipeline.` / `pipeline_version.`. */
function uploadProblems(error) {
  if (!(error instanceof ApiError)) return [];
  return error.violations.map((v) => [
    v.field.replace(/^pipeline_version\.pipeline_spec(?=\.|$)/, "uploadfile").replace(/^pipeline(_version)?\./, ""),
    v.description,
  ]);
}
