#!/usr/bin/env bash
# A tour of the kfpgrpc API with grpcurl: create an experiment, upload a pipeline compiled with
# the kfp SDK, run it in the experiment, watch it with WatchRun and show its logs with
# StreamRunLogs.
#
# Needs a running server (KFPGRPC_SERVER, default 127.0.0.1:8887) and, on PATH, grpcurl and a
# python3 with the kfp SDK: the repository's venv after `pip install -e '.[test]'` has both.
# Each call's failure stops the script with a non-zero exit code. It can run any number of
# times against the same server: every run gets its own experiment.
set -euo pipefail

SERVER=${KFPGRPC_SERVER:-127.0.0.1:8887}
CLIENTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK_DIR=$(mktemp -d)
trap 'rm -rf "$WORK_DIR"' EXIT

# grpcurl against the server in plaintext; the service's methods come from server reflection,
# so no .proto files are needed. Reads the request JSON from stdin (-d @).
call() {
  grpcurl -plaintext -d @ "$SERVER" "kfpgrpc.v1.$1"
}

# grpcurl prints each response message as one JSON document, a stream's messages one after
# another. `each_message CODE` runs the Python statement CODE for each document, bound to `m`.
each_message() {
  python3 -c '
import json, sys
text, decoder, at = sys.stdin.read(), json.JSONDecoder(), 0
while text[at:].strip():
    at = len(text) - len(text[at:].lstrip())  # skip the white space between documents
    m, at = decoder.raw_decode(text, at)
    exec(sys.argv[1])
' "$1"
}

step() {
  printf '\n== %s\n' "$*"
}

step "1. The server is up: the standard health check answers SERVING."
grpcurl -plaintext "$SERVER" grpc.health.v1.Health/Check

step "2. An experiment to hold the run. Display names are unique, so this one carries the time and process id."
EXPERIMENT_NAME="walkthrough-$(date -u +%Y%m%dT%H%M%SZ)-$$"
EXPERIMENT_ID=$(echo "{\"experiment\": {\"display_name\": \"$EXPERIMENT_NAME\"}}" \
  | call ExperimentService/CreateExperiment | each_message 'print(m["experiment_id"])')
echo "experiment $EXPERIMENT_NAME: $EXPERIMENT_ID"

step "3. Compile the divide pipeline (clients/divide_pipeline.py) with the kfp SDK."
python3 "$CLIENTS_DIR/divide_pipeline.py" "$WORK_DIR/divide.yaml"
head -n 6 "$WORK_DIR/divide.yaml"

step "4. The pipeline 'divide': pipeline names are unique, so reuse it when an earlier run made it."
PIPELINE_ID=$( (echo '{"name": "divide"}' | call PipelineService/GetPipelineByName 2>/dev/null \
  || echo '{"pipeline": {"name": "divide"}}' | call PipelineService/CreatePipeline) \
  | each_message 'print(m["pipeline_id"])')
echo "pipeline divide: $PIPELINE_ID"

step "5. Upload the compiled YAML as a new version. grpcurl takes JSON: wrap the spec in a CreatePipelineVersionRequest."
VERSION=$(python3 -c '
import json, sys, yaml
print(json.dumps({"pipeline_id": sys.argv[1], "pipeline_version": {"pipeline_spec": yaml.safe_load(open(sys.argv[2]))}}))
' "$PIPELINE_ID" "$WORK_DIR/divide.yaml" \
  | call PipelineService/CreatePipelineVersion | each_message 'print(m["pipeline_version_id"], m["name"])')
read -r VERSION_ID VERSION_NAME <<<"$VERSION"
echo "version $VERSION_NAME: $VERSION_ID"

step "6. Run that version in the experiment with a = 10, b = 4."
RUN_ID=$(cat <<EOF | call RunService/CreateRun | each_message 'print(m["run_id"])'
{"run": {
  "display_name": "walkthrough run",
  "experiment_id": "$EXPERIMENT_ID",
  "pipeline_version_reference": {"pipeline_id": "$PIPELINE_ID", "pipeline_version_id": "$VERSION_ID"},
  "runtime_config": {"parameters": {"a": 10, "b": 4}}
}}
EOF
)
echo "run $RUN_ID"

step "7. WatchRun: the current snapshot first, then one per change of the run or a task; the stream ends once the run has finished."
echo "{\"run_id\": \"$RUN_ID\"}" | call RunService/WatchRun > "$WORK_DIR/snapshots.json"
each_message 'print("run", m["state"], *("| " + t["task_id"] + " " + t["state"] for t in m.get("run_details", {}).get("task_details", [])))' \
  < "$WORK_DIR/snapshots.json"
# A fast run may have finished before the watch began; its state_history still holds every transition.
each_message 'print("state_history:", ", ".join(h["state"] + " " + h["update_time"] for h in m["state_history"]))' \
  < "$WORK_DIR/snapshots.json" | tail -n 1
FINAL_STATE=$(each_message 'print(m["state"])' < "$WORK_DIR/snapshots.json" | tail -n 1)
if [[ $FINAL_STATE != SUCCEEDED ]]; then
  echo "the run ended $FINAL_STATE" >&2
  exit 1
fi

step "8. Its tasks and their outputs (GetRun). Run the walkthrough again on the same server: the divide task is then
   taken from the cache (KFP caching: same component, same inputs), and cached_from_run_id names the earlier run."
echo "{\"run_id\": \"$RUN_ID\"}" | call RunService/GetRun \
  | each_message 'for t in m["run_details"]["task_details"]: print(t["task_id"], t["state"], t["output_parameters"], *(["cached from run", t["cached_from_run_id"]] if t.get("cached_from_run_id") else []))'

step "9. StreamRunLogs: the last lines the tasks printed (the run has ended, so the stream ends too)."
echo "{\"run_id\": \"$RUN_ID\"}" | call RunService/StreamRunLogs \
  | each_message 'for line in m.get("lines", []): print(line["task_id"] + ":", line["text"])' \
  | tail -n 5

step "Done: run $RUN_ID of experiment $EXPERIMENT_NAME SUCCEEDED."
