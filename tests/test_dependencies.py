"""Every third-party module the code imports belongs to a dependency that pyproject.toml declares.

A module installed by hand on a machine could otherwise stand in for a missing declaration and keep
CI green. The declared requirements are read from pyproject.toml (the source of truth, not the
possibly stale installed metadata), followed transitively through the installed distributions'
own requirements, and matched against ``importlib.metadata.packages_distributions``.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# Which declarations may serve the imports of each folder.
FOLDERS = {
    "dada": ("", "cluster"),
    "dadafs": ("",),
    "tests": ("", "test", "cluster"),
    "benchmarks": ("", "bench", "cluster"),
}


def declared(group: str) -> list[Requirement]:
    """The requirements of the runtime dependencies ("") or of one extra."""
    texts = PYPROJECT["dependencies"] if group == "" else PYPROJECT["optional-dependencies"][group]
    return [Requirement(t) for t in texts]


def closure(requirements: list[Requirement]) -> set[str]:
    """Canonical names of the requirements and everything they require, as installed."""
    seen: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in requirements]
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        key = f"{name}[{','.join(sorted(extras))}]"
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # not installed: its modules cannot be imported either, and the import check says so
        for text in dist.requires or ():
            sub = Requirement(text)
            env = [{**default_environment(), "extra": e} for e in (extras or {""})]
            if sub.marker is None or any(sub.marker.evaluate(e) for e in env):
                todo.append((sub, frozenset(sub.extras)))
    return {k.split("[")[0] for k in seen}


def local_modules(folder: Path) -> set[str]:
    """Top-level names the folder provides itself (test helpers, benchmark helpers)."""
    return {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if (p / "__init__.py").exists()}


def imports(path: Path) -> set[str]:
    """Top-level modules a file imports absolutely, anywhere in it (lazy imports included)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def undeclared() -> list[str]:
    providers = metadata.packages_distributions()
    ours = {"dada", "dadafs"}
    problems = []
    for folder, groups in FOLDERS.items():
        allowed = closure([r for g in groups for r in declared(g)])
        local = ours | local_modules(ROOT / folder) | local_modules(ROOT / "tests")  # benchmarks reuse helpers
        for path in sorted((ROOT / folder).rglob("*.py")):
            for module in sorted(imports(path) - local - set(sys.stdlib_module_names)):
                dists = {canonicalize_name(d) for d in providers.get(module, ())}
                if not dists & allowed:
                    where = ", ".join(sorted(dists)) or "no installed distribution"
                    problems.append(f"{path.relative_to(ROOT)} imports {module!r} (from {where}), which no "
                                    f"declaration of {' / '.join(g or 'dependencies' for g in groups)} provides")
    return problems


def test_every_imported_module_is_declared():
    problems = undeclared()
    assert not problems, "undeclared imports:\n" + "\n".join(problems)


def test_the_check_sees_lazy_imports_and_ignores_relative_ones(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("import a.b\nfrom c import d\nfrom . import e\n\ndef f():\n    import g\n")
    assert imports(f) == {"a", "c", "g"}


def test_the_closure_follows_requirements_transitively():
    # numba requires llvmlite: importing llvmlite is covered by declaring numba alone.
    assert "llvmlite" in closure([Requirement("numba")])
    assert "llvmlite" not in closure([Requirement("h5py")])
