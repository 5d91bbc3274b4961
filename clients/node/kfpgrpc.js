'use strict';
// A small client of the kfpgrpc API. The services are built at runtime from the repository's
// protos (no generated code); the google/protobuf imports resolve to the well-known types
// that protobufjs bundles, so nothing else is needed. Messages use the proto field names
// (run_id, display_name), as the server's docs and grpcurl show them, except inside the
// bundled well-known types: protobufjs always uses its own copies, whose fields are camelCase
// (google.protobuf.Value's stringValue, structValue, ...).

const path = require('node:path');
const fs = require('node:fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const YAML = require('yaml');

const DEFAULT_SERVER = '127.0.0.1:8887';
const TERMINAL_STATES = new Set(['SUCCEEDED', 'FAILED', 'CANCELED']);

const definition = protoLoader.loadSync(['kfpgrpc/v1/pipeline.proto', 'kfpgrpc/v1/run.proto'], {
  includeDirs: [path.resolve(__dirname, '../../protos')],
  keepCase: true,
  enums: String,
  longs: String,
  defaults: true, // an unset state reads RUNTIME_STATE_UNSPECIFIED, not undefined
  oneofs: true, // google.protobuf.Value says which of its fields is set in `kind`
});
const { v1 } = grpc.loadPackageDefinition(definition).kfpgrpc;

/** Plaintext clients of the services this example uses, on KFPGRPC_SERVER by default. */
function connect(address = process.env.KFPGRPC_SERVER || DEFAULT_SERVER) {
  const credentials = grpc.credentials.createInsecure();
  return {
    pipelines: new v1.PipelineService(address, credentials),
    runs: new v1.RunService(address, credentials),
    close() {
      this.pipelines.close();
      this.runs.close();
    },
  };
}

/** Calls a unary RPC; resolves with its response, rejects with the grpc error. */
function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, (error, response) => (error ? reject(error) : resolve(response)));
  });
}

/** A plain JSON value as a google.protobuf.Value message. */
function toValue(value) {
  if (value === null) return { nullValue: 'NULL_VALUE' };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  switch (typeof value) {
    case 'number':
      return { numberValue: value };
    case 'string':
      return { stringValue: value };
    case 'boolean':
      return { boolValue: value };
    case 'object':
      return { structValue: toStruct(value) };
    default:
      throw new TypeError(`no google.protobuf.Value for a ${typeof value}`);
  }
}

/** A plain object as a google.protobuf.Struct message. */
function toStruct(object) {
  return { fields: Object.fromEntries(Object.entries(object).map(([name, value]) => [name, toValue(value)])) };
}

/** A google.protobuf.Value message as a plain JSON value. */
function fromValue(value) {
  switch (value.kind) {
    case 'structValue':
      return fromValues(value.structValue.fields);
    case 'listValue':
      return value.listValue.values.map(fromValue);
    case 'nullValue':
      return null;
    default:
      return value[value.kind];
  }
}

/** A map<string, google.protobuf.Value> (a Struct's fields, a task's outputs) as a plain object. */
function fromValues(values) {
  return Object.fromEntries(Object.entries(values).map(([name, value]) => [name, fromValue(value)]));
}

/**
 * Uploads a pipeline compiled by the kfp SDK (its YAML file) as a new version of the pipeline
 * named by its pipelineInfo.name, creating that pipeline the first time. Resolves with the
 * PipelineVersion.
 */
async function uploadPipeline({ pipelines }, yamlPath) {
  const spec = YAML.parse(fs.readFileSync(yamlPath, 'utf8'));
  const name = spec.pipelineInfo.name;
  let pipeline;
  try {
    pipeline = await unary(pipelines, 'CreatePipeline', { pipeline: { name } });
  } catch (error) {
    if (error.code !== grpc.status.ALREADY_EXISTS) throw error;
    pipeline = await unary(pipelines, 'GetPipelineByName', { name });
  }
  return unary(pipelines, 'CreatePipelineVersion', {
    pipeline_id: pipeline.pipeline_id,
    pipeline_version: { pipeline_spec: toStruct(spec) },
  });
}

/**
 * Creates a run of a pipeline version: `reference` is {pipeline_id, pipeline_version_id}, an
 * empty pipeline_version_id meaning the latest version. Resolves with the Run.
 */
function createRun({ runs }, reference, parameters, display_name) {
  return unary(runs, 'CreateRun', {
    run: {
      display_name,
      pipeline_version_reference: reference,
      runtime_config: { parameters: toStruct(parameters).fields },
    },
  });
}

/** WatchRun as an async iterable of Run snapshots; it ends after the run's terminal state. */
function watchRun({ runs }, run_id) {
  return runs.WatchRun({ run_id });
}

module.exports = { DEFAULT_SERVER, TERMINAL_STATES, connect, uploadPipeline, createRun, watchRun, fromValues };
