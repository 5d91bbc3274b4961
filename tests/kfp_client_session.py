"""One kfp.Client session against a kfpgrpc server's KFP REST API, run by any interpreter that has
kfp (so that tests/test_http_sdks.py drives each kfp version it is given: 2.17 in the test venv,
2.16 in .ci/run's second venv). Standard library and kfp only: never imports kfpgrpc or the tests.

    python kfp_client_session.py HTTP_URL [TOKEN]

Makes, in order, the kfp.Client calls of the issue's list (experiments, pipeline uploads and
versions, runs from a package, a function and a stored version, waits, lists, archive, terminate,
delete, recurring runs, refused requests; with TOKEN every call is made with it, and a wrong token
and none are tried), and prints one JSON document of what it observed: ids, states, names,
counts, and for each refused call its HTTP status and JSON body. It asserts nothing: the test does. An unexpected error
ends it with a traceback and exit code 1.

The pipelines are trivial lightweight components without `packages_to_install`: the server's
task interpreter has kfp, whose runtime serves the `kfp==<this SDK's version>` preamble of any
2.x SDK, so no task environment is built and a run takes about a second. The schedules start in
2100: no tick fires while the session runs.
"""

import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import kfp
import kfp_server_api
from kfp import compiler, dsl

BASE_IMAGE = "python:3.11"  # pinned: the SDK's default image changes between versions
WAIT = 120  # seconds: a bound on a run's end, not a measure of it
POLL = 0.1  # seconds between kfp.Client's polls of a run
START = "2100-01-01T00:00:00Z"  # the schedules' start: after any test run, nothing fires


@dsl.component(base_image=BASE_IMAGE)
def add(a: int, b: int) -> int:
    return a + b


@dsl.component(base_image=BASE_IMAGE)
def nap(seconds: int):
    import time

    time.sleep(seconds)


@dsl.pipeline(name="session-add", description="Adds a and b, then b again.")
def add_pipeline(a: int = 1, b: int = 2, label: str = "sum") -> int:
    first = add(a=a, b=b)
    return add(a=first.output, b=b).output


@dsl.pipeline(name="session-nap", description="Sleeps until terminated.")
def nap_pipeline(seconds: int = 600):
    nap(seconds=seconds)


