"""dsl.importer as on KFP (kfp-semantics.md §6), with pipelines compiled by each kfp version
(tests/kfp_sdks.py): a local path or file:// URI is imported with its metadata, a cloud URI fails
the importer task."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from kfpgrpc.v1 import common_pb2
from tests.support import Stubs, output, run_to_end, tasks_of

Spec = dict[str, Any]
SUCCEEDED, FAILED = common_pb2.SUCCEEDED, common_pb2.FAILED


async def test_importer_imports_a_local_path_and_a_file_uri_with_metadata(stubs: Stubs, each_kfp: dict[str, Spec], tmp_path: Path) -> None:
    """KFP (§6.1, §6.3, §6.4): an importer task has no command; it outputs one artifact named
    "artifact" of its typeSchema, with the URI (from a pipeline parameter here) and the metadata,
    whose placeholders (a pipeline parameter) are resolved as kfp.local does (design12.md); the
    consumer reads the file and sees the metadata. A file:// URI becomes the local path
    (design12.md). `reimport=True` (no reuse of an earlier artifact record) imports as well."""
    by_path, by_uri = tmp_path / "by path.txt", tmp_path / "by-uri.txt"
    by_path.write_text("imported by path")
    by_uri.write_text("imported by URI")
    run = await run_to_end(stubs, each_kfp["cf-importer"], "import", path=str(by_path), uri=f"file://{by_uri}", tag="v7")
    assert run.state == SUCCEEDED, run.error
    tasks = tasks_of(run)
    assert set(tasks) == {"importer", "importer-2", "read-imported", "read-imported-2"}
    metadata = {"tag": "v7", "k": "const", "n": 3}
    for key, path, expected_metadata in (("importer", by_path, metadata), ("importer-2", by_uri, {})):
        assert tasks[key].state == SUCCEEDED
        artifacts = [(a.name, a.uri, a.schema_title, json_format.MessageToDict(a.metadata)) for a in tasks[key].output_artifacts]
        assert artifacts == [("artifact", str(path), "system.Dataset", expected_metadata)]
    assert json.loads(output(tasks["read-imported"])) == {"text": "imported by path", "metadata": metadata, "uri": str(by_path)}
    assert json.loads(output(tasks["read-imported-2"])) == {"text": "imported by URI", "metadata": {}, "uri": str(by_uri)}


async def test_importer_of_a_cloud_uri_fails_the_task_with_a_clear_message(stubs: Stubs, each_kfp: dict[str, Spec], tmp_path: Path) -> None:
    """Issue 12: a cloud URI (here gs://) cannot be read on this machine, so the importer task
    FAILS and says which URI; its consumer never starts and the run FAILS (KFP would import the
    URI and let the consumer's launcher download it, §6.2)."""
    local = tmp_path / "local.txt"
    local.write_text("local")
    run = await run_to_end(stubs, each_kfp["cf-importer"], "import gs", path=str(local), uri="gs://bucket/data.csv")
    assert run.state == FAILED
    tasks = tasks_of(run)
    assert tasks["importer-2"].state == FAILED
    assert "gs://bucket/data.csv" in tasks["importer-2"].error.message
    assert "read-imported-2" not in tasks
