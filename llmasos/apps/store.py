"""The app store's local half: which installed apps the user enabled, and installing or removing them.

Rule: an app package is installed only after its user saw the capabilities its manifest asks for and
accepted them; refusing leaves nothing installed. ``prepare`` builds (or downloads) the package's wheel
into a temporary folder and reads its manifests from the wheel with ``ast`` (nothing of it runs);
``install`` then runs ``sys.executable -m pip install`` on that wheel, in the current environment, and
records each app with the capabilities accepted in ``$LLMASOS_HOME/apps.json`` (a private file, no
database). The registry refuses an installed app that is not recorded there, or whose manifest now asks
for other capabilities than the ones accepted (``check_enabled``).
"""

from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from llmasos.apps.manifest import MANIFEST_LIMITS, Manifest, ManifestError, read_entry, read_source
from llmasos.errors import LlmasosError
from llmasos.home import llmasos_home, private_dir, private_file
from llmasos.syscalls.errors import PermissionDenied

GROUP = "llmasos.apps"
ENABLED_FILE = "apps.json"
PIP_TIMEOUT = 600.0  # seconds one pip run may take (a build from source can be slow)


class StoreError(LlmasosError):
    """Installing, building or removing an app package failed; the message carries pip's last words."""


@dataclass(slots=True)
class Package:
    """A package ready to install: its wheel (in a temporary folder) and the manifests read from it."""

    name: str
    version: str
    wheel: Path
    apps: list[Manifest] = field(default_factory=list)


@dataclass(slots=True)
class Installed:
    """An installed app, as ``llmasos apps list`` shows it: enabled or not, or why it cannot be read."""

    name: str
    entry: str
    package: str
    manifest: Manifest | None
    enabled: bool
    problem: str = ""


# -- the enabled apps ---------------------------------------------------------------------------


def enabled_path() -> Path:
    return llmasos_home() / ENABLED_FILE


def enabled() -> dict[str, dict[str, Any]]:
    """name -> {version, package, caps, trusted}: the apps the user accepted, as accepted."""
    path = enabled_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path} is unreadable ({exc}); fix or delete it, then enable the apps again "
                         "with `llmasos apps install`") from None
    return data if isinstance(data, dict) else {}


def enable(manifest: Manifest, package: str) -> None:
    """Record manifest's app as accepted with the capabilities it asks for now."""
    data = enabled()
    data[manifest.name] = {"version": manifest.version, "package": package, "caps": manifest.caps(),
                           "trusted": manifest.trusted}
    _write(data)


def disable(name: str) -> bool:
    data = enabled()
    if data.pop(name, None) is None:
        return False
    _write(data)
    return True


def _write(data: dict[str, Any]) -> None:
    path = enabled_path()
    private_dir(path.parent)
    tmp = private_file(path.with_suffix(".tmp"))
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
    os.replace(tmp, path)


def check_enabled(manifest: Manifest) -> None:
    """PermissionDenied unless the user enabled this app with the capabilities it asks for now."""
    record = enabled().get(manifest.name)
    if record is None:
        raise PermissionDenied(f"app {manifest.name!r} is installed but not enabled; review its capabilities "
                               f"and enable it with `llmasos apps install {manifest.name}`")
    if record.get("caps") != manifest.caps() or bool(record.get("trusted")) != manifest.trusted:
        raise PermissionDenied(f"app {manifest.name!r} now asks for other capabilities than the ones accepted "
                               f"(version {record.get('version')}); review them with `llmasos apps install "
                               f"{manifest.name}` again")


def installed() -> list[Installed]:
    """Every app of an installed package (entry points in ``llmasos.apps``), read statically."""
    out, records = [], enabled()
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        package = ep.dist.name if getattr(ep, "dist", None) is not None else ""
        try:
            manifest = read_entry(ep.value)
            problem = "" if manifest.name == ep.name else f"declares the name {manifest.name!r}"
        except ManifestError as exc:
            manifest, problem = None, str(exc)
        out.append(Installed(ep.name, ep.value, package, manifest, ep.name in records, problem))
    return out


# -- install and remove -------------------------------------------------------------------------


