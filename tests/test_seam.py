"""One seam for the libraries' internals: realtime/seam.py, and nothing else.

These break loudly on an upgrade that moves what the seam relies on, and on any
module of Lifeline that starts reaching into python-socketio, python-engineio or
aiohttp past their public API.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import aiohttp
import engineio
import socketio

from realtime.engine import Engine
from realtime.seam import SocketServer, engine_of

ROOT = Path(__file__).resolve().parent.parent
SEAM = ROOT / "realtime" / "seam.py"
PACKAGES = ("handlers", "integrations", "realtime", "server", "services", "storage", "bench")


def _private_names(package: object) -> set[str]:
    """Every ``_name`` a library defines or uses as an attribute (not dunders)."""
    names: set[str] = set()
    root = Path(inspect.getfile(package)).parent  # type: ignore[arg-type]
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = None
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = node.name
            elif isinstance(node, ast.Name):
                name = node.id
            if name and name.startswith("_") and not name.startswith("__"):
                names.add(name)
    return names


def test_no_module_but_the_seam_touches_a_private_attribute_of_those_libraries() -> None:
    private = set().union(*(_private_names(p) for p in (socketio, engineio, aiohttp)))
    offenders = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path == SEAM:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                name = None
                if isinstance(node, ast.Attribute) and node.attr in private:
                    owner = node.value
                    # Our own objects' privates are ours (self._x, cls._x).
                    if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                        name = node.attr
                elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "getattr":
                    arg = node.args[1] if len(node.args) > 1 else None
                    if isinstance(arg, ast.Constant) and arg.value in private:
                        name = str(arg.value)
                elif isinstance(node, ast.ImportFrom) and node.module:
                    top = node.module.split(".")[0]
                    parts = node.module.split(".")
                    if top in ("socketio", "engineio", "aiohttp") and any(
                        p.startswith("_") for p in parts
                    ):
                        name = node.module
                if name:
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
    assert not offenders, "private parts of the Socket.IO/HTTP libraries used:\n" + "\n".join(
        offenders
    )


def test_no_module_imports_python_engineio() -> None:
    """The engine is Lifeline's own; python-engineio is only python-socketio's dependency."""
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                modules = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else []
                )
                assert not any(m.split(".")[0] == "engineio" for m in modules), path


def test_what_the_seam_relies_on_is_still_there() -> None:
    # python-socketio builds its engine through this method, in its constructor.
    assert callable(getattr(socketio.AsyncServer, "_engineio_server_class", None))
    server = SocketServer()
    assert isinstance(server.eio, Engine)
    assert engine_of(server) is server.eio
    # ... and registers these three handlers on it.
    assert set(server.eio.handlers) == {"connect", "message", "disconnect"}
