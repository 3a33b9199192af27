"""Bounded YAML reading for policy files: every value keeps its file:line:column.

Policies come from people and from tools, so the reader refuses what would crash or hang a loader
instead of failing deep inside PyYAML:

* nesting deeper than :data:`MAX_DEPTH` levels (PyYAML's composer recurses once per level);
* more than :data:`MAX_NODES` nodes, and aliases that expand the file beyond twice its own nodes plus
  :data:`MAX_ALIAS_GROWTH` (a 1 KB "alias bomb" would otherwise expand without limit); recursive
  anchors (``&a [*a]``);
* mapping keys that are not text, duplicate keys, YAML merge keys (``<<``);
* scalars a tag cannot convert (``!!int abc``), tags the policy format does not know, and text with a
  lone surrogate or a control character (reported at the scalar, not at 1:1).

The one policy-specific tag is ``!replace``: the value it marks replaces the inherited one instead of
merging with it (see :mod:`guard.policy.merge`). It is returned as a :class:`Replace` wrapper.
"""

from __future__ import annotations

import typing
from typing import Any

import yaml

from guard.errors import PolicyError

#: Deepest nesting of mappings and lists accepted (a real policy needs 6).
MAX_DEPTH = 64
#: Most values (scalars, mappings, lists) in one file, counting each alias expansion.
MAX_NODES = 200_000
#: Aliases may add at most this many values beyond twice the file's own (an alias bomb stops here).
MAX_ALIAS_GROWTH = 20_000
#: Longest text shown from an offending value in an error message.
MAX_SHOWN = 60

REPLACE_TAG = "!replace"


class Where(typing.NamedTuple):
    """A position in a policy file (1-based line and column)."""

    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class MarkedDict(dict):
    """A dict that remembers where it and each of its keys and values were written."""

    where: Where | None = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.key_where: dict = {}
        self.value_where: dict = {}
        self.renamed: dict = {}  # key as validated -> key as written (the loader's old-spelling renames)


class MarkedList(list):
    """A list that remembers where it and each of its items were written."""

    where: Where | None = None

    def __init__(self, *args: Any):
        super().__init__(*args)
        self.item_where: list = [None] * len(self)


class Replace:
    """Marks a value that replaces the inherited one (YAML ``!replace``) instead of merging with it."""

    __slots__ = ("value", "where")

    def __init__(self, value: Any, where: Where | None = None):
        self.value = value
        self.where = where

    def __repr__(self) -> str:
        return f"Replace({self.value!r})"