@contextmanager
def prepare(spec: str) -> Iterator[Package]:
    """The wheel of spec (a folder, a wheel or sdist file, or a requirement such as ``name==1.0``) in a
    temporary folder, with the manifests of its apps; the folder goes when the block ends."""
    with tempfile.TemporaryDirectory(prefix="llmasos-app-") as tmp:
        given = Path(spec).expanduser()
        if given.is_file() and given.suffix == ".whl":
            wheel = given
        else:
            _pip("wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp,
                 str(given.resolve()) if given.exists() else spec)
            wheels = sorted(Path(tmp).glob("*.whl"))
            if not wheels:
                raise StoreError(f"pip built no wheel from {spec!r}")
            wheel = wheels[0]
        yield read_wheel(wheel)


def read_wheel(wheel: Path) -> Package:
    """The distribution name, version and app manifests of a wheel, read from the archive (nothing runs)."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            names = set(zf.namelist())
            info = next((n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA")), None)
            if info is None:
                raise StoreError(f"{wheel.name} is not a wheel (no .dist-info/METADATA)")
            meta = zf.read(f"{info}/METADATA").decode("utf-8", "replace")
            name = _header(meta, "Name") or wheel.name.split("-")[0]
            version = _header(meta, "Version") or "0"
            package = Package(name, version, wheel)
            eps = configparser.ConfigParser(interpolation=None, delimiters=("=",))
            eps.optionxform = str  # type: ignore[assignment,method-assign]  (names keep their case)
            if f"{info}/entry_points.txt" in names:
                eps.read_string(zf.read(f"{info}/entry_points.txt").decode("utf-8", "replace"))
            if not eps.has_section(GROUP):
                raise StoreError(f"package {name} declares no app: add an entry point in [project.entry-points."
                                 f"\"{GROUP}\"] (llmasos apps new NAME writes one)")
            for ep_name, value in eps.items(GROUP):
                value = value.strip()
                module, _, attr = value.partition(":")
                base = module.replace(".", "/")
                member = next((m for m in (f"{base}.py", f"{base}/__init__.py") if m in names), None)
                if member is None:
                    raise StoreError(f"package {name}: entry point {ep_name} = {value} names no module in the wheel")
                if zf.getinfo(member).file_size > MANIFEST_LIMITS.source_bytes:
                    raise StoreError(f"package {name}: {member} is over {MANIFEST_LIMITS.source_bytes} bytes")
                manifest = read_source(zf.read(member).decode("utf-8", "replace"), attr, entry=value)
                if manifest.name != ep_name:
                    raise StoreError(f"package {name}: entry point {ep_name!r} names an app called "
                                     f"{manifest.name!r}; the two names must be the same")
                package.apps.append(manifest)
    except (zipfile.BadZipFile, OSError, configparser.Error) as exc:
        raise StoreError(f"cannot read {wheel.name}: {exc}") from None
    return package


def install(package: Package) -> None:
    """pip install the prepared wheel into this environment, then enable its apps as they ask now."""
    _pip("install", "-q", "--no-input", str(package.wheel))
    for manifest in package.apps:
        enable(manifest, package.name)


def remove(name: str) -> tuple[str, list[str]]:
    """Uninstall the package that provides app name; (the package, every app it took with it)."""
    ep = next((e for e in entry_points(group=GROUP) if e.name == name), None)
    if ep is None or getattr(ep, "dist", None) is None:
        if disable(name):
            return "", [name]
        raise StoreError(f"no installed app named {name!r}; `llmasos apps list` shows the installed ones")
    dist = ep.dist.name
    gone = sorted(e.name for e in entry_points(group=GROUP) if getattr(e, "dist", None) is not None
                  and e.dist.name == dist)
    _pip("uninstall", "-y", "-q", dist)
    for app in gone:
        disable(app)
    return dist, gone


def _pip(*args: str) -> str:
    try:
        done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                              timeout=PIP_TIMEOUT, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StoreError(f"pip {args[0]} failed to run: {exc}") from None
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-8:])
        raise StoreError(f"pip {args[0]} failed (exit {done.returncode}):\n{tail}")
    return done.stdout


def _header(metadata: str, key: str) -> str | None:
    for line in metadata.splitlines():
        if not line.strip():
            return None
        k, _, v = line.partition(":")
        if k.strip().lower() == key.lower():
            return v.strip()
    return None
