"""What a container task asks of the machine that runs it: KFP's resource requests and
kfp-kubernetes node selectors, read once for every launcher.

The kfp SDK writes a container's `resources` (PipelineContainerSpec.ResourceSpec) from
`set_cpu_request/limit`, `set_memory_request/limit` and `set_accelerator_type/limit`: since kfp
2.8 as Kubernetes quantity strings (`resourceCpuLimit: "500m"`, `resourceMemoryRequest:
"512Mi"`, maybe a placeholder of a pipeline parameter), and beside them, for older backends,
numbers (`cpuLimit: 0.5`, `memoryLimit` in GB). `kubernetes.add_node_selector` writes the
executor's PlatformSpec `nodeSelector.labels`.

Kubernetes schedules a pod by its requests; a limit alone is also its request. So does this
module: the request when given, else the limit.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kfpgrpc.executor.placeholders import substitute_inputs

# Kubernetes quantity suffixes (k8s.io/apimachinery resource.Quantity): binary and decimal SI.
_SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}
_QUANTITY = re.compile(r"^([+]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|)$")


MAX_QUANTITY = 2.0**53  # bytes (8 PiB) or cores: beyond, a request is a mistake (and no longer exact)
MAX_ACCELERATORS = 1024


class ResourceError(ValueError):
    """A resource request that cannot be read, e.g. a CPU of "two"."""


def quantity(text: str, what: str) -> float:
    """A Kubernetes quantity ("500m", "1.5", "512Mi", "1G", "1e3") as a number, at most
    MAX_QUANTITY. Raises ResourceError naming `what`."""
    match = _QUANTITY.match(text.strip())
    if match is None:
        raise ResourceError(f"{what} {text!r} is not a Kubernetes quantity (like 500m, 2, 512Mi or 1G)")
    value = float(match.group(1)) * _SUFFIXES[match.group(2)]
    if not value <= MAX_QUANTITY:  # also inf and nan
        raise ResourceError(f"{what} {text!r} is more than any machine has (at most {MAX_QUANTITY:g})")
    return value


@dataclass(frozen=True)
class ResourceRequest:
    """A task's requests: `cpu` in cores, `memory` in bytes (None: not asked), `accelerator_type`
    as the SDK wrote it (e.g. "nvidia.com/gpu", "NVIDIA_TESLA_T4"; "" = none) with its
    `accelerator_count`, and `node_selector` labels (key → value)."""

    cpu: float | None = None
    memory: int | None = None
    accelerator_type: str = ""
    accelerator_count: int = 0
    node_selector: dict[str, str] = field(default_factory=dict)
    asked: tuple[str, ...] = ()  # each request as written, e.g. "CPU limit 2", for the task's notes

    @classmethod
    def of(cls, container: Mapping[str, Any], platform: Mapping[str, Any], parameters: Mapping[str, Any]) -> ResourceRequest:
        """The requests of a container (its PipelineContainerSpec), its kfp-kubernetes executor
        settings `platform` and its input `parameters` (for placeholders in the values). Raises
        ResourceError."""
        resources = container.get("resources") or {}
        asked: list[str] = []

        def read(what: str, key: str) -> str:
            value = resources.get(f"resource{key}", resources.get(key[0].lower() + key[1:]))
            if value in (None, "", 0):
                return ""
            text = substitute_inputs(str(value), parameters)
            if "{{$" in text:
                raise ResourceError(f"{what} {value!r} refers to a value this task does not have")
            asked.append(f"{what} {text}")
            # The pre-2.8 number fields give memory in GB; the strings are quantities.
            return text if f"resource{key}" in resources or "Memory" not in key else f"{text}G"

        cpu_request, cpu_limit = read("CPU request", "CpuRequest"), read("CPU limit", "CpuLimit")
        memory_request, memory_limit = read("memory request", "MemoryRequest"), read("memory limit", "MemoryLimit")
        cpu, memory = cpu_request or cpu_limit, memory_request or memory_limit
        accelerator = resources.get("accelerator") or {}
        kind = str(accelerator.get("resourceType") or accelerator.get("type") or "")
        count = 0
        if kind:
            text = substitute_inputs(str(accelerator.get("resourceCount") or accelerator.get("count") or 1), parameters)
            try:
                count = int(text)
            except ValueError:
                raise ResourceError(f"accelerator count {text!r} is not a whole number") from None
            if not 0 <= count <= MAX_ACCELERATORS:
                raise ResourceError(f"accelerator count {count} must be between 0 and {MAX_ACCELERATORS}")
            asked.append(f"accelerator {kind} × {count}")
        labels = (platform.get("nodeSelector") or {}).get("labels") or {}
        return cls(
            cpu=quantity(cpu, "CPU") if cpu else None,
            memory=int(quantity(memory, "memory")) if memory else None,
            accelerator_type=kind,
            accelerator_count=count,
            node_selector={str(key): str(value) for key, value in labels.items()},
            asked=tuple(asked),
        )
