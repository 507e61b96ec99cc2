"""Stabilization and rate limits: Kubernetes' ``normalizeDesiredReplicas[WithBehaviors]``.

Both paths keep the unstabilized recommendations of the last window in the
state; a recommendation that has left every window is overwritten in place
rather than dropped, exactly as the controller does, so the history stays
bounded by the number of decisions within one window.

A recommendation counts while it is younger than the window: one exactly
``window_s`` old no longer does (Go's strict ``time.After(cutoff)``). The legacy
path in Go keeps samples "not before" the cutoff instead; the two differ only
on an exact tie, which on Go's wall clock never happens (the first
recommendation is recorded an instant before the decision reads the clock), so
both paths here use the strict rule. That also makes a 0 s window mean "no
stabilization" on the very first decision, as it does in Kubernetes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tierserve.policy.hpa.spec import (
    PolicyType,
    Recommendation,
    Rules,
    ScaleEvent,
    SelectPolicy,
)

#: Without ``behavior``, one decision adds at most ``max(2 * current, 4)`` replicas in total.
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0


@dataclass(frozen=True)
class Normalized:
    """The outcome of stabilization and limiting, with the reasons Kubernetes records."""

    replicas: int
    stabilized: int
    #: ``AbleToScale`` reason: ``ReadyForNewScale``, ``ScaleUpStabilized``, ``ScaleDownStabilized``.
    stabilization_reason: str
    stabilization_message: str
    #: ``ScalingLimited`` reason: ``DesiredWithinRange``, ``ScaleUpLimit``, ``ScaleDownLimit``,
    #: ``TooManyReplicas``, ``TooFewReplicas``.
    limit_reason: str
    limit_message: str
    recommendations: tuple[Recommendation, ...]


_READY = ("ReadyForNewScale", "recommended size matches current size")
_DOWN_STABILIZED = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, "
    "applying the highest recent recommendation",
)
_UP_STABILIZED = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
)
_WITHIN = ("DesiredWithinRange", "the desired count is within the acceptable range")
_UP_LIMIT = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
)
_DOWN_LIMIT = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
)
_TOO_MANY = ("TooManyReplicas", "the desired replica count is more than the maximum replica count")
_TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")


def _record(
    recs: tuple[Recommendation, ...], old_index: int | None, new: Recommendation
) -> tuple[Recommendation, ...]:
    if old_index is None:
        return (*recs, new)
    return (*recs[:old_index], new, *recs[old_index + 1 :])


def normalize_legacy(
    recs: tuple[Recommendation, ...],
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    window_s: float,
    now_s: float,
) -> Normalized:
    """No ``behavior``: max over the downscale window, then ``max(2 * current, 4)`` and min/max."""
    cutoff = now_s - window_s
    stabilized = desired
    old_index = None
    for i, rec in enumerate(recs):
        if rec.timestamp_s < cutoff:
            old_index = i
        elif rec.timestamp_s > cutoff and rec.replicas > stabilized:
            stabilized = rec.replicas
    recs = _record(recs, old_index, Recommendation(now_s, desired))
    stab = _READY if stabilized == desired else _DOWN_STABILIZED

    scale_up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    if max_replicas > scale_up_limit:
        maximum, upper = scale_up_limit, _UP_LIMIT
    else:
        maximum, upper = max_replicas, _TOO_MANY
    if stabilized < min_replicas:
        replicas, limit = min_replicas, _TOO_FEW
    elif stabilized > maximum:
        replicas, limit = maximum, upper
    else:
        replicas, limit = stabilized, _WITHIN
    return Normalized(replicas, stabilized, *stab, *limit, recs)


def _change_in_period(period_s: float, events: tuple[ScaleEvent, ...], now_s: float) -> int:
    cutoff = now_s - period_s
    return sum(e.replica_change for e in events if e.timestamp_s > cutoff)


def _period_start(
    current: int,
    period_s: float,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    now_s: float,
) -> int:
    """Replicas at the start of the period: ``current`` less those added in it, plus those
    deleted in it."""
    added = _change_in_period(period_s, up_events, now_s)
    deleted = _change_in_period(period_s, down_events, now_s)
    return current - added + deleted


def scale_up_limit(
    current: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    rules: Rules,
    now_s: float,
) -> int:
    """``calculateScaleUpLimitWithScalingRules``: the most replicas the policies allow now."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    proposals = []
    for policy in rules.policies:
        period_start = _period_start(current, policy.period_s, up_events, down_events, now_s)
        if policy.type is PolicyType.PODS:
            proposals.append(period_start + policy.value)
        else:
            # Rounded up so that a small percentage can still add a replica.
            proposals.append(math.ceil(period_start * (1 + policy.value / 100)))
    if not proposals:
        return current
    return min(proposals) if rules.select_policy is SelectPolicy.MIN else max(proposals)


