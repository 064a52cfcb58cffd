"""How ``mbrl-ros fit`` presents its evaluation: the error table, its JSON form, the prediction plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mbrl_ros.data.episodes import Episodes
from mbrl_ros.dynamics.evaluation import PredictionError, Predictor, k_step_predictions

MODEL_LABELS = {
    "tvlg_gmm_prior": "TVLG + GMM prior",
    "tvlg_no_prior": "TVLG, no prior",
    "ensemble": "ensemble",
    "physics": "physics (URDF)",
    "hold_baseline": "hold x (baseline)",
}
_CELL = 9


def _cell(value: float) -> str:
    return f"{value * 1e3:{_CELL}.3g}" if np.isfinite(value) else f"{'diverged':>{_CELL}}"


def error_table(errors: dict[str, dict[int, PredictionError]], joint_names: list[str], n_episodes: int, segmentation: dict) -> str:
    """Per-joint k-step RMS errors of every model, positions then velocities, as text."""
    horizons = sorted({k for by_k in errors.values() for k in by_k})
    lines = [
        f"held-out prediction error: RMS over {n_episodes} episode{'s' * (n_episodes != 1)} x every start step, k steps "
        f"open loop with the recorded torques (TVLG: model step t at episode step t, T = {segmentation['steps']}, "
        f"dt = {segmentation['dt_s']} s)",
        "joints: " + ", ".join(f"j{i + 1} = {n}" for i, n in enumerate(joint_names)),
    ]
    header = f"{'model':<19}{'k':>3}" + "".join(f"{f'j{i + 1}':>{_CELL}}" for i in range(len(joint_names))) + f"{'all':>{_CELL}}"
    for title, field, mean in (("joint positions (mrad)", "position_rad", "mean_position_rad"),
                               ("joint velocities (mrad/s)", "velocity_rad_s", "mean_velocity_rad_s")):
        lines += ["", title, header]
        for k in horizons:
            for name, by_k in errors.items():
                if k in by_k:
                    e = by_k[k]
                    lines.append(f"{MODEL_LABELS.get(name, name):<19}{k:>3}" + "".join(_cell(v) for v in getattr(e, field))
                                 + _cell(getattr(e, mean)))
    return "\n".join(lines)


def _finite_or_none(values) -> list | float | None:
    if np.ndim(values) == 0:
        return float(values) if np.isfinite(values) else None
    return [float(v) if np.isfinite(v) else None for v in values]


def errors_json(errors: dict[str, dict[int, PredictionError]]) -> dict:
    """``{model: {k: {position_rad: [per joint], velocity_rad_s: [...], all joints, n_predictions}}}``;
    ``null`` where the model diverged."""
    return {
        name: {
            str(k): {
                "position_rad": _finite_or_none(e.position_rad),
                "velocity_rad_s": _finite_or_none(e.velocity_rad_s),
                "position_all_joints_rad": _finite_or_none(e.mean_position_rad),
                "velocity_all_joints_rad_s": _finite_or_none(e.mean_velocity_rad_s),
                "n_predictions": e.n_predictions,
            }
            for k, e in by_k.items()
        }
        for name, by_k in errors.items()
    }


def plot_predictions(path: str | Path, episode: Episodes, predictors: dict[str, Predictor], k: int,
                     joint_names: list[str], episode_id: dict) -> None:
    """Recorded joint positions of one held-out episode and every model's ``k``-step-ahead prediction
    of them (each point predicted open loop from the recorded state ``k`` steps earlier)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dt_s = float(episode.metadata["dt_s"])
    t = dt_s * np.arange(episode.horizon_steps + 1)
    actual = episode.x[0]
    nq = len(joint_names)
    rows = (nq + 2) // 2
    fig, axes = plt.subplots(rows, 2, figsize=(11, 2.3 * rows))
    axes = axes.ravel()
    predicted = {name: k_step_predictions(p, episode, k)[0] for name, p in predictors.items() if name != "hold_baseline"}
    for j in range(nq):
        ax = axes[j]
        ax.plot(t, actual[:, j], "k-", lw=2.0, label="recorded")
        for name, x in predicted.items():
            ax.plot(t[k:], x[:, j], lw=1.0, label=MODEL_LABELS.get(name, name))
        # A diverging model must not flatten the others' curves.
        low, high = actual[:, j].min(), actual[:, j].max()
        margin = max(0.3 * (high - low), 0.02)
        ax.set_ylim(low - margin, high + margin)
        ax.set_ylabel(f"{joint_names[j]} (rad)", fontsize=8)
    for ax in axes[nq:]:
        ax.axis("off")
    handles, labels = axes[0].get_legend_handles_labels()
    (axes[nq] if nq < axes.size else axes[0]).legend(handles, labels, loc="center", fontsize=8)
    for ax in axes[max(0, nq - 2):nq]:  # the lowest plot of each column
        ax.set_xlabel("time in episode (s)")
    fig.suptitle(f"held-out trial {episode_id['trial']}: {k}-step-ahead predictions ({k * dt_s:.2f} s open loop from the "
                 f"recorded state, recorded torques)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
