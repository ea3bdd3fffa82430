"""What plugins register, and name lookup with errors that list the valid names."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from latent_edit_bench.errors import BenchError, UnknownName

KINDS = ("backbone", "instrument", "method", "metric")


@dataclass(frozen=True)
class Entry:
    """One named thing a plugin provides.

    ``factory`` is a callable, or a ``"package.module:function"`` string imported on first use, so
    that listing plugins stays cheap (no torch import, no weights loaded).
    """

    name: str
    factory: Callable[..., Any] | str
    summary: str = ""

    def load(self) -> Callable[..., Any]:
        if callable(self.factory):
            return self.factory
        module, _, attr = self.factory.partition(":")
        return getattr(importlib.import_module(module), attr)


class Registry:
    """All entries of one kind collected from every plugin, by name."""

    def __init__(self, kind: str, entries_by_plugin: list[tuple[str, list[Entry]]]):
        self.kind = kind
        self.broken: list[str] = []   # lines of plugins that failed to load (set by Plugins)
        self._entries: dict[str, Entry] = {}
        self._origin: dict[str, str] = {}
        for plugin, entries in entries_by_plugin:
            for entry in entries or []:
                if not isinstance(entry, Entry):
                    raise BenchError(f"plugin {plugin!r} registered a {kind} that is not a latent_edit_bench.api.Entry: {entry!r}")
                if entry.name in self._entries:
                    raise BenchError(
                        f"{kind} {entry.name!r} is registered twice: by {self._origin[entry.name]!r} and {plugin!r}"
                    )
                self._entries[entry.name] = entry
                self._origin[entry.name] = plugin

    def names(self) -> list[str]:
        return sorted(self._entries)

    def origin(self, name: str) -> str:
        return self._origin[name]

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def __iter__(self):
        return iter(self._entries[n] for n in self.names())

    def get(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            # it may come from a plugin that did not load: say which
            note = f"; it may come from a plugin that failed to load: {'; '.join(self.broken)}" if self.broken else ""
            raise UnknownName(self.kind, name, self._entries, note) from None

    def create(self, name: str, **options) -> Any:
        return self.get(name).load()(**options)


class MethodRegistry(Registry):
    """Methods, plus ``<method>+<regulariser>`` names: the method's editor class with a registered
    regulariser (``register_regularisers``) mixed in, e.g. ``latent-transformer+hfld``. A registered
    method of that exact name wins (none is needed: the composition is built on first use)."""

    def __init__(self, entries_by_plugin, regularisers: Registry):
        super().__init__("method", entries_by_plugin)
        self.regularisers = regularisers

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except BenchError:
            return False
        return True

    def preset_config(self, name: str, preset: str) -> dict:
        """The options method ``name`` takes under run preset ``preset``: its class's ``presets[preset]``
        (the method owns them; a factory-registered method or an unlisted preset: {} = its defaults)."""
        return dict(getattr(self.get(name).load(), "presets", {}).get(preset, {}))

    def get(self, name: str) -> Entry:
        if name in self._entries or "+" not in name:
            return super().get(name)
        base, *regs = name.split("+")
        if not base or not all(regs):
            raise BenchError(f"method {name!r}: a regularised method is spelt <method>+<regulariser>, "
                             f"e.g. latent-transformer+hfld")
        entry = super().get(base)
        for r in regs:
            if r not in self.regularisers._entries:
                raise BenchError(f"method {name!r}: unknown regulariser {r!r}; valid regularisers: "
                                 f"{', '.join(self.regularisers.names()) or '(none registered)'}")
        cls = entry.load()
        if not isinstance(cls, type):
            raise BenchError(f"method {base!r} is registered by a factory function, not an editor class: "
                             f"it cannot take a regulariser ({name!r})")
        if not getattr(cls, "takes_regularisers", False):
            takers = [n for n in self.names() if getattr(self._entries[n].load(), "takes_regularisers", False)]
            raise BenchError(f"method {base!r} is not trained by a loss and takes no regulariser ({name!r}); "
                             f"methods that do: {', '.join(takers) or '(none)'}")
        spelt = base
        for r in regs:      # each regulariser's compose(cls, name) -> the class with its loss mixed in
            spelt = f"{spelt}+{r}"
            cls = self.regularisers.get(r).load().compose(cls, spelt)
        return Entry(name, cls, f"{entry.summary} + regulariser {', '.join(regs)}")

    def origin(self, name: str) -> str:
        return super().origin(name if name in self._entries else name.split("+")[0])


def configure(kind: str, name: str, defaults: dict, overrides: dict, limits: dict | None = None) -> dict:
    """A plugin object's config: a deep copy of its class defaults updated by ``overrides``; an option
    the class does not declare, a value of the wrong kind, or one outside its ``limits``
    (:mod:`latent_edit_bench.options`) is a BenchError naming the option and what is valid."""
    import copy

    from latent_edit_bench.options import check_options

    unknown = sorted(set(overrides) - set(defaults))
    if unknown:
        raise BenchError(f"{kind} {name!r} has no option {', '.join(unknown)}; "
                         f"options: {', '.join(sorted(defaults)) or '(none)'}")
    for key, value in overrides.items():
        want = _kind_of(defaults[key])
        if want is not None and not _is_kind(value, want):
            raise BenchError(f"{kind} {name!r}: option {key} must be {want} (default {defaults[key]!r}), "
                             f"got {value!r}")
    config = {**copy.deepcopy(defaults), **overrides}
    check_options(kind, name, config, limits or {})
    return config


def _kind_of(default) -> str | None:
    """What an option's value must be, read from its default (None: anything)."""
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    if isinstance(default, (list, tuple)):
        return "a list"
    if isinstance(default, dict):
        return "a mapping"
    return None


def _is_kind(value, want: str) -> bool:
    """``value`` has the kind of value ``want`` names (an integer for a number is fine; a bool is neither)."""
    if isinstance(value, bool):
        return want == "true or false"
    return {"an integer": isinstance(value, int), "a number": isinstance(value, (int, float)),
            "a string": isinstance(value, str), "a list": isinstance(value, (list, tuple)),
            "a mapping": isinstance(value, dict)}.get(want, False)
