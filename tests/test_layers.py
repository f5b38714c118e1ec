"""Imports point one way: each part of ``parley`` may use only the parts below it.

Lowest first: the wire protocol, media primitives and the shared HTTP helpers;
the engine core; hosting (runtime, auth, ASGI app, transports); the web app.
The terminal client stands beside the host and the server: it speaks the
protocol over the network and shares only media primitives and the engine's
VAD model (its optional local VAD) with the rest. Benchmarks and the top-level
CLI may use everything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import parley

SOURCE = Path(parley.__file__).parent

FOUNDATION = ("parley.protocol", "parley.media", "parley.httpapi")
# module prefix → prefixes it may import (besides itself and the ``parley`` package root)
ALLOWED: dict[str, tuple[str, ...]] = {
    "parley.protocol": (),
    "parley.media": ("parley.protocol",),
    "parley.httpapi": (),
    # Scenario files: a schema over pydantic and YAML, shared by the web app and the terminal client.
    "parley.scenarios": (),
    "parley.engine": ("parley.protocol", "parley.media"),
    "parley.host": (*FOUNDATION, "parley.engine"),
    "parley.client": ("parley.protocol", "parley.media", "parley.engine.models", "parley.scenarios"),
    "parley.server": (*FOUNDATION, "parley.scenarios", "parley.engine", "parley.host"),
    "parley.bench": ("parley",),
    "parley.cli": ("parley",),
    "parley.__main__": ("parley",),
}


def _within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _layer(module: str) -> str:
    matches = [p for p in ALLOWED if _within(module, p)]
    assert matches, f"{module} is in no layer: add it to ALLOWED"
    return max(matches, key=len)


def imported_modules(source: str, module: str) -> set[str]:
    """Every ``parley`` module ``source`` imports, including lazy and ``importlib`` imports."""
    package = module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return {name for name in found if _within(name, "parley")}


def wrong_way(module: str, imports: set[str]) -> list[str]:
    layer = _layer(module)
    allowed = (layer, *ALLOWED[layer])
    return [
        f"{module} imports {name}"
        for name in sorted(imports)
        if name != "parley" and not any(_within(name, p) for p in allowed)
    ]


def _modules() -> dict[str, Path]:
    out = {}
    for path in SOURCE.rglob("*.py"):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def test_every_import_points_down() -> None:
    problems = [
        problem
        for module, path in sorted(_modules().items())
        if module != "parley"
        for problem in wrong_way(module, imported_modules(path.read_text(), module))
    ]
    assert not problems, "imports pointing the wrong way:\n" + "\n".join(problems)


def test_a_wrong_way_import_is_caught() -> None:
    source = (
        "from parley.protocol import ids\n"
        "def later():\n"
        "    from ..host import runtime\n"
        "    importlib.import_module('parley.host.transports.webrtc')\n"
    )
    imports = imported_modules(source, "parley.engine.session")
    assert wrong_way("parley.engine.session", imports) == [
        "parley.engine.session imports parley.host",
        "parley.engine.session imports parley.host.transports.webrtc",
    ]
    assert wrong_way("parley.host.app", imports) == []
