"""Rewards and metrics on locomotion episodes.

Each is a callable ``reward(episodes) -> list[float]`` over the per-episode
records of :mod:`rewarded_soups.tasks.locomotion.rollout` (sums until the
episode ends of the environment's forward term, alive bonus and Σa²).
"""

from __future__ import annotations

from collections.abc import Sequence

from rewarded_soups.registry import reward

Episode = dict[str, float]


@reward("locomotion", modality="episode", bounds={"ctrl_cost": {"minimum": 0}})
class LocomotionReward:
    """R_α = forward + alive − α·Σa² over an episode: brax's humanoid reward with ctrl_cost_weight = α.

    The paper's risky reward is α = 0 (velocity only), its cautious one α = 1.
    """

    def __init__(self, ctrl_cost: float) -> None:
        if ctrl_cost < 0:
            raise ValueError(f"ctrl_cost must be >= 0 (a penalty weight), got {ctrl_cost}")
        self.ctrl_cost = float(ctrl_cost)

    def __call__(self, episodes: Sequence[Episode]) -> list[float]:
        return [e["forward"] + e["alive"] - self.ctrl_cost * e["action_sq"] for e in episodes]


class _Field:
    """One field of the episode record (no options)."""

    field = ""

    def __init__(self) -> None:
        pass

    def __call__(self, episodes: Sequence[Episode]) -> list[float]:
        return [float(e[self.field]) for e in episodes]


@reward("velocity", modality="episode", metric=True)
class Velocity(_Field):
    """The forward-velocity term summed over the episode (brax's forward_reward)."""

    field = "forward"


@reward("action_cost", modality="episode", metric=True, higher_is_better=False)
class ActionCost(_Field):
    """Σ_t Σ_j a_tj² over the episode (lower is better)."""

    field = "action_sq"


@reward("episode_length", modality="episode", metric=True)
class EpisodeLength(_Field):
    """Steps before the humanoid falls (or the episode limit)."""

    field = "steps"
