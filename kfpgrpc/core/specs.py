"""Decoded pipeline spec snapshots and default values, shared by the runs of one spec.

A spec can be megabytes (one default parameter value of 1 MB is enough), and hundreds of runs of
one spec can wait for admission. Were each run to hold its own decoded copy, memory would grow
with the queue, and more after a restart, which reads every unfinished run back from the store.
So a snapshot is decoded once per spec hash and kept while any run holds it (a weak-value map),
and the parameter values a run takes from the spec's defaults are the spec's own objects.
"""

from __future__ import annotations

import weakref
from typing import Any

from kfpgrpc.pipeline_spec import PipelineInput
from kfpgrpc.store import runs as store
from kfpgrpc.store.database import Database


class _Snapshot(dict):  # type: ignore[type-arg]
    """A decoded spec: a plain dict that a weak reference can point to."""

    __slots__ = ("__weakref__",)


class SpecSnapshots:
    """Spec snapshots by spec hash, each decoded once while some run holds it."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._snapshots: weakref.WeakValueDictionary[str, _Snapshot] = weakref.WeakValueDictionary()

    def share(self, spec_hash: str, document: dict[str, Any]) -> dict[str, Any]:
        """The snapshot held for `spec_hash`, or `document` (whose hash it is) from now on."""
        snapshot = self._snapshots.get(spec_hash)
        if snapshot is None:
            snapshot = self._snapshots[spec_hash] = _Snapshot(document)
        return snapshot

    async def get(self, spec_hash: str) -> dict[str, Any]:
        """The stored snapshot `spec_hash`; NotFound if none is stored."""
        snapshot = self._snapshots.get(spec_hash)
        if snapshot is None:
            snapshot = self.share(spec_hash, await store.get_spec(self._db, spec_hash))
        return snapshot


def share_defaults(parameters: dict[str, Any], inputs: dict[str, PipelineInput]) -> dict[str, Any]:
    """`parameters` (decoded from a stored run), with each value that equals its input's default
    replaced by the default object itself."""
    shared = {}
    for name, value in parameters.items():
        declared = inputs.get(name)
        default = declared.default if declared is not None else None
        shared[name] = default if type(default) is type(value) and default == value else value
    return shared
