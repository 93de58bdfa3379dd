"""The plugins this deployment ships, and their configuration in ``plugins.yaml``.

The framework (stages, context, registry, actions, loading) is ``shared.plugins``; this package
only names the concrete plugin kinds. ``function_app.py`` hands :func:`configured_plugins` to the
runtime.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from plugins.xact_status import XactStatusNotification
from shared.plugins.loader import PluginFactory, load_plugins
from shared.plugins.registry import PluginRegistry

CONFIG_FILE = Path(__file__).with_name("plugins.yaml")
PLUGIN_KINDS: dict[str, PluginFactory] = {
    "xact_status_notification": XactStatusNotification.from_settings,
}


def configured_plugins(path: Path = CONFIG_FILE) -> PluginRegistry:
    """The enabled plugins of ``plugins.yaml`` (a missing file means no plugins)."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    return load_plugins(document, PLUGIN_KINDS)
