"""A small name → factory registry, one instance per kind (models, optimizers, activations, norms, schedules).

Follows timm's ``register_model`` / ``create_model`` pattern, with two strict rules (STYLE.md 12–13):
a duplicate name raises at import time, and an unknown name raises listing every known name, sorted.
"""
from __future__ import annotations

from typing import Any, Callable


class UnknownNameError(KeyError):
    """Raised for a name that is not in a registry; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would otherwise print the repr of the message
        return str(self.args[0])


class Registry:
    """Maps names to factories (classes or functions) plus free-form capability info."""

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., Any]] = {}
        self._info: dict[str, dict[str, Any]] = {}

    def register(self, name: str | None = None, **info: Any) -> Callable[[Callable], Callable]:
        """Decorator: ``@REGISTRY.register("name", has_betas=True)``; the name defaults to the function name."""

        def deco(fn: Callable) -> Callable:
            self.add(name or fn.__name__, fn, **info)
            return fn

        return deco

    def add(self, name: str, fn: Callable[..., Any], **info: Any) -> None:
        key = name.lower()
        if key in self._entries:
            raise ValueError(f"{self.kind} {name!r} is already registered (by {self._entries[key]!r})")
        self._entries[key] = fn
        self._info[key] = dict(info)

    def get(self, name: str) -> Callable[..., Any]:
        key = str(name).lower()
        if key not in self._entries:
            raise UnknownNameError(f"unknown {self.kind} {name!r}; known {self.kind}s: {', '.join(self.names())}")
        return self._entries[key]

    def info(self, name: str) -> dict[str, Any]:
        self.get(name)
        return dict(self._info[str(name).lower()])

    def create(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.get(name)(*args, **kwargs)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._entries

    def __len__(self) -> int:
        return len(self._entries)
