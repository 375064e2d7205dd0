"""Reads YAML files into plain data and maps dotted keys back to file:line:column.

Parsing uses ruamel's C parser. A plain document (mappings, lists and untagged scalars: every
values file seen in practice) is built straight from the parser's events, with each plain
scalar resolved by ruamel's own YAML 1.2 resolver and constructor (memoised: keys and common
values repeat across thousands of files); anything else (tags, anchors, merge keys, directives,
duplicate keys, syntax errors) goes through ruamel's full safe loader, so both paths give the same
data and the same errors (tests/test_loader.py). Positions are computed only when a diagnostic
needs them (a second, round-trip parse). No validation here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Diagnostic

MAX_DEPTH = 64  # nesting levels below the top: far beyond any values file, far below trouble
MAX_FILE_BYTES = 1 << 20  # a model values file is a few KiB; 1 MiB leaves room and stops abuse

_safe_yaml = None


def _yaml():
    global _safe_yaml
    if _safe_yaml is None:
        from ruamel.yaml import YAML

        _safe_yaml = YAML(typ="safe")  # uses the C parser when ruamel.yaml.clib is present
        _safe_yaml.allow_duplicate_keys = False
    return _safe_yaml


_resolver_yaml = None


def _resolving_yaml():
    """A safe YAML instance that never loads a document, so no %YAML directive read earlier can
    leave its resolver on YAML 1.1: it always resolves as YAML 1.2, like a fresh load."""
    global _resolver_yaml
    if _resolver_yaml is None:
        from ruamel.yaml import YAML

        _resolver_yaml = YAML(typ="safe")
    return _resolver_yaml


class _NotPlain(Exception):
    """The document needs ruamel's full loader."""


_SCALARS: dict[str, Any] = {}  # plain scalar text → value, as ruamel's safe loader builds it
_PLAIN_TAGS = frozenset({"tag:yaml.org,2002:" + t for t in ("str", "int", "float", "bool", "null")})


def _plain_scalar(text: str) -> Any:
    try:
        return _SCALARS[text]
    except KeyError:
        pass
    from ruamel.yaml.nodes import ScalarNode

    yaml = _resolving_yaml()
    tag = yaml.resolver.resolve(ScalarNode, text, (True, False))
    if str(tag) not in _PLAIN_TAGS:  # timestamps, merge keys, '=': rare, left to the full loader
        raise _NotPlain
    value = yaml.constructor.construct_non_recursive_object(ScalarNode(tag, text))
    if len(_SCALARS) < 50_000:
        _SCALARS[text] = value
    return value


def _too_deep(display: str) -> "LoadError":
    return LoadError(Diagnostic(display, 1, 1, "too-deep", f"YAML nesting is deeper than {MAX_DEPTH} levels",
                                "a values file needs a few levels; look for runaway brackets or indentation"))


def _depth_guard(text: str, display: str) -> None:
    """Refuse deep nesting before the full loader sees it. libyaml's scanner is quadratic in the
    flow nesting depth ('[[[[…' of 100,000 levels, 200 KB, takes ~45 s), so the events are
    counted and the parse stopped as soon as the limit is passed."""
    from ruamel.yaml import events
    from ruamel.yaml.cyaml import CParser

    starts = (events.MappingStartEvent, events.SequenceStartEvent)
    ends = (events.MappingEndEvent, events.SequenceEndEvent)
    parser = CParser(text)
    depth = 0
    try:
        while True:
            cls = parser.get_event().__class__
            if cls in starts:
                depth += 1
                if depth > MAX_DEPTH + 1:
                    raise _too_deep(display)
            elif cls in ends:
                depth -= 1
            elif cls is events.StreamEndEvent:
                return
    except LoadError:
        raise
    except Exception:  # a syntax error: the full loader reports it, with its position
        return


