"""Build the status-consumer Lambda zip: the handler, the ades modules it imports, and their wheels.

    .venv/bin/python lambdas/build.py --out DIR [--arch x86_64|arm64]

Writes DIR/status-consumer.zip (handler `status_consumer.handler.handler`, runtime python3.11) and
DIR/status-consumer.txt (what went in). The zip carries exactly:

- lambdas/status_consumer/ and ades/{__init__,config,models,status,merge}.py, ades/store/, ades/events/;
- elasticsearch, pydantic and pydantic-settings and the packages they need (each pinned to the version installed
  where this script runs, so the zip runs what the tests ran), as manylinux wheels for the Lambda runtime.

boto3 is not carried: the handler path never imports it (ades/events/aws.py does, and is only used by the local
poller and the SNS sink; the Lambda runtime has boto3 should anyone import them there).

The wheels are installed once per (requirements, platform, Python) into ADES_CACHE_DIR/lambda/ and reused; the zip
is deterministic (sorted entries, fixed timestamps), so unchanged sources give byte-identical zips.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
ZIP_NAME = "status-consumer.zip"
RUNTIME_PYTHON = "3.11"
PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}

ADES_MODULES = ("__init__.py", "config.py", "config_batches.py", "config_callbacks.py", "config_node.py", "models.py",
                "status.py", "merge.py")
ADES_PACKAGES = ("store", "events")
HANDLER_PACKAGE = ROOT / "lambdas" / "status_consumer"
REQUIREMENTS = ("elasticsearch", "pydantic", "pydantic-settings")

# Zip entries get this time so that a rebuild of the same inputs gives the same bytes (and the same S3 key hash).
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIP_DIRS = {"__pycache__", "bin"}


def _declared(name: str) -> str:
    """pyproject's requirement for `name` (used when the package is not installed where this script runs)."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    return next((d for d in declared if Requirement(d).name == name), name)


def requirements() -> list[str]:
    """The direct dependencies and everything they need, each pinned to the version installed here.

    Pinning the whole closure (not only the three direct ones) keeps pip from picking newer transitive versions
    than the tests ran with (it once chose a python-dateutil that botocore in the Lambda runtime rejects).
    Optional extras are left out; markers are judged by this interpreter, which is Linux CPython like the runtime.
    """
    pins: dict[str, str] = {}
    todo = list(REQUIREMENTS)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in pins:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            if name in REQUIREMENTS:
                pins[name] = _declared(name)  # pip resolves the rest of this one's tree itself
                continue
            raise
        pins[name] = f"{name}=={dist.version}"
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sorted(pins.values())


def default_cache_dir() -> Path:
    sys.path.insert(0, str(ROOT))
    from ades.config import Settings

    return Settings().cache_dir


def install_dependencies(reqs: list[str], arch: str, cache_dir: Path) -> Path:
    """Install the wheels into a cached folder keyed by what decides its content; return that folder."""
    key = hashlib.sha256(json.dumps([reqs, PLATFORMS[arch], RUNTIME_PYTHON]).encode()).hexdigest()[:16]
    target = cache_dir / "lambda" / f"deps-{arch}-{key}"
    if (target / ".complete").exists():
        print(f"using cached dependencies {target}", file=sys.stderr)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    print(f"installing {' '.join(reqs)} for {PLATFORMS[arch]} into {target}", file=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="deps-", dir=target.parent))
    try:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
             "--target", str(work), "--platform", PLATFORMS[arch], "--implementation", "cp",
             "--python-version", RUNTIME_PYTHON, "--only-binary=:all:", "--cache-dir", str(cache_dir / "pip"),
             *reqs],
            check=True,
        )
        (work / ".complete").write_text("\n".join(reqs) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        # A rename, so a build killed halfway never leaves a folder that looks complete.
        work.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _files(base: Path, top: Path) -> list[tuple[str, Path]]:
    """(name in zip, file) for every file under `top`, skipping caches and console scripts."""
    found = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for name in filenames:
            path = Path(dirpath) / name
            if name.endswith((".pyc", ".pyo")) or name == ".complete":
                continue
            found.append((path.relative_to(base).as_posix(), path))
    return found


def zip_entries(deps: Path) -> list[tuple[str, Path]]:
    entries = _files(deps, deps)
    entries += _files(HANDLER_PACKAGE.parent, HANDLER_PACKAGE)
    ades = ROOT / "ades"
    entries += [(f"ades/{m}", ades / m) for m in ADES_MODULES]
    for package in ADES_PACKAGES:
        entries += _files(ROOT, ades / package)
    return sorted(entries)


def write_zip(entries: list[tuple[str, Path]], out: Path) -> None:
    tmp = out.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, path in entries:
            info = zipfile.ZipInfo(name, FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16  # readable by the Lambda runtime user whatever the local umask was
            zf.writestr(info, path.read_bytes())
    tmp.replace(out)


def installed_distributions(deps: Path) -> list[str]:
    return sorted(
        f"{dist.metadata['Name']}=={dist.version}" for dist in importlib.metadata.distributions(path=[str(deps)])
    )


def build(out_dir: Path, arch: str = "x86_64", cache_dir: Path | None = None) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    deps = install_dependencies(requirements(), arch, cache_dir or default_cache_dir())
    out = out_dir / ZIP_NAME
    write_zip(zip_entries(deps), out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    manifest = [f"# {ZIP_NAME} sha256 {digest}", f"# runtime python{RUNTIME_PYTHON} {arch}",
                "# handler status_consumer.handler.handler", *installed_distributions(deps)]
    out.with_suffix(".txt").write_text("\n".join(manifest) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the status-consumer Lambda zip from lambdas/ and ades/.")
    parser.add_argument("--out", type=Path, required=True, help="folder to write status-consumer.zip into")
    parser.add_argument("--arch", choices=sorted(PLATFORMS), default="x86_64",
                        help="Lambda architecture the wheels are for (default x86_64)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="where wheels are kept between builds (default ADES_CACHE_DIR)")
    args = parser.parse_args(argv)
    try:
        out = build(args.out, args.arch, args.cache_dir)
    except subprocess.CalledProcessError as err:
        print(f"build.py: error: pip failed with exit code {err.returncode}", file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
