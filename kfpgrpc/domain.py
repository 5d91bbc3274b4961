"""Domain objects of the core: plain data, no protobuf. Times are microseconds since the epoch
(UTC), 0 when unset; enums are KFP's value names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")

AVAILABLE = "AVAILABLE"
ARCHIVED = "ARCHIVED"
DEFAULT_EXPERIMENT_NAME = "Default"


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    total_size: int
    next_page_token: str


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    display_name: str
    description: str
    created_at: int
    storage_state: str = AVAILABLE
    last_run_created_at: int = 0


@dataclass(frozen=True)
class Pipeline:
    pipeline_id: str
    name: str
    display_name: str
    description: str
    created_at: int


@dataclass(frozen=True)
class PipelineVersion:
    pipeline_version_id: str
    pipeline_id: str
    name: str
    display_name: str
    description: str
    created_at: int
    code_source_url: str
    pipeline_spec: dict[str, Any]
