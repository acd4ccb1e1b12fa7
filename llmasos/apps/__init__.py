"""Built-in apps (one small module each) and the app registry."""

from llmasos.apps.app import App
from llmasos.apps.registry import find_app, list_apps

__all__ = ["App", "find_app", "list_apps"]