def shorten(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` cut to ``limit`` characters, safe for any text (odd Unicode is escaped)."""
    try:
        text = ascii(value) if isinstance(value, str) else repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return text


def bad_text(s: str) -> str | None:
    """Why ``s`` cannot be policy text (a lone surrogate, a control character), or None."""
    for i, ch in enumerate(s):
        o = ord(ch)
        if 0xD800 <= o <= 0xDFFF:
            return f"contains a lone surrogate (U+{o:04X}) at character {i + 1}; text must be valid Unicode"
        if (o < 0x20 and ch not in "\t\n\r") or 0x7F <= o < 0xA0:
            return f"contains the control character U+{o:04X} at character {i + 1}"
    return None


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader whose composer stops at :data:`MAX_DEPTH` levels and :data:`MAX_NODES` nodes."""

    def __init__(self, stream: str, shown: str):
        super().__init__(stream)
        self._shown = shown
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                m = self.peek_event().start_mark
                raise PolicyError(
                    f"{self._shown}:{m.line + 1}:{m.column + 1}: nested deeper than {MAX_DEPTH} "
                    "levels; a policy needs a handful"
                )
            self._nodes += 1
            if self._nodes > MAX_NODES:
                m = self.peek_event().start_mark
                raise PolicyError(f"{self._shown}:{m.line + 1}:{m.column + 1}: more than {MAX_NODES} YAML nodes")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _where(node: yaml.Node, shown: str) -> Where:
    return Where(shown, node.start_mark.line + 1, node.start_mark.column + 1)


_MAP_TAGS = ("tag:yaml.org,2002:map", REPLACE_TAG)
_SEQ_TAGS = ("tag:yaml.org,2002:seq", REPLACE_TAG)


class _Builder:
    """Turns composed nodes into Marked containers, counting alias expansions."""

    def __init__(self, shown: str, limit: int = MAX_NODES):
        self.shown = shown
        self.limit = limit
        self.count = 0
        self.scalars = yaml.constructor.SafeConstructor()  # one per file: it caches every node it built
        self.resolver = yaml.resolver.Resolver()
        self.path: set[int] = set()

    def build(self, node: yaml.Node, depth: int = 0) -> Any:
        where = _where(node, self.shown)
        self.count += 1
        if self.count > self.limit:
            raise PolicyError(f"{where}: aliases expand the file to more than {self.limit} values (an alias bomb?)")
        if depth > MAX_DEPTH:
            raise PolicyError(f"{where}: nested deeper than {MAX_DEPTH} levels (through aliases)")
        if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)):
            if id(node) in self.path:
                raise PolicyError(f"{where}: a recursive alias (an anchor used inside itself)")
            self.path.add(id(node))
            try:
                out = self._collection(node, where, depth)
            finally:
                self.path.discard(id(node))
        else:
            out = self._scalar(node, where)
        return Replace(out, where) if node.tag == REPLACE_TAG else out

    def _collection(self, node: yaml.Node, where: Where, depth: int) -> Any:
        if isinstance(node, yaml.MappingNode):
            if node.tag not in _MAP_TAGS:
                raise PolicyError(f"{where}: the tag {shorten(node.tag)} is not supported in policies")
            out = MarkedDict()
            out.where = where
            for knode, vnode in node.value:
                kw = _where(knode, self.shown)
                if knode.tag == "tag:yaml.org,2002:merge":
                    raise PolicyError(f"{kw}: YAML merge keys ('<<') are not supported in policies")
                if not isinstance(knode, yaml.ScalarNode):
                    raise PolicyError(f"{kw}: a mapping key must be plain text")
                key = self._scalar(knode, kw)
                if not isinstance(key, str):
                    raise PolicyError(
                        f"{kw}: a mapping key must be text, got {type(key).__name__} {shorten(key)} (quote it)"
                    )
                if key in out:
                    first = out.key_where[key]
                    raise PolicyError(f"{kw}: duplicate key {shorten(key)} (first at {first.line}:{first.col})")
                out[key] = self.build(vnode, depth + 1)
                out.key_where[key] = kw
                out.value_where[key] = _where(vnode, self.shown)
            return out
        if node.tag not in _SEQ_TAGS:
            raise PolicyError(f"{where}: the tag {shorten(node.tag)} is not supported in policies")
        out_l = MarkedList(self.build(n, depth + 1) for n in node.value)
        out_l.where = where
        out_l.item_where = [_where(n, self.shown) for n in node.value]
        return out_l

    def _scalar(self, node: yaml.Node, where: Where) -> Any:
        if node.tag == REPLACE_TAG:
            node = yaml.ScalarNode(
                self.resolver.resolve(yaml.ScalarNode, node.value, (True, False)),
                node.value,
                node.start_mark,
                node.end_mark,
                node.style,
            )
        try:
            value = self.scalars.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as e:
            raise PolicyError(f"{where}: {e.problem}") from None
        except (ValueError, TypeError, OverflowError, ArithmeticError) as e:
            raise PolicyError(
                f"{where}: {shorten(node.value)} cannot be read as {node.tag.rsplit(':', 1)[-1]}: {type(e).__name__}"
            ) from None
        finally:
            self.scalars.constructed_objects.clear()
            self.scalars.recursive_objects.clear()
        if isinstance(value, str):
            why = bad_text(value)
            if why:
                raise PolicyError(f"{where}: text {why}")
        return value


def _position(text: str, index: int) -> tuple[int, int]:
    line = text.count("\n", 0, index) + 1
    col = index - (text.rfind("\n", 0, index) + 1) + 1
    return line, col


def parse_yaml(text: str, shown: str) -> Any:
    """Parse policy YAML into Marked containers; every error is a located :class:`PolicyError`."""
    for i, ch in enumerate(text):
        o = ord(ch)
        if 0xD800 <= o <= 0xDFFF:
            line, col = _position(text, i)
            raise PolicyError(f"{shown}:{line}:{col}: a lone surrogate (U+{o:04X}); the file must be valid UTF-8")
    loader = None
    try:
        loader = _BoundedLoader(text, shown)  # the reader checks every character here
        node = loader.get_single_node()
    except PolicyError:
        raise
    except yaml.reader.ReaderError as e:  # a character YAML forbids: PyYAML gives an index, not a mark
        line, col = _position(text, e.position)
        ch = e.character if isinstance(e.character, str) else chr(e.character)
        raise PolicyError(
            f"{shown}:{line}:{col}: the character U+{ord(ch):04X} is not allowed in YAML (non-printable)"
        ) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        loc = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        problem = " ".join(x for x in (e.context, e.problem) if x)
        raise PolicyError(f"{loc}: malformed YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise PolicyError(f"{shown}: malformed YAML: {shorten(str(e), 200)}") from None
    except RecursionError:  # a last resort: MAX_DEPTH keeps PyYAML well under the interpreter's limit
        raise PolicyError(f"{shown}: nested too deeply") from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        return None
    try:
        return _Builder(shown, min(MAX_NODES, 2 * loader._nodes + MAX_ALIAS_GROWTH)).build(node)
    except RecursionError:
        raise PolicyError(f"{shown}: nested too deeply") from None
