#!/usr/bin/env node
'use strict';
// Runs a pipeline on a kfpgrpc server and follows it with WatchRun, printing each change of
// the run's state and of its tasks' states. Exit code: 0 when the run SUCCEEDED, 1 when it
// ended otherwise or a call failed, 2 for bad arguments.

const { parseArgs } = require('node:util');
const path = require('node:path');
const kfpgrpc = require('./kfpgrpc');

const USAGE = `usage: run-and-watch.js PIPELINE.yaml [NAME=VALUE ...]
       run-and-watch.js --pipeline-id ID [NAME=VALUE ...]

Uploads PIPELINE.yaml (compiled by the kfp SDK) as a new version of its pipeline, or takes the
latest version of pipeline ID, runs it with the given parameters (a VALUE is read as JSON when
it parses, e.g. 10 or true, else as a string) and watches the run to its end.
The server is KFPGRPC_SERVER (default ${kfpgrpc.DEFAULT_SERVER}).`;

function parseParameters(pairs) {
  return Object.fromEntries(
    pairs.map((pair) => {
      const at = pair.indexOf('=');
      if (at < 1) throw new Error(`not NAME=VALUE: ${pair}`);
      const text = pair.slice(at + 1);
      try {
        return [pair.slice(0, at), JSON.parse(text)];
      } catch {
        return [pair.slice(0, at), text];
      }
    }),
  );
}

function parseCommandLine() {
  const { values, positionals } = parseArgs({
    options: { 'pipeline-id': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    allowPositionals: true,
  });
  if (values.help) return null;
  const pipelineId = values['pipeline-id'];
  const [yamlPath, ...pairs] = pipelineId ? [undefined, ...positionals] : positionals;
  if (!pipelineId && !yamlPath) throw new Error('give a pipeline YAML file or --pipeline-id');
  return { pipelineId, yamlPath, parameters: parseParameters(pairs) };
}

/** The lines that say what changed from the `previous` snapshot (undefined at first) to `run`. */
function changes(previous, run) {
  const lines = [];
  if (run.state !== previous?.state) lines.push(`run ${run.state}`);
  const before = new Map((previous?.run_details?.task_details ?? []).map((task) => [task.task_id, task.state]));
  for (const task of run.run_details?.task_details ?? []) {
    if (task.state !== before.get(task.task_id)) lines.push(`  task ${task.task_id} ${task.state}`);
  }
  return lines;
}

/** What a finished run produced or why it failed. */
function outcome(run) {
  if (run.state !== 'SUCCEEDED') return [`error: ${run.error?.message || run.state}`];
  return run.run_details.task_details.map((task) => `${task.task_id} outputs: ${JSON.stringify(kfpgrpc.fromValues(task.output_parameters))}`);
}

async function runAndWatch(clients, { pipelineId, yamlPath, parameters }) {
  let reference = { pipeline_id: pipelineId };
  if (yamlPath) {
    const version = await kfpgrpc.uploadPipeline(clients, yamlPath);
    console.log(`uploaded ${yamlPath} as version ${version.name} of pipeline ${version.pipeline_id}`);
    reference = { pipeline_id: version.pipeline_id, pipeline_version_id: version.pipeline_version_id };
  }
  const created = await kfpgrpc.createRun(clients, reference, parameters, `run-and-watch ${path.basename(yamlPath ?? pipelineId)}`);
  console.log(`created run ${created.run_id}`);
  let last;
  for await (const run of kfpgrpc.watchRun(clients, created.run_id)) {
    changes(last, run).forEach((line) => console.log(line));
    last = run;
  }
  outcome(last).forEach((line) => console.log(line));
  return last.state === 'SUCCEEDED' ? 0 : 1;
}

async function main() {
  let request;
  try {
    request = parseCommandLine();
  } catch (error) {
    console.error(`${error.message}\n\n${USAGE}`);
    return 2;
  }
  if (!request) {
    console.log(USAGE);
    return 0;
  }
  const clients = kfpgrpc.connect();
  try {
    return await runAndWatch(clients, request);
  } catch (error) {
    // A grpc error's message is "<code> <CODE NAME>: <details>".
    console.error(`error: ${error.message}`);
    return 1;
  } finally {
    clients.close();
  }
}

main().then((code) => {
  process.exitCode = code;
});
