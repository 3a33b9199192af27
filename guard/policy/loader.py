"""Load policies: files, built-in names or mappings; ``extends``, ``include`` and ``amend`` resolved.

Every problem is reported as ``FILE:LINE:COL: key.path: what was expected`` (for a mapping given in
Python, ``<policy>: key.path: ...``); unknown keys get a did-you-mean. All validation problems of one
file are gathered into a single :class:`PolicyError`, the first :data:`MAX_ISSUES_SHOWN` spelled out
and the rest counted.

Resolution of one file (or mapping), in order:

1. each bank in ``include`` adds its ``concepts`` (ids must be unique across the banks and the file's
   own ``concepts``: a second definition is an error naming both places);
2. the file's own ``concepts`` are added;
3. with ``extends``, the parent (resolved the same way) is the base and this file is merged onto it by
   the one merge rule of :mod:`guard.policy.merge` (a child may redefine a parent's concept by id);
4. ``amend`` entries (of the file and of its banks) are merged into existing concepts by id.

Relative paths are taken from the file's directory (for a mapping: ``base_dir``, else the working
directory); a parent's artifact paths are rewritten relative to the child, so they keep pointing at the
same files. :func:`policy_sha256` is the one policy hash: over the resolved policy with paths as
written, without ``base_dir``; the file as validated, the runtime guard and a saved pipeline agree.
"""

from __future__ import annotations

import difflib
import logging
import os
import typing
from pathlib import Path
from typing import Any, Union

from pydantic import BaseModel, ValidationError

from guard.errors import PolicyError
from guard.policy.merge import apply_amendments, check_unique, entry_id, merge, unwrap
from guard.policy.models import Policy, legacy_role, policy_sha256
from guard.policy.yaml_safe import (
    MAX_DEPTH,
    MarkedDict,
    MarkedList,
    Replace,
    Where,
    bad_text,
    parse_yaml,
    shorten,
)

logger = logging.getLogger(__name__)

PolicySource = str | os.PathLike | Policy | dict

BUILTIN_SUFFIX = ".yaml"
MAX_POLICY_BYTES = 10 * 1024 * 1024
MAX_PATH_CHARS = 1024
#: Validation problems spelled out in one error message; the rest are counted.
MAX_ISSUES_SHOWN = 20
_MAX_ISSUES_KEPT = 200
_MAX_EXTENDS_DEPTH = 16
#: Keys the loader consumes (a resolved policy has them empty) and the one it leaves out of the sha256.
_RESOLVED_KEYS = ("extends", "include", "amend")

# Backwards-compatible names for the marked containers.
_Where = Where

__all__ = [
    "PolicySource",
    "builtin_policies",
    "builtin_policy_dir",
    "load_policy",
    "policy_sha256",
    "policy_to_yaml",
    "read_yaml",
    "resolve_policy",
    "resolve_policy_path",
]


# --------------------------------------------------------------------------------------------
# Built-in policies and paths
# --------------------------------------------------------------------------------------------


def builtin_policy_dir() -> Path:
    """Directory of the shipped policies (see :func:`guard.paths.builtin_policy_dir`)."""
    from guard.paths import builtin_policy_dir as _dir

    return _dir()


def builtin_policies() -> list[str]:
    """Names of the shipped policies ('default', 'strict', ...)."""
    d = builtin_policy_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def _is_file(p: Path) -> bool:
    try:
        return p.is_file()
    except (OSError, ValueError):
        return False


