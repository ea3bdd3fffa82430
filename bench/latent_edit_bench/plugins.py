"""Build the plugin manager: the built-in plugins registered directly, third-party ones through the
``latent_edit_bench`` entry-point group. The built-ins are plain plugin modules, written exactly as a
third-party plugin is (a module of ``@hookimpl`` functions), so they are the examples of how to write one."""

from __future__ import annotations

import functools

import pluggy

from latent_edit_bench import hookspecs
from latent_edit_bench.errors import BenchError
from latent_edit_bench.hookspecs import hookimpl  # noqa: F401  (re-exported: plugins.hookimpl)
from latent_edit_bench.registry import MethodRegistry, Registry
from latent_edit_bench.version import __version__


GROUP = "latent_edit_bench"
# name -> module of the built-in plugins, registered directly (as datasette does): nothing depends on
# installed metadata, so a plain checkout works. Their names are taken, so an entry point of an older
# install that still lists them is skipped, not registered twice.
BUILTIN_PLUGINS = {
    "backbones": "latent_edit_bench.backbones.plugin",
    "instruments": "latent_edit_bench.instruments.plugin",
    "methods": "latent_edit_bench.methods.plugin",
    "metrics": "latent_edit_bench.metrics.plugin",
}


def make_plugin_manager(extra_plugins=()) -> pluggy.PluginManager:
    import importlib

    pm = pluggy.PluginManager("latent_edit_bench")
    pm.add_hookspecs(hookspecs)
    for name, module in BUILTIN_PLUGINS.items():
        pm.register(importlib.import_module(module), name=name)
    pm.broken = load_entry_points(pm)   # type: ignore[attr-defined]  # {entry point: why it did not load}
    for plugin in extra_plugins:  # for tests and notebooks: register a module or object directly
        pm.register(plugin)
    pm.check_pending()            # a hookimpl without a hookspec (a misspelt register_*) fails here, loudly
    return pm


def load_entry_points(pm: pluggy.PluginManager) -> dict[str, str]:
    """Register the third-party plugins of the entry-point group. One whose module fails to import does
    not take the others down: it is blocked and described in one line ({entry point name: line}), so
    commands that do not need it go on, and naming what it would have provided is refused (exit 2)."""
    broken: dict[str, str] = {}
    while True:
        try:
            pm.load_setuptools_entrypoints(GROUP)
            return broken
        except Exception as e:
            name, line = describe_broken(pm, e)
            if name is None or name in broken:   # not attributable to one entry point: refuse, in one line
                raise BenchError(line) from None
            broken[name] = line
            pm.set_blocked(name)                 # pluggy skips blocked names on the next pass


def describe_broken(pm: pluggy.PluginManager, error: Exception) -> tuple[str | None, str]:
    """(name, one line) of the entry point that fails to load (found by loading each not yet registered in
    turn): its distribution, the error, and what to do."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            ep.load()
        except Exception as e:
            dist = getattr(ep, "dist", None)
            where = f" (distribution {dist.name} {dist.version})" if dist is not None else ""
            return ep.name, (f"plugin {ep.name!r} = {ep.value}{where} failed to load: {type(e).__name__}: {e}; "
                             f"fix it or uninstall it (pip uninstall {dist.name if dist is not None else '<its package>'})")
    return None, f"a plugin of the {GROUP!r} entry-point group failed to load: {type(error).__name__}: {error}"


def plugin_versions(pm: pluggy.PluginManager) -> list[dict]:
    """Every registered plugin with the distribution and version it came from (None: registered directly)."""
    dist = {id(plugin): d for plugin, d in pm.list_plugin_distinfo()}
    out = []
    for name, plugin in pm.list_name_plugin():
        if plugin is None:   # blocked: a plugin that failed to load (Plugins.broken)
            continue
        d = dist.get(id(plugin))
        if d is None and BUILTIN_PLUGINS.get(name) == getattr(plugin, "__name__", None):   # ours, registered directly
            out.append({"plugin": name, "distribution": "latent-edit-bench", "version": __version__})
            continue
        out.append({"plugin": name, "distribution": d.project_name if d else None,
                    "version": d.version if d else None})
    return sorted(out, key=lambda r: r["plugin"] or "")


def _collect(pm: pluggy.PluginManager, hook_name: str):
    """Per-plugin results of a register_* hook, in registration order, with the plugin's name."""
    out = []
    for impl in reversed(getattr(pm.hook, hook_name).get_hookimpls()):  # pluggy calls LIFO; keep FIFO
        out.append((pm.get_name(impl.plugin) or repr(impl.plugin), impl.function()))
    return out


class Plugins:
    """The registries of one plugin manager: ``plugins.backbones.create("dcgan")`` and so on."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.backbones = Registry("backbone", _collect(pm, "register_backbones"))
        self.instruments = Registry("instrument", _collect(pm, "register_instruments"))
        self.regularisers = Registry("regulariser", _collect(pm, "register_regularisers"))
        self.methods = MethodRegistry(_collect(pm, "register_methods"), self.regularisers)
        self.metrics = Registry("metric", _collect(pm, "register_metrics"))
        # third-party plugins that failed to load: {entry point: one line}; a name none of the registries
        # knows is refused with these lines, since the broken plugin may be what provides it
        self.broken: dict[str, str] = dict(getattr(pm, "broken", {}))
        for registry in (self.backbones, self.instruments, self.regularisers, self.methods, self.metrics):
            registry.broken = list(self.broken.values())

    def versions(self) -> list[dict]:
        """Every registered plugin with its distribution and version (the manifest's ``plugins``)."""
        return plugin_versions(self.pm)

    def attributes(self) -> list[str]:
        names: list[str] = []
        for _, attrs in _collect(self.pm, "register_attributes"):
            names.extend(a for a in attrs or [] if a not in names)
        return names


@functools.lru_cache(maxsize=1)
def get_plugins() -> Plugins:
    return Plugins(make_plugin_manager())
