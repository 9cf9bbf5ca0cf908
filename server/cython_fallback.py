"""What the compiled-core modules written in Cython's pure-Python mode
(result_bytes.py, request_bytes.py, the settlement's values and their
callers) read of the `cython` module, for an
interpreted run where Cython is not installed (it only builds the compiled
core): the decorators change nothing, the C types mean nothing, a
declared or cast value is the value itself. Compiled, Cython reads these
names itself and this module is never imported."""

from __future__ import annotations

import dataclasses  # noqa: F401 - cython.dataclasses: the standard library's, as Cython's Shadow gives it
from typing import Any, Callable

compiled = False
# C types, named only in declare() and cast() outside annotations
int = longlong = ulonglong = Py_ssize_t = p_char = p_const_char = p_const_uchar = NULL = None  # noqa: A001


def _unchanged(function: Callable[..., Any]) -> Callable[..., Any]:
    return function


cfunc = ccall = inline = final = cclass = _unchanged


def exceptval(*_args: Any, **_kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return _unchanged


def locals(**_types: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:  # noqa: A001
    return _unchanged


def nonecheck(_on: bool) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return _unchanged


def declare(_type: Any, value: Any) -> Any:
    return value


def cast(_type: Any, value: Any) -> Any:
    return value