def resolve_policy_path(ref: str | os.PathLike, base_dir: Path | None = None) -> Path:
    """Find a policy file: an existing path (relative to ``base_dir`` if given), or a built-in name."""
    if not isinstance(ref, (str, os.PathLike)):
        raise PolicyError(f"a policy path must be text, got {type(ref).__name__} {shorten(ref)}")
    name = os.fspath(ref)
    if not isinstance(name, str):
        raise PolicyError(f"a policy path must be text, got {type(name).__name__}")
    if not name.strip():
        raise PolicyError("policy path is empty")
    why = bad_text(name) or ("contains a NUL character" if "\x00" in name else None)
    if why:
        raise PolicyError(f"policy path {shorten(name)} {why}")
    if len(name) > MAX_PATH_CHARS:
        raise PolicyError(f"policy path {shorten(name)} is {len(name)} characters long (at most {MAX_PATH_CHARS})")
    p = Path(os.path.expanduser(name))
    candidates = [p] if p.is_absolute() else ([Path(base_dir) / p] if base_dir else []) + ([] if base_dir else [p])
    for c in candidates:
        if _is_file(c):
            try:
                return c.resolve()
            except OSError as e:
                raise PolicyError(f"policy path {shorten(name)}: {e.strerror or e}") from None
    if "/" not in name and os.sep not in name:
        stem = name.removesuffix(BUILTIN_SUFFIX)
        b = builtin_policy_dir() / f"{stem}{BUILTIN_SUFFIX}"
        if _is_file(b):
            return b.resolve()
    for c in candidates:
        try:
            if c.exists() and not c.is_file():
                raise PolicyError(f"policy path {shorten(os.fspath(c), 200)} is not a file")
        except (OSError, ValueError) as e:
            raise PolicyError(
                f"policy path {shorten(name)} cannot be used: {getattr(e, 'strerror', None) or e}"
            ) from None
    where = f" (relative to {base_dir})" if base_dir and not p.is_absolute() else ""
    raise PolicyError(
        f"policy file not found: {shorten(name, 200)}{where}; built-in policies: {', '.join(builtin_policies())}"
    )


