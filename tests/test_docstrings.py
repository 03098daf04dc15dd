"""Every public function and class documents itself (issue 19): each argument of its signature is named in its
docstring (as `name`), and a function that returns something says what (a `**Returns:**` section, or a first
line that says what it returns). Constants are documented in the API pages by their `#:` comments
(tests/test_docs.py)."""

from __future__ import annotations

import inspect
import re

import pytest

import jaxprune as jp
import jaxprune.experiments as jpx

NAMESPACES = {"jaxprune": jp, "jaxprune.pruning": jp.pruning, "jaxprune.design": jp.design,
              "jaxprune.realdata": jp.realdata, "jaxprune.experiments": jpx}


def _public_callables():
    out = []
    for ns_name, ns in NAMESPACES.items():
        for name in ns.__all__:
            obj = getattr(ns, name)
            # functions, classes, and jitted functions (equinox.filter_jit wrappers are callable objects)
            if inspect.isfunction(obj) or inspect.isclass(obj) or (callable(obj) and hasattr(obj, "__wrapped__")):
                out.append((f"{ns_name}.{name}", obj))
    return out


def _parameters(obj) -> list[str]:
    target = inspect.unwrap(obj)
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return []
        target = obj.__init__
        if target is object.__init__:
            return []
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    return [p.name for p in sig.parameters.values()
            if p.name not in ("self", "cls") and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
            and not p.name.startswith("_")]


def _doc(obj) -> str:
    doc = inspect.getdoc(inspect.unwrap(obj)) or inspect.getdoc(obj) or ""
    if inspect.isclass(obj):  # a class documents its constructor's arguments in its own docstring or __init__'s
        init = obj.__dict__.get("__init__")
        if init is not None and init.__doc__:
            doc += "\n" + init.__doc__
    return doc


CALLABLES = _public_callables()


@pytest.mark.parametrize("qualname,obj", CALLABLES, ids=[q for q, _ in CALLABLES])
def test_public_callable_documents_its_arguments(qualname, obj):
    doc = _doc(obj)
    assert doc.strip(), f"{qualname} has no docstring"
    missing = [p for p in _parameters(obj) if not re.search(rf"`{re.escape(p)}\b", doc)]
    assert not missing, f"{qualname}: arguments not named in its docstring (as `name`): {missing}"


FUNCTIONS = [(q, o) for q, o in CALLABLES if not inspect.isclass(o)]


@pytest.mark.parametrize("qualname,obj", FUNCTIONS, ids=[q for q, _ in FUNCTIONS])
def test_public_function_says_what_it_returns(qualname, obj):
    doc = _doc(obj)
    ret = inspect.signature(inspect.unwrap(obj)).return_annotation
    if ret in (None, "None"):
        return
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    says = ("**Returns:**" in doc or re.search(r"\b(Returns?|returns?|Yields?)\b", doc)
            or re.match(r"^(The|A|An|One|Whether|Every|All|Each|How|What|True|Number|Count|Path|`)", first))
    assert says, f"{qualname}: docstring does not say what it returns (add a **Returns:** section)"
