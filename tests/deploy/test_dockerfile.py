"""The Dockerfile, checked without a Docker daemon or a registry: it is parsed, and its
base, user, entrypoint and pinned install are asserted; everything it COPYs exists and is
in the build context that .dockerignore leaves; that context holds all the package build
needs; and the image it builds is the one the manifests and the chart name."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

import yaml

from tierserve import __version__
from tierserve.runtime.kube.manifests import ManifestOptions

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
CONSTRAINTS = "scripts/constraints.txt"


@dataclass(frozen=True)
class Instruction:
    stage: int
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions with their continuation lines joined; comments dropped."""
    out: list[Instruction] = []
    stage, current = -1, ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        keyword, _, args = current.strip().partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        out.append(Instruction(stage, keyword.upper(), " ".join(args.split())))
        current = ""
    return out


def _pattern(pattern: str) -> re.Pattern[str]:
    """One .dockerignore pattern (Go's filepath.Match plus ``**``) as a regex."""
    pattern = pattern.strip().strip("/")
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def in_context(path: str, ignore: list[str]) -> bool:
    """Whether ``path`` (relative to the context root) is sent to the builder: as Docker
    does, the last pattern matching the path or one of its parent directories decides, a
    ``!`` pattern re-including."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    included = True
    for raw in ignore:
        negated = raw.startswith("!")
        regex = _pattern(raw[1:] if negated else raw)
        if any(regex.match(p) for p in prefixes):
            included = negated
    return included


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def copy_sources(inst: Instruction) -> list[str]:
    words = shlex.split(inst.args)
    flags = [w for w in words if w.startswith("--")]
    assert not any(f.startswith("--from") for f in flags), inst
    return [w for w in words if not w.startswith("--")][:-1]


def test_dockerignore_matches_as_docker_does() -> None:
    ignore = ["*", "!tierserve/", "**/__pycache__", "!keep.txt"]
    assert not in_context("tests/test_x.py", ignore)
    assert not in_context(".venv/bin/python", ignore)
    assert in_context("tierserve/cli/main.py", ignore)
    assert not in_context("tierserve/cli/__pycache__/main.cpython-311.pyc", ignore)
    assert in_context("keep.txt", ignore)


def test_dockerfile_base_user_entrypoint_and_pinned_install() -> None:
    steps = instructions(DOCKERFILE.read_text())
    bases = [s.args for s in steps if s.keyword == "FROM"]
    assert [b.split()[0] for b in bases] == ["python:3.11-slim", "python:3.11-slim"]
    final = max(s.stage for s in steps)
    last = [s for s in steps if s.stage == final]
    # non-root 65532, numeric (the kubelet checks runAsNonRoot by uid)
    (user,) = [s.args for s in last if s.keyword == "USER"]
    assert user.split(":")[0] == "65532" and user.split(":")[1] == "65532"
    assert [s.keyword for s in last][-2:] == ["ENTRYPOINT", "CMD"]
    (entrypoint,) = [json.loads(s.args) for s in last if s.keyword == "ENTRYPOINT"]
    assert entrypoint == ["tierserve"]  # exec form: signals reach tierserve itself
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["tierserve"] == "tierserve.cli.main:main"
    # every dependency pinned by the gate's constraints; the final stage installs only
    # those wheels (no index), from the source tree's own build
    runs = [s for s in steps if s.keyword == "RUN"]
    (build,) = [r for r in runs if "pip wheel" in r.args]
    assert f"-c {CONSTRAINTS}" in build.args and build.args.rstrip().endswith(" .")
    (install,) = [r for r in runs if r.stage == final and "pip install" in r.args]
    assert "--no-index" in install.args and "from=build" in install.args
    assert "useradd --uid 65532 --gid 65532" in install.args
    assert not any(s.keyword == "USER" for s in steps if s.stage != final)


def test_what_the_dockerfile_copies_exists_and_is_in_the_context() -> None:
    ignore = dockerignore()
    copies = [s for s in instructions(DOCKERFILE.read_text()) if s.keyword in ("COPY", "ADD")]
    assert all(s.keyword == "COPY" for s in copies)  # ADD would fetch URLs / unpack
    sources = [src for s in copies for src in copy_sources(s)]
    assert CONSTRAINTS in sources
    for src in sources:
        assert (ROOT / src).exists(), f"the Dockerfile copies {src}, which does not exist"
        assert in_context(src, ignore), f"{src} is left out of the build context"
    # the package build needs every module and data file of tierserve/, and the readme
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["readme"] in sources
    tracked = [p.relative_to(ROOT).as_posix() for p in (ROOT / "tierserve").rglob("*")]
    modules = [p for p in tracked if p.endswith(".py") and "__pycache__" not in p]
    assert modules and all(in_context(p, ignore) for p in modules)
    for pattern in project["tool"]["setuptools"]["package-data"]["tierserve"]:
        for path in (ROOT / "tierserve").glob(pattern):
            rel = path.relative_to(ROOT).as_posix()
            assert in_context(rel, ignore), f"package data {rel} is left out of the context"
    # and nothing heavy or local rides along
    for path in (".venv/bin/python", "tests/conftest.py", ".git/HEAD", "test-artifacts/x"):
        assert not in_context(path, ignore), path


def test_the_image_is_the_one_the_manifests_and_the_chart_name() -> None:
    assert ManifestOptions().image == f"ghcr.io/tierserve/tierserve:{__version__}"
    values = yaml.safe_load((ROOT / "deploy/helm/tierserve/values.yaml").read_text())
    chart = yaml.safe_load((ROOT / "deploy/helm/tierserve/Chart.yaml").read_text())
    image = f"{values['image']['repository']}:{values['image']['tag'] or chart['appVersion']}"
    assert image == ManifestOptions().image
