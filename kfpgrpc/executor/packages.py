"""The `pip install` preamble of lightweight components: which packages it installs and how, and
whether the task interpreter already has them.

The kfp SDK puts this before a lightweight component's command (`_get_packages_to_install_command`
in kfp/dsl/component_factory.py):

    sh -c '<ensurepip when pip is missing>
    PIP_DISABLE_PIP_VERSION_CHECK=1 python3 -m pip install --quiet --no-warn-script-location
    [--index-url URL --trusted-host URL ...] <packages_to_install> && python3 -m pip install ...
    'kfp==<SDK version>' '--no-deps' 'typing-extensions>=3.7.4,<5; python_version<"3.9"'
    && "$0" "$@"' sh -ec <program> ...

(`use_venv=True` adds lines that create a virtual environment first.) The local launcher never
runs it: it would install into the task interpreter, by default the server's own. It drops the
preamble; the task runs with the task interpreter when that satisfies every requirement, else in
a task environment where the preamble's installs are made (`environments`).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

# pip options that take a value, and flags, as the SDK writes them.
_VALUE_OPTIONS = {"--index-url", "-i", "--extra-index-url", "--trusted-host"}
_FLAGS = {"--quiet", "-q", "--no-warn-script-location", "--no-deps", "--upgrade", "-U"}
PROBE_TIMEOUT_SECONDS = 60.0

# Run by the task interpreter (standard library only): its marker environment, as
# packaging.markers.default_environment computes it (PEP 508), its installed distributions and
# the directories they are found in.
_PROBE = """
import json, os, platform, sys
from importlib import metadata
v = sys.implementation.version
version = f"{v.major}.{v.minor}.{v.micro}" + ("" if v.releaselevel == "final" else v.releaselevel[0] + str(v.serial))
environment = {
    "implementation_name": sys.implementation.name, "implementation_version": version,
    "os_name": os.name, "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform,
}
distributions = {d.metadata["Name"]: d.version for d in metadata.distributions() if d.metadata["Name"]}
paths = [p for p in sys.path if os.path.isdir(p)]
sys.stdout.write(json.dumps({"environment": environment, "distributions": distributions, "paths": paths}))
"""


class PreambleError(ValueError):
    """A `pip install` preamble not in the form the kfp SDK writes: what it installs is unknown."""


@dataclass(frozen=True)
class Needed:
    """One requirement of a preamble (PEP 508 text). `sdk_kfp`: the `kfp==<SDK version>` the SDK
    adds for its executor: any kfp of that major version serves (its runtime API is stable
    within a major), so a pipeline compiled by kfp 2.16.1 runs with kfp 2.15 installed."""

    requirement: str
    sdk_kfp: bool = False


@dataclass(frozen=True)
class PipInstall:
    """One `pip install` command of a preamble: its requirements as written (PEP 508, or a path
    or URL pip accepts), its index options as given (`--index-url URL`, `--extra-index-url URL`,
    `--trusted-host HOST`, each a separate item, in order) and whether it installs without
    dependencies (the SDK's own kfp install does)."""

    requirements: tuple[str, ...]
    index_options: tuple[str, ...] = ()
    no_deps: bool = False

    @property
    def needed(self) -> tuple[Needed, ...]:
        # The SDK's own install (kfp and typing-extensions) is the one without dependencies.
        return tuple(
            Needed(r, self.no_deps and canonicalize_name(r.split("==")[0]) == "kfp") for r in self.requirements
        )


def sdk_kfp_version(install: PipInstall, environment: dict[str, str]) -> str:
    """The version X when `install` is the kfp SDK's own install for an interpreter with the
    PEP 508 marker `environment`: `kfp==X` without dependencies, plus only requirements whose
    markers are false there (the SDK's typing-extensions for Python < 3.9). Else ""."""
    if not install.no_deps:
        return ""
    version = ""
    for text in install.requirements:
        try:
            requirement = Requirement(text)
        except InvalidRequirement:
            return ""
        if requirement.marker is not None and not requirement.marker.evaluate(environment or None):
            continue
        specifiers = list(requirement.specifier)
        if (canonicalize_name(requirement.name) != "kfp" or version or requirement.extras or requirement.url
                or requirement.marker is not None or len(specifiers) != 1 or specifiers[0].operator != "=="
                or "*" in specifiers[0].version):
            return ""
        version = specifiers[0].version
    return version


def is_pip_preamble(command: Sequence[Any]) -> bool:
    """Whether `command` starts with the shape ["sh", "-c", "<... pip install ...> && "$0" "$@"",
    ...], which runs the rest of the command after the installs."""
    return (
        len(command) > 3
        and command[0] == "sh"
        and command[1] == "-c"
        and isinstance(command[2], str)
        and "pip install" in command[2]
        and command[2].rstrip().endswith('"$0" "$@"')
    )


@functools.lru_cache(maxsize=256)
def preamble_installs(script: str) -> tuple[PipInstall, ...]:
    """The `pip install` commands of the `sh -c` script of a preamble, in order. Raises
    PreambleError for anything other than the SDK's form."""
    installs: list[PipInstall] = []
    for line in script.splitlines():
        if "pip install" not in line:
            continue
        try:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
        except ValueError as error:
            raise PreambleError(f"cannot read {line.strip()!r}: {error}") from None
        command: list[str] = []
        for token in [*tokens, "&&"]:
            if token not in ("&&", ";", "||", "|", "&"):
                command.append(token)
                continue
            if "install" in command and "pip" in command[: command.index("install")]:
                installs.append(_pip_install(command[command.index("install") + 1:]))
            command = []
    if not any(install.requirements for install in installs):
        raise PreambleError("it names no package")
    return tuple(installs)


def _pip_install(arguments: list[str]) -> PipInstall:
    requirements: list[str] = []
    options: list[str] = []
    takes_value = False
    for argument in arguments:
        if takes_value:
            options.append(argument)
            takes_value = False
        elif argument in _VALUE_OPTIONS:
            options.append(argument)
            takes_value = True
        elif argument.startswith("-"):
            if argument.split("=", 1)[0] in _VALUE_OPTIONS:
                options.append(argument)
            elif argument not in _FLAGS:
                raise PreambleError(f"unknown pip option {argument!r}")
        else:
            requirements.append(argument)
    if takes_value:
        raise PreambleError(f"pip option {options[-1]!r} has no value")
    return PipInstall(tuple(requirements), tuple(options), "--no-deps" in arguments)


class TaskInterpreter:
    """What the Python interpreter of the tasks has installed, probed in a subprocess (off the
    event loop) and kept until a directory of its `sys.path` changes (an install or an
    uninstall there)."""

    def __init__(self, python: str) -> None:
        self.python = python
        self._probed: dict[str, Any] | None = None
        self._mtimes: dict[str, int] = {}
        self._lock = asyncio.Lock()
        self._verdicts: dict[tuple[Needed, ...], list[str]] = {}

    async def missing(self, needed: tuple[Needed, ...]) -> list[str]:
        """The requirements of `needed` the interpreter does not satisfy, as written (an
        interpreter that cannot be probed satisfies none)."""
        await self._probed_now()
        verdict = self._verdicts.get(needed)
        if verdict is None:
            verdict = self._verdicts[needed] = [n.requirement for n in needed if not self._satisfies(n)]
        return verdict

    async def marker_environment(self) -> dict[str, str]:
        """The interpreter's PEP 508 marker environment ({} when it cannot be probed)."""
        return dict((await self._probed_now())["environment"])

    async def _probed_now(self) -> dict[str, Any]:
        async with self._lock:
            if self._probed is None or self._changed():
                self._probed = await self._probe()
                self._verdicts.clear()
            return self._probed

    def _changed(self) -> bool:
        return any(_mtime(path) != mtime for path, mtime in self._mtimes.items())

    async def _probe(self) -> dict[str, Any]:
        probed: dict[str, Any] = {"environment": {}, "distributions": {}, "paths": []}
        try:
            process = await asyncio.create_subprocess_exec(
                self.python, "-I", "-c", _PROBE, env={"PATH": os.defpath, "LANG": "C.UTF-8"},
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
            )
            output, _ = await asyncio.wait_for(process.communicate(), PROBE_TIMEOUT_SECONDS)
            if process.returncode == 0:
                probed = json.loads(output)
        except (OSError, TimeoutError, ValueError):
            pass
        probed["distributions"] = {canonicalize_name(name): version for name, version in probed["distributions"].items()}
        self._mtimes = {path: _mtime(path) for path in probed["paths"]}
        return probed

    def _satisfies(self, needed: Needed) -> bool:
        assert self._probed is not None
        try:
            requirement = Requirement(needed.requirement)
        except InvalidRequirement:  # e.g. a path or URL to install from: cannot be checked
            return False
        if requirement.url:
            return False
        if requirement.marker and not requirement.marker.evaluate(self._probed["environment"] or None):
            return True  # not for this interpreter
        installed = self._probed["distributions"].get(canonicalize_name(requirement.name))
        if installed is None:
            return False
        try:
            version = Version(installed)
            if needed.sdk_kfp:
                pinned = next(iter(requirement.specifier)).version
                return Version(pinned).major == version.major
        except (InvalidVersion, StopIteration):
            return False
        return requirement.specifier.contains(version, prereleases=True)


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return -1
