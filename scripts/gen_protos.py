"""Generate libs/trackd_api from protos/ (the only way that code is produced).

protoc names Python modules after the proto package (`trackd.run.v1`), which would collide with
the SDK package `trackd`; the generated modules are therefore rooted at `trackd_api` and their
imports rewritten accordingly (the approach temporalio's sdk-python takes for its API stubs).
The gRPC modules get typed stubs too (`*_pb2_grpc.pyi`, mypy-protobuf's `protoc-gen-mypy_grpc`,
pinned in the dev extra), so stubs and servicers are checked against the request and response
classes.

    python scripts/gen_protos.py           # regenerate in place
    python scripts/gen_protos.py --check   # exit 1 when the committed code is stale
"""

from __future__ import annotations

import filecmp
import re
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
TARGET = ROOT / "libs" / "trackd_api"
_IMPORT = re.compile(r"^(from|import) trackd\.", re.MULTILINE)


def _grpc_stub_plugin() -> str:
    """mypy-protobuf's gRPC stub generator, installed beside this interpreter."""
    plugin = Path(sys.executable).parent / "protoc-gen-mypy_grpc"
    if not plugin.exists():
        raise SystemExit(f"{plugin} not found: install the dev extra (pip install -e '.[dev]')")
    return str(plugin)


def generate(out: Path) -> None:
    """Write the generated package into `out` (created, must not exist)."""
    with tempfile.TemporaryDirectory() as raw:
        files = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
        well_known = Path(grpc_tools.__file__).parent / "_proto"
        args = [
            "protoc",
            f"-I{PROTOS}",
            f"-I{well_known}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
            f"--plugin=protoc-gen-mypy_grpc={_grpc_stub_plugin()}",
            f"--mypy_grpc_out=quiet:{raw}",
            *files,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        shutil.copytree(Path(raw) / "trackd", out)
    for path in out.rglob("*.py*"):
        text = _IMPORT.sub(r"\1 trackd_api.", path.read_text())
        path.write_text(text)
    for directory in [out, *(d for d in out.rglob("*") if d.is_dir())]:
        (directory / "__init__.py").touch()


def _same_tree(a: Path, b: Path) -> bool:
    cmp = filecmp.dircmp(a, b, ignore=["__pycache__"])
    if cmp.left_only or cmp.right_only or cmp.diff_files or cmp.funny_files:
        return False
    _, mismatch, errors = filecmp.cmpfiles(a, b, cmp.common_files, shallow=False)
    if mismatch or errors:
        return False
    return all(_same_tree(a / d, b / d) for d in cmp.common_dirs)


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp) / "trackd_api"
        generate(fresh)
        if "--check" in argv:
            if TARGET.exists() and _same_tree(fresh, TARGET):
                return 0
            print("libs/trackd_api is stale: run `make protos` and commit the result", file=sys.stderr)
            return 1
        shutil.rmtree(TARGET, ignore_errors=True)
        shutil.copytree(fresh, TARGET)
    print(f"generated {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
