"""Load policy files: YAML with line numbers, ``extends`` and ``include`` resolution, clear errors.

Every problem in a file is reported as ``FILE:LINE:COL: key.path: what was expected``; unknown keys
get a did-you-mean. All problems of one file are gathered into a single :class:`PolicyError`.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import typing
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from guard.errors import PolicyError
from guard.policy.models import Policy

PolicySource = Union[str, os.PathLike, Policy, dict]

BUILTIN_SUFFIX = ".yaml"
MAX_POLICY_BYTES = 10 * 1024 * 1024
_MAX_EXTENDS_DEPTH = 16


# --------------------------------------------------------------------------------------------
# Built-in policies
# --------------------------------------------------------------------------------------------


def builtin_policy_dir() -> Path:
    """Directory of the shipped policies: ``policies/`` in a checkout (or an editable install),
    ``guard/_policies`` in an installed wheel."""
    here = Path(__file__).resolve().parent.parent  # guard/
    checkout = here.parent / "policies"
    if (checkout / "default.yaml").is_file():
        return checkout
    return here / "_policies"


def builtin_policies() -> list[str]:
    d = builtin_policy_dir()
    return sorted(p.stem for p in d.glob("*.yaml")) if d.is_dir() else []


def resolve_policy_path(ref: str | os.PathLike, base_dir: Path | None = None) -> Path:
    """Find a policy file: an existing path (relative to ``base_dir`` if given), or a built-in name."""
    if isinstance(ref, str) and not ref.strip():
        raise PolicyError("policy path is empty")
    p = Path(os.path.expanduser(os.fspath(ref)))
    candidates = [p] if p.is_absolute() else ([base_dir / p] if base_dir else []) + [p]
    for c in candidates:
        if c.is_file():
            return c.resolve()
    name = os.fspath(ref)
    if "/" not in name and os.sep not in name:
        stem = name[: -len(BUILTIN_SUFFIX)] if name.endswith(BUILTIN_SUFFIX) else name
        b = builtin_policy_dir() / f"{stem}{BUILTIN_SUFFIX}"
        if b.is_file():
            return b.resolve()
    for c in candidates:
        if c.exists() and not c.is_file():
            raise PolicyError(f"policy path {os.fspath(c)!r} is not a file")
    where = f" (relative to {base_dir})" if base_dir and not p.is_absolute() else ""
    raise PolicyError(
        f"policy file not found: {name!r}{where}; built-in policies: {', '.join(builtin_policies())}"
    )


# --------------------------------------------------------------------------------------------
# YAML with marks
# --------------------------------------------------------------------------------------------


class _Where(typing.NamedTuple):
    file: str
    line: int
    col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


class MarkedDict(dict):
    """A dict that remembers where each key was written."""

    where: _Where | None = None
    key_where: dict
    value_where: dict


class MarkedList(list):
    where: _Where | None = None
    item_where: list


def _display(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
        return rel if not rel.startswith("..") else str(path)
    except ValueError:
        return str(path)


def _construct(node: yaml.Node, file: str) -> Any:
    where = _Where(file, node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out = MarkedDict()
        out.where = where
        out.key_where = {}
        out.value_where = {}
        for knode, vnode in node.value:
            if knode.tag == "tag:yaml.org,2002:merge":
                raise PolicyError(f"{where}: YAML merge keys ('<<') are not supported in policies")
            key = _construct(knode, file)
            if isinstance(key, (dict, list)):
                raise PolicyError(f"{_Where(file, knode.start_mark.line + 1, knode.start_mark.column + 1)}: "
                                  "a mapping key must be a plain value")
            kw = _Where(file, knode.start_mark.line + 1, knode.start_mark.column + 1)
            if key in out:
                raise PolicyError(f"{kw}: duplicate key {key!r} (first at line {out.key_where[key].line})")
            out[key] = _construct(vnode, file)
            out.key_where[key] = kw
            out.value_where[key] = _Where(file, vnode.start_mark.line + 1, vnode.start_mark.column + 1)
        return out
    if isinstance(node, yaml.SequenceNode):
        out_l = MarkedList(_construct(n, file) for n in node.value)
        out_l.where = where
        out_l.item_where = [_Where(file, n.start_mark.line + 1, n.start_mark.column + 1) for n in node.value]
        return out_l
    try:
        return _SCALARS.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as e:
        raise PolicyError(f"{where}: {e.problem}") from None


_SCALARS = yaml.constructor.SafeConstructor()


def read_yaml(path: Path) -> Any:
    """Parse a YAML file into Marked containers; syntax errors name file, line and column."""
    shown = _display(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise PolicyError(f"{shown}: cannot read policy file: {e.strerror or e}") from None
    if size > MAX_POLICY_BYTES:
        raise PolicyError(f"{shown}: file is {size} bytes, larger than the {MAX_POLICY_BYTES} allowed")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise PolicyError(f"{shown}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise PolicyError(f"{shown}: cannot read policy file: {e.strerror or e}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        loc = f"{shown}:{mark.line + 1}:{mark.column + 1}" if mark else shown
        problem = " ".join(x for x in (e.context, e.problem) if x)
        raise PolicyError(f"{loc}: malformed YAML: {problem}") from None
    except yaml.YAMLError as e:
        raise PolicyError(f"{shown}: malformed YAML: {e}") from None
    if node is None:
        raise PolicyError(f"{shown}: the file is empty; expected a mapping with at least 'name'")
    return _construct(node, shown)


# --------------------------------------------------------------------------------------------
# extends / include
# --------------------------------------------------------------------------------------------


def _merge(parent: Any, child: Any) -> Any:
    """Child overrides parent; mappings merge key by key; ``concepts`` lists merge by ``id``."""
    if isinstance(parent, dict) and isinstance(child, dict):
        out = MarkedDict(parent)
        out.where = getattr(child, "where", None)
        out.key_where = dict(getattr(parent, "key_where", {}))
        out.value_where = dict(getattr(parent, "value_where", {}))
        for k, v in child.items():
            if k in ("concepts", "rules") and isinstance(v, list) and isinstance(parent.get(k), list):
                out[k] = _merge_concepts(parent[k], v)
            elif k in parent:
                out[k] = _merge(parent[k], v)
            else:
                out[k] = v
            out.key_where[k] = getattr(child, "key_where", {}).get(k)
            out.value_where[k] = getattr(child, "value_where", {}).get(k)
        return out
    return child


def _merge_concepts(parent: list, child: list) -> MarkedList:
    out = MarkedList(parent)
    out.item_where = list(getattr(parent, "item_where", [None] * len(parent)))
    out.where = getattr(child, "where", None)
    index = {c.get("id"): i for i, c in enumerate(out) if isinstance(c, dict)}
    child_where = getattr(child, "item_where", [None] * len(child))
    for c, w in zip(child, child_where):
        cid = c.get("id") if isinstance(c, dict) else None
        if cid is not None and cid in index:
            out[index[cid]] = _merge(out[index[cid]], c)
            out.item_where[index[cid]] = w
        else:
            if cid is not None:
                index[cid] = len(out)
            out.append(c)
            out.item_where.append(w)
    return out


def _load_bank(path: Path, where: _Where | None) -> MarkedList:
    data = read_yaml(path)
    shown = _display(path)
    if isinstance(data, list):
        return data if isinstance(data, MarkedList) else MarkedList(data)
    if not isinstance(data, dict) or "concepts" not in data:
        raise PolicyError(f"{shown}: a concept bank must be a mapping with a 'concepts' list"
                          + (f" (included from {where})" if where else ""))
    extra = [k for k in data if k not in ("concepts", "version", "description")]
    if extra:
        kw = data.key_where[extra[0]]
        raise PolicyError(f"{kw}: unknown key {extra[0]!r} in concept bank; expected 'concepts'")
    concepts = data["concepts"]
    if not isinstance(concepts, list):
        raise PolicyError(f"{data.key_where['concepts']}: 'concepts' must be a list")
    return concepts


def _load_raw(path: Path, chain: tuple[Path, ...]) -> MarkedDict:
    if path in chain:
        cycle = " -> ".join(_display(p) for p in chain + (path,))
        raise PolicyError(f"policy 'extends' forms a cycle: {cycle}")
    if len(chain) >= _MAX_EXTENDS_DEPTH:
        raise PolicyError(f"{_display(path)}: 'extends' nests deeper than {_MAX_EXTENDS_DEPTH} levels")
    data = read_yaml(path)
    shown = _display(path)
    if not isinstance(data, dict):
        raise PolicyError(f"{shown}:1:1: a policy must be a mapping of keys (name, concepts, ...), "
                          f"got a {type(data).__name__}")
    base_dir = path.parent

    # includes: concept banks appended to this file's own concepts
    inc = data.get("include")
    if inc is not None:
        if isinstance(inc, str):
            inc = [inc]
        if not isinstance(inc, list) or not all(isinstance(i, str) for i in inc):
            raise PolicyError(f"{data.key_where['include']}: include: expected a list of file paths")
        own = data.get("concepts")
        if own is not None and not isinstance(own, list):
            raise PolicyError(f"{data.key_where['concepts']}: concepts: expected a list of concepts")
        merged = MarkedList()
        merged.item_where = []
        for i, ref in enumerate(inc):
            w = inc.item_where[i] if isinstance(inc, MarkedList) else None
            try:
                bank_path = resolve_policy_path(ref, base_dir)
            except PolicyError as e:
                raise PolicyError(f"{w or shown}: include[{i}]: {e}") from None
            bank = _load_bank(bank_path, w)
            merged = _merge_concepts(merged, bank)
        if own is not None:
            merged = _merge_concepts(merged, own)
        data["concepts"] = merged
        data.key_where.setdefault("concepts", data.key_where["include"])

    parent_ref = data.get("extends")
    if parent_ref is None:
        return data
    if not isinstance(parent_ref, str):
        raise PolicyError(f"{data.key_where['extends']}: extends: expected a policy path or built-in name")
    try:
        parent_path = resolve_policy_path(parent_ref, base_dir)
    except PolicyError as e:
        raise PolicyError(f"{data.key_where['extends']}: extends: {e}") from None
    parent = _load_raw(parent_path, chain + (path,))
    try:
        _validate(parent, parent_path)  # a broken parent is reported against its own file
    except PolicyError as e:
        raise PolicyError(f"{shown}: extends {_display(parent_path)}, which is invalid:\n{e}", e.issues) from None
    return _merge(parent, data)


# --------------------------------------------------------------------------------------------
# Validation with locations
# --------------------------------------------------------------------------------------------


def _locate(data: Any, loc: tuple, at_value: bool = False) -> _Where | None:
    """The most specific recorded position along ``loc`` (of the last key's value if ``at_value``)."""
    best = getattr(data, "where", None)
    node = data
    for n, step in enumerate(loc):
        if isinstance(node, dict) and step in node:
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


def _unwrap(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    if origin in (list, tuple):
        return ("list", _unwrap(typing.get_args(annotation)[0]))
    if origin is dict:
        return ("dict", _unwrap(typing.get_args(annotation)[1]))
    return annotation


def _model_at(loc: tuple, root: type[BaseModel] = Policy) -> type[BaseModel] | None:
    cur: Any = root
    for step in loc:
        if isinstance(cur, tuple):
            cur = cur[1]
            continue
        if isinstance(cur, type) and issubclass(cur, BaseModel) and isinstance(step, str):
            f = cur.model_fields.get(step)
            if f is None:
                return None
            cur = _unwrap(f.annotation)
        else:
            return None
    return cur if isinstance(cur, type) and issubclass(cur, BaseModel) else None


def _fmt_path(loc: tuple) -> str:
    out = ""
    for step in loc:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "(top level)"


def _describe(err: dict, root: type[BaseModel] = Policy) -> str:
    loc = tuple(err["loc"])
    typ = err["type"]
    if typ == "extra_forbidden":
        key = loc[-1]
        model = _model_at(loc[:-1], root)
        allowed = list(model.model_fields) if model else []
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else (
            f"; expected one of: {', '.join(allowed)}" if allowed else "")
        return f"unknown key {key!r}{hint}"
    if typ == "missing":
        return "required key is missing"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    inp = err.get("input")
    if typ not in ("value_error", "assertion_error") and not isinstance(inp, (dict, list)):
        shown = repr(inp)
        if len(shown) > 60:
            shown = shown[:57] + "..."
        msg = f"{msg[0].lower()}{msg[1:]}, got {shown}"
    return msg


def _validate(data: dict, path: Path | None, root: type[BaseModel] = Policy, what: str = "policy"):
    """Validate ``data`` against ``root``; every error names file:line:col, key path, expectation."""
    try:
        return root.model_validate(data)
    except ValidationError as e:
        shown = _display(path) if path else f"<{what}>"
        issues = []
        for err in e.errors():
            loc = tuple(err["loc"])
            where = _locate(data, loc, at_value=err["type"] not in ("extra_forbidden", "missing"))
            prefix = str(where) if where else shown
            issues.append(f"{prefix}: {_fmt_path(loc)}: {_describe(err, root)}")
        n = len(issues)
        head = f"{shown}: invalid {what} ({n} problem{'s' if n != 1 else ''})"
        raise PolicyError(head + "\n" + "\n".join("  " + i for i in issues), issues) from None


# --------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------


def policy_sha256(policy: Policy) -> str:
    """sha256 over the resolved policy's canonical JSON (what actually applies, not its source text)."""
    blob = json.dumps(policy.model_dump(mode="json", exclude={"extends", "include"}),
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def load_policy(source: PolicySource = "default") -> Policy:
    """Load and validate a policy: a file path, a built-in name ('default', 'strict', 'art-styles'),
    a mapping with the policy's keys, or an existing :class:`Policy` (returned as is).

    Raises :class:`guard.errors.PolicyError` naming file, line, key path and what was expected.
    """
    if isinstance(source, Policy):
        return source
    if isinstance(source, dict):
        policy = _validate(source, None)
        object.__setattr__(policy, "_source", None)
        return policy
    if not isinstance(source, (str, os.PathLike)):
        raise PolicyError(
            f"policy must be a path, a built-in name, a dict or a guard.Policy, got {type(source).__name__}"
        )
    path = resolve_policy_path(source)
    data = _load_raw(path, ())
    if data.get("include") is not None:
        data["include"] = []
    if "extends" in data:
        data["extends"] = None
    policy = _validate(data, path)
    policy._source = str(path)
    return policy


def policy_to_yaml(policy: Policy) -> str:
    """The resolved policy as a self-contained YAML document (no extends, no include)."""
    data = policy.model_dump(mode="json", exclude={"extends", "include"})
    header = f"# resolved policy {policy.name!r}, sha256 {policy_sha256(policy)}\n"
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)