def _display(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith("..") else str(path)
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------------------------
# Reading: YAML files and Python mappings into marked containers
# --------------------------------------------------------------------------------------------


def read_yaml(path: Path) -> Any:
    """Parse a policy YAML file into marked containers; every error names file, line and column."""
    shown = _display(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise PolicyError(f"{shown}: cannot read policy file: {e.strerror or e}") from None
    if size > MAX_POLICY_BYTES:
        raise PolicyError(f"{shown}: file is {size} bytes, larger than the {MAX_POLICY_BYTES} allowed")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise PolicyError(f"{shown}: cannot read policy file: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise PolicyError(f"{shown}:{line}:{col}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    text = text.removeprefix("\ufeff")
    data = parse_yaml(text, shown)
    if data is None:
        raise PolicyError(f"{shown}: the file is empty; expected a mapping with at least 'name'")
    return data


def _from_python(value: Any, loc: tuple = (), active: set | None = None) -> Any:
    """A mapping given in Python as marked containers (without positions), checked like a file:
    text keys, valid text, no cycles, bounded depth. Tuples become lists and paths text."""
    active = set() if active is None else active
    if len(loc) > MAX_DEPTH:
        raise PolicyError(f"<policy>: {_fmt_path(loc)}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, Replace):
        return Replace(_from_python(value.value, loc, active))
    if isinstance(value, str):
        why = bad_text(value)
        if why:
            raise PolicyError(f"<policy>: {_fmt_path(loc)}: text {why}")
        return value
    if isinstance(value, os.PathLike):
        return _from_python(os.fspath(value), loc, active)
    if isinstance(value, (dict, list, tuple)):
        if id(value) in active:
            raise PolicyError(f"<policy>: {_fmt_path(loc)}: the mapping contains itself")
        active.add(id(value))
        try:
            if isinstance(value, dict):
                out = MarkedDict()
                for k, v in value.items():
                    if not isinstance(k, str):
                        raise PolicyError(
                            f"<policy>: {_fmt_path(loc)}: a key must be text, got {type(k).__name__} {shorten(k)}"
                        )
                    why = bad_text(k)
                    if why:
                        raise PolicyError(f"<policy>: {_fmt_path(loc)}: key {shorten(k)} {why}")
                    out[k] = _from_python(v, (*loc, k), active)
                return out
            return MarkedList(_from_python(v, (*loc, i), active) for i, v in enumerate(value))
        finally:
            active.discard(id(value))
    return value


# --------------------------------------------------------------------------------------------
# Resolution: include, extends, amend
# --------------------------------------------------------------------------------------------


class _Resolution:
    """What one load collects on the way: notes about old spellings."""

    def __init__(self) -> None:
        self.notes: list[str] = []


def _at(data: Any, key: str, shown: str, value: bool = False) -> str:
    table = getattr(data, "value_where" if value else "key_where", {})
    w = table.get(key)
    return str(w) if w else shown


def _modernise_concepts(entries: Any, shown: str, what: str, res: _Resolution) -> Any:
    """Concept entries with the old ``action`` key read as ``role`` (marks kept; a note per entry)."""
    if not isinstance(entries, list):
        return entries
    out = MarkedList()
    out.where = getattr(entries, "where", None)
    out.item_where = list(getattr(entries, "item_where", [None] * len(entries)))
    for i, e in enumerate(entries):
        wrapped = isinstance(e, Replace)
        d = e.value if wrapped else e
        if isinstance(d, dict) and "action" in d and "role" not in d:
            contrast = d.get("contrast")
            role = legacy_role(d["action"], contrast if isinstance(contrast, bool) else None)
            nd = MarkedDict()
            nd.renamed["role"] = "action"  # errors name the key as written
            nd.where = getattr(d, "where", None)
            kw, vw = getattr(d, "key_where", {}), getattr(d, "value_where", {})
            for k, v in d.items():
                k2, v2 = ("role", role) if k == "action" else (k, v)
                if k == "contrast" and d["action"] == "allow":
                    continue  # folded into the role
                nd[k2] = v2
                nd.key_where[k2] = kw.get(k)
                nd.value_where[k2] = vw.get(k)
            where = vw.get("action") or out.item_where[i] or shown
            cid = entry_id(d)
            if d["action"] not in ("block", "escalate", "allow"):
                out.append(Replace(nd, e.where) if wrapped else nd)
                continue
            extra = " with contrast: false" if d["action"] == "allow" and contrast is False else ""
            res.notes.append(
                f"{where}: {what}[{i}]{f' ({cid})' if cid else ''}: 'action: {d['action']}'{extra} "
                f"is the old spelling of 'role: {role}'"
            )
            d = nd
        out.append(Replace(d, e.where) if wrapped else d)
    return out


def _list_of_text(data: MarkedDict, key: str, shown: str) -> MarkedList:
    v = data.get(key)
    if isinstance(v, str):
        v2 = MarkedList([v])
        v2.item_where = [getattr(data, "value_where", {}).get(key)]
        return v2
    if not isinstance(v, list) or not all(isinstance(i, str) for i in v):
        raise PolicyError(
            f"{_at(data, key, shown, True)}: {key}: expected a list of file paths, got {shorten(unwrap(v))}"
        )
    return v


def _load_bank(path: Path, where: str, res: _Resolution) -> tuple[MarkedList, MarkedList]:
    """A concept bank: ``(concepts, amend)``."""
    data = unwrap(read_yaml(path))
    shown = _display(path)
    if isinstance(data, list):
        return _modernise_concepts(data, shown, "concepts", res), MarkedList()
    allowed = ("concepts", "amend", "version", "description")
    if not isinstance(data, dict) or not ({"concepts", "amend"} & set(data)):
        raise PolicyError(
            f"{shown}: a concept bank must be a mapping with a 'concepts' (or 'amend') list (included from {where})"
        )
    for k in data:
        if k not in allowed:
            close = difflib.get_close_matches(k, allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"expected one of {', '.join(allowed)}"
            raise PolicyError(f"{_at(data, k, shown)}: unknown key {shorten(k)} in concept bank; {hint}")
    out = []
    for key in ("concepts", "amend"):
        v = data.get(key, MarkedList())
        if not isinstance(v, list):
            raise PolicyError(f"{_at(data, key, shown, True)}: '{key}' must be a list of concepts")
        out.append(_modernise_concepts(v, shown, key, res))
    return out[0], out[1]


def _wheres(items: Any) -> list:
    iw = list(getattr(items, "item_where", []))
    return iw + [None] * (len(items) - len(iw))


#: Paths that are relative to the policy file (rebased when a parent lives elsewhere).
def _artifact_paths(data: Any) -> list[tuple[Any, Any]]:
    """``(container, key)`` of each artifact path in a raw policy mapping."""
    out = []
    if not isinstance(data, dict):
        return out
    ers = data.get("erasers")
    if isinstance(ers, list):
        for e in ers:
            e = e.value if isinstance(e, Replace) else e
            if isinstance(e, dict) and isinstance(e.get("path"), str):
                out.append((e, "path"))
    scr = data.get("screen")
    gs = scr.get("generator_space") if isinstance(scr, dict) else None
    if isinstance(gs, dict) and isinstance(gs.get("calibration"), str):
        out.append((gs, "calibration"))
    outp = data.get("output")
    acts = outp.get("actions") if isinstance(outp, dict) else None
    if isinstance(acts, dict) and isinstance(acts.get("placeholder"), str):
        out.append((acts, "placeholder"))
    return out


def _rebase(data: MarkedDict, old: Path, new: Path) -> None:
    """Rewrite relative artifact paths of ``data`` (relative to ``old``) relative to ``new``."""
    if os.path.normcase(os.path.abspath(old)) == os.path.normcase(os.path.abspath(new)):
        return
    for container, key in _artifact_paths(data):
        ref = container[key]
        p = Path(os.path.expanduser(ref))
        if p.is_absolute() or not ref.strip():
            continue
        target = os.path.normpath(os.path.join(os.path.abspath(old), ref))
        try:
            container[key] = Path(os.path.relpath(target, os.path.abspath(new))).as_posix()
        except ValueError:  # another drive
            container[key] = target


def _base_of(data: Any, default: Path, shown: str) -> Path:
    b = data.get("base_dir") if isinstance(data, dict) else None
    if b is None:
        return default
    if not isinstance(b, str) or not b.strip():
        raise PolicyError(f"{_at(data, 'base_dir', shown, True)}: base_dir: expected a directory path")
    p = Path(os.path.expanduser(b))
    return p if p.is_absolute() else default / p


def _resolve(data: Any, shown: str, base: Path, chain: tuple, res: _Resolution) -> MarkedDict:
    """``data`` (one file or mapping) with include, extends and amend applied and removed."""
    if isinstance(data, Replace):
        data = data.value
    if not isinstance(data, dict):
        raise PolicyError(
            f"{shown}:1:1: a policy must be a mapping of keys (name, concepts, ...), got a {type(data).__name__}"
        )
    base = _base_of(data, base, shown)
    own = data.get("concepts")
    if own is not None and not isinstance(unwrap(own), list):
        raise PolicyError(f"{_at(data, 'concepts', shown, True)}: concepts: expected a list of concepts")
    layer = MarkedList()
    seen: dict = {}
    amendments: list = []

    if data.get("include") is not None:
        incs = _list_of_text(data, "include", shown)
        for i, (ref, w) in enumerate(zip(incs, _wheres(incs))):
            where = str(w) if w else shown
            try:
                bank_path = resolve_policy_path(ref, base)
            except PolicyError as e:
                raise PolicyError(f"{where}: include[{i}]: {e}") from None
            bank, bank_amend = _load_bank(bank_path, where, res)
            check_unique(zip(bank, _wheres(bank)), "concept", seen)
            for e, ew in zip(bank, _wheres(bank)):
                layer.append(unwrap(e))
                layer.item_where.append(ew)
            amendments.extend(zip(bank_amend, _wheres(bank_amend)))

    if own is not None:
        own_list = _modernise_concepts(own.value if isinstance(own, Replace) else own, shown, "concepts", res)
        check_unique(zip(own_list, _wheres(own_list)), "concept", seen)
        for e, ew in zip(own_list, _wheres(own_list)):
            layer.append(e)
            layer.item_where.append(ew)
        layer.where = getattr(own_list, "where", None)
    rules = data.get("rules")
    if isinstance(rules, list):
        check_unique(zip(rules, _wheres(rules)), "rule", {})
    am = data.get("amend")
    if am is not None:
        if not isinstance(am, list):
            raise PolicyError(f"{_at(data, 'amend', shown, True)}: amend: expected a list of partial concepts")
        am = _modernise_concepts(am, shown, "amend", res)
        amendments.extend(zip(am, _wheres(am)))

    body = MarkedDict()
    body.where = getattr(data, "where", None)
    for k, v in data.items():
        if k in _RESOLVED_KEYS or k == "concepts":
            continue
        body[k] = v
        body.key_where[k] = data.key_where.get(k)
        body.value_where[k] = data.value_where.get(k)
    if own is not None or layer:
        # a child's `concepts: !replace [...]` replaces the parent's list; otherwise it merges by id
        body["concepts"] = Replace(layer) if isinstance(own, Replace) else layer
        body.key_where["concepts"] = data.key_where.get("concepts") or data.key_where.get("include")
        body.value_where["concepts"] = data.value_where.get("concepts")

    parent_ref = data.get("extends")
    if parent_ref is None:
        result = unwrap(body)
    else:
        if not isinstance(parent_ref, str):
            raise PolicyError(
                f"{_at(data, 'extends', shown, True)}: extends: expected a policy path or built-in "
                f"name, got {shorten(unwrap(parent_ref))}"
            )
        try:
            parent_path = resolve_policy_path(parent_ref, base)
        except PolicyError as e:
            raise PolicyError(f"{_at(data, 'extends', shown, True)}: extends: {e}") from None
        if parent_path in chain:
            cycle = " -> ".join(_display(p) for p in (*chain, parent_path))
            raise PolicyError(f"{_at(data, 'extends', shown, True)}: extends forms a cycle: {cycle}")
        if len(chain) >= _MAX_EXTENDS_DEPTH:
            raise PolicyError(
                f"{_at(data, 'extends', shown, True)}: extends nests deeper than {_MAX_EXTENDS_DEPTH} levels"
            )
        parent = _resolve_file(parent_path, chain, res)
        try:
            _validate(parent, parent_path)  # a broken parent is reported against its own file
        except PolicyError as e:
            raise PolicyError(f"{shown}: extends {_display(parent_path)}, which is invalid:\n{e}", e.issues) from None
        _rebase(parent, _base_of(parent, parent_path.parent, _display(parent_path)), base)
        parent.pop("base_dir", None)
        result = merge(parent, body)

    if amendments:
        concepts = result.get("concepts")
        if not isinstance(concepts, list):
            concepts = MarkedList()
        result["concepts"] = apply_amendments(concepts, amendments)
    return result


def _resolve_file(path: Path, chain: tuple[Path, ...], res: _Resolution) -> MarkedDict:
    return _resolve(read_yaml(path), _display(path), path.parent, chain + (path,), res)


# --------------------------------------------------------------------------------------------
# Validation with locations
# --------------------------------------------------------------------------------------------


def _locate(data: Any, loc: tuple, at_value: bool = False) -> Where | None:
    """The most specific recorded position along ``loc`` (of the last key's value if ``at_value``)."""
    best = getattr(data, "where", None)
    node = data
    for n, step in enumerate(loc):
        if isinstance(node, dict) and isinstance(step, str) and step in node:
            table = "value_where" if at_value and n == len(loc) - 1 else "key_where"
            w = getattr(node, table, {}).get(step)
            best = w or best
            node = node[step]
        elif isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node):
            iw = getattr(node, "item_where", None)
            if iw and step < len(iw) and iw[step]:
                best = iw[step]
            node = node[step]
        else:
            break
    return best


def _unwrap_type(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap_type(args[0]) if len(args) == 1 else annotation
    if origin in (list, tuple):
        return ("list", _unwrap_type(typing.get_args(annotation)[0]))
    if origin is dict:
        return ("dict", _unwrap_type(typing.get_args(annotation)[1]))
    return annotation


def _model_at(loc: tuple, root: type[BaseModel] = Policy, data: Any = None) -> type[BaseModel] | None:
    cur: Any = root
    node = data
    for step in loc:
        if isinstance(node, (dict, list)):
            try:
                node = node[step]
            except (KeyError, IndexError, TypeError):
                node = None
        else:
            node = None
        if isinstance(cur, tuple):
            cur = cur[1]
            continue
        if isinstance(cur, type) and issubclass(cur, BaseModel) and isinstance(step, str):
            f = cur.model_fields.get(step)
            if f is None:
                return None
            cur = _unwrap_type(f.annotation)
        else:
            return None
        if typing.get_origin(cur) is Union or str(typing.get_origin(cur)) == "types.UnionType":
            # a classifier entry: its model is chosen by `type`
            from guard.output import registry

            kind = node.get("type", "nudenet") if isinstance(node, dict) else "nudenet"
            try:
                cur = registry.config_model(kind) if isinstance(kind, str) else None
            except Exception:  # an unknown type: the schema error says which types exist
                cur = None
    return cur if isinstance(cur, type) and issubclass(cur, BaseModel) else None


def _as_written(data: Any, loc: tuple) -> tuple:
    """``loc`` with keys the loader renamed (old ``action`` -> ``role``) spelled as in the file."""
    out, node = [], data
    for step in loc:
        renamed = getattr(node, "renamed", None) or {}
        out.append(renamed.get(step, step))
        try:
            node = node[step] if isinstance(node, (dict, list)) else None
        except (KeyError, IndexError, TypeError):
            node = None
    return tuple(out)


def _fmt_path(loc: tuple) -> str:
    out = ""
    for step in loc:
        if isinstance(step, int):
            out += f"[{step}]"
        else:
            s = str(step)
            s = s if len(s) <= 40 and s.isprintable() else shorten(s, 40)
            out += f".{s}" if out else s
    return out or "(top level)"


def _describe(err: dict, root: type[BaseModel], data: Any) -> str:
    loc = tuple(err["loc"])
    typ = err["type"]
    if typ == "extra_forbidden":
        key = loc[-1]
        model = _model_at(loc[:-1], root, data)
        allowed = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = (
            f"; did you mean {close[0]!r}?"
            if close
            else (f"; expected one of: {', '.join(allowed)}" if allowed else "")
        )
        return f"unknown key {shorten(key)}{hint}"
    if typ == "missing":
        return "required key is missing"
    msg = err["msg"]
    msg = msg.removeprefix("Value error, ")
    inp = err.get("input")
    if typ in ("float_type", "int_type", "string_type", "bool_type") and isinstance(inp, bool):
        msg += " (true/false is not a number here)" if typ != "bool_type" else ""
    if typ not in ("value_error", "assertion_error", "reference") and not isinstance(inp, (dict, list)):
        msg = f"{msg[0].lower()}{msg[1:]}, got {shorten(inp)}"
    return shorten(msg, 400)[1:-1] if len(msg) > 400 else msg


def _partial_hint(data: Any, loc: tuple) -> str:
    """For a concept entry that only changes keys but has nothing to change: which id was meant."""
    if len(loc) != 3 or loc[0] != "concepts" or loc[2] != "category" or not isinstance(data, dict):
        return ""
    concepts = data.get("concepts")
    try:
        entry = concepts[loc[1]]
    except (TypeError, IndexError, KeyError):
        return ""
    cid = entry_id(entry)
    if cid is None or "phrases" in entry:
        return ""
    known = [entry_id(c) for c in concepts if isinstance(c, dict) and "phrases" in c]
    close = difflib.get_close_matches(cid, [k for k in known if k], n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return (
        f" (this entry gives no phrases either: as a change to an existing concept, no concept "
        f"{shorten(cid)} exists to merge into{hint})"
    )


def _summary(head: str, issues: list[str], total: int) -> str:
    lines = [head] + ["  " + i for i in issues[:MAX_ISSUES_SHOWN]]
    if total > MAX_ISSUES_SHOWN:
        lines.append(f"  ... and {total - MAX_ISSUES_SHOWN} more problem{'s' if total - MAX_ISSUES_SHOWN != 1 else ''}")
    return "\n".join(lines)


def _validate(data: Any, path: Path | None, root: type[BaseModel] = Policy, what: str = "policy"):
    """Validate ``data`` against ``root``; every error names file:line:col, key path, expectation."""
    try:
        return root.model_validate(data)
    except ValidationError as e:
        shown = _display(path) if path else f"<{what}>"
        errors = e.errors()
        issues = []
        for err in errors[:_MAX_ISSUES_KEPT]:
            loc = tuple(err["loc"])
            where = _locate(data, loc, at_value=err["type"] not in ("extra_forbidden", "missing"))
            prefix = str(where) if where else shown
            written = _as_written(data, loc)
            msg = _describe(err, root, data)
            if written != loc and err["type"] == "literal_error":
                msg += " (the old spelling 'action' takes 'block', 'escalate' or 'allow')"
            if err["type"] == "missing" and root is Policy:
                msg += _partial_hint(data, loc)
            issues.append(f"{prefix}: {_fmt_path(written)}: {msg}")
        n = len(errors)
        head = f"{shown}: invalid {what} ({n} problem{'s' if n != 1 else ''})"
        raise PolicyError(_summary(head, issues, n), issues) from None
    except RecursionError:
        raise PolicyError(f"{_display(path) if path else '<policy>'}: nested too deeply") from None


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def load_policy(source: PolicySource = "default", *, base_dir: str | os.PathLike | None = None) -> Policy:
    """Load and validate a policy: a file path, a built-in name ('default', 'strict', 'art-styles'),
    a mapping with the policy's keys, or an existing :class:`Policy` (returned as is).

    ``extends``/``include`` of a file are relative to its directory; of a mapping, relative to
    ``base_dir`` (default: the mapping's own ``base_dir`` key, else the working directory). Built-in
    names always work. Raises :class:`guard.errors.PolicyError` naming file, line, key path and what
    was expected.
    """
    if isinstance(source, Policy):
        return source
    res = _Resolution()
    path: Path | None = None
    if isinstance(source, dict):
        raw = _from_python(source)
        if base_dir is not None:
            base = Path(os.path.expanduser(os.fspath(base_dir))).absolute()
            if "base_dir" not in raw:
                raw["base_dir"] = os.fspath(base)
        else:
            base = Path.cwd()
        data = _resolve(raw, "<policy>", base, (), res)
    elif isinstance(source, (str, os.PathLike)):
        path = resolve_policy_path(source, Path(base_dir) if base_dir is not None else None)
        data = _resolve_file(path, (), res)
    else:
        raise PolicyError(
            f"policy must be a path, a built-in name, a dict or a guard.Policy, got {type(source).__name__}"
        )
    policy = _validate(data, path)
    policy._source = str(path) if path else None
    policy._notes = res.notes
    if res.notes:
        logger.info(
            "policy %r: %d concept(s) use the old 'action' key, read as 'role' (first: %s)",
            policy.name,
            len(res.notes),
            res.notes[0],
        )
    return policy


def resolve_policy(source: PolicySource = "default", *, base_dir: str | os.PathLike | None = None) -> dict:
    """The resolved policy as plain data: ``extends``, ``include`` and ``amend`` applied, every default
    filled in (what ``guard policy show --resolved`` prints, see :func:`policy_to_yaml`)."""
    return _plain(load_policy(source, base_dir=base_dir))


def _plain(policy: Policy) -> dict:
    data = policy.model_dump(mode="json", exclude=set(_RESOLVED_KEYS) | {"base_dir"})
    if policy.base_dir or (
        any(not os.path.isabs(os.path.expanduser(c[k])) for c, k in _artifact_paths(data))
        and (policy.source or policy.base_dir)
    ):
        data["base_dir"] = os.fspath(policy.base_path.absolute())
    return data


def policy_to_yaml(policy: Policy) -> str:
    """The resolved policy as a self-contained YAML document (no extends, include or amend; a
    ``base_dir`` when it has relative artifact paths, so they still point at the same files)."""
    import yaml

    header = f"# resolved policy {shorten(policy.name, 80)}, sha256 {policy_sha256(policy)}\n"
    return header + yaml.safe_dump(_plain(policy), sort_keys=False, allow_unicode=True, width=100)
