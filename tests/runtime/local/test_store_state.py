"""Controller state in the store: key -> JSON value, in one transaction with objects."""

from pathlib import Path

import pytest

from tierserve.errors import ConflictError
from tierserve.model import Node
from tierserve.runtime.local.store import SqliteStore


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "state.db")


def node(name: str) -> Node:
    node: Node = Node.new(name)
    return node


def test_state_round_trips_as_json_and_none_removes_it(store: SqliteStore) -> None:
    assert store.get_state("autoscaler/default/deepseek") is None
    history = {"recommendations": [[100.0, 3], [115.0, 2]], "lastScaleS": 90.5}
    store.put_state("autoscaler/default/deepseek", history)
    assert store.get_state("autoscaler/default/deepseek") == history
    store.put_state("autoscaler/default/deepseek", None)
    assert store.get_state("autoscaler/default/deepseek") is None


def test_state_items_lists_one_prefix_exactly(store: SqliteStore) -> None:
    store.put_state("autoscaler/default/a", 1)
    store.put_state("autoscaler/team/b", 2)
    store.put_state("Autoscaler/x", 3)  # not the same prefix (case counts)
    store.put_state("autoscaler_/y", 4)  # '_' is no wildcard
    store.put_state("gpus/idc001", [0, 1])
    assert store.state_items("autoscaler/") == {"autoscaler/default/a": 1, "autoscaler/team/b": 2}
    assert len(store.state_items()) == 5


def test_state_and_objects_commit_together(store: SqliteStore, tmp_path: Path) -> None:
    with store.transaction():
        store.put(node("a"))
        store.put_state("gpus/a", [0])
        assert store.get_state("gpus/a") == [0]  # the transaction sees its own writes
    again = SqliteStore(tmp_path / "state.db")  # what a restarted control plane reads
    assert again.get(Node, "", "a") is not None and again.get_state("gpus/a") == [0]


def test_a_failed_transaction_keeps_neither(store: SqliteStore) -> None:
    store.put_state("gpus/a", [0])
    with pytest.raises(RuntimeError), store.transaction():
        store.put(node("a"))
        store.put_state("gpus/a", [0, 1])
        raise RuntimeError("tick failed")
    assert store.get(Node, "", "a") is None
    assert store.get_state("gpus/a") == [0]


def test_an_inner_block_that_fails_undoes_only_its_own_writes(store: SqliteStore) -> None:
    with store.transaction():
        store.put(node("a"))
        store.put_state("k", "outer")
        with pytest.raises(ConflictError), store.transaction():
            store.put_state("k", "inner")
            store.put(node("b"), expect_version=7)  # a concurrent change: conflict
        store.put_state("after", True)
    assert store.get(Node, "", "a") is not None and store.get(Node, "", "b") is None
    assert store.get_state("k") == "outer" and store.get_state("after") is True
    # The store is usable afterwards: no transaction left open.
    store.put_state("k", "later")
    assert store.get_state("k") == "later"
