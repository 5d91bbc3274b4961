"""Pipelines and pipeline versions over KFP's REST API (kfpgrpc/http/pipelines.py), driven by the
real kfp.Client against a real `kfpgrpc serve`: multipart uploads of files the kfp SDK compiled
(YAML, JSON, .tar.gz, .zip), get by id and name, paged and filtered lists, deletes, refusals."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import kfp
import kfp_server_api
import pytest
import yaml

from tests.support import ServerProcess
from tests.test_http import gateway_error, rest, substring, violated_fields  # noqa: F401 - `rest`: the server fixture

pytestmark = pytest.mark.filterwarnings("ignore:This client only works:FutureWarning")  # kfp.Client's, always
OTHER = "nested-pipeline"  # a second compiled pipeline, for versions


def write(path: Path, spec: dict[str, Any]) -> str:
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_kfp_client_uploads_and_manages_pipelines(rest: ServerProcess, compiled: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    client = kfp.Client(host=rest.http_url)
    add = write(tmp_path / "add.yaml", compiled["add-pipeline"])

    pipeline = client.upload_pipeline(add, pipeline_name="adder", description="adds")
    assert (pipeline.display_name, pipeline.description) == ("adder", "adds")
    assert client.get_pipeline_id("adder") == pipeline.pipeline_id
    assert client.get_pipeline_id("nothing-of-that-name") is None
    assert client.get_pipeline(pipeline.pipeline_id).display_name == "adder"
    by_name = client._pipelines_api.pipeline_service_get_pipeline_by_name(name="adder")
    assert by_name.pipeline_id == pipeline.pipeline_id

    # The upload made the first version, named as the pipeline, with the file's spec as an object.
    [first] = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
    assert first.display_name == "adder"
    assert first.pipeline_spec["pipelineInfo"]["name"] == "add-pipeline"

    twice = write(tmp_path / "twice.yaml", compiled[OTHER])
    second = client.upload_pipeline_version(twice, pipeline_version_name="v2", pipeline_id=pipeline.pipeline_id, description="2nd")
    assert (second.pipeline_id, second.display_name, second.description) == (pipeline.pipeline_id, "v2", "2nd")
    assert second.pipeline_spec == compiled[OTHER]
    by_pipeline_name = client.upload_pipeline_version(add, pipeline_version_name="v3", pipeline_name="adder")
    got = client.get_pipeline_version(pipeline.pipeline_id, second.pipeline_version_id)
    assert (got.display_name, got.pipeline_spec) == ("v2", compiled[OTHER])

    page = client.list_pipeline_versions(pipeline.pipeline_id, page_size=2, sort_by="display_name desc")
    assert [v.display_name for v in page.pipeline_versions] == ["v3", "v2"]
    assert page.total_size == 3 and page.next_page_token
    last = client.list_pipeline_versions(pipeline.pipeline_id, page_token=page.next_page_token, page_size=2)
    assert [v.display_name for v in last.pipeline_versions] == ["adder"] and not last.next_page_token

    for name in ("b-pipe", "c-pipe", "other"):
        client.upload_pipeline(add, pipeline_name=name)
    pipes = client.list_pipelines(page_size=2, sort_by="display_name", filter=substring("pipe"))
    assert [p.display_name for p in pipes.pipelines] == ["b-pipe", "c-pipe"]
    assert pipes.total_size == 2 and not pipes.next_page_token
    everything = client.list_pipelines(page_size=3)
    rest_of_them = client.list_pipelines(page_size=3, page_token=everything.next_page_token)
    assert {p.display_name for p in everything.pipelines + rest_of_them.pipelines} == {"adder", "b-pipe", "c-pipe", "other"}

    # A pipeline with versions is only deleted with them, as KFP's.
    with pytest.raises(kfp_server_api.ApiException) as has_versions:
        client.delete_pipeline(pipeline.pipeline_id)
    assert has_versions.value.status == 412
    for version in (first, second, by_pipeline_name):
        client.delete_pipeline_version(pipeline.pipeline_id, version.pipeline_version_id)
    with pytest.raises(kfp_server_api.ApiException) as gone:
        client.get_pipeline_version(pipeline.pipeline_id, second.pipeline_version_id)
    assert gone.value.status == 404
    client.delete_pipeline(pipeline.pipeline_id)
    assert client.get_pipeline_id("adder") is None
    other = client.get_pipeline_id("other")
    client._pipelines_api.pipeline_service_delete_pipeline(pipeline_id=other, cascade=True)
    with pytest.raises(kfp_server_api.ApiException) as missing:
        client.get_pipeline(other)
    assert missing.value.status == 404 and gateway_error(missing.value)["code"] == 5


def test_packages_json_tar_gz_and_zip_upload_too(rest: ServerProcess, compiled: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    client = kfp.Client(host=rest.http_url)
    spec = compiled[OTHER]
    text = yaml.safe_dump(spec).encode()
    as_json = tmp_path / "twice.json"
    as_json.write_text(json.dumps(spec))
    tar_gz = tmp_path / "twice.tar.gz"
    with tarfile.open(tar_gz, "w:gz") as archive:
        info = tarfile.TarInfo("pipeline.yaml")
        info.size = len(text)
        archive.addfile(info, io.BytesIO(text))
    as_zip = tmp_path / "twice.zip"
    with zipfile.ZipFile(as_zip, "w") as archive:
        archive.writestr("pipeline.yaml", text)
    for path in (as_json, tar_gz, as_zip):
        pipeline = client.upload_pipeline(str(path), pipeline_name=path.name)
        [version] = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
        assert version.pipeline_spec == spec, path.name
    # Without a name, the pipeline is named after the file, as KFP's.
    unnamed = client._upload_api.upload_pipeline(str(as_json))
    assert unnamed.display_name == "twice"

    crowded = tmp_path / "two.zip"
    with zipfile.ZipFile(crowded, "w") as archive:
        archive.writestr("a.yaml", text)
        archive.writestr("b.yaml", text)
    with pytest.raises(kfp_server_api.ApiException) as refused:
        client.upload_pipeline(str(crowded), pipeline_name="two")
    assert refused.value.status == 400 and violated_fields(refused.value) == ["uploadfile"]
    assert "exactly one pipeline file" in gateway_error(refused.value)["message"]


def test_bad_uploads_are_refused_naming_the_field(tmp_path: Path, compiled: dict[str, dict[str, Any]]) -> None:
    server = ServerProcess(tmp_path / "data", "--max-spec-bytes", "20000", http=True)
    try:
        client = kfp.Client(host=server.http_url)
        garbage = tmp_path / "garbage.yaml"
        garbage.write_text("- just\n- a list\n")
        with pytest.raises(kfp_server_api.ApiException) as not_a_pipeline:
            client.upload_pipeline(str(garbage), pipeline_name="garbage")
        assert not_a_pipeline.value.status == 400 and violated_fields(not_a_pipeline.value) == ["uploadfile"]

        broken = dict(compiled[OTHER], root={"dag": {"tasks": {"x": {"componentRef": {"name": "comp-missing"}}}}})
        with pytest.raises(kfp_server_api.ApiException) as invalid:
            client.upload_pipeline(write(tmp_path / "broken.yaml", broken), pipeline_name="broken")
        assert invalid.value.status == 400
        assert all(field.startswith("pipeline_version.pipeline_spec") for field in violated_fields(invalid.value))
        # Nothing is left of a refused upload: the pipeline comes with its version or not at all.
        assert client.get_pipeline_id("broken") is None

        big = dict(compiled[OTHER], padding="x" * 30000)
        with pytest.raises(kfp_server_api.ApiException) as too_big:
            client.upload_pipeline(write(tmp_path / "big.yaml", big), pipeline_name="big")
        assert too_big.value.status == 400 and violated_fields(too_big.value) == ["uploadfile"]
        assert "--max-spec-bytes" in gateway_error(too_big.value)["message"]

        pipeline = client.upload_pipeline(write(tmp_path / "ok.yaml", compiled[OTHER]), pipeline_name="ok")
        with pytest.raises(kfp_server_api.ApiException) as taken:
            client.upload_pipeline(write(tmp_path / "ok.yaml", compiled[OTHER]), pipeline_name="ok")
        assert taken.value.status == 409
        with pytest.raises(kfp_server_api.ApiException) as no_pipeline:
            client.upload_pipeline_version(str(garbage), pipeline_version_name="v", pipeline_id=pipeline.pipeline_id)
        assert no_pipeline.value.status == 400 and violated_fields(no_pipeline.value) == ["uploadfile"]
    finally:
        code, stderr = server.terminate()
    assert code == 0, stderr
    assert "Traceback" not in stderr


def test_pipelines_and_versions_from_json_bodies(rest: ServerProcess, compiled: dict[str, dict[str, Any]]) -> None:
    client = kfp.Client(host=rest.http_url)
    api = client._pipelines_api
    pipeline = api.pipeline_service_create_pipeline(kfp_server_api.V2beta1Pipeline(display_name="by-body"))
    version = api.pipeline_service_create_pipeline_version(
        pipeline.pipeline_id, kfp_server_api.V2beta1PipelineVersion(display_name="v1", pipeline_spec=compiled["add-pipeline"]))
    assert version.pipeline_spec == compiled["add-pipeline"]
    with pytest.raises(kfp_server_api.ApiException) as specless:
        api.pipeline_service_create_pipeline_version(pipeline.pipeline_id, kfp_server_api.V2beta1PipelineVersion(display_name="v2"))
    assert specless.value.status == 400 and violated_fields(specless.value) == ["pipeline_version.pipeline_spec"]


def test_create_pipeline_and_version_through_kfp_server_api(rest: ServerProcess, compiled: dict[str, dict[str, Any]]) -> None:
    """KFP's CreatePipelineAndVersion (POST /apis/v2beta1/pipelines/create) as kfp-server-api
    sends it; the spec is given inline, the version's fields default to the pipeline's."""
    client = kfp.Client(host=rest.http_url)
    api = client._pipelines_api
    body = kfp_server_api.V2beta1CreatePipelineAndVersionRequest(
        pipeline=kfp_server_api.V2beta1Pipeline(display_name="together", description="both at once"),
        pipeline_version=kfp_server_api.V2beta1PipelineVersion(pipeline_spec=compiled["add-pipeline"], code_source_url="https://example.com/add.py"),
    )
    pipeline = api.pipeline_service_create_pipeline_and_version(body)
    assert (pipeline.display_name, pipeline.description) == ("together", "both at once")
    [version] = client.list_pipeline_versions(pipeline.pipeline_id).pipeline_versions
    assert (version.display_name, version.description, version.code_source_url) == ("together", "both at once", "https://example.com/add.py")
    assert version.pipeline_spec == compiled["add-pipeline"]

    named = api.pipeline_service_create_pipeline_and_version(kfp_server_api.V2beta1CreatePipelineAndVersionRequest(
        pipeline=kfp_server_api.V2beta1Pipeline(name="second"),
        pipeline_version=kfp_server_api.V2beta1PipelineVersion(name="v1", description="first cut", pipeline_spec=compiled[OTHER]),
    ))
    [v1] = client.list_pipeline_versions(named.pipeline_id).pipeline_versions
    assert (v1.name, v1.display_name, v1.description) == ("v1", "v1", "first cut")

    # Nothing is made when the version is refused: a missing spec, or a name already taken.
    with pytest.raises(kfp_server_api.ApiException) as no_spec:
        api.pipeline_service_create_pipeline_and_version(kfp_server_api.V2beta1CreatePipelineAndVersionRequest(
            pipeline=kfp_server_api.V2beta1Pipeline(name="specless"), pipeline_version=kfp_server_api.V2beta1PipelineVersion()))
    assert no_spec.value.status == 400 and violated_fields(no_spec.value) == ["pipeline_version.pipeline_spec"]
    with pytest.raises(kfp_server_api.ApiException) as taken:
        api.pipeline_service_create_pipeline_and_version(kfp_server_api.V2beta1CreatePipelineAndVersionRequest(
            pipeline=kfp_server_api.V2beta1Pipeline(name="second"),
            pipeline_version=kfp_server_api.V2beta1PipelineVersion(pipeline_spec=compiled[OTHER])))
    assert taken.value.status == 409
    assert client.get_pipeline_id("specless") is None
    assert client.list_pipelines().total_size == 2