def _load_plain(text: str, display: str = "") -> Any:
    """The document built from parser events, or _NotPlain (also for any parser error)."""
    from ruamel.yaml.cyaml import CParser
    from ruamel.yaml import events

    parser = CParser(text)
    try:
        parser.get_event()  # stream start
        event = parser.get_event()
        if event.__class__ is events.StreamEndEvent:
            return None
        if getattr(event, "version", None) or getattr(event, "tags", None):
            raise _NotPlain  # %YAML / %TAG directives
        scalar, mapping_start, sequence_start = events.ScalarEvent, events.MappingStartEvent, events.SequenceStartEvent
        root: list = []
        stack: list = [root]  # containers being filled; a dict's pending key is kept beside it
        keys: list = [None]
        while True:
            event = parser.get_event()
            cls = event.__class__
            if cls is scalar:
                if event.anchor is not None or event.tag is not None:
                    raise _NotPlain
                value = _plain_scalar(event.value) if event.implicit[0] else event.value
            elif cls is mapping_start or cls is sequence_start:
                if event.anchor is not None or event.tag is not None:
                    raise _NotPlain
                container = {} if cls is mapping_start else []
                _add(stack[-1], keys, container)
                stack.append(container)
                if len(stack) > MAX_DEPTH + 2:  # the top-level container is stack[1]
                    raise _too_deep(display)
                keys.append(_NO_KEY)
                continue
            elif cls is events.MappingEndEvent or cls is events.SequenceEndEvent:
                stack.pop()
                keys.pop()
                if len(stack) == 1:
                    break
                continue
            else:  # an alias (or anything unexpected)
                raise _NotPlain
            _add(stack[-1], keys, value)
            if len(stack) == 1:
                break
        if parser.get_event().__class__ is not events.DocumentEndEvent or \
                parser.get_event().__class__ is not events.StreamEndEvent:
            raise _NotPlain  # a second document: the full loader says so
    except (_NotPlain, LoadError):
        raise
    except Exception:  # a syntax error: the full loader reports it, with its position
        raise _NotPlain("syntax") from None  # (the depth was checked up to the error)
    return root[0] if root else None


_NO_KEY = object()


def _add(container: Any, keys: list, value: Any) -> None:
    if container.__class__ is dict:
        key = keys[-1]
        if key is _NO_KEY:
            if value.__class__ is dict or value.__class__ is list:
                raise _NotPlain  # a complex key
            keys[-1] = value
        else:
            if key in container:
                raise _NotPlain  # a duplicate key: the full loader reports it with its position
            container[key] = value
            keys[-1] = _NO_KEY
    else:
        container.append(value)


@dataclass
class Source:
    """One YAML document read from disk, with lazy position lookup."""

    path: Path
    display: str  # the path as shown to the user (relative to where they pointed us)
    text: str
    data: Any
    _positions: dict[tuple, tuple[int, int]] | None = field(default=None, repr=False)

    def position(self, loc: tuple) -> tuple[int, int]:
        """1-based (line, column) of the deepest existing key along `loc`; (0, 0) if unknown."""
        if self._positions is None:
            self._positions = _positions(self.text)
        loc = tuple(loc)
        while loc:
            if loc in self._positions:
                return self._positions[loc]
            loc = loc[:-1]
        return self._positions.get((), (1, 1))

    def diagnostic(self, loc: tuple, code: str, message: str, hint: str = "", severity: str = "error") -> Diagnostic:
        line, col = self.position(loc)
        key = ".".join(str(p) for p in loc)
        return Diagnostic(self.display, line, col, code, message, hint, key, severity)


class LoadError(Exception):
    def __init__(self, diagnostic: Diagnostic):
        super().__init__(diagnostic.format())
        self.diagnostic = diagnostic


