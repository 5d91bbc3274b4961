#!/usr/bin/env bash
# A tour of kfpgrpc's REST API (KFP's v2beta1 paths and JSON) with curl: health check, a new
# experiment, a compiled pipeline uploaded as a multipart form, a run of it with parameters,
# polled until it has finished, the experiment's runs listed, a recurring run created disabled,
# changed, enabled and disabled, then everything it made deleted.
#
# Needs a running server (KFPGRPC_HTTP, default http://127.0.0.1:8888; KFPGRPC_TOKEN when it was
# started with --auth-token), curl and python3 (the standard library only: JSON is read with
# `python3 -c`, jq is not needed). Each call's failure stops the script with a non-zero exit code
# and the server's error body. It can run any number of times against the same server: every
# run makes its own experiment and pipeline and deletes them at the end.
set -euo pipefail

HTTP=${KFPGRPC_HTTP:-http://127.0.0.1:8888}
API=$HTTP/apis/v2beta1
AUTH=()
if [[ -n ${KFPGRPC_TOKEN:-} ]]; then
  AUTH=(-H "Authorization: Bearer $KFPGRPC_TOKEN")
fi
# The divide pipeline (clients/divide_pipeline.py) as the kfp SDK compiles it.
PIPELINE_YAML=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/node/test/divide.yaml

# `api METHOD URL [CURL ARGS]`: the answer's JSON on stdout. A refusal (HTTP 4xx/5xx) prints
# the server's error body ({"code", "message", "details"}) on stderr and fails the script.
api() {
  local method=$1 url=$2 answer
  shift 2
  if ! answer=$(curl -sS --fail-with-body -X "$method" "${AUTH[@]}" "$url" "$@"); then
    echo "$method $url failed: $answer" >&2
    exit 1
  fi
  printf '%s\n' "$answer"
}

# `api_json METHOD URL`: the same with the JSON body read from stdin.
api_json() {
  api "$1" "$2" -H "Content-Type: application/json" --data-binary @-
}

# `show CODE`: runs the Python statement CODE with the JSON on stdin bound to `m` (no input: the
# call before it failed and said why; exit 1 quietly).
show() {
  python3 -c '
import json, sys
text = sys.stdin.read()
if not text:
    sys.exit(1)
m = json.loads(text)
exec(sys.argv[1])
' "$1"
}

step() {
  printf '\n== %s\n' "$*"
}

step "1. The server is up: healthz answers without a token."
curl -sS --fail-with-body "$API/healthz"
echo

step "2. An experiment. Display names are unique, so this one carries the time and process id."
NAME="curl-walkthrough-$(date -u +%Y%m%dT%H%M%SZ)-$$"
EXPERIMENT_ID=$(echo "{\"display_name\": \"$NAME\", \"description\": \"made by clients/curl/walkthrough.sh\"}" \
  | api_json POST "$API/experiments" | show 'print(m["experiment_id"])')
echo "experiment $NAME: $EXPERIMENT_ID"

step "3. Upload the compiled pipeline YAML as a multipart form (part 'uploadfile'): the pipeline and its first version."
PIPELINE_ID=$(api POST "$API/pipelines/upload?name=$NAME&description=divides" -F "uploadfile=@$PIPELINE_YAML" \
  | show 'print(m["pipeline_id"])')
VERSION_ID=$(api GET "$API/pipelines/$PIPELINE_ID/versions" \
  | show 'print(m["pipeline_versions"][0]["pipeline_version_id"])')
echo "pipeline $NAME: $PIPELINE_ID, version $VERSION_ID"

step "4. A run of that version in the experiment, with a = 10 and b = 4."
RUN_ID=$(api_json POST "$API/runs" <<JSON | show 'print(m["run_id"])'
{"display_name": "curl run", "experiment_id": "$EXPERIMENT_ID",
 "pipeline_version_reference": {"pipeline_id": "$PIPELINE_ID", "pipeline_version_id": "$VERSION_ID"},
 "runtime_config": {"parameters": {"a": 10, "b": 4}}}
JSON
)
echo "run $RUN_ID"

step "5. Poll GET runs/{run_id} until the run has finished (printing each new state)."
STATE=""
for _ in $(seq 1 600); do
  NOW=$(api GET "$API/runs/$RUN_ID" | show 'print(m["state"])')
  if [[ $NOW != "$STATE" ]]; then
    echo "state $NOW"
    STATE=$NOW
  fi
  case $STATE in SUCCEEDED | FAILED | CANCELED) break ;; esac
  sleep 0.5
