"""Regenerate the Python modules and type stubs for protos/kfpgrpc/v1 into kfpgrpc/v1.

    python scripts/generate_protos.py          # write kfpgrpc/v1/*_pb2*.py[i]
    python scripts/generate_protos.py --check  # exit 1 if the committed files are stale

The generator is pinned (grpcio-tools 1.75.1 → protobuf gencode 6.31.1) because gencode only
imports on a runtime at least as new as itself: 6.31.1 gencode imports on protobuf 6.31+ (kfp's
range) and on protobuf 7, while newer grpcio-tools would emit 7.x gencode that protobuf 6 rejects.
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.metadata
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO / "protos"
PACKAGE_DIR = Path("kfpgrpc") / "v1"
GRPCIO_TOOLS_VERSION = "1.75.1"
INIT_TEXT = '"""Generated protobuf and gRPC modules of the kfpgrpc.v1 API (scripts/generate_protos.py)."""\n'


def generate(out_root: Path) -> Path:
    """Run protoc into out_root; return the generated package directory."""
    installed = importlib.metadata.version("grpcio-tools")
    if installed != GRPCIO_TOOLS_VERSION:
        sys.exit(f"grpcio-tools {GRPCIO_TOOLS_VERSION} is required, found {installed}")
    import grpc_tools
    from grpc_tools import protoc

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        f"--mypy_grpc_out={out_root}",
        *protos,
    ]
    if protoc.main(args) != 0:
        sys.exit("protoc failed")
    package = out_root / PACKAGE_DIR
    (package / "__init__.py").write_text(INIT_TEXT)
    return package


def generated_names(directory: Path) -> set[str]:
    return {p.name for p in directory.iterdir() if p.suffix in (".py", ".pyi")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if kfpgrpc/v1 is not up to date")
    check = parser.parse_args().check
    target = REPO / PACKAGE_DIR
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        names = generated_names(fresh)
        if check:
            current = generated_names(target) if target.exists() else set()
            stale = sorted(n for n in names & current if not filecmp.cmp(fresh / n, target / n, shallow=False))
            stale += sorted(names ^ current)
            if stale:
                sys.exit(f"generated code is stale: {', '.join(stale)}; run scripts/generate_protos.py")
            print(f"generated code is up to date ({len(names)} files)")
            return
        target.mkdir(parents=True, exist_ok=True)
        for old in generated_names(target) - names:
            (target / old).unlink()
        for name in names:
            shutil.copyfile(fresh / name, target / name)
        print(f"wrote {len(names)} files to {PACKAGE_DIR}")


if __name__ == "__main__":
    main()
