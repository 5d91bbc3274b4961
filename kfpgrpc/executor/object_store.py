"""Pipeline roots in object stores: `s3://bucket/prefix`, `gs://…`, any URL scheme fsspec has a
backend for (each an optional package: s3fs, gcsfs, adlfs…), for launchers whose tasks run on
other machines (the Ray launcher).

A run under such a root keeps its artifacts at `<root>/<run_id>/<task_id>/<output name>`, as
on a file system, and those URLs are the artifacts' `uri`s in runs and events. Tasks never see
the object store: the launcher downloads a task's input artifacts to local files first and
uploads its output artifacts after it succeeded (`stage_inputs`, `publish_outputs`), as KFP's
launcher does; inside the task an artifact's `uri` and `path` are that local copy. Credentials
are the backend's own (its environment variables or instance credentials on the machine that
moves the files), never the task's.

Blocking: call from a worker thread.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from typing import Any

from kfpgrpc.executor.base import ArtifactOutput, TaskResult
from kfpgrpc.executor.launcher import ContainerTask

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)


class ObjectStoreError(Exception):
    """An object-store URL that cannot be used here (no backend), or a transfer that failed."""


def is_url(root: str) -> bool:
    """Whether `root` is an object-store URL (a scheme other than file://)."""
    match = _SCHEME.match(root)
    return match is not None and match.group(1).lower() != "file"


def join(root: str, *names: str) -> str:
    """`root` (a URL or a path) with `names` below it, '/'-separated."""
    return "/".join([root.rstrip("/"), *names])


def inside(url: str, root: str) -> bool:
    """Whether `url` is `root` or below it (compared as text: object stores have no links)."""
    root = root.rstrip("/")
    return url == root or url.startswith(root + "/")


def problem(url: str) -> str:
    """Why `url` cannot be used as an artifact location here ("" when it can): it is not a plain
    `scheme://bucket/key/...` (roots are compared as text, so an empty, "." or ".." part, a
    query, a fragment or a %-escape could name what a comparison does not see), or fsspec, or
    the backend its scheme needs, is not installed. Non-blocking."""
    scheme = _SCHEME.match(url)
    rest = url[scheme.end():] if scheme else url
    parts = rest.rstrip("/").split("/")
    if any(part in ("", ".", "..") for part in parts) or any(char in rest for char in "?#%\\"):
        return f"{url!r} must be a plain scheme://bucket/path, without empty, '.' or '..' parts, '?', '#', '%' or '\\'"
    try:
        import fsspec
        from fsspec.registry import known_implementations
    except ImportError:
        return f"{url!r} is an object-store URL and fsspec is not installed (pip install 'kfpgrpc[ray]')"
    protocol = scheme.group(1).lower() if scheme else ""
    if protocol not in fsspec.available_protocols() and protocol not in known_implementations:
        return f"{url!r}: no fsspec backend for {protocol}://"
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as error:
        return f"{url!r}: the fsspec backend for {protocol}:// is not installed ({error})"
    return ""


def _filesystem(url: str) -> tuple[Any, str]:
    import fsspec.core

    try:
        return fsspec.core.url_to_fs(url)
    except (ImportError, ValueError) as error:
        raise ObjectStoreError(f"cannot open {url!r}: {error}") from None


def download(url: str, local: str) -> None:
    """Copy the object at `url`, or every object below the prefix `url`, to the local path
    `local` (then a directory). A key whose path has an empty, "." or ".." part is refused:
    it would land outside `local`. Raises ObjectStoreError."""
    fs, path = _filesystem(url)
    try:
        if not fs.isdir(path):
            fs.get_file(path, local)
            return
        prefix = path.rstrip("/") + "/"
        os.makedirs(local, exist_ok=True)
        for key in fs.find(prefix):
            parts = key[len(prefix):].split("/")
            if not key.startswith(prefix) or any(part in ("", ".", "..") for part in parts):
                raise ObjectStoreError(f"cannot download {url}: its object {key!r} is not a plain path below it")
            target = os.path.join(local, *parts)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fs.get_file(key, target)
    except (OSError, ValueError) as error:
        raise ObjectStoreError(f"cannot download {url}: {error}") from None


def upload(local: str, url: str) -> None:
    """Copy the regular files of the local directory `local` and below to the prefix `url`,
    following no link: a task's output that is a link (to a file of the machine's) is refused.
    Raises ObjectStoreError."""
    fs, path = _filesystem(url)
    try:
        for directory, subdirectories, files in os.walk(local):
            for name in [*subdirectories, *files]:
                source = os.path.join(directory, name)
                if os.path.islink(source):
                    raise ObjectStoreError(f"output {os.path.relpath(source, local)!r} is a link: outputs must be files and directories")
            for name in files:
                source = os.path.join(directory, name)
                if not os.path.isfile(source):
                    raise ObjectStoreError(f"output {os.path.relpath(source, local)!r} is not a regular file")
                fs.put_file(source, path.rstrip("/") + "/" + os.path.relpath(source, local).replace(os.sep, "/"))
    except (OSError, ValueError) as error:
        raise ObjectStoreError(f"cannot upload to {url}: {error}") from None


def remove(url: str) -> None:
    """Remove everything at and below `url`; nothing when it does not exist. Raises
    ObjectStoreError."""
    fs, path = _filesystem(url)
    try:
        fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as error:
        raise ObjectStoreError(f"cannot remove {url}: {error}") from None


def reuse_outputs(result: TaskResult, run_dir: str, task_id: str) -> TaskResult | None:
    """`Launcher.reuse_outputs` under a URL `run_dir`: the cached artifacts copied within the
    store to `<run_dir>/<task_id>/<output name>` (a list: `<output name>-<index>`); None when
    one is gone."""
    task_root = join(run_dir, task_id)
    artifacts: dict[str, list[ArtifactOutput]] = {}
    try:
        remove(task_root)
        for name, outputs in result.output_artifacts.items():
            artifacts[name] = []
            for index, artifact in enumerate(outputs):
                target = join(task_root, name if len(outputs) == 1 else f"{name}-{index}")
                fs, source = _filesystem(artifact.uri)
                if not fs.exists(source):
                    return None
                fs.copy(source, _filesystem(target)[1], recursive=fs.isdir(source))
                artifacts[name].append(replace(artifact, uri=target, origin=artifact.origin or artifact.uri))
    except (ObjectStoreError, OSError, ValueError):
        return None
    return TaskResult(output_parameters=result.output_parameters, output_artifacts=artifacts)


def stage_inputs(task: ContainerTask, staging: str) -> ContainerTask:
    """`task` (whose `run_dir` is a URL) made to run on local files below the empty local
    directory `staging`: its input artifacts under URLs downloaded (to `inputs/<n>/<index>/`
    with their last name), and its run directory `run/<run_id>`. Raises ObjectStoreError."""
    artifacts: dict[str, list[ArtifactOutput]] = {}
    for number, (name, items) in enumerate(task.artifacts.items()):
        artifacts[name] = []
        for index, artifact in enumerate(items):
            if is_url(artifact.uri):
                last = artifact.uri.rstrip("/").rsplit("/", 1)[-1]
                local = os.path.join(staging, "inputs", str(number), str(index), last if last not in ("", ".", "..") else "artifact")
                os.makedirs(os.path.dirname(local), exist_ok=True)
                download(artifact.uri, local)
                artifact = replace(artifact, uri=local)
            artifacts[name].append(artifact)
    return replace(task, artifacts=artifacts, run_dir=os.path.join(staging, "run", task.run_id))


def publish_outputs(result: TaskResult, local_run_dir: str, task: ContainerTask) -> TaskResult:
    """After the task ran on local files (`stage_inputs`): its artifact directory
    `<local_run_dir>/<task_id>` uploaded to `<task.run_dir>/<task_id>` (what an earlier attempt
    left there removed first), and `result`'s artifact uris made those URLs. Raises
    ObjectStoreError."""
    remote = join(task.run_dir, task.task_id)
    local = os.path.join(local_run_dir, task.task_id)
    remove(remote)
    if os.path.isdir(local):
        upload(local, remote)
    prefix = local_run_dir.rstrip("/") + "/"
    artifacts = {
        name: [
            replace(artifact, uri=join(task.run_dir, artifact.uri[len(prefix):])) if artifact.uri.startswith(prefix) else artifact
            for artifact in items
        ]
        for name, items in result.output_artifacts.items()
    }
    return TaskResult(output_parameters=result.output_parameters, output_artifacts=artifacts)
