"""safetensors + JSON serialisation: exact round trips, corrupted and mismatched files rejected."""

import os
import pickle

import numpy as np
import pytest
import torch

from mbrl_ros.dynamics import serialization as ser
from mbrl_ros.dynamics.ensemble import EnsembleDynamics, EnsembleSettings
from mbrl_ros.dynamics.tvlg import TVLGDynamics

JOINTS = [f"panda_joint{i}" for i in range(1, 8)]


def _tvlg(T=10):
    rng = np.random.default_rng(1)
    return TVLGDynamics(rng.standard_normal((T, 14, 21)), rng.standard_normal((T, 14)),
                        np.broadcast_to(np.eye(14), (T, 14, 14)).copy(), rng.standard_normal(14), np.eye(14), 0.05)


def _ensemble():
    torch.manual_seed(0)
    model = EnsembleDynamics(4, 2, 0.05, EnsembleSettings(n_members=3, n_elites=2, hidden_units=16, hidden_layers=2, seed=0))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((100, 4))
    u = rng.standard_normal((100, 2))
    model.add_transitions(x, u, x + 0.1 * np.c_[u, u])
    model.train(max_epochs=3)
    return model


def test_tvlg_round_trip_is_exact(tmp_path):
    dyn = _tvlg()
    ser.save_tvlg(str(tmp_path / "m.safetensors"), dyn, JOINTS, {"n_trials": 5})
    back, meta = ser.load_tvlg(str(tmp_path / "m.safetensors"))
    for name in ("Fm", "fv", "dyn_covar", "x0_mean", "x0_covar"):
        np.testing.assert_array_equal(getattr(back, name), getattr(dyn, name))
    assert back.dt_s == 0.05 and meta["training"] == {"n_trials": 5}
    assert meta["kind"] == "tvlg" and meta["version"] == 1 and meta["dims"] == {"T": 10, "nx": 14, "nu": 7}
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")], "the temporary file is renamed into place"


def test_ensemble_round_trip_predicts_identically(tmp_path):
    model = _ensemble()
    path = str(tmp_path / "ens.safetensors")
    ser.save_ensemble(path, model, ["a", "b"])
    back, meta = ser.load_ensemble(path)
    x = np.random.default_rng(5).standard_normal((7, 4))
    u = np.random.default_rng(6).standard_normal((7, 2))
    for a, b in zip(model.predict(x, u), back.predict(x, u)):
        np.testing.assert_array_equal(a, b)
    assert back.elites == model.elites
    assert meta["training"]["n_transitions"] == 100
    # The bytes form (ROS payload) is the same document.
    again, _ = ser.ensemble_from_bytes(ser.ensemble_to_bytes(model))
    np.testing.assert_array_equal(again.step(x, u), model.step(x, u))


def test_truncated_file_is_rejected(tmp_path):
    path = tmp_path / "m.safetensors"
    ser.save_tvlg(str(path), _tvlg())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(ser.SerializationError, match="truncated"):
        ser.load_tvlg(str(path))
    path.write_bytes(data[:5])
    with pytest.raises(ser.SerializationError, match="too short"):
        ser.load_tvlg(str(path))


def test_wrong_shape_tensor_is_rejected(tmp_path):
    dyn = _tvlg()
    arrays = {"Fm": dyn.Fm, "fv": dyn.fv[:, :10], "dyn_covar": dyn.dyn_covar, "x0_mean": dyn.x0_mean, "x0_covar": dyn.x0_covar}
    path = tmp_path / "m.safetensors"
    ser.save(str(path), arrays, {"kind": "tvlg", "dims": {"T": 10, "nx": 14, "nu": 7}})
    with pytest.raises(ser.SerializationError, match="'fv' has shape"):
        ser.load_tvlg(str(path))
    model = _ensemble()
    arrays = model.state_arrays()
    arrays["in_mean"] = np.zeros(5)
    data = ser.to_bytes(arrays, {"kind": "ensemble", "dims": {"nx": 4, "nu": 2}, "settings": model.settings_dict()})
    with pytest.raises(ser.SerializationError, match="in_mean"):
        ser.ensemble_from_bytes(data)


def test_pickle_file_is_rejected_without_unpickling(tmp_path):
    path = tmp_path / "evil.safetensors"

    class Boom:
        def __reduce__(self):
            return (os.system, ("echo should-not-run > " + str(tmp_path / "pwned"),))

    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ser.SerializationError, match="pickle"):
        ser.load_tvlg(str(path))
    torch.save({"K": torch.zeros(3)}, str(tmp_path / "t.pt"))
    with pytest.raises(ser.SerializationError):
        ser.load(str(tmp_path / "t.pt"))
    assert not (tmp_path / "pwned").exists()


def test_wrong_kind_and_version_are_rejected(tmp_path):
    path = tmp_path / "m.safetensors"
    ser.save_tvlg(str(path), _tvlg())
    with pytest.raises(ser.SerializationError, match="expected a 'ensemble'"):
        ser.load_ensemble(str(path))
    ser.save(str(path), {"a": np.zeros(2)}, {"kind": "tvlg", "version": 7})
    with pytest.raises(ser.SerializationError, match="version 7"):
        ser.load_tvlg(str(path))


def test_corrupted_header_is_rejected(tmp_path):
    path = tmp_path / "m.safetensors"
    ser.save_tvlg(str(path), _tvlg())
    data = bytearray(path.read_bytes())
    data[10:20] = b"\xff" * 10
    path.write_bytes(bytes(data))
    with pytest.raises(ser.SerializationError, match="corrupted"):
        ser.load_tvlg(str(path))


def test_tvlg_bytes_round_trip_and_atomic_write(tmp_path):
    dyn = _tvlg()
    data = ser.tvlg_to_bytes(dyn, JOINTS, {"n_trials": 5}, model_version=3)
    back, meta = ser.tvlg_from_bytes(data)
    np.testing.assert_array_equal(back.Fm, dyn.Fm)
    assert meta["model_version"] == 3 and meta["joint_names"] == JOINTS
    ser.write_bytes(str(tmp_path / "a" / "m.safetensors"), data)
    assert (tmp_path / "a" / "m.safetensors").read_bytes() == data
    with pytest.raises(ser.SerializationError, match="'Fm' has shape"):
        arrays = {"Fm": dyn.Fm[:, :, :20], "fv": dyn.fv, "dyn_covar": dyn.dyn_covar, "x0_mean": dyn.x0_mean, "x0_covar": dyn.x0_covar}
        ser.tvlg_from_bytes(ser.to_bytes(arrays, {"kind": "tvlg", "dims": {"T": 10, "nx": 14, "nu": 7}}))