def scale_down_limit(
    current: int,
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    rules: Rules,
    now_s: float,
) -> int:
    """``calculateScaleDownLimitWithBehaviors``: the fewest replicas the policies allow now."""
    if rules.select_policy is SelectPolicy.DISABLED:
        return current
    proposals = []
    for policy in rules.policies:
        period_start = _period_start(current, policy.period_s, up_events, down_events, now_s)
        if policy.type is PolicyType.PODS:
            proposals.append(period_start - policy.value)
        else:
            proposals.append(int(period_start * (1 - policy.value / 100)))
    if not proposals:
        return current
    # ``Min`` means the smallest change, which for a scale-down is the largest count.
    return max(proposals) if rules.select_policy is SelectPolicy.MIN else min(proposals)


def normalize_with_behaviors(
    recs: tuple[Recommendation, ...],
    up_events: tuple[ScaleEvent, ...],
    down_events: tuple[ScaleEvent, ...],
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    up: Rules,
    down: Rules,
    now_s: float,
) -> Normalized:
    """Stabilize within both windows, then limit by the policies and min/max."""
    up_cutoff = now_s - up.stabilization_window_s
    down_cutoff = now_s - down.stabilization_window_s
    up_rec = desired
    down_rec = desired
    old_index = None
    for i, rec in enumerate(recs):
        if rec.timestamp_s > up_cutoff:
            up_rec = min(rec.replicas, up_rec)
        if rec.timestamp_s > down_cutoff:
            down_rec = max(rec.replicas, down_rec)
        if rec.timestamp_s < up_cutoff and rec.timestamp_s < down_cutoff:
            old_index = i
    stabilized = min(max(current, up_rec), down_rec)
    recs = _record(recs, old_index, Recommendation(now_s, desired))
    if stabilized == desired:
        stab = _READY
    else:
        stab = _UP_STABILIZED if desired >= current else _DOWN_STABILIZED

    replicas, limit = stabilized, _WITHIN
    if stabilized > current:
        up_limit = max(scale_up_limit(current, up_events, down_events, up, now_s), current)
        if max_replicas > up_limit:
            maximum, limit_if = up_limit, _UP_LIMIT
        else:
            maximum, limit_if = max_replicas, _TOO_MANY
        if stabilized > maximum:
            replicas, limit = maximum, limit_if
    elif stabilized < current:
        down_limit = min(scale_down_limit(current, up_events, down_events, down, now_s), current)
        if min_replicas < down_limit:
            minimum, limit_if = down_limit, _DOWN_LIMIT
        else:
            minimum, limit_if = min_replicas, _TOO_FEW
        if stabilized < minimum:
            replicas, limit = minimum, limit_if
    return Normalized(replicas, stabilized, *stab, *limit, recs)


def longest_period_s(rules: Rules) -> float:
    return max((p.period_s for p in rules.policies), default=0.0)


def store_scale_event(
    events: tuple[ScaleEvent, ...], change: int, longest_period: float, now_s: float
) -> tuple[ScaleEvent, ...]:
    """``storeScaleEvent``: mark events older than the longest period, reuse the last such slot."""
    cutoff = now_s - longest_period
    marked = tuple(replace(e, outdated=True) if e.timestamp_s < cutoff else e for e in events)
    new = ScaleEvent(now_s, change)
    old = [i for i, e in enumerate(marked) if e.outdated]
    if not old:
        return (*marked, new)
    i = old[-1]
    return (*marked[:i], new, *marked[i + 1 :])
