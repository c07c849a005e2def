"""Refresh constraints.txt, finsent's pinned and tested dependency set, from pyproject.toml.

    pip install uv && python .ci/lock.py

pyproject.toml keeps version ranges for people who install finsent into an environment of their own;
constraints.txt pins every package that a full install resolves to (every extra but ``gpu``, whose
mamba-ssm builds only against a CUDA toolkit), so the README's commands and CI install exactly the set the
tests passed with. torch is pinned at TORCH; the CUDA runtime packages that PyPI's torch wheel pulls
(nvidia-*, triton, cuda-*) are left out, since finsent installs the CPU wheel first and GPU users bring the
CUDA build they want. The file records a digest of pyproject.toml's dependency lists, and
tests/test_lock.py fails when the two disagree. After a refresh: run the tests, then commit both files.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
LOCK = ROOT / "constraints.txt"
TORCH = "torch==2.13.0"
SKIPPED_EXTRAS = ("gpu",)
CUDA_ONLY = re.compile(r"^(nvidia-.*|triton|cuda-.*)$")
DIGEST_PREFIX = "# pyproject-sha256: "
HEADER = f"""\
# finsent's pinned, tested dependency set: pip constraints for the README's install and test commands and .ci/run
#   pip install -c constraints.txt {TORCH} && pip install -c constraints.txt -e '.[test]'
# Tested on Python 3.11 (Linux x86-64); the markers below resolve 3.10 and 3.12+ too.
# Refresh after changing pyproject.toml's dependencies (then run the tests and commit both):
#   pip install uv && python .ci/lock.py
"""


def requirements(pyproject: Path = ROOT / "pyproject.toml") -> dict[str, list[str]]:
    """pyproject's requirement lists that the lock covers: ``dependencies`` and every extra but the skipped."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    out = {"dependencies": list(project["dependencies"])}
    for extra, reqs in sorted(project.get("optional-dependencies", {}).items()):
        if extra not in SKIPPED_EXTRAS:
            out[extra] = list(reqs)
    return out


def digest(pyproject: Path = ROOT / "pyproject.toml") -> str:
    """SHA-256 of the covered requirement lists and the torch pin (whitespace and order of extras aside)."""
    reqs = {k: sorted(re.sub(r"\s+", "", r) for r in v) for k, v in requirements(pyproject).items()}
    return hashlib.sha256(json.dumps([reqs, TORCH], sort_keys=True).encode()).hexdigest()


def recorded_digest(lock: Path = LOCK) -> str | None:
    for line in lock.read_text(encoding="utf-8").splitlines():
        if line.startswith(DIGEST_PREFIX):
            return line[len(DIGEST_PREFIX):].strip()
    return None


def _compile(out: Path, constraint: Path, exclude: list[str]) -> str:
    if LOCK.is_file():  # uv keeps the versions of an existing output file where they still fit: no drift
        out.write_text(LOCK.read_text(encoding="utf-8"), encoding="utf-8")
    extras = [a for extra in requirements() if extra != "dependencies" for a in ("--extra", extra)]
    cmd = [
        sys.executable, "-m", "uv", "pip", "compile", "pyproject.toml", *extras, "--universal",
        "--constraint", str(constraint), "--custom-compile-command", "python .ci/lock.py",
        "--no-header", "--quiet", "--output-file", str(out),
        *[a for name in exclude for a in ("--no-emit-package", name)],
    ]  # fmt: skip
    subprocess.run(cmd, cwd=ROOT, check=True)
    return out.read_text(encoding="utf-8")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        constraint = Path(tmp) / "torch.txt"
        constraint.write_text(TORCH + "\n")
        first = _compile(Path(tmp) / "all.txt", constraint, [])
        names = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==", first, flags=re.M)
        exclude = sorted({n for n in names if CUDA_ONLY.match(n.lower())})
        body = _compile(Path(tmp) / "lock.txt", constraint, exclude)
    tmp_lock = LOCK.with_suffix(".txt.tmp")
    tmp_lock.write_text(HEADER + DIGEST_PREFIX + digest() + "\n" + body, encoding="utf-8")
    tmp_lock.replace(LOCK)
    pins = len(re.findall(r"^[A-Za-z0-9][A-Za-z0-9._-]*==", body, flags=re.M))
    print(f"{LOCK.name}: {pins} pins ({len(exclude)} CUDA-only packages left out)")


if __name__ == "__main__":
    main()
