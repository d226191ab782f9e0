"""The keyword options of a gymnasium toy-text env, checked before ``gymnasium.make``.

``gymnasium.make("FrozenLake-v1", map_name="9x9")`` ends in a ``KeyError`` deep inside the
env, and ``is_slippery="maybe"`` is silently taken as slippery (a non-empty string is true).
:func:`check_make_kwargs` turns both into one-line ``ValueError`` s that list the valid values,
reading them off the env's own constructor: its keyword arguments, the booleans among them, and
the named maps of a grid env (FrozenLake's ``MAPS``).
"""

from __future__ import annotations

import inspect

import gymnasium as gym
from gymnasium.envs.registration import load_env_creator

__all__ = ["MAKE_KWARGS", "env_options", "check_make_kwargs"]

# keywords gymnasium.make itself takes, for every env
MAKE_KWARGS = ("max_episode_steps", "disable_env_checker", "render_mode")


def env_options(env_id: str) -> dict[str, inspect.Parameter]:
    """The constructor keywords of a registered env, ``{name: inspect.Parameter}``.

    Raises:
        ValueError: ``env_id`` is not a registered gymnasium id.
    """
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise ValueError(f"`env_id` {env_id!r} is not a registered gymnasium env: {exc}") from None
    creator = spec.entry_point
    if isinstance(creator, str):
        creator = load_env_creator(creator)
    params = inspect.signature(creator).parameters
    return {
        name: p
        for name, p in params.items()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and name != "self"
    }


def _named_maps(env_id: str) -> dict | None:
    creator = gym.spec(env_id).entry_point
    if isinstance(creator, str):
        creator = load_env_creator(creator)
    maps = getattr(inspect.getmodule(creator), "MAPS", None)
    return maps if isinstance(maps, dict) else None


def check_make_kwargs(env_id: str, kwargs: dict) -> None:
    """Check ``gymnasium.make(env_id, **kwargs)``'s keywords before making the env.

    Unknown keywords, a non-bool where the constructor's default is a bool (``is_slippery``,
    ``is_rainy``) and an unknown ``map_name`` of a grid env with named maps are refused.

    Args:
        env_id: a registered gymnasium id, e.g. ``"FrozenLake-v1"``.
        kwargs: the keyword options meant for ``gymnasium.make``.

    Raises:
        ValueError: one line naming the option and listing the valid ones.
    """
    options = env_options(env_id)
    for key, value in kwargs.items():
        if key in MAKE_KWARGS:
            continue
        if key not in options:
            valid = ", ".join(sorted(set(options) - {"render_mode"}))
            raise ValueError(f"{env_id} has no option {key!r}; its options are: {valid}")
        default = options[key].default
        if isinstance(default, bool) and not isinstance(value, bool):
            raise ValueError(f"{env_id} option {key!r} must be True or False, got {value!r}")
        if key == "map_name":
            maps = _named_maps(env_id)
            if maps is not None and value is not None and value not in maps:
                raise ValueError(
                    f"{env_id} has no map {value!r}; the named maps are: {', '.join(maps)} "
                    "(or pass desc=[...] rows of S, F, H, G for another map)"
                )
