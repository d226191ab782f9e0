"""gymnasium options are checked before ``gymnasium.make``: one-line errors listing the valid
values, read off the env's own constructor (compared here with gymnasium's signature and MAPS,
looked up independently)."""

import inspect

import pytest
from gymnasium.envs.toy_text import frozen_lake, taxi

import pgm_control as pc
from pgm_control.gym_options import check_make_kwargs, env_options


def test_valid_options_pass_and_match_the_constructor():
    for kwargs in ({}, {"map_name": "8x8"}, {"is_slippery": False}, {"max_episode_steps": 5},
                   {"desc": ["SF", "HG"]}, {"map_name": None, "desc": ["SG"]}):  # fmt: skip
        check_make_kwargs("FrozenLake-v1", kwargs)
    expected = set(inspect.signature(frozen_lake.FrozenLakeEnv.__init__).parameters) - {"self"}
    assert set(env_options("FrozenLake-v1")) == expected


def test_an_unknown_map_is_one_line_naming_the_maps():
    with pytest.raises(ValueError) as exc:
        check_make_kwargs("FrozenLake-v1", {"map_name": "9x9"})
    message = str(exc.value)
    assert "\n" not in message and "'9x9'" in message
    assert all(name in message for name in frozen_lake.MAPS)
    with pytest.raises(ValueError, match="FrozenLake-v1 has no map '9x9'"):  # not a KeyError
        pc.TabularMDP.from_gymnasium("FrozenLake-v1", 5, map_name="9x9")


@pytest.mark.parametrize(
    "env_id, kwargs",
    [
        ("FrozenLake-v1", {"is_slippery": "maybe"}),  # a str is truthy: would be slippery
        ("FrozenLake-v1", {"is_slippery": 1}),
        ("Taxi-v4", {"is_rainy": "yes"}),
        ("CliffWalking-v1", {"is_slippery": None}),
    ],
)
def test_a_flag_must_be_a_bool(env_id, kwargs):
    ((key, value),) = kwargs.items()
    with pytest.raises(ValueError, match=f"option '{key}' must be True or False, got {value!r}"):
        check_make_kwargs(env_id, kwargs)
    with pytest.raises(ValueError, match="must be True or False"):
        pc.TabularMDP.from_gymnasium(env_id, 3, **kwargs)


def test_an_unknown_keyword_lists_the_valid_ones():
    with pytest.raises(ValueError) as exc:
        check_make_kwargs("Taxi-v4", {"rainy": True})
    valid = set(inspect.signature(taxi.TaxiEnv.__init__).parameters) - {"self", "render_mode"}
    message = str(exc.value)
    assert message.startswith("Taxi-v4 has no option 'rainy'; its options are: ")
    assert set(message.split(": ", 1)[1].split(", ")) == valid


def test_an_unregistered_id_is_a_value_error():
    with pytest.raises(ValueError, match="not a registered gymnasium env"):
        check_make_kwargs("NoSuchEnv-v0", {})
