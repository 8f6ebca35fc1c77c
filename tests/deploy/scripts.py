"""The scripts under docker/, imported as modules (they are not in a package; the images run them by path)."""

from __future__ import annotations

import importlib.util
from functools import cache
from types import ModuleType

from tests.deploy.files import REPO


@cache
def docker_script(name: str) -> ModuleType:
    path = REPO / "docker" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"docker_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
