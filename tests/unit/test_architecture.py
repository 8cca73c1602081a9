"""The shape of `watcher/`, held against the code (docs/architecture.md draws it).

- Layers: a module imports only modules of its own layer or lower ones. The pure core
  (rules, detection) never reaches for I/O; the I/O parts never reach for the service.
- No import cycles among the modules.
- The watcher never imports the simulator package (`dts_sim`), which may import it; the
  command line alone loads it, lazily, for `demo` and `simulate`.
- Sizes: no module over 500 lines, no function over 60.

Imports are read from the source with `ast`, those under `if TYPE_CHECKING:` left out
(they exist for the type checker only).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "watcher"

# Lowest first. A module belongs to the first layer one of whose prefixes it starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "foundation",
        (
            "watcher.errors",
            "watcher.fastjson",
            "watcher.faults",
            "watcher.printable",
            "watcher.signals",
        ),
    ),
    ("settings and logs", ("watcher.settings", "watcher.logs", "watcher.heap")),
    (
        "the model",
        (
            "watcher.snapshot",
            "watcher.live",
            "watcher.sharing",
            "watcher.statuses",
            "watcher.shards",
            "watcher.kinds",
            "watcher.subjects",
            "watcher.events",
            "watcher.wire",
        ),
    ),
    (
        "pure judgement",
        (
            "watcher.rules",
            "watcher.silencing",
            "watcher.detect",
            "watcher.source_health",
            "watcher.board",
        ),
    ),
    (
        "DTS, state, NATS",
        (
            "watcher.dts",
            "watcher.store",
            "watcher.natsconn",
            "watcher.streamcheck",
            "watcher.pubacks",
            "watcher.publish",
            "watcher.silence_bucket",
            "watcher.cluster",
        ),
    ),
    ("what the service knows", ("watcher.status", "watcher.metrics", "watcher.http")),
    ("the cycle and the service", ("watcher.cycle", "watcher.replica", "watcher.service")),
    (
        "commands",
        (
            "watcher.probe",
            "watcher.tail",
            "watcher.silence_cli",
            "watcher.status_cli",
            "watcher.cli",
            "watcher.__main__",
            "watcher.healthcheck",
        ),
    ),
]
ALWAYS = ("watcher", "watcher.__init__")  # the package itself: its version


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer_of(name: str) -> int:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return index
    raise AssertionError(f"{name} is in no layer: add it to LAYERS and docs/architecture.md")


def _runtime_nodes(tree: ast.Module) -> Iterator[ast.AST]:
    """Every node except what is under `if TYPE_CHECKING:`."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The modules `path` imports (submodules named in `from x import y` included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(_runtime_nodes(tree))
    known = modules()
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {
                f"{node.module}.{alias.name}"
                for alias in node.names
                if f"{node.module}.{alias.name}" in known
            }
            found.update(submodules)
            if len(submodules) < len(node.names):  # names of the package itself too
                found.add(node.module)
    return found


def test_every_module_has_a_layer() -> None:
    for name in modules():
        if name not in ALWAYS:
            layer_of(name)


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_imports_a_higher_layer(name: str) -> None:
    if name in ALWAYS:
        return
    mine = layer_of(name)
    path = modules()[name]
    upward = sorted(
        other
        for other in imports(path)
        if other.startswith("watcher.") and other not in ALWAYS and layer_of(other) > mine
    )
    assert not upward, f"{name} ({LAYERS[mine][0]}) imports a higher layer: {upward}"


def test_there_is_no_import_cycle() -> None:
    known = modules()
    graph = {
        name: {other for other in imports(path, top_level_only=True) if other in known}
        for name, path in known.items()
    }
    # A package imports its own submodules to hand their names on: not a cycle.
    for name in graph:
        graph[name] = {o for o in graph[name] if not o.startswith(name + ".")}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = [*trail[trail.index(nxt) :], nxt] if nxt in trail else [node, nxt]
                raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_only_the_command_line_loads_the_simulator() -> None:
    for name, path in modules().items():
        loaded = {m for m in imports(path) if m == "dts_sim" or m.startswith("dts_sim.")}
        if name == "watcher.cli":
            assert not imports(path, top_level_only=True) & loaded  # lazily, in a command
        else:
            assert not loaded, f"{name} imports the simulator: {sorted(loaded)}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_module_over_500_lines_and_no_function_over_60(name: str) -> None:
    path = modules()[name]
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 500, f"{name}: {len(text.splitlines())} lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 60, f"{name}.{node.name}: {length} lines"
