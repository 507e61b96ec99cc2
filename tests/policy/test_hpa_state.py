"""HPA state survives a trip through JSON; malformed JSON reads as a fresh state."""

from __future__ import annotations

import json

import pytest

from tierserve.policy.hpa import HPAState, Recommendation, ScaleEvent


def test_round_trip() -> None:
    state = HPAState(
        recommendations=(Recommendation(10.0, 3), Recommendation(25.5, 1)),
        scale_up_events=(ScaleEvent(10.0, 2),),
        scale_down_events=(ScaleEvent(30.0, 1, outdated=True),),
    )
    assert HPAState.from_json(json.loads(json.dumps(state.to_json()))) == state


@pytest.mark.parametrize(
    "value",
    [None, [], "x", {"recommendations": [[1]]}, {"scaleUpEvents": [["a", 1, 0]]}],
)
def test_malformed_is_fresh(value: object) -> None:
    assert HPAState.from_json(value) == HPAState()
