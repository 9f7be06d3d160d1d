"""Makes every `orbit[.X]` import give `tfpipe.controller_core[.X]`, so that Orbit's own tests run against it.

    from tests.support import orbit_alias
    orbit_alias.install()
    import orbit   # tfpipe.controller_core
"""

import importlib
import importlib.abc
import importlib.util
import sys
from types import ModuleType
from typing import Any, Optional, Sequence

PACKAGE = "tfpipe.controller_core"


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds `orbit` and its submodules, and loads each as the controller_core module of the same name."""

    def find_spec(self, name: str, path: Optional[Sequence[str]], target: Any = None) -> Any:
        if name == "orbit" or name.startswith("orbit."):
            return importlib.util.spec_from_loader(name, self)
        return None

    def create_module(self, spec: Any) -> ModuleType:
        return importlib.import_module(PACKAGE + spec.name[len("orbit"):])

    def exec_module(self, module: ModuleType) -> None:
        """Nothing: the module is controller_core's, executed when it was imported."""


def install() -> None:
    """Puts the alias first on `sys.meta_path` (once)."""
    if not any(isinstance(finder, _Alias) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Alias())
