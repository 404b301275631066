"""Turning plain YAML data into nested dataclasses, with errors that name the key.

A small, strict converter: unknown keys, wrong types and values outside a ``Literal`` each raise
``ConfigError`` naming the dotted key and what is allowed. We chose it over pydantic to keep the
configs plain dataclasses that the workers import without another dependency.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from trainables.errors import ConfigError


def _describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if origin in (list, tuple):
        return "a list"
    if origin is dict:
        return "a mapping"
    return getattr(tp, "__name__", str(tp))


def convert(tp: Any, value: Any, key: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise ``ConfigError`` naming ``key``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if isinstance(value, bool):
            # YAML 1.1 reads an unquoted off/on/no/yes as a boolean: give back the word.
            words = {False: ("off", "no", "false"), True: ("on", "yes", "true")}[value]
            value = next((a for a in allowed if isinstance(a, str) and a in words), value)
        if value in allowed:
            return value
        raise ConfigError(f"{key}: {value!r} is not allowed; allowed: "
                          + ", ".join(str(a) for a in typing.get_args(tp)))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, key)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
            return tuple(convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        item = args[0] if args else Any
        items = [convert(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = typing.get_args(tp) or (Any, Any)
        return {convert(kt, k, key): convert(vt, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e4 as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"unsupported config type {tp!r} at {key}")
    raise ConfigError(f"{key}: expected {_describe(tp)}, got {value!r}")


def from_dict(cls: type, data: dict, key: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``; missing keys keep their defaults."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = f"{key}.{unknown[0]}" if key else unknown[0]
        raise ConfigError(f"unknown config key {where!r}; allowed keys"
                          f"{' under ' + key if key else ''}: {', '.join(sorted(fields))}")
    kwargs = {name: convert(hints[name], value, f"{key}.{name}" if key else name)
              for name, value in data.items()}
    try:
        obj = cls(**kwargs)
    except ConfigError as error:
        # A settings class names its own fields; say where it sits in the config.
        if key:
            raise ConfigError(f"{key}.{error}") from None
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{key or 'config'}: {error}") from None
    return obj


def to_dict(obj: Any) -> Any:
    """A dataclass tree as plain lists and dicts (tuples become lists), for YAML and JSON."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
