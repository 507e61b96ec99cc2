"""Input that would cost far more than its size (alias bombs, deep nesting, huge numbers)
is refused quickly with a short message; no message quotes a whole document."""

import re
import time

import pytest

from tierserve.errors import ValidationError
from tierserve.model import load_documents
from tierserve.model.display import shown
from tierserve.model.quantity import parse_milli
from tierserve.model.yamlsafe import MAX_ALIAS_NODES, MAX_DEPTH, MAX_INPUT_BYTES, parse_yaml


def alias_bomb(levels: int = 8, fanout: int = 9) -> str:
    """The "billion laughs": ``levels`` anchors, each a list of ``fanout`` aliases of the
    one before; a few hundred bytes that stand for fanout**levels strings."""
    lines = [f"l0: &l0 [{','.join(['lol'] * fanout)}]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * fanout)}]")
    return "\n".join(lines) + f"\napiVersion: v1\nkind: Node\nmetadata: {{name: *l{levels - 1}}}\n"


def refusal(text: str) -> str:
    with pytest.raises(ValidationError) as info:
        load_documents(text, "f.yaml")
    return str(info.value)


def test_an_alias_bomb_is_refused_at_once() -> None:
    bomb = alias_bomb()
    assert len(bomb) < 420
    started = time.perf_counter()
    message = refusal(bomb)
    # Before: 9**8 = 43 million strings printed into one 2 GB message, 30 s of CPU.
    assert time.perf_counter() - started < 1.0
    assert re.fullmatch(
        r"f\.yaml: line 1, column 1: aliases expand this input by [\d,]{10,} nodes; at most "
        f"{MAX_ALIAS_NODES:,} are allowed \\(is it a YAML alias bomb\\?\\)",
        message,
    ), message


def test_a_few_aliases_are_fine() -> None:
    text = alias_bomb(levels=3, fanout=3).replace("metadata: {name: *l2}", "metadata: {name: n}")
    with pytest.raises(ValidationError) as info:  # l0..l2 are unknown fields, nothing more
        load_documents(text)
    assert "unknown field" in str(info.value)


def test_a_recursive_alias_is_refused() -> None:
    assert "an alias refers to a node that contains it" in refusal(
        "apiVersion: v1\nkind: Node\nmetadata: {name: n}\nstatus: {nodeInfo: &a {x: [*a]}}\n"
    )


def test_deep_nesting_is_refused() -> None:
    deep = "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)
    assert f"nested more than {MAX_DEPTH} levels deep" in refusal(f"x: {deep}\n")
    assert "not valid YAML" in refusal("x: " + "[" * 5000 + "]" * 5000)


def test_an_input_over_one_mebibyte_is_refused() -> None:
    text = "x: " + "a" * MAX_INPUT_BYTES
    assert refusal(text) == (
        f"f.yaml: is {len(text):,} bytes; at most {MAX_INPUT_BYTES:,} bytes (1 MiB) of YAML "
        "are accepted at once (split it into several applies)"
    )


def test_values_no_python_value_can_hold_are_errors_not_crashes() -> None:
    assert "a value cannot be read" in refusal("x: " + "1" * 5000 + "\n")
    assert "a value cannot be read" in refusal("x: 0000-01-01\n")


def test_messages_quote_values_cut_short() -> None:
    long_command = "x" * 100_000 + " '"
    text = (
        "apiVersion: serving.tierserve.io/v1alpha1\nkind: InferenceService\n"
        f'metadata: {{name: s}}\nspec: {{command: "{long_command}"}}\n'
    )
    message = refusal(text)
    assert len(message) < 300 and "is not a shell command line" in message
    big = {"k": ["v" * 1000] * 1000}
    assert len(shown(big)) == 61


def test_the_error_list_is_capped() -> None:
    taints = ", ".join("{effect: Never}" for _ in range(200))
    message = refusal(
        f"apiVersion: v1\nkind: Node\nmetadata: {{name: n}}\nspec: {{taints: [{taints}]}}\n"
    )
    lines = message.splitlines()
    assert len(lines) == 51 and lines[-1].endswith("... and 350 more errors")


@pytest.mark.parametrize("value", ["1e999999999", "1" * 100, 2**80])
def test_quantities_are_bounded(value: str | int) -> None:
    started = time.perf_counter()
    with pytest.raises(ValueError):
        parse_milli(value)
    assert time.perf_counter() - started < 0.1


def test_parse_yaml_keeps_documents_and_skips_empty_ones() -> None:
    assert parse_yaml("a: 1\n---\n---\nb: [x, y]\n") == [{"a": 1}, {"b": ["x", "y"]}]
