"""The one merge rule of policies, used by ``extends`` and ``amend`` (``include`` only adds).

``merge(base, over)``:

* ``over`` marked ``!replace`` (YAML) or wrapped in :class:`Replace` (Python): ``over`` as written,
  nothing of ``base`` is kept;
* both mappings: key by key; keys only in ``base`` stay, keys only in ``over`` are added, keys in
  both are merged by this same rule;
* the top-level ``concepts`` and ``rules`` lists: merged by ``id``; an entry whose id ``base`` has is
  merged into that entry (so a child can change one key of a parent's concept), the others are appended
  in order;
* anything else (text, numbers, booleans, other lists such as ``guidance.concepts`` or
  ``output.classifiers``): ``over`` replaces ``base``.

Ids must be unique inside one file and across the banks it includes: a second entry with the same id
there is an error naming both places (:func:`check_unique`), never a silent override. Changing a
concept defined by an included bank is said explicitly with ``amend:`` entries.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from guard.errors import PolicyError
from guard.policy.yaml_safe import MarkedDict, MarkedList, Replace, Where, shorten

#: Lists merged by ``id`` (paths from the top of a policy).
ID_LISTS = frozenset({("concepts",), ("rules",)})


def unwrap(value: Any) -> Any:
    """``value`` with every :class:`Replace` marker removed (the value it wraps kept)."""
    if isinstance(value, Replace):
        return unwrap(value.value)
    if isinstance(value, dict):
        out = MarkedDict()
        out.where = getattr(value, "where", None)
        for k, v in value.items():
            out[k] = unwrap(v)
        out.key_where = dict(getattr(value, "key_where", {}))
        out.value_where = dict(getattr(value, "value_where", {}))
        out.renamed = dict(getattr(value, "renamed", {}))
        return out
    if isinstance(value, list):
        out_l = MarkedList(unwrap(v) for v in value)
        out_l.where = getattr(value, "where", None)
        out_l.item_where = list(getattr(value, "item_where", [None] * len(value)))
        return out_l
    return value


def entry_id(entry: Any) -> str | None:
    """The ``id`` of a list entry when it is text (anything else is left for validation to report)."""
    if isinstance(entry, Replace):
        entry = entry.value
    if isinstance(entry, dict):
        i = entry.get("id")
        return i if isinstance(i, str) else None
    return None


def id_where(entry: Any, fallback: Where | None) -> Where | None:
    if isinstance(entry, Replace):
        return entry.where or id_where(entry.value, fallback)
    if isinstance(entry, dict):
        return getattr(entry, "value_where", {}).get("id") or getattr(entry, "where", None) or fallback
    return fallback


def _item_wheres(items: Any) -> list:
    iw = list(getattr(items, "item_where", []))
    return iw + [None] * (len(items) - len(iw))


def merge(base: Any, over: Any, path: tuple = ()) -> Any:
    """``over`` merged onto ``base`` by the rule in this module's docstring."""
    if isinstance(over, Replace):
        return unwrap(over.value)
    if isinstance(base, Replace):
        base = base.value
    if isinstance(base, dict) and isinstance(over, dict):
        out = MarkedDict()
        out.where = getattr(over, "where", None) or getattr(base, "where", None)
        out.key_where = dict(getattr(base, "key_where", {}))
        out.value_where = dict(getattr(base, "value_where", {}))
        out.renamed = {**getattr(base, "renamed", {}), **getattr(over, "renamed", {})}
        for k, v in base.items():
            out[k] = v
        for k, v in over.items():
            sub = (*path, k)
            if sub in ID_LISTS and isinstance(v, list) and isinstance(base.get(k), list):
                out[k] = merge_by_id(base[k], v, sub)
            elif k in base:
                out[k] = merge(base[k], v, sub)
            else:
                out[k] = unwrap(v)
            kw = getattr(over, "key_where", {}).get(k)
            vw = getattr(over, "value_where", {}).get(k)
            out.key_where[k] = kw or out.key_where.get(k)
            out.value_where[k] = vw or out.value_where.get(k)
        return out
    return unwrap(over)


def merge_by_id(base: list, over: list, path: tuple = ("concepts",)) -> MarkedList:
    """Entries of ``over`` merged into ``base`` by id (same id: merged; new id: appended)."""
    out = MarkedList(base)
    out.item_where = _item_wheres(base)
    out.where = getattr(over, "where", None) or getattr(base, "where", None)
    index = {}
    for i, e in enumerate(out):
        eid = entry_id(e)
        if eid is not None:
            index.setdefault(eid, i)
    for e, w in zip(over, _item_wheres(over)):
        eid = entry_id(e)
        if eid is not None and eid in index:
            out[index[eid]] = merge(out[index[eid]], e, path)
            out.item_where[index[eid]] = w
        else:
            if eid is not None:
                index[eid] = len(out)
            out.append(unwrap(e))
            out.item_where.append(w)
    return out


def check_unique(entries: Iterable[tuple[Any, Where | None]], what: str, seen: dict | None = None) -> dict:
    """Raise a located :class:`PolicyError` when two entries share an id; returns ``{id: where}``."""
    seen = {} if seen is None else seen
    for e, w in entries:
        eid = entry_id(e)
        if eid is None:
            continue
        here = id_where(e, w)
        if eid in seen:
            first = seen[eid]
            raise PolicyError(
                f"{here or '<policy>'}: duplicate {what} id {shorten(eid)} (first defined at {first or '<policy>'}); "
                f"ids must be unique in a file and across the banks it includes. To change an included {what}, "
                "list it under 'amend:'; a policy that 'extends' another may redefine the parent's ids"
            )
        seen[eid] = here
    return seen


def apply_amendments(concepts: MarkedList, amendments: list[tuple[Any, Where | None]]) -> MarkedList:
    """Merge each ``amend`` entry into the concept with its id (which must exist)."""
    if not amendments:
        return concepts
    out = MarkedList(concepts)
    out.item_where = _item_wheres(concepts)
    out.where = getattr(concepts, "where", None)
    index = {}
    for i, e in enumerate(out):
        eid = entry_id(e)
        if eid is not None:
            index.setdefault(eid, i)
    for e, w in amendments:
        eid = entry_id(e)
        here = id_where(e, w)
        if eid is None:
            raise PolicyError(f"{here or '<policy>'}: amend: every entry needs the text 'id' of the concept it changes")
        if eid not in index:
            close = difflib.get_close_matches(eid, list(index), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise PolicyError(f"{here or '<policy>'}: amend: no concept {shorten(eid)} to change{hint}")
        out[index[eid]] = merge(out[index[eid]], e, ("concepts",))
    return out