def refusal(call: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The HTTP status and JSON body of a call that must be refused ({"status": None} if it was not)."""
    try:
        call(*args, **kwargs)
    except kfp_server_api.ApiException as error:
        return {"status": error.status, "body": json.loads(error.body)}
    return {"status": None}


def run_view(run: Any) -> dict[str, Any]:
    """What the test compares of a run (kfp-server-api's V2beta1Run)."""
    details = run.run_details.task_details if run.run_details else None
    reference = run.pipeline_version_reference
    return {
        "run_id": run.run_id,
        "display_name": run.display_name,
        "experiment_id": run.experiment_id,
        "state": run.state,
        "storage_state": run.storage_state,
        "parameters": dict(run.runtime_config.parameters or {}) if run.runtime_config else {},
        "pipeline_name": (run.pipeline_spec or {}).get("pipelineInfo", {}).get("name"),
        "pipeline_version_id": reference.pipeline_version_id if reference else None,
        "tasks": sorted([task.display_name, task.state] for task in details or []),
        "created": run.created_at is not None,
        "finished": run.finished_at is not None,
    }


def recurring_view(recurring: Any) -> dict[str, Any]:
    """What the test compares of a recurring run (V2beta1RecurringRun)."""
    trigger = recurring.trigger
    cron, periodic = trigger.cron_schedule, trigger.periodic_schedule
    return {
        "recurring_run_id": recurring.recurring_run_id,
        "display_name": recurring.display_name,
        "experiment_id": recurring.experiment_id,
        "mode": recurring.mode,
        "status": recurring.status,
        "max_concurrency": recurring.max_concurrency,
        "no_catchup": recurring.no_catchup,
        "cron": cron.cron if cron else None,
        "start_time": (cron or periodic).start_time.isoformat() if (cron or periodic).start_time else None,
        "interval_second": periodic.interval_second if periodic else None,
        "parameters": dict(recurring.runtime_config.parameters or {}) if recurring.runtime_config else {},
    }


def substring(text: str) -> str:
    """KFP's JSON filter on display_name, as a kfp.Client user writes it."""
    return json.dumps({"predicates": [{"operation": "IS_SUBSTRING", "key": "display_name", "string_value": text}]})


def wait_for_state(client: kfp.Client, run_id: str, state: str) -> Any:
    """The run once in `state` (wait_for_run_completion does not stop at RUNNING or CANCELED)."""
    deadline = time.monotonic() + WAIT
    while (run := client.get_run(run_id)).state != state:
        if time.monotonic() > deadline:
            raise TimeoutError(f"run {run_id} is {run.state}, never {state}")
        time.sleep(POLL)
    return run


def session(url: str, token: str | None, work: Path) -> dict[str, Any]:
    """Every call of the session, against the server at `url`; the observations by topic."""
    client = kfp.Client(host=url, existing_token=token)
    seen: dict[str, Any] = {"kfp_version": kfp.__version__, "kfp_server_api_version": kfp_server_api.__version__}

    # Experiments.
    created = client.create_experiment("session", description="the session's runs")
    other = client.create_experiment("session-other")
    client.create_experiment("unrelated")
    matching = client.list_experiments(filter=substring("session"), sort_by="display_name", page_size=10)
    seen["experiments"] = {
        "created": [created.experiment_id, created.display_name, created.description, created.storage_state],
        "by_id": client.get_experiment(experiment_id=created.experiment_id).display_name,
        "by_name": client.get_experiment(experiment_name="session").experiment_id,
        "other_id": other.experiment_id,
        "filtered": [e.display_name for e in matching.experiments],
        "filtered_total": matching.total_size,
    }

    # Pipelines: a YAML file compiled by this kfp, uploaded, then a second version.
    package = str(work / "session-add.yaml")
    compiler.Compiler().compile(add_pipeline, package)
    pipeline = client.upload_pipeline(package, pipeline_name="session-adder", description="adds")
    version = client.upload_pipeline_version(package, pipeline_version_name="v2", pipeline_id=pipeline.pipeline_id)
    client.upload_pipeline(package, pipeline_name="unrelated")
    pipes = client.list_pipelines(filter=substring("session"), page_size=10)
    versions = client.list_pipeline_versions(pipeline.pipeline_id, sort_by="display_name desc")
    seen["pipelines"] = {
        "uploaded": [pipeline.pipeline_id, pipeline.display_name, pipeline.description],
        "version": [version.pipeline_version_id, version.pipeline_id, version.display_name,
                    version.pipeline_spec["pipelineInfo"]["name"]],
        "id_by_name": client.get_pipeline_id("session-adder"),
        "id_of_unknown": client.get_pipeline_id("no-such-pipeline"),
        "filtered": [p.display_name for p in pipes.pipelines],
        "filtered_total": pipes.total_size,
        "versions": [v.display_name for v in versions.pipeline_versions],
        "versions_total": versions.total_size,
    }

    # Runs: from the package, from the function, from the stored version; all in "session".
    from_package = client.create_run_from_pipeline_package(
        package, arguments={"a": 3, "b": 4}, run_name="add-3-4", experiment_name="session")
    from_func = client.create_run_from_pipeline_func(
        add_pipeline, arguments={"a": 10}, run_name="from-func", experiment_name="session")
    by_version = client.run_pipeline(created.experiment_id, "by-version", params={"b": 5},
                                     pipeline_id=pipeline.pipeline_id, version_id=version.pipeline_version_id)
    finished = {
        name: run_view(client.wait_for_run_completion(run_id, WAIT, sleep_duration=POLL))  # type: ignore[arg-type]
        for name, run_id in (("package", from_package.run_id), ("func", from_func.run_id), ("version", by_version.run_id))
    }
    first = client.list_runs(experiment_id=created.experiment_id, sort_by="display_name desc", page_size=2)
    last = client.list_runs(experiment_id=created.experiment_id, sort_by="display_name desc", page_size=2,
                            page_token=first.next_page_token)
    fetched = client.get_run(by_version.run_id)
    client.archive_run(from_package.run_id)
    archived = client.get_run(from_package.run_id).storage_state
    client.unarchive_run(from_package.run_id)
    seen["runs"] = {
        **finished,
        "get": [fetched.run_id, fetched.display_name, fetched.state],
        "first_page": [r.run_id for r in first.runs],
        "first_total": first.total_size,
        "has_next_page": bool(first.next_page_token),
        "last_page": [r.run_id for r in last.runs],
        "last_next_page": last.next_page_token or "",
        "archived_then_unarchived": [archived, client.get_run(from_package.run_id).storage_state],
    }

    # A run that sleeps, terminated while running, then deleted.
    napping = client.create_run_from_pipeline_func(nap_pipeline, run_name="napping", experiment_name="session-other")
    running = wait_for_state(client, napping.run_id, "RUNNING")
    client.terminate_run(napping.run_id)
    canceled = wait_for_state(client, napping.run_id, "CANCELED")
    client.delete_run(napping.run_id)
    seen["terminated"] = {
        "run_id": napping.run_id,
        "experiment_id": running.experiment_id,
        "states": [running.state, canceled.state],
        "finished": canceled.finished_at is not None,
        "after_delete": refusal(client.get_run, napping.run_id),
        "left_in_experiment": client.list_runs(experiment_id=other.experiment_id).total_size or 0,
    }

    # Recurring runs: cron (with start_time, max_concurrency, no_catchup, created disabled) in
    # "session", periodic in "session-other".
    cron = client.create_recurring_run(
        created.experiment_id, "add-nightly", cron_expression="0 0 2 * * *", start_time=START,
        pipeline_package_path=package, params={"a": 3, "b": 4}, max_concurrency=2, no_catchup=True, enabled=False)
    periodic = client.create_recurring_run(
        other.experiment_id, "add-hourly", interval_second=3600, start_time=START, pipeline_package_path=package)
    in_session = client.list_recurring_runs(experiment_id=created.experiment_id)
    statuses = [client.get_recurring_run(cron.recurring_run_id).status]
    client.enable_recurring_run(cron.recurring_run_id)
    statuses.append(client.get_recurring_run(cron.recurring_run_id).status)
    client.disable_recurring_run(cron.recurring_run_id)
    statuses.append(client.get_recurring_run(cron.recurring_run_id).status)
    client.delete_recurring_run(periodic.recurring_run_id)
    seen["recurring"] = {
        "cron": recurring_view(cron),
        "periodic": recurring_view(periodic),
        "listed_in_session": [r.recurring_run_id for r in in_session.recurring_runs],
        "listed_total": in_session.total_size,
        "cron_statuses": statuses,
        "after_delete": refusal(client.get_recurring_run, periodic.recurring_run_id),
        "left": [r.recurring_run_id for r in client.list_recurring_runs(page_size=10).recurring_runs],
    }

    # Archiving an experiment archives its runs (KFP's rule) and disables its recurring runs.
    client.archive_experiment(created.experiment_id)
    seen["archived_experiment"] = {
        "storage_state": client.get_experiment(experiment_id=created.experiment_id).storage_state,
        "runs": sorted(r.storage_state for r in client.list_runs(experiment_id=created.experiment_id).runs),
    }

    # Refusals naming the field.
    seen["refused"] = {
        "bad_argument": refusal(client.create_run_from_pipeline_package, package, arguments={"a": "three"}),
        "bad_sort": refusal(client.list_runs, sort_by="nonsense"),
    }

    if token is not None:
        stranger = kfp.Client(host=url, existing_token=token + "-wrong")  # calls healthz: open to all
        seen["token"] = {
            "healthz_multi_user": stranger.get_kfp_healthz().multi_user,
            "wrong": refusal(stranger.list_experiments),
            "none": refusal(kfp.Client(host=url).list_experiments),
        }
    return seen


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    url, token = argv[1], (argv[2] if len(argv) == 3 else None)
    # kfp.Client may print (links to the UI); stdout is the JSON document's alone.
    with tempfile.TemporaryDirectory() as work, contextlib.redirect_stdout(sys.stderr):
        seen = session(url, token, Path(work))
    print(json.dumps(seen, indent=1, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
