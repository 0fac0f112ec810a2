"""Reading an untrusted tree of YAML values with one-line errors that name
the key path (``sources[1].zones[0].points``) and never echo a secret.

The same readers serve the camera file and, later, the control API's JSON
bodies, so every size is bounded here: a request can be as hostile as it likes
and still costs at most a bounded walk.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from core.errors import InputError

MAX_FILE_BYTES = 1 << 20
"""A camera file is a page of YAML, not a data set."""
MAX_NODES = 100_000
"""Values walked in one file: YAML aliases can make a small file a huge tree."""
MAX_TEXT = 4096
"""Longest string value (URLs included)."""

_ENV = re.compile(r"\$\$|\$\{([^}]*)\}|\$\{")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ConfigError(InputError):
    """A camera configuration that cannot be used: one line, ``PATH: problem``."""


def key(path: str, name: str | int) -> str:
    """``path.name`` or ``path[i]``: where a value sits, as the user wrote it."""
    if isinstance(name, int):
        return f"{path}[{name}]"
    return f"{path}.{name}" if path else name


def kind(value: object) -> str:
    """What a value is, in YAML's words; never the value itself (it may be a
    secret)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def mapping(value: object, path: str, allowed: Collection[str],
            required: Collection[str] = ()) -> dict[str, Any]:
    """``value`` as a mapping with only ``allowed`` keys and every ``required``
    one; an unknown key is named (with the allowed ones), never dropped."""
    if not isinstance(value, dict):
        raise ConfigError(f"{path or 'the file'}: expected a mapping (key: value), "
                          f"got {kind(value)}")
    for name in value:
        if not isinstance(name, str):
            raise ConfigError(f"{path or 'the file'}: keys must be strings, "
                              f"got {kind(name)}")
        if name not in allowed:
            shown = name if len(name) <= 40 else name[:40] + "..."
            raise ConfigError(f"{key(path, shown)}: unknown key (allowed: "
                              f"{', '.join(sorted(allowed))})")
    for name in required:
        if name not in value:
            raise ConfigError(f"{key(path, name)}: missing (required)")
    return value


def seq(value: object, path: str, most: int) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{path}: expected a list, got {kind(value)}")
    if len(value) > most:
        raise ConfigError(f"{path}: {len(value)} entries; at most {most}")
    return value


def text(value: object, path: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{path}: expected a string, got {kind(value)}")
    if len(value) > MAX_TEXT:
        raise ConfigError(f"{path}: longer than {MAX_TEXT} characters")
    if not empty and not value.strip():
        raise ConfigError(f"{path}: empty")
    return value


def number(value: object, path: str, *, minimum: float = 0.0,
           strict: bool = False, integer: bool = False) -> float:
    """A finite number >= ``minimum`` (> with ``strict``); ``integer``: whole."""
    wanted = "an integer" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (
            integer and not isinstance(value, int)):
        raise ConfigError(f"{path}: expected {wanted}, got {kind(value)}")
    if not math.isfinite(value) or value < minimum or (strict and value == minimum):
        sign = ">" if strict else ">="
        raise ConfigError(f"{path}: {value!r} must be {wanted} {sign} {minimum:g}")
    return value


def choice(value: object, path: str, allowed: Collection[str]) -> str:
    if not isinstance(value, str) or value not in allowed:
        got = repr(value) if isinstance(value, str) and len(value) <= 40 else kind(
            value)
        raise ConfigError(f"{path}: {got} is not one of {', '.join(allowed)}")
    return value


# libyaml's parser where PyYAML has it (about 5x faster), the same rules either way
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_SafeLoader):
    """``safe_load`` with YAML 1.2's booleans (only true/false: ``on``, ``no``
    and ``off`` stay strings, so ``clips: {on: [...]}`` has the key ``on`` and a
    country code ``NO`` is not false), and refusing a key given twice in one
    mapping: YAML keeps the last one silently, which hides a copy-paste
    mistake."""

    yaml_implicit_resolvers = {
        first: [(tag, rx) for tag, rx in resolvers
                if tag != "tag:yaml.org,2002:bool"]
        for first, resolvers in _SafeLoader.yaml_implicit_resolvers.items()
    }

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False
                          ) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            name = self.construct_object(key_node, deep=deep)
            if isinstance(name, str) and name in seen:
                mark = key_node.start_mark
                raise ConfigError(f"line {mark.line + 1}: key {name!r} is given "
                                  "twice in one mapping")
            seen.add(name if isinstance(name, (str, int, float)) else id(name))
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver("tag:yaml.org,2002:bool",
                              re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))


def read_yaml(path: Path) -> object:
    """The parsed file, or a ``ConfigError`` with the file's line and column
    (never the line's text: it may hold a password)."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read it ({exc.strerror or exc})") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(f"larger than {MAX_FILE_BYTES} bytes")
    try:
        return yaml.load(data, Loader=_Loader)  # a SafeLoader: no objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{where}not valid YAML ({exc.problem or exc.context})"
                          ) from None
    except yaml.YAMLError:
        raise ConfigError("not valid YAML") from None


def expand_env(tree: object, environ: Mapping[str, str]
               ) -> tuple[object, dict[str, str]]:
    """Every ``${NAME}`` in the tree's strings replaced from ``environ``
    (``$$`` is a literal ``$``); keys are left alone. Returns the new tree and
    the values used, by name, so errors can hide them. An unset variable is an
    error naming it and where it is."""
    used: dict[str, str] = {}
    budget = [MAX_NODES]

    def sub(value: str, path: str) -> str:
        def one(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1)
            if name is None or not _ENV_NAME.match(name):
                raise ConfigError(f"{path}: '${{' must start ${{NAME}} (letters, "
                                  "digits, '_'); write $$ for a literal $")
            if name not in environ:
                raise ConfigError(f"{path}: environment variable {name} is not set")
            used[name] = environ[name]
            return environ[name]

        return _ENV.sub(one, value)

    def walk(value: object, path: str) -> object:
        budget[0] -= 1
        if budget[0] < 0:
            raise ConfigError(f"more than {MAX_NODES} values (YAML aliases?)")
        if isinstance(value, str):
            return sub(value, path)
        if isinstance(value, list):
            return [walk(v, key(path, i)) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: walk(v, key(path, str(k))) for k, v in value.items()}
        return value

    return walk(tree, ""), used


def hide(message: str, secrets: Mapping[str, str]) -> str:
    """``message`` with every value taken from the environment replaced by its
    ``${NAME}``, plain or percent-escaped: the last line of defence, so no
    error path can show one."""
    from urllib.parse import quote

    pairs = []
    for name, value in secrets.items():
        if value:
            pairs += [(value, name), (quote(value, safe=""), name)]
    for value, name in sorted(pairs, key=lambda p: -len(p[0])):
        message = message.replace(value, f"${{{name}}}")
    return message
