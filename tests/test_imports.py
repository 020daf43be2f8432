"""The package's import graph: no circles, no arrow up, no privates across modules, light modules stay light.

The graph is read from the generated package (every import, at module level or inside a function), so a circle
hidden in a function body counts too. Each module is then imported in a fresh interpreter.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).parents[1] / "aiworkbench"

# The rooms, lowest first. A module may import its own room, and any room below it; never one above ("arrow up").
# The core is the lifecycle's first half; the rooms its second half; results + facade above them; the surfaces on top.
LAYERS = [
    {"core"},
    {"jobs", "serving", "monitoring", "team"},
    {"ci"},  # the project's checks as a pipeline: runs stages of every room below
    {"facade"},
    {"lab", "cli"},
]
# rooms of one layer may import each other only in this direction (a circle between rooms is caught anyway)
SIDEWAYS = {("monitoring", "jobs"), ("serving", "monitoring"), ("team", "jobs")}
HEAVY = ("torch", "lightning", "pytorch_lightning")
LIGHT = [  # modules that list, check or show, and so must not load torch or lightning
    "aiworkbench.registry",
    "aiworkbench.gates",
    "aiworkbench.encoding",
    "aiworkbench.reference",
    "aiworkbench.serving.package",
    "aiworkbench.serving.rows",
    "aiworkbench.monitoring.monitor",
    "aiworkbench.monitoring.kpis",
    "aiworkbench.monitoring.phases",
    "aiworkbench.monitoring.drift",
    "aiworkbench.workbench",
    "aiworkbench.lab.extension",
    "aiworkbench.cli.app",
]


def modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        if p.name == "_modidx.py":
            continue
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 2:
        return parts[1]
    return "facade" if module == "aiworkbench.workbench" or module.startswith("aiworkbench.facade") else "core"


def layer(r: str) -> int:
    return next(i for i, rooms in enumerate(LAYERS) if r in rooms)


def imports(name: str, path: Path) -> list[tuple[str, list[str], int]]:
    "Every `aiworkbench` module `name` imports, with the names it takes and the line."
    is_pkg = path.name == "__init__.py"
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "aiworkbench"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "aiworkbench":
                continue
            names = [a.name for a in node.names]
            mods = modules()
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in mods]  # `from pkg import module`
            found += [(s, [], node.lineno) for s in subs]
            rest = [n for n in names if f"{target}.{n}" not in mods]
            if rest or not subs:
                found.append((target, rest, node.lineno))
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {n: {t for t, _, _ in imports(n, p) if t in mods and t != n} for n, p in mods.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    "Strongly connected components with more than one module (Tarjan)."
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    found = cycles(graph())
    assert not found, "import circles (each line: modules that import each other, directly or round about):\n" + (
        "\n".join(" <-> ".join(c) for c in found)
    )


def test_no_arrow_up():
    bad = []
    for name, targets in graph().items():
        for t in targets:
            a, b = room(name), room(t)
            if a == b or (a, b) in SIDEWAYS:
                continue
            if layer(b) >= layer(a):
                bad.append(f"{name} ({a}) imports {t} ({b})")
    assert not bad, "imports that point up or sideways:\n" + "\n".join(sorted(bad))


def test_no_private_names_across_modules():
    bad = []
    for name, path in modules().items():
        for target, names, line in imports(name, path):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and target != name:
                    bad.append(f"{path.relative_to(PKG.parent)}:{line} takes `{n}` from {target}")
    assert not bad, "private names imported across modules (make them public, or move the code):\n" + "\n".join(bad)


@pytest.mark.parametrize("module", sorted(modules()))
def test_module_imports_alone(module):
    "Each module imports in a fresh interpreter (no hidden order dependency); the light ones load no torch/lightning."
    code = (
        "import importlib, json, sys; importlib.import_module(sys.argv[1]);"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    )
    r = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"`import {module}` failed:\n{r.stderr[-3000:]}"
    if module in LIGHT:
        heavy = json.loads(r.stdout.strip().splitlines()[-1])
        assert not heavy, f"`import {module}` loads {heavy}: move those imports into the functions that need them"
