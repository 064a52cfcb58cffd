"""Episode container and replay buffer: validation, flat array round trip, retention."""

import json

import numpy as np
import pytest

from mbrl_ros.data.episodes import Episodes


def _episodes(n=3, T=5, nx=4, nu=2, seed=0, iteration=0):
    rng = np.random.default_rng(seed)
    return Episodes(
        rng.standard_normal((n, T + 1, nx)), rng.standard_normal((n, T, nu)),
        np.tile(np.arange(T + 1) * 0.05, (n, 1)), np.array([0.4, 0.1, 0.5]),
        {"robot": "panda", "dt_s": 0.05, "iteration": iteration},
    )


def test_arrays_round_trip_is_exact():
    ep = _episodes()
    arrays, meta_json = ep.to_arrays()
    assert all(a.dtype == np.float64 for a in arrays.values())
    assert json.loads(meta_json)["layout_version"] == 1
    back = Episodes.from_arrays(arrays, meta_json)
    for name in ("x", "u", "timestamps_s", "goal"):
        np.testing.assert_array_equal(getattr(back, name), getattr(ep, name))
    assert back.metadata == ep.metadata
    assert (back.n_trials, back.horizon_steps, back.nx, back.nu) == (3, 5, 4, 2)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda a: a.__setitem__("x", a["x"][:, :-1]), "u must have shape"),
        (lambda a: a.__setitem__("u", a["u"][0]), "3 dimensions"),
        (lambda a: a["x"].__setitem__((0, 1, 2), np.nan), "non-finite"),
        (lambda a: a["u"].__setitem__((1, 0, 0), np.inf), "non-finite"),
        (lambda a: a.__setitem__("timestamps_s", a["timestamps_s"][:, ::-1].copy()), "non-decreasing"),
        (lambda a: a.pop("u"), "lack"),
    ],
)
def test_invalid_data_is_rejected_with_a_clear_error(mutate, message):
    arrays, meta = _episodes().to_arrays()
    mutate(arrays)
    with pytest.raises(ValueError, match=message):
        Episodes.from_arrays(arrays, meta)


def test_metadata_mismatch_and_version_are_checked():
    arrays, meta = _episodes().to_arrays()
    bad = json.loads(meta)
    bad["nx"] = 5
    with pytest.raises(ValueError, match="nx=5"):
        Episodes.from_arrays(arrays, json.dumps(bad))
    bad = json.loads(meta)
    bad["layout_version"] = 99
    with pytest.raises(ValueError, match="layout_version"):
        Episodes.from_arrays(arrays, json.dumps(bad))
    with pytest.raises(ValueError, match="JSON"):
        Episodes.from_arrays(arrays, "{not json")


def test_transitions_flatten_trials():
    ep = _episodes(n=2, T=3)
    x, u, xn = ep.transitions()
    assert x.shape == (6, 4) and u.shape == (6, 2) and xn.shape == (6, 4)
    np.testing.assert_array_equal(xn[0], ep.x[0, 1])
    np.testing.assert_array_equal(x[3], ep.x[1, 0])
