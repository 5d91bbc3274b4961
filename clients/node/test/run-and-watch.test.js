'use strict';
// Against the live server named by KFPGRPC_SERVER: the divide pipeline (compiled from
// clients/divide_pipeline.py into divide.yaml) run through the library and through the CLI.

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const kfpgrpc = require('../kfpgrpc');

const PIPELINE_YAML = path.join(__dirname, 'divide.yaml');
const CLI = path.join(__dirname, '..', 'run-and-watch.js');
const STATE_ORDER = ['PENDING', 'RUNNING', 'SUCCEEDED'];

let clients;
before(() => {
  clients = kfpgrpc.connect();
});
after(() => clients.close());

/** The CLI's exit code and output, run to its end. */
function runCli(...args) {
  const { status, stdout, stderr } = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { status, output: stdout + stderr };
}

test('WatchRun streams snapshots of the run until it SUCCEEDED', async () => {
  const version = await kfpgrpc.uploadPipeline(clients, PIPELINE_YAML);
  const reference = { pipeline_id: version.pipeline_id, pipeline_version_id: version.pipeline_version_id };
  const created = await kfpgrpc.createRun(clients, reference, { a: 10, b: 4 }, 'node test');

  const snapshots = [];
  for await (const run of kfpgrpc.watchRun(clients, created.run_id)) snapshots.push(run);

  assert.ok(snapshots.every((run) => run.run_id === created.run_id));
  // The stream closes right after the first terminal snapshot, and states only move forward.
  const states = snapshots.map((run) => run.state);
  assert.deepEqual(states.filter((state) => kfpgrpc.TERMINAL_STATES.has(state)), ['SUCCEEDED']);
  const ranks = states.map((state) => STATE_ORDER.indexOf(state));
  assert.ok(ranks.every((rank, at) => rank >= 0 && rank >= (ranks[at - 1] ?? 0)), `states out of order: ${states}`);

  const finished = snapshots.at(-1);
  assert.deepEqual(finished.state_history.map((entry) => entry.state), STATE_ORDER);
  assert.deepEqual(
    finished.run_details.task_details.map((task) => [task.task_id, task.state, kfpgrpc.fromValues(task.output_parameters)]),
    [['divide', 'SUCCEEDED', { Output: 2.5 }]],
  );
});

test('run-and-watch exits 0 when the run SUCCEEDED, printing its state changes', () => {
  const { status, output } = runCli(PIPELINE_YAML, 'a=10', 'b=4');
  assert.equal(status, 0, output);
  assert.match(output, /^uploaded .*divide\.yaml as version v\d+ of pipeline /m);
  assert.match(output, /^  task divide SUCCEEDED$/m);
  assert.match(output, /^run SUCCEEDED$/m);
  assert.match(output, /^divide outputs: \{"Output":2.5\}$/m);
});

test('run-and-watch exits 1 when the run FAILED, printing why', () => {
  const { status, output } = runCli(PIPELINE_YAML, 'a=10', 'b=0');
  assert.equal(status, 1, output);
  assert.match(output, /^run FAILED$/m);
  assert.match(output, /^error: task 'divide' failed/m);
  assert.match(output, /ZeroDivisionError/);
});

test('run-and-watch exits 2 on bad arguments and 1 when a call fails', () => {
  assert.equal(runCli().status, 2);
  const missing = runCli('--pipeline-id', 'no-such-pipeline');
  assert.equal(missing.status, 1, missing.output);
  assert.match(missing.output, /NOT_FOUND/);
});
