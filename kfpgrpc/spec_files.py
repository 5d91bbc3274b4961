"""Compiled pipeline files, as the kfp compiler writes them and KFP's upload accepts them: a YAML
(or JSON) document, with an optional second one (the platform spec of Kubernetes settings);
for uploads also a `.tar.gz` or `.zip` package holding one such file."""

from __future__ import annotations

import functools
import gzip
import io
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from typing import Any

_GZIP = b"\x1f\x8b"
_ZIP = b"PK\x03\x04"


# At most this many entries of a package are looked at: KFP's packages hold one pipeline file
# (and perhaps its directory); tarfile keeps a TarInfo per entry read.
MAX_PACKAGE_ENTRIES = 16
# The largest GNU long-name or pax header accepted, in bytes: tarfile reads one whole into
# memory, and gzip makes a 32 MB body hundreds of times that.
MAX_TAR_HEADER_BYTES = 8192
# The largest central directory of a .zip package, in bytes: room for MAX_PACKAGE_ENTRIES
# entries with long names.
MAX_ZIP_DIRECTORY_BYTES = 65536
# The deepest nesting of lists and mappings in a pipeline file: a compiled spec is about 10
# deep, its values at most json_values.MAX_DEPTH (32) more.
MAX_YAML_DEPTH = 100


def spec_from_text(text: str) -> dict[str, Any]:
    """The spec in `text`; two documents become {"pipeline_spec", "platform_spec"}. Raises
    ValueError saying what is wrong, with the line and column of YAML the kfp compiler never
    writes: anchors and aliases (`&a`, `*a`: a few hundred bytes of them expand to gigabytes,
    "billion laughs"), values JSON has no type for (dates, `!!binary`, `!!set`, ...), and
    nesting deeper than MAX_YAML_DEPTH."""
    import yaml  # only uploads read YAML: every other command starts without it

    try:
        documents: list[Any] = [
            document for document in yaml.load_all(text, Loader=_pipeline_loader()) if document is not None
        ]
    except yaml.MarkedYAMLError as exc:
        raise ValueError(_yaml_problem(exc)) from None
    except yaml.YAMLError as exc:
        raise ValueError(f"not YAML or JSON: {exc}") from None
    if not documents or not all(isinstance(document, dict) for document in documents) or len(documents) > 2:
        raise ValueError("not a compiled pipeline (one YAML or JSON mapping)")
    if len(documents) == 2:
        return {"pipeline_spec": documents[0], "platform_spec": documents[1]}
    return dict(documents[0])


def _yaml_problem(exc: Any) -> str:
    """A PyYAML error as one line: what, and where (1-based line and column)."""
    mark = exc.problem_mark or exc.context_mark
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    if getattr(exc, "ours", False):
        return f"{where}{exc.problem}"
    return f"not YAML or JSON: {where}{exc.problem or exc.context}"


@functools.cache
def _pipeline_loader() -> type:
    """yaml.SafeLoader, but refusing anchors and aliases as they are composed (before anything
    is expanded) and tags whose values are not JSON's."""
    import yaml

    class Refused(yaml.MarkedYAMLError):
        ours = True

    class PipelineLoader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise Refused(problem="YAML anchors and aliases (&name, *name) are not accepted: the kfp compiler never writes them",
                              problem_mark=event.start_mark)
            if self.depth == MAX_YAML_DEPTH:  # PyYAML recurses per level: deeper would exhaust the stack
                raise Refused(problem=f"nested more than {MAX_YAML_DEPTH} lists and mappings deep", problem_mark=event.start_mark)
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            self.flatten_mapping(node)  # `<<` merge keys first, as SafeConstructor does
            for key, _ in node.value:
                if key.tag != "tag:yaml.org,2002:str":
                    shown = repr(key.value) if isinstance(key, yaml.ScalarNode) else "a list or mapping"
                    raise Refused(problem=f"a mapping key that is not a string ({shown}): JSON's keys are strings; quote it",
                                  problem_mark=key.start_mark)
            return super().construct_mapping(node, deep)

    def refuse(kind: str) -> Callable[[Any, Any], Any]:
        def construct(loader: Any, node: Any) -> Any:
            raise Refused(problem=f"{kind} ({node.tag}) has no JSON type: write it as a quoted string",
                          problem_mark=node.start_mark)
        return construct

    for tag, kind in (("timestamp", "a date or time"), ("binary", "binary data"), ("set", "a set"),
                      ("omap", "an ordered map"), ("pairs", "a list of pairs")):
        PipelineLoader.add_constructor(f"tag:yaml.org,2002:{tag}", refuse(kind))
    return PipelineLoader


