"""The one way capplan reads YAML: a safe loader with limits, so a small hostile file
(a "billion laughs" alias bomb, a deep nest, a huge or binary file) fails in well under a
second with one line naming the file, instead of eating memory.

Limits (per file):

- size: :data:`MAX_YAML_BYTES` (1 MiB; capplan's files are a few KiB), read no further;
- text: UTF-8 (an error names the byte offset and line);
- nesting depth: :data:`MAX_YAML_DEPTH` levels, counted with aliases expanded;
- aliases: at most :data:`MAX_YAML_ALIASES` ``*alias`` uses, and the document with every
  alias expanded at most :data:`MAX_YAML_NODES` nodes; an alias to a node that contains
  it (a cycle) is refused.

Aliases are allowed (hand-edited catalogs may share defaults with ``<<: *defaults``), but
their *expanded* size is what is bounded: PyYAML builds an alias as a shared reference, so
loading a bomb is quick and the blow-up comes later, when validation or a dump walks the
billion shared leaves. Counting the expanded size while composing is the approach of the
``yaml`` JavaScript library's ``maxAliasCount`` (https://eemeli.org/yaml/#options) and of
the fix for go-yaml's CVE-2019-11254 (an alias-expansion budget in ``decode.go``); here it
is a :class:`yaml.SafeLoader` subclass (the pure-Python composer, whose ``compose_node``
can be extended; libyaml's CSafeLoader composes in C).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.events import AliasEvent

__all__ = ["MAX_YAML_BYTES", "MAX_YAML_DEPTH", "MAX_YAML_ALIASES", "MAX_YAML_NODES", "YamlFileError",
           "read_yaml", "parse_yaml"]

#: Largest YAML file read (bytes).
MAX_YAML_BYTES = 1024 * 1024
#: Deepest nesting of mappings and sequences, aliases expanded.
MAX_YAML_DEPTH = 64
#: Most ``*alias`` uses in one file (a catalog may merge ``<<: *defaults`` into each entry; the
#: expanded-node budget below is what stops a bomb).
MAX_YAML_ALIASES = 10_000
#: Most nodes (scalars, mappings, sequences) in one document with every alias expanded.
MAX_YAML_NODES = 100_000


class YamlFileError(ValueError):
    """A YAML file that cannot be read safely; the message is one line naming the file."""


class _LimitExceeded(Exception):
    def __init__(self, message: str, mark: yaml.Mark | None):
        super().__init__(message)
        self.mark = mark


class LimitedLoader(yaml.SafeLoader):
    """SafeLoader that counts, while composing, each node's expanded size and height, and
    stops at the first limit passed (before anything is constructed)."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._open: list[int] = []  # nodes being composed: the height of the tallest child so far
        self._nodes = 0  # nodes composed so far, aliases expanded
        self._aliases = 0
        self._done: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded size, height), once composed

    def _count(self, nodes: int, depth: int, mark: yaml.Mark) -> None:
        self._nodes += nodes
        if self._nodes > MAX_YAML_NODES:
            raise _LimitExceeded(f"more than {MAX_YAML_NODES:,} nodes with aliases expanded (an alias bomb?)", mark)
        if depth > MAX_YAML_DEPTH:
            raise _LimitExceeded(f"nested more than {MAX_YAML_DEPTH} levels deep", mark)

    def _child_done(self, height: int) -> None:
        if self._open:
            self._open[-1] = max(self._open[-1], height)

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(AliasEvent):
            event = self.peek_event()
            node = super().compose_node(parent, index)  # raises for an undefined alias
            self._aliases += 1
            if self._aliases > MAX_YAML_ALIASES:
                raise _LimitExceeded(f"more than {MAX_YAML_ALIASES} aliases", event.start_mark)
            if id(node) not in self._done:
                raise _LimitExceeded(f"alias *{event.anchor} is used inside the node it names (a cycle)", event.start_mark)
            size, height = self._done[id(node)]
            self._count(size, len(self._open) + height, event.start_mark)
            self._child_done(height)
            return node
        mark = self.peek_event().start_mark
        start = self._nodes
        self._open.append(0)
        try:
            self._count(1, len(self._open), mark)
            node = super().compose_node(parent, index)
        finally:
            tallest = self._open.pop()
        self._done[id(node)] = (self._nodes - start, tallest + 1)
        self._child_done(tallest + 1)
        return node


def parse_yaml(data: bytes, where: str) -> Any:
    """The YAML document in ``data`` (bytes of a file named ``where`` in errors), with the
    limits of this module; any problem is a :class:`YamlFileError` naming ``where``."""
    if len(data) > MAX_YAML_BYTES:
        raise YamlFileError(f"{where}: larger than {MAX_YAML_BYTES // 1024} KiB; capplan's YAML files are small, "
                            "is this the right file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlFileError(f"{where}:{line}: not valid UTF-8 at byte offset {exc.start} (byte 0x{data[exc.start]:02x}); "
                            "save the file as UTF-8") from None
    loader = LimitedLoader(text)
    try:
        return loader.get_single_data()
    except _LimitExceeded as exc:
        line = f":{exc.mark.line + 1}" if exc.mark else ""
        raise YamlFileError(f"{where}{line}: refused: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f"{where}:{mark.line + 1}" if mark else where
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise YamlFileError(f"{at}: not valid YAML ({problem})") from None
    except YamlFileError:
        raise
    except (ValueError, TypeError, OverflowError) as exc:  # a scalar its tag cannot build: 2026-02-30, !!int 0x
        raise YamlFileError(f"{where}: not valid YAML ({' '.join(str(exc).split())})") from None
    finally:
        loader.dispose()


def read_yaml(path: Path) -> Any:
    """Read and parse the YAML file at ``path`` (see :func:`parse_yaml`); a missing or
    unreadable file is a :class:`YamlFileError` too."""
    try:
        if Path(path).exists() and not Path(path).is_file():  # a FIFO would block open(), /dev/zero never end
            raise YamlFileError(f"{path}: not a regular file")
        with open(path, "rb") as fh:
            data = fh.read(MAX_YAML_BYTES + 1)
    except FileNotFoundError:
        raise YamlFileError(f"{path}: file not found") from None
    except OSError as exc:
        raise YamlFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_yaml(data, str(path))
