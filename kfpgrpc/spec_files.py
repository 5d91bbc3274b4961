"""Compiled pipeline files, as the kfp compiler writes them and KFP's upload accepts them: a YAML
(or JSON) document, with an optional second one (the platform spec of Kubernetes settings);
for uploads also a `.tar.gz` or `.zip` package holding one such file."""

from __future__ import annotations

import io
import tarfile
import zipfile
from typing import Any

_GZIP = b"\x1f\x8b"
_ZIP = b"PK\x03\x04"


def spec_from_text(text: str) -> dict[str, Any]:
    """The spec in `text`; two documents become {"pipeline_spec", "platform_spec"}. Raises
    ValueError saying what is wrong."""
    import yaml  # only uploads read YAML: every other command starts without it

    try:
        documents: list[Any] = [document for document in yaml.safe_load_all(text) if document is not None]
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML or JSON: {exc}") from None
    if not documents or not all(isinstance(document, dict) for document in documents) or len(documents) > 2:
        raise ValueError("not a compiled pipeline (one YAML or JSON mapping)")
    if len(documents) == 2:
        return {"pipeline_spec": documents[0], "platform_spec": documents[1]}
    return dict(documents[0])


def spec_from_package(data: bytes, max_bytes: int) -> dict[str, Any]:
    """The spec in an uploaded file: YAML or JSON, or a gzipped tar or zip archive holding one
    file (by its first bytes, as KFP tells them apart), unpacked to at most `max_bytes`.
    Raises ValueError."""
    if data.startswith(_GZIP):
        data = _only_file_of_tar(data, max_bytes)
    elif data.startswith(_ZIP):
        data = _only_file_of_zip(data, max_bytes)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError("not YAML, JSON, .tar.gz or .zip (not UTF-8 text)") from None
    return spec_from_text(text)


def _only_file_of_tar(data: bytes, max_bytes: int) -> bytes:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            files = [member for member in archive.getmembers() if member.isfile()]
            if len(files) != 1:
                raise ValueError(f"a .tar.gz package must hold exactly one pipeline file, this one holds {len(files)}")
            _check_unpacked_size(files[0].size, max_bytes)
            extracted = archive.extractfile(files[0])
            assert extracted is not None  # a regular file
            return extracted.read()
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise ValueError(f"not a valid .tar.gz package: {exc}") from None


def _only_file_of_zip(data: bytes, max_bytes: int) -> bytes:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            files = [info for info in archive.infolist() if not info.is_dir()]
            if len(files) != 1:
                raise ValueError(f"a .zip package must hold exactly one pipeline file, this one holds {len(files)}")
            _check_unpacked_size(files[0].file_size, max_bytes)
            with archive.open(files[0]) as member:
                unpacked = member.read(max_bytes + 1)  # the header's size may lie
            _check_unpacked_size(len(unpacked), max_bytes)
            return unpacked
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError) as exc:
        raise ValueError(f"not a valid .zip package: {exc}") from None


def _check_unpacked_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ValueError(f"the pipeline file in the package is over {max_bytes:,} bytes")