done
if [[ $STATE != SUCCEEDED ]]; then
  echo "the run ended $STATE" >&2
  exit 1
fi
# Its tasks and their outputs (KFP's run_details.task_details).
api GET "$API/runs/$RUN_ID" \
  | show 'for t in m["run_details"]["task_details"]: print("task", t["task_id"], t["state"], t.get("output_parameters"), *(["cached from run", t["cached_from_run_id"]] if t.get("cached_from_run_id") else []))'

step "6. The experiment's runs, newest first (sort_by, page_size; a filter would be URL-encoded JSON)."
api GET "$API/runs?experiment_id=$EXPERIMENT_ID&sort_by=created_at%20desc&page_size=10" \
  | show 'print("runs:", m["total_size"]); [print(" ", r["run_id"], r["display_name"], r["state"]) for r in m["runs"]]'

step "7. A recurring run, created disabled: 02:00 UTC daily from 2100 (so it never fires here)."
RECURRING_ID=$(api_json POST "$API/recurringruns" <<JSON | show 'print(m["recurring_run_id"])'
{"display_name": "curl nightly", "experiment_id": "$EXPERIMENT_ID", "mode": "DISABLE",
 "pipeline_version_reference": {"pipeline_id": "$PIPELINE_ID", "pipeline_version_id": "$VERSION_ID"},
 "runtime_config": {"parameters": {"a": 1, "b": 2}}, "max_concurrency": 1,
 "trigger": {"cron_schedule": {"cron": "0 0 2 * * *", "start_time": "2100-01-01T00:00:00Z"}}}
JSON
)
api GET "$API/recurringruns/$RECURRING_ID" | show 'print("recurring run", m["recurring_run_id"], m["status"])'

step "8. Change it (kfpgrpc's PATCH; the update mask names the fields), enable it, disable it."
echo '{"max_concurrency": 2, "trigger": {"cron_schedule": {"cron": "0 30 3 * * *", "start_time": "2100-01-01T00:00:00Z"}}}' \
  | api_json PATCH "$API/recurringruns/$RECURRING_ID?update_mask=max_concurrency,trigger" \
  | show 'print("updated: max_concurrency", m["max_concurrency"], "cron", m["trigger"]["cron_schedule"]["cron"])'
api POST "$API/recurringruns/$RECURRING_ID:enable" >/dev/null
api GET "$API/recurringruns/$RECURRING_ID" | show 'print("enabled:", m["status"], "next at", m["next_scheduled_times"][0])'
api POST "$API/recurringruns/$RECURRING_ID:disable" >/dev/null
api GET "$API/recurringruns/$RECURRING_ID" | show 'print("disabled:", m["status"])'

step "9. Delete what this walkthrough made: the recurring run, the run, the pipeline with its versions, the experiment."
api DELETE "$API/recurringruns/$RECURRING_ID" >/dev/null
api DELETE "$API/runs/$RUN_ID" >/dev/null
api DELETE "$API/pipelines/$PIPELINE_ID?cascade=true" >/dev/null
api DELETE "$API/experiments/$EXPERIMENT_ID" >/dev/null
STATUS=$(curl -sS -o /dev/null -w '%{http_code}' "${AUTH[@]}" "$API/runs/$RUN_ID")
echo "GET runs/$RUN_ID now answers $STATUS"

step "Done: run $RUN_ID of experiment $NAME SUCCEEDED."
