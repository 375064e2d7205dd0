"""Validators of modelplat's pydantic models, built once per modelplat and pydantic.

Every model class is declared with defer_build: pydantic builds its validator the first time one
is needed. Building is mostly pydantic walking the annotations in Python to make the class's core
schema (the values model's: ~133 M of the ~1,100 M instructions of a cold render of one edited
model); making the validator and serializer from that schema in pydantic-core is ~30 M. So the
core schemas a run built are kept in the render cache (pickled; the classes and check functions
in them are taken by name), under a key of modelplat's code and the pydantic and Python versions
(cache.code_fingerprint), and a later process makes its validators from them directly.

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
