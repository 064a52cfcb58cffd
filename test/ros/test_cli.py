"""mbrl-ros demo and fit: options map onto their settings; left out, the settings' own defaults hold."""

import pytest

from mbrl_ros import demo, fit
from mbrl_ros.cli import main
from mbrl_ros.data.bag_episodes import BagTopics


@pytest.fixture
def captured(monkeypatch):
    """The settings main() would run with (demo.main and fit.main replaced)."""
    seen = []
    monkeypatch.setattr(demo, "main", lambda settings: seen.append(settings) or 0)
    monkeypatch.setattr(fit, "main", lambda settings: seen.append(settings) or 0)
    return seen


def test_demo_without_options_runs_the_demo_settings_defaults(captured):
    assert main(["demo"]) == 0
    assert captured == [demo.DemoSettings()]
    assert captured[0].hold_s == 20.0, "the product holds the goal for 20 s after learning"


def test_demo_options_set_their_fields(captured):
    assert main(["demo", "--config", "other", "--iterations", "3", "--trials", "4", "--steps", "50", "--hold-s", "0",
                 "--real-time-factor", "2", "--timeout-s", "60", "--runs-dir", "out", "--mismatch", "realistic"]) == 0
    assert captured == [demo.DemoSettings(config="other", iterations=3, trials_per_iteration=4, trial_steps=50, hold_s=0.0,
                                          real_time_factor=2.0, timeout_s=60.0, runs_dir="out", mismatch="realistic")]


def test_fit_without_options_runs_the_fit_settings_defaults(captured):
    assert main(["fit", "--bag", "a", "b", "--out", "model"]) == 0
    assert captured == [fit.FitSettings(bags=("a", "b"), out_dir="model")]


def test_fit_options_set_their_fields(captured):
    assert main(["fit", "--bag", "a", "--out", "m", "--joint-states-topic", "/j", "--commands-topic", "/c", "--trials-topic",
                 "/t", "--torque-source", "effort", "--dt", "0.02", "--steps", "30", "--command-timeout", "0.1",
                 "--holdout", "0.3", "--seed", "4", "--allow-partial", "--robot", "iiwa", "--epochs", "7"]) == 0
    assert captured == [fit.FitSettings(
        bags=("a",), out_dir="m", topics=BagTopics("/j", "/c", "/t"), torque_source="effort", dt_s=0.02, steps=30,
        command_timeout_s=0.1, holdout_fraction=0.3, seed=4, allow_partial=True, robot="iiwa", ensemble_epochs=7)]


@pytest.mark.parametrize("argv", [["demo", "--iterations", "0"], ["fit", "--bag", "a", "--out", "m", "--holdout", "1.5"]])
def test_invalid_settings_are_one_line_and_exit_code_2(argv, captured, capsys):
    assert main(argv) == 2 and captured == []
    err = capsys.readouterr().err
    assert err.startswith(f"mbrl-ros {argv[0]}: ") and err.count("\n") == 1
