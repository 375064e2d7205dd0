"""Validators of modelplat's pydantic models, built once per modelplat and pydantic; and the
stand-in for pydantic's plugin loader while plugins are off.

Every model class is declared with defer_build: pydantic builds its validator the first time one
is needed. Building is mostly pydantic walking the annotations in Python to make the class's core
schema; making the validator and serializer from that schema in pydantic-core takes a few ms (for
the classes a cold render of one edited model completes, 80 M of its ~1,090 M instructions are
saved). So the core schemas a run built are kept in the render cache (pickled; the classes and
check functions in them are taken by name), under a key of modelplat's code and the pydantic and
Python versions (cache.code_fingerprint), and a later process makes its validators from them.

Used only while pydantic's plugins are off (modelplat's default): a plugin would expect to see
each validator made. Anything unusual (a class with computed fields, a schema that does not
unpickle or that pydantic-core refuses) is built by pydantic as usual.
"""

from __future__ import annotations

import os
import sys

_KEY = "pydantic-core-schemas"

_cache = None  # the render cache whose schemas this process reads (use()), and fills (keep())
_owner = 0  # the process that called use(): worker processes read, only it writes
_stored: dict[str, bytes] = {}  # class's qualified name → pickled (core schema, core config)
_built: dict[str, tuple] = {}  # what this process built itself and the cache lacks


def _name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def plugins_off() -> bool:
    """pydantic's own test of PYDANTIC_DISABLE_PLUGINS for turning every plugin off."""
    return os.environ.get("PYDANTIC_DISABLE_PLUGINS") in ("__all__", "1", "true")


_PLUGIN_LOADER = "pydantic.plugin._loader"


def skip_plugin_loader() -> None:
    """With plugins disabled, pydantic's get_plugins() returns nothing, but the module it lives in
    imports importlib.metadata (and with it email, zipfile, csv, tempfile...) when the first
    validator is built: ~54 M instructions, ~5% of a cold render of one model. Stand in for that
    module with one whose get_plugins() returns nothing too; anything else asked of it (a later
    pydantic) is taken from the real module, imported then."""
    if not plugins_off() or _PLUGIN_LOADER in sys.modules:
        return
    import types

    stand_in = types.ModuleType(_PLUGIN_LOADER)

    def get_plugins() -> tuple:
        return ()

    def real(attr: str):
        import importlib

        if attr.startswith("__"):  # what the import system probes (__path__...) a plain module lacks
            raise AttributeError(attr)
        if sys.modules.get(_PLUGIN_LOADER) is stand_in:
            del sys.modules[_PLUGIN_LOADER]
        return getattr(importlib.import_module(_PLUGIN_LOADER), attr)

    stand_in.get_plugins = get_plugins
    stand_in.__getattr__ = real
    sys.modules[_PLUGIN_LOADER] = stand_in


def _enabled() -> bool:
    return _cache is not None and plugins_off()


def use(cache) -> None:
    """Take validators' schemas from this render cache, and keep there what this run builds.
    Read now, once: worker processes forked later never touch the database."""
    global _cache, _owner, _stored
    _cache, _owner = cache, os.getpid()
    entry = cache.get(cache.code_key(_KEY, sys.version))
    _stored = dict(entry["files"]) if entry else {}


def install(cls: type) -> bool:
    """Complete cls from its stored core schema: True if done, False to let pydantic build it."""
    if not _enabled() or cls.__pydantic_decorators__.computed_fields:
        return False
    blob = _stored.get(_name(cls))
    if blob is None:
        return False
    import pickle

    from pydantic_core import SchemaSerializer, SchemaValidator

    try:
        schema, config = pickle.loads(blob)
        validator, serializer = SchemaValidator(schema, config), SchemaSerializer(schema, config)
    except Exception:  # from another build of the same code, or damaged: build it as usual
        return False
    # What pydantic's own completion of a model class sets (a class without computed or
    # deprecated fields): the schema, the validator and serializer made from it, complete.
    cls.__pydantic_core_schema__ = schema
    cls.__pydantic_validator__ = validator
    cls.__pydantic_serializer__ = serializer
    cls.__pydantic_computed_fields__ = {}
    cls.__pydantic_complete__ = True
    hook = getattr(cls, "__pydantic_on_complete__", None)  # pydantic 2.12 and later
    if hook is not None:
        hook()
    return True


def built(cls: type) -> None:
    """pydantic completed cls in this process: keep its core schema for the next ones."""
    if not _enabled() or _name(cls) in _stored or cls.__pydantic_decorators__.computed_fields:
        return
    try:
        from pydantic._internal._config import ConfigWrapper

        config = ConfigWrapper(cls.model_config, check=False).core_config(title=cls.__name__)
    except Exception:  # a pydantic that moved its config: nothing kept, nothing lost
        return
    _built[_name(cls)] = (cls.__pydantic_core_schema__, config)


def keep() -> None:
    """Store what this process built (and the cache lacked) beside what it had."""
    global _stored
    if not _built or not _enabled() or os.getpid() != _owner:
        return
    import pickle

    added = {}
    for name, value in _built.items():
        try:
            added[name] = pickle.dumps(value, protocol=5)
        except Exception:  # a check function without a name to take it by: built each time
            continue
    _built.clear()
    if added:
        _stored = {**_stored, **added}
        _cache.put(_cache.code_key(_KEY, sys.version), None, _stored)