def load(path: Path, display: str | None = None, raw: bytes | None = None) -> Source:
    """Read one YAML file (or parse `raw`, its bytes already read); raises LoadError with a
    positioned diagnostic on any problem."""
    display = display or str(path)
    if raw is None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise LoadError(Diagnostic(display, 1, 1, "unreadable", f"cannot read file: {exc.strerror}")) from None
    if len(raw) > MAX_FILE_BYTES:
        raise LoadError(
            Diagnostic(
                display, 1, 1, "file-too-large",
                f"file is {len(raw)} bytes; values files are limited to {MAX_FILE_BYTES} bytes",
                "a values file holds settings only; keep data and model files in storage (model.storageUri)",
            )
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise LoadError(Diagnostic(display, line, col, "not-utf8", "file is not valid UTF-8", "save it as UTF-8")) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    data = parse(text, display)
    return Source(path, display, text, data)


def parse(text: str, display: str) -> Any:
    from ruamel.yaml.error import YAMLError

    try:
        try:
            data = _load_plain(text, display)
        except _NotPlain as why:
            if not why.args:
                _depth_guard(text, display)
            data = _yaml().load(text)
    except (YAMLError, RecursionError) as exc:
        raise _load_error(exc, text, display) from None
    refuse_shared_nodes(data, display)
    return data


def parse_all(text: str, display: str, max_bytes: int | None = MAX_FILE_BYTES) -> list[Any]:
    """Every document of a multi-document YAML text (a HelmRelease to import, a committed
    output file to diff), through the same guards as a values file: its size, its nesting
    depth before the parser sees it (a deep one crashed the process), and no shared nodes."""
    from ruamel.yaml.error import YAMLError

    size = len(text.encode("utf-8"))
    if max_bytes is not None and size > max_bytes:
        raise LoadError(Diagnostic(display, 1, 1, "file-too-large",
                                   f"file is {size} bytes; at most {max_bytes} are read"))
    _depth_guard(text, display)
    try:
        documents = [d for d in _yaml().load_all(text) if d is not None]
    except (YAMLError, RecursionError) as exc:
        raise _load_error(exc, text, display) from None
    for document in documents:
        refuse_shared_nodes(document, display)
    return documents


def _tab_up_to(text: str, line: int, column: int) -> bool:
    """A tab on that line at or before that column (0-based), where YAML refuses it."""
    lines = text.splitlines()
    return line < len(lines) and "\t" in lines[line][: column + 1]


def _load_error(exc: BaseException, text: str, display: str) -> "LoadError":
    """A parser's exception as a positioned diagnostic."""
    from ruamel.yaml.error import MarkedYAMLError
    from ruamel.yaml.reader import ReaderError

    if isinstance(exc, ReaderError):  # a character YAML forbids; it carries an offset, not a mark
        offset = max(0, min(exc.position, len(text)))
        line = text.count("\n", 0, offset) + 1
        col = offset - (text.rfind("\n", 0, offset) + 1) + 1
        return LoadError(Diagnostic(display, line, col, "yaml-character",
                                    f"character U+{ord(exc.character) if isinstance(exc.character, str) else exc.character:04X} "
                                    "is not allowed in YAML", "remove the control character"))
    if isinstance(exc, MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
        problem = (exc.problem or exc.context or "invalid YAML").strip()
        code, hint = "yaml-syntax", ""
        if "duplicate key" in problem:
            code, hint = "duplicate-key", "each key may appear once in a mapping"
            problem = problem.split("\n")[0]
        elif mark is not None and _tab_up_to(text, mark.line, mark.column):
            hint = "YAML indents with spaces only: replace the tab"
        return LoadError(Diagnostic(display, line, col, code, problem, hint))
    if isinstance(exc, RecursionError):
        return LoadError(Diagnostic(display, 1, 1, "too-deep", "YAML nesting is too deep"))
    return LoadError(Diagnostic(display, 1, 1, "yaml-syntax", str(exc).splitlines()[0]))


def refuse_shared_nodes(data: Any, display: str) -> None:
    """Refuse anchors/aliases of mappings and lists.

    They are never needed in a values file, and an alias bomb ("billion laughs") loads as a
    small graph of shared containers that only explodes later, when validated or emitted.
    """
    seen: set[int] = set()
    stack = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        if not isinstance(node, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise _too_deep(display)
        if id(node) in seen:
            raise LoadError(
                Diagnostic(
                    display, 1, 1, "yaml-alias",
                    "YAML anchors and aliases of mappings or lists are not allowed in values files",
                    "write the values out in full",
                )
            )
        seen.add(id(node))
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children)


def _positions(text: str) -> dict[tuple, tuple[int, int]]:
    """Map every key path to the 1-based position of its key (list items: of the item).

    From the C parser's events, as the document was built (_load_plain): a file that needs the
    full loader (tags, anchors, a syntax error) takes the slower round-trip reader instead."""
    from ruamel.yaml import events
    from ruamel.yaml.cyaml import CParser

    out: dict[tuple, tuple[int, int]] = {(): (1, 1)}
    # Open containers: [path, is_mapping, pending key (a mapping's) or next index (a list's)].
    stack: list[list] = []
    parser = CParser(text)
    mapping_start, sequence_start, scalar = events.MappingStartEvent, events.SequenceStartEvent, events.ScalarEvent
    ends = (events.MappingEndEvent, events.SequenceEndEvent)
    try:
        while True:
            event = parser.get_event()
            cls = event.__class__
            if cls in ends:
                stack.pop()
                if not stack:
                    break
                continue
            if cls in (events.StreamStartEvent, events.DocumentStartEvent):
                continue
            if cls is not scalar and cls is not mapping_start and cls is not sequence_start:
                raise _NotPlain  # an alias, or the document ended: the round-trip reader decides
            mark = event.start_mark
            path: tuple = ()
            if stack:
                top = stack[-1]
                if top[1]:  # a mapping: a key, then its value
                    if top[2] is _NO_KEY:
                        if cls is not scalar:
                            raise _NotPlain  # a complex key
                        key = _plain_scalar(event.value) if event.implicit[0] else event.value
                        top[2] = key
                        # The first of a key given twice, as the round-trip reader places it (such
                        # a file is refused with the duplicate's own position; this keeps both alike).
                        out.setdefault(top[0] + (key,), (mark.line + 1, mark.column + 1))
                        continue
                    path, top[2] = top[0] + (top[2],), _NO_KEY
                else:
                    path = top[0] + (top[2],)
                    top[2] += 1
                    out[path] = (mark.line + 1, mark.column + 1)
            if cls is mapping_start:
                stack.append([path, True, _NO_KEY])
            elif cls is sequence_start:
                stack.append([path, False, 0])
            elif not stack:
                break  # a scalar document
        # One document, then the end, as _load_plain reads it: anything else is the other reader's.
        if parser.get_event().__class__ is not events.DocumentEndEvent or \
                parser.get_event().__class__ is not events.StreamEndEvent:
            raise _NotPlain
    except Exception:
        return _positions_roundtrip(text)
    return out


def _positions_roundtrip(text: str) -> dict[tuple, tuple[int, int]]:
    """_positions with ruamel's round-trip loader: any YAML, about 30 times slower."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar

    rt = YAML(typ="rt")
    rt.allow_duplicate_keys = True
    try:
        root = rt.load(text)
    except Exception:  # only reached for files that parsed with the safe loader
        return {(): (1, 1)}
    out: dict[tuple, tuple[int, int]] = {(): (1, 1)}
    stack: list[tuple[tuple, Any]] = [((), root)]
    while stack:
        prefix, node = stack.pop()
        if isinstance(node, CommentedMap):
            for key in node:
                try:
                    line, col = node.lc.key(key)
                except (KeyError, TypeError):
                    continue
                # A tagged key (`!!str 1: x`) is the plain string the safe loader makes of it.
                path = prefix + (key.value if isinstance(key, TaggedScalar) else key,)
                out[path] = (line + 1, col + 1)
                stack.append((path, node[key]))
        elif isinstance(node, CommentedSeq):
            for index, item in enumerate(node):
                try:
                    line, col = node.lc.item(index)
                except (KeyError, TypeError, IndexError):
                    continue
                path = prefix + (index,)
                out[path] = (line + 1, col + 1)
                stack.append((path, item))
    return out
