"""YAML from input we do not trust, parsed within stated bounds.

``parse_yaml(text, source)`` is ``yaml.safe_load_all`` with limits that keep a small
input small (everything a client sends to ``apply`` comes through here):

- ``MAX_INPUT_BYTES`` (1 MiB) of text per call: one ``apply`` or ``validate`` input;
- ``MAX_ALIAS_NODES`` (100,000): how many nodes aliases may add, over all documents.
  YAML aliases share a node, so 9 aliases of 9 aliases of ... (the "billion laughs")
  expand a few hundred bytes into billions of values once anything walks them. The
  expanded size is counted on the parsed node graph, each shared node once, before any
  Python value is built;
- ``MAX_DEPTH`` (100) levels of nesting (Kubernetes objects need about 20); a recursive
  alias (``&a [*a]``) is refused too.

Any failure is a ``ValidationError`` naming the line and column where known.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, SequenceNode

from tierserve.errors import FieldError, ValidationError
from tierserve.model.display import cut

MAX_INPUT_BYTES = 2**20
MAX_ALIAS_NODES = 100_000
MAX_DEPTH = 100

# libyaml's parser when installed (several times faster); the same safe constructor.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _where(node: Node) -> str:
    mark = node.start_mark
    return f"line {mark.line + 1}, column {mark.column + 1}: "


def _measure(root: Node, source: str) -> tuple[int, int]:
    """(nodes with every alias expanded, distinct nodes) of ``root``; refuses cycles and
    nesting past ``MAX_DEPTH``."""
    size: dict[int, int] = {}
    height: dict[int, int] = {}
    open_: set[int] = set()  # nodes whose children are being measured (the current path)
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            kids = _children(node)
            size[key] = 1 + sum(size[id(k)] for k in kids)
            height[key] = 1 + max((height[id(k)] for k in kids), default=0)
            open_.discard(key)
            if height[key] > MAX_DEPTH:
                raise _refused(source, node, f"nested more than {MAX_DEPTH} levels deep")
            continue
        if key in size:
            continue
        if key in open_:
            raise _refused(source, node, "an alias refers to a node that contains it")
        open_.add(key)
        stack.append((node, True))
        stack.extend((k, False) for k in _children(node) if id(k) not in size)
    return size[id(root)], len(size)


def _refused(source: str, node: Node, why: str) -> ValidationError:
    return ValidationError(source, [FieldError("", f"{_where(node)}{why}")])


def parse_yaml(text: str, source: str = "<input>") -> list[Any]:
    """Every non-empty document of ``text``, within the limits above."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_INPUT_BYTES:
        raise ValidationError(
            source,
            [
                FieldError(
                    "",
                    f"is {size:,} bytes; at most {MAX_INPUT_BYTES:,} bytes (1 MiB) of YAML "
                    "are accepted at once (split it into several applies)",
                )
            ],
        )
    loader = _Loader(text)
    added = 0
    docs: list[Any] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            expanded, distinct = _measure(node, source)
            added += expanded - distinct
            if added > MAX_ALIAS_NODES:
                raise _refused(
                    source,
                    node,
                    f"aliases expand this input by {added:,} nodes; at most "
                    f"{MAX_ALIAS_NODES:,} are allowed (is it a YAML alias bomb?)",
                )
            doc = loader.construct_document(node)
            if doc is not None:
                docs.append(doc)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValidationError(
            source, [FieldError("", f"{where}not valid YAML: {problem}")]
        ) from None
    except (ValueError, OverflowError) as exc:  # a scalar no Python value can hold
        why = cut(str(exc), 120)
        raise ValidationError(
            source, [FieldError("", f"not valid YAML: a value cannot be read ({why})")]
        ) from None
    except RecursionError:
        raise ValidationError(
            source, [FieldError("", f"nested more than {MAX_DEPTH} levels deep")]
        ) from None
    finally:
        loader.dispose()
    return docs


__all__ = ["MAX_ALIAS_NODES", "MAX_DEPTH", "MAX_INPUT_BYTES", "parse_yaml"]