def spec_from_package(data: bytes, max_bytes: int) -> dict[str, Any]:
    """The spec in an uploaded file: YAML or JSON, or a gzipped tar or zip archive holding one
    file (by its first bytes, as KFP tells them apart), whose file is read up to `max_bytes`.
    A package is read as a stream and bounded: at most MAX_PACKAGE_ENTRIES entries, tar headers
    of at most MAX_TAR_HEADER_BYTES, and no more unpacked than the file's `max_bytes` and its
    headers; no encrypted zip. Raises ValueError."""
    if data.startswith(_GZIP):
        data = _only_file_of_tar(data, max_bytes)
    elif data.startswith(_ZIP):
        data = _only_file_of_zip(data, max_bytes)
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError("not YAML, JSON, .tar.gz or .zip (not UTF-8 text)") from None
    return spec_from_text(text)


class _PackageError(ValueError):
    """A package this server does not unpack (said as is, not as an invalid package)."""


_BIG_HEADERS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)


class _BoundedTarInfo(tarfile.TarInfo):
    """A tar entry refusing the headers tarfile would read whole into memory when they are
    large (GNU long names and links, pax headers), and GNU sparse files (an unbounded chain of
    extension blocks). The kfp SDK writes none of them; `tar` writes small ones. `_proc_member`
    is tarfile's private hook for each header read (tests/test_http_bounds.py fails if it stops
    being called)."""

    def _proc_member(self, archive: tarfile.TarFile) -> Any:
        if self.type == tarfile.GNUTYPE_SPARSE:
            raise _PackageError("sparse files are not accepted in a package")
        if self.type in _BIG_HEADERS and self.size > MAX_TAR_HEADER_BYTES:
            raise _PackageError(f"a long-name or pax header of {self.size:,} bytes (at most {MAX_TAR_HEADER_BYTES:,})")
        return super()._proc_member(archive)  # type: ignore[misc]


class _CappedReader(io.RawIOBase):
    """The bytes of `source` (a file object), raising _PackageError past `limit` of them: what
    bounds the work of decompressing, whatever the archive's headers say."""

    def __init__(self, source: Any, limit: int) -> None:
        self._source, self._left = source, limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(self._left + 1 if size < 0 else min(size, self._left + 1))
        self._left -= len(chunk)
        if self._left < 0:
            raise _PackageError("the package unpacks to more than its pipeline file and headers")
        return chunk


def _only_file_of_tar(data: bytes, max_bytes: int) -> bytes:
    # Headers, padding and the end-of-archive blocks beside the one file's bytes.
    limit = max_bytes + MAX_PACKAGE_ENTRIES * (MAX_TAR_HEADER_BYTES + 2 * tarfile.BLOCKSIZE) + tarfile.RECORDSIZE
    unpacked: bytes | None = None
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as gzipped, tarfile.open(
            fileobj=_CappedReader(gzipped, limit), mode="r|", tarinfo=_BoundedTarInfo
        ) as archive:
            for count, member in enumerate(archive, start=1):
                if count > MAX_PACKAGE_ENTRIES:
                    raise ValueError(f"a .tar.gz package must hold one pipeline file, this one has over {MAX_PACKAGE_ENTRIES} entries")
                if not member.isfile():
                    continue
                if unpacked is not None:
                    raise ValueError("a .tar.gz package must hold exactly one pipeline file, this one holds more")
                _check_unpacked_size(member.size, max_bytes)
                extracted = archive.extractfile(member)
                assert extracted is not None  # a regular file
                unpacked = extracted.read(max_bytes + 1)
    except _PackageError as exc:
        raise ValueError(f"not unpacked: {exc}") from None
    except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"not a valid .tar.gz package: {exc}") from None
    if unpacked is None:
        raise ValueError("a .tar.gz package must hold exactly one pipeline file, this one holds 0")
    return unpacked


def _only_file_of_zip(data: bytes, max_bytes: int) -> bytes:
    try:
        # ZipFile makes a ZipInfo of each entry of the central directory, as many as its size
        # holds: bound that size first (read by zipfile's own reader of the end record).
        end = zipfile._EndRecData(io.BytesIO(data))  # type: ignore[attr-defined]
        if end is not None and end[zipfile._ECD_SIZE] > MAX_ZIP_DIRECTORY_BYTES:  # type: ignore[attr-defined]
            raise ValueError(f"a .zip package must hold one pipeline file, this one's directory is over {MAX_ZIP_DIRECTORY_BYTES:,} bytes")
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if len(archive.infolist()) > MAX_PACKAGE_ENTRIES:
                raise ValueError(f"a .zip package must hold one pipeline file, this one has over {MAX_PACKAGE_ENTRIES} entries")
            files = [info for info in archive.infolist() if not info.is_dir()]
            if len(files) != 1:
                raise ValueError(f"a .zip package must hold exactly one pipeline file, this one holds {len(files)}")
            if files[0].flag_bits & 0x1:
                raise ValueError("encrypted .zip packages are not supported")
            _check_unpacked_size(files[0].file_size, max_bytes)
            with archive.open(files[0]) as member:
                unpacked = member.read(max_bytes + 1)  # the header's size may lie
            _check_unpacked_size(len(unpacked), max_bytes)
            return unpacked
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError, OSError, zlib.error) as exc:
        raise ValueError(f"not a valid .zip package: {exc}") from None


def _check_unpacked_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ValueError(f"the pipeline file in the package is over {max_bytes:,} bytes")
