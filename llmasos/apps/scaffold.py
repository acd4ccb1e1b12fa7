"""`llmasos apps new NAME`: a new app package, ready to build, test and install.

Rule: what it writes is a complete package whose own test passes as written: a pyproject declaring the
app's entry point in ``llmasos.apps``, the app (a literal ``App(...)`` manifest the installer can read
without running it), a test that runs it on the scripted FakeEngine, and a README. It never overwrites
a folder that exists.
"""

from __future__ import annotations

import re
from pathlib import Path

from llmasos.apps.app import check_name
from llmasos.errors import LlmasosError


class ScaffoldError(LlmasosError):
    """The new package cannot be written there, or the name cannot name a package."""


_PYPROJECT = '''[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"
description = "{name}: an llmasos app"
requires-python = ">=3.11"
dependencies = ["llmasos"]

[project.optional-dependencies]
test = ["pytest>=8", "pytest-asyncio>=0.24"]

# The app store finds the app through this entry point; its manifest is the App(...) line in the module.
[project.entry-points."llmasos.apps"]
{name} = "{module}.app:app"

[tool.setuptools]
packages = ["{module}"]

[tool.pytest.ini_options]
asyncio_mode = "auto"
asyncio_default_fixture_loop_scope = "function"
'''

_APP = '''"""{name}: an llmasos app (its manifest is the App(...) line: literal values only)."""

from __future__ import annotations

from llmasos import App, Sys

app = App("{name}", "Greets someone, then asks the model for a one-line wish", version="0.1.0",
          tools=[], memory=[], can_spawn=False)


@app.main
async def main(sys: Sys, who: str = "world") -> str:
    await sys.print(f"hello, {{who}}")
    wish = await sys.generate(f"Write a one-line wish for {{who}}.", max_tokens=24)
    return wish.text.strip()
'''

_TEST = '''"""Runs the app on llmasos's scripted FakeEngine: no model is loaded."""

from __future__ import annotations

from llmasos import Kernel
from llmasos.engine.fake import FakeEngine
from {module}.app import app


async def test_{ident}_asks_the_model_and_returns_its_wish(tmp_path):
    engine = FakeEngine()
    engine.enqueue("Have a bright day.")
    async with Kernel(engine=engine, home=tmp_path) as kernel:
        status = await kernel.run(app, "Ada")
    assert status.state == "exited", status.error
    assert status.value == "Have a bright day."
    assert "wish for Ada" in engine.prompts[0]
'''

_README = '''# {name}

An llmasos app package.

    pip install -e . && pytest -q          # its test runs on the scripted FakeEngine
    llmasos apps install .                  # shows the capabilities it asks for, then installs it
    llmasos run {name} Ada
'''


def new(name: str, where: Path) -> Path:
    """Write the package for app name into where/name; its folder."""
    try:
        check_name(name)
    except ValueError as exc:
        raise ScaffoldError(str(exc)) from None
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]{0,63}", name):
        raise ScaffoldError(f"a package name starts with a letter and has only letters, digits, '-' and '_' "
                            f"(at most 64), not {name!r}")
    module = name.replace("-", "_").lower()
    root = Path(where) / name
    if root.exists():
        raise ScaffoldError(f"{root} exists; choose another name or remove it first")
    values = {"name": name, "dist": f"llmasos-app-{name}".lower(), "module": module,
              "ident": module}
    files = {"pyproject.toml": _PYPROJECT, f"{module}/__init__.py": '"""{name}: an llmasos app package."""\n',
             f"{module}/app.py": _APP, "tests/test_app.py": _TEST, "README.md": _README}
    try:
        for rel, text in files.items():
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text.format(**values), encoding="utf-8")
    except OSError as exc:
        raise ScaffoldError(f"cannot write {root}: {exc}") from None
    return root
