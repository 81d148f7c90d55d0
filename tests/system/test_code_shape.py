"""The code's shape rules, checked on the source: no import circle among the project's modules, and no
production file or function past the sizes the style guide allows."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("lightning_modules", "callbacks", "datamodules")
MAX_FILE_LINES = 300
MAX_FUNCTION_LINES = 60


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Dotted module name -> file, for every module of the three project packages."""
    mods = {}
    for package in PACKAGES:
        for path in (root / package).rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return mods


def import_graph(mods: dict[str, Path]) -> dict[str, set[str]]:
    """Edges module -> project module it imports, function-local imports included: an import hidden inside a
    function still ties the two files together, it only postpones the failure to the first call."""
    graph: dict[str, set[str]] = {name: set() for name in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                # `from pkg import sub` imports the submodule when `sub` is one, else a name of `pkg`
                targets = [
                    f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                    for a in node.names
                ]
            else:
                continue
            for target in targets:
                graph[name].update(m for m in executed(target, name) if m in mods)
    return graph


def executed(target: str, importer: str) -> list[str]:
    """The modules an import of ``target`` runs: its packages' ``__init__`` files too, outer ones first,
    except the packages the importer already sits in (those are being imported already)."""
    parts = target.split(".")
    outer = [".".join(parts[:i]) for i in range(1, len(parts) + 1)]
    return [m for m in outer if m != importer and not importer.startswith(m + ".")]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_sees_a_circle_through_a_function_local_import(tmp_path):
    pkg = tmp_path / "callbacks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from callbacks.b import g\n")
    (pkg / "b.py").write_text("def g():\n    from callbacks import a\n")
    (pkg / "c.py").write_text("import callbacks.a\n")
    for other in PACKAGES[::2]:
        (tmp_path / other).mkdir()
    assert cycles(import_graph(module_files(tmp_path))) == [["callbacks.a", "callbacks.b"]]


def test_cycle_finder_sees_a_circle_through_a_package_init(tmp_path):
    # importing lightning_modules.x runs lightning_modules/__init__.py, which imports back into callbacks
    for package, init, module in (
        (
            "callbacks",
            "from callbacks.plugin import P\n",
            ("plugin.py", "from lightning_modules.x import f\n"),
        ),
        (
            "lightning_modules",
            "from lightning_modules.system import S\n",
            ("system.py", "import callbacks.guard\n"),
        ),
    ):
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text(init)
        (tmp_path / package / module[0]).write_text(module[1])
    (tmp_path / "callbacks" / "guard.py").write_text("")
    (tmp_path / "lightning_modules" / "x.py").write_text("")
    (tmp_path / "datamodules").mkdir()
    found = cycles(import_graph(module_files(tmp_path)))
    assert found == [["callbacks", "callbacks.plugin", "lightning_modules", "lightning_modules.system"]]


def test_no_import_circle_among_project_modules():
    assert cycles(import_graph(module_files())) == []


def production_functions():
    for path in sorted(module_files().values()):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", node.end_lineno - node.lineno + 1


def test_no_production_function_is_over_the_limit():
    long = {where: n for where, n in production_functions() if n > MAX_FUNCTION_LINES}
    assert long == {}


def test_no_production_file_is_over_the_limit():
    long = {
        str(p.relative_to(ROOT)): n
        for p in module_files().values()
        if (n := len(p.read_text().splitlines())) > MAX_FILE_LINES
    }
    assert long == {}


def test_packages_are_layered():
    # datamodules <- callbacks <- lightning_modules: evaluation and the checkpoint plugin never build a system
    layer = {package: rank for rank, package in enumerate(("datamodules", "callbacks", "lightning_modules"))}
    graph = import_graph(module_files())
    upward = sorted(
        (name, target)
        for name, targets in graph.items()
        for target in targets
        if layer[target.split(".")[0]] > layer[name.split(".")[0]]
    )
    assert upward == []
