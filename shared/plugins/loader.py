"""Plugins from configuration: each entry names a plugin kind the deployment ships, whether it is
enabled, its priority, domains, event types and its own settings. A bad entry stops the app at
start-up (like a bad setting) rather than silently running without the plugin."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.config import ConfigError
from shared.domains import Domain
from shared.plugins.registry import Plugin, PluginRegistry

DEFAULT_PRIORITY = 100  # lower runs first


class _PluginEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    kind: str = Field(min_length=1)
    enabled: bool = True
    priority: int = DEFAULT_PRIORITY
    domains: list[str] = Field(default_factory=list)
    event_types: list[str] = Field(default_factory=list)
    config: dict[str, Any] = Field(default_factory=dict)


class _PluginDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    plugins: list[_PluginEntry] = Field(default_factory=list)


@dataclass(frozen=True, slots=True)
class PluginSettings:
    """One configured plugin, as its factory receives it."""

    name: str
    priority: int
    domains: frozenset[Domain]
    event_types: frozenset[str]
    config: Mapping[str, Any]


PluginFactory = Callable[[PluginSettings], Plugin]


def load_plugins(
    document: Mapping[str, Any] | None, factories: Mapping[str, PluginFactory]
) -> PluginRegistry:
    """The registry of the enabled plugins ``document`` configures (``{"plugins": [...]}``)."""
    try:
        parsed = _PluginDocument.model_validate(document or {})
    except ValidationError as exc:
        raise ConfigError(f"plugin configuration is invalid: {exc}") from exc
    registry = PluginRegistry()
    for entry in parsed.plugins:
        factory = factories.get(entry.kind)
        if factory is None:
            raise ConfigError(
                f"plugin {entry.name!r}: unknown kind {entry.kind!r}; known: {sorted(factories)}"
            )
        if not entry.enabled:
            continue
        try:
            domains = frozenset(Domain.parse(d) for d in entry.domains)
        except ValueError as exc:
            raise ConfigError(f"plugin {entry.name!r}: {exc}") from exc
        settings = PluginSettings(
            entry.name, entry.priority, domains, frozenset(entry.event_types), dict(entry.config)
        )
        try:
            registry.register(factory(settings))
        except (ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"plugin {entry.name!r}: {exc}") from exc
    return registry
