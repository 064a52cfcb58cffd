"""Probabilistic neural-network ensemble dynamics (PETS / mbrl-lib style), in torch.

Each of ``E`` members maps the normalised input ``[x; u]`` to a Gaussian over the normalised target
``Δ = x' - x`` (or, in semi-parametric mode, the residual ``x' - f_phys(x, u)`` of a physics model):
mean and log-variance, the log-variance softly bounded between learned ``min_logvar`` and
``max_logvar``. Training minimises the Gaussian negative log-likelihood plus a small penalty on the
bounds, on bootstrapped resamples (or the same data with independent initialisations), with early
stopping per member on a held-out split; the ``n_elites`` members with the lowest holdout error are
used for prediction. ``train`` keeps all data seen so far and continues from the current weights,
so it can be called as episodes arrive.

Shapes: ``x`` ``(B, nx)``, ``u`` ``(B, nu)``. The numpy protocol methods accept ``(..., nx)``.

Prediction: the mean over elites, the aleatoric variance (mean of members' variances) and the
epistemic variance (variance of members' means). Trajectory sampling for planners: after
``begin_rollout(B, generator)`` every rollout sample is assigned an elite (``ts_inf``: fixed for
the rollout; ``ts1``: redrawn every step) and ``step_torch`` draws from that member's Gaussian
(``sample_aleatoric``) or returns its mean. Each elite evaluates only its own samples, and only
the elites are evaluated; the Jacobians of ``linearize`` are analytic (reverse mode through the
layers, all states at once). The network runs in float32 on ``device``.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn

from mbrl_ros.data.episodes import Episodes

PROPAGATION_MODES = ("ts_inf", "ts1", "mean")


@dataclass(frozen=True)
class EnsembleSettings:
    """Ensemble settings (PETS / mbrl-lib defaults).

    Attributes:
        n_members: ensemble size ``E``.
        n_elites: members used for prediction (lowest holdout error).
        hidden_units, hidden_layers: MLP width and depth (SiLU activations).
        learning_rate, weight_decay: Adam settings.
        batch_size: minibatch size.
        max_epochs_per_train: epoch cap of one ``train`` call.
        patience_epochs: stop when no member's holdout error improved for this many epochs.
        holdout_fraction: share of transitions held out for early stopping and elite selection.
        bootstrap: train each member on a bootstrap resample (else the same data, independent init).
        init_max_logvar, init_min_logvar: initial soft bounds of the predicted log-variance.
        logvar_bound_weight: weight of the penalty ``0.01 (max_logvar - min_logvar)``-style term.
        propagation: ``ts_inf``, ``ts1`` or ``mean`` (trajectory-sampling mode of ``step_torch``).
        sample_aleatoric: draw from the member's Gaussian in ``step_torch`` (else its mean).
        linear_skip: add a per-member linear map of the normalised input to the mean output.
        max_transitions: training data kept (the most recent transitions).
        seed: seeds initialisation, bootstrap and splits.
    """

    n_members: int = 7
    n_elites: int = 5
    hidden_units: int = 200
    hidden_layers: int = 4
    learning_rate: float = 1e-3
    weight_decay: float = 5e-5
    batch_size: int = 256
    max_epochs_per_train: int = 200
    patience_epochs: int = 10
    holdout_fraction: float = 0.1
    bootstrap: bool = True
    init_max_logvar: float = 0.5
    init_min_logvar: float = -10.0
    logvar_bound_weight: float = 0.01
    propagation: str = "ts_inf"
    sample_aleatoric: bool = True
    linear_skip: bool = True
    max_transitions: int = 200_000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_members < 1 or not 1 <= self.n_elites <= self.n_members:
            raise ValueError(f"need n_members >= 1 and 1 <= n_elites <= n_members, got {self.n_members}, {self.n_elites}")
        if self.hidden_units < 1 or self.hidden_layers < 1:
            raise ValueError(f"hidden_units and hidden_layers must be >= 1, got {self.hidden_units}, {self.hidden_layers}")
        if not self.learning_rate > 0.0 or not self.weight_decay >= 0.0:
            raise ValueError(f"learning_rate must be > 0 and weight_decay >= 0, got {self.learning_rate}, {self.weight_decay}")
        if self.batch_size < 1 or self.max_epochs_per_train < 1 or self.patience_epochs < 1 or self.max_transitions < 4:
            raise ValueError("batch_size, max_epochs_per_train, patience_epochs must be >= 1 and max_transitions >= 4")
        if not 0.0 < self.holdout_fraction < 0.5:
            raise ValueError(f"holdout_fraction must be in (0, 0.5), got {self.holdout_fraction}")
        if not self.init_min_logvar < self.init_max_logvar:
            raise ValueError("init_min_logvar must be < init_max_logvar")
        if self.propagation not in PROPAGATION_MODES:
            raise ValueError(f"propagation must be one of {PROPAGATION_MODES}, got {self.propagation!r}")


class EnsembleLinear(nn.Module):
    """``E`` independent linear layers applied batched: ``(E, B, n_in) -> (E, B, n_out)``."""

    def __init__(self, n_members: int, n_in: int, n_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(n_in)
        self.weight = nn.Parameter(torch.empty(n_members, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_members, 1, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class GaussianEnsembleNet(nn.Module):
    """The members' MLPs; returns normalised means and bounded log-variances ``(E, B, n_out)``.

    No layer behaves differently in training (no dropout or batch norm), so the module is never
    switched between train and eval mode: each switch walks the module tree, and planners predict
    hundreds of times per plan."""

    def __init__(self, n_in: int, n_out: int, s: EnsembleSettings) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for _ in range(s.hidden_layers):
            layers += [EnsembleLinear(s.n_members, width, s.hidden_units), nn.SiLU()]
            width = s.hidden_units
        self.body = nn.Sequential(*layers)
        self.head = EnsembleLinear(s.n_members, width, 2 * n_out)
        self.skip = EnsembleLinear(s.n_members, n_in, n_out) if s.linear_skip else None
        self.n_out = n_out
        self.max_logvar = nn.Parameter(torch.full((1, 1, n_out), s.init_max_logvar))
        self.min_logvar = nn.Parameter(torch.full((1, 1, n_out), s.init_min_logvar))

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.body(z))
        mean, logvar = out[..., : self.n_out], out[..., self.n_out :]
        if self.skip is not None:
            mean = mean + self.skip(z)
        logvar = self.max_logvar - nn.functional.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + nn.functional.softplus(logvar - self.min_logvar)
        return mean, logvar


class _EliteNet:
    """The elites' layers stacked for inference, in the weights' dtype (float32) on the model's device.

    Only the elites predict, so only they are evaluated; the mean head runs without the
    log-variance head unless a sample needs the variance; the skip map's bias is folded into the
    mean head's."""

    def __init__(self, model: "EnsembleDynamics", key) -> None:
        self.key = key
        net, device = model.net, model.device
        idx = torch.tensor(model.elites, dtype=torch.long, device=device)
        n_out = net.n_out
        with torch.no_grad():
            take = lambda t: t.detach()[idx].contiguous()  # noqa: E731
            self.layers = [(take(m.weight), take(m.bias)) for m in net.body if isinstance(m, EnsembleLinear)]
            head_w, head_b = take(net.head.weight), take(net.head.bias)
            self.mean_w, self.mean_b = head_w[..., :n_out].contiguous(), head_b[..., :n_out].contiguous()
            self.logvar_w, self.logvar_b = head_w[..., n_out:].contiguous(), head_b[..., n_out:].contiguous()
            self.skip_w = None
            if net.skip is not None:
                self.skip_w = take(net.skip.weight)
                self.mean_b = self.mean_b + take(net.skip.bias)
            self.max_logvar, self.min_logvar = net.max_logvar.detach(), net.min_logvar.detach()
        dtype = self.mean_w.dtype
        self.in_mean = model.in_mean.to(device, dtype)
        self.in_std = model.in_std.to(device, dtype)
        self.in_scale = 1.0 / self.in_std
        self.out_mean = model.out_mean.to(device, dtype)
        self.out_std = model.out_std.to(device, dtype)
        self.n_elites = len(model.elites)
        self.dtype = dtype
        self.numpy = None
        if device.type == "cpu":
            as_np = lambda t: t.detach().numpy()  # noqa: E731
            self.numpy = ([(as_np(W), as_np(b)) for W, b in self.layers], as_np(self.mean_w), as_np(self.mean_b),
                          None if self.skip_w is None else as_np(self.skip_w), as_np(self.in_mean), as_np(self.in_scale),
                          as_np(self.out_mean), as_np(self.out_std))

    def deltas_numpy(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Every elite's ``Δ`` ``(E', B, n_out)`` (denormalised, float64) in numpy: for a few states
        a call costs a third of torch's (its per-operation overhead dominates there)."""
        layers, mean_w, mean_b, skip_w, in_mean, in_scale, out_mean, out_std = self.numpy
        z = (np.concatenate([x, u], axis=-1).astype(mean_w.dtype) - in_mean) * in_scale
        z = np.ascontiguousarray(np.broadcast_to(z, (mean_w.shape[0],) + z.shape))  # stacked products stay in BLAS
        h = z
        for W, b in layers:
            a = h @ W + b
            h = a / (1.0 + np.exp(-a))
        mean = h @ mean_w + mean_b
        if skip_w is not None:
            mean += z @ skip_w
        return (mean * out_std + out_mean).astype(np.float64)

    def normalise(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return (torch.cat([x, u], dim=-1).to(self.dtype) - self.in_mean) * self.in_scale

    def denormalise(self, mean: torch.Tensor) -> torch.Tensor:
        return mean * self.out_std + self.out_mean

    def forward(self, z: torch.Tensor, with_logvar: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised means (and bounded log-variances) ``(E', B, n_out)`` of ``z`` ``(E', B, n_in)``."""
        h = z
        for W, b in self.layers:
            h = nn.functional.silu(torch.baddbmm(b, h, W))
        mean = torch.baddbmm(self.mean_b, h, self.mean_w)
        if self.skip_w is not None:
            mean = torch.baddbmm(mean, z, self.skip_w)
        if not with_logvar:
            return mean, None
        logvar = torch.baddbmm(self.logvar_b, h, self.logvar_w)
        logvar = self.max_logvar - nn.functional.softplus(self.max_logvar - logvar)
        logvar = self.min_logvar + nn.functional.softplus(logvar - self.min_logvar)
        return mean, logvar

    def input_jacobian(self, z: torch.Tensor) -> torch.Tensor:
        """``d mean / d z`` ``(E', B, n_out, n_in)`` (normalised units), in reverse mode."""
        E, B, _ = z.shape
        slopes = []
        h = z
        for W, b in self.layers:
            a = torch.baddbmm(b, h, W)
            sig = torch.sigmoid(a)
            slopes.append(sig * (1.0 + a * (1.0 - sig)))  # silu'(a)
            h = a * sig
        n_out = self.mean_w.shape[-1]
        G = self.mean_w.transpose(1, 2).unsqueeze(1)  # (E, 1, n_out, H): rows of d mean / d h_L
        for (W, _), slope in zip(reversed(self.layers), reversed(slopes)):
            G = (G * slope.unsqueeze(2)).reshape(E, -1, W.shape[2])
            G = torch.bmm(G, W.transpose(1, 2)).reshape(E, B, n_out, W.shape[1])
        if self.skip_w is not None:
            G = G + self.skip_w.transpose(1, 2).unsqueeze(1)
        return G


class _SlotAssignment:
    """TS∞ bookkeeping: ``B`` samples dealt at random to ``E`` members in blocks of ``ceil(B / E)`` slots."""

    def __init__(self, batch_size: int, n_members: int, generator: torch.Generator | None, device: torch.device) -> None:
        share = -(-batch_size // n_members)
        gen_device = generator.device if generator is not None else torch.device("cpu")
        slots = torch.randperm(share * n_members, generator=generator, device=gen_device)[:batch_size].to(device)
        self.batch_size, self.n_members, self.share = batch_size, n_members, share
        self.sample_slot = slots
        self.member = slots // share  # each sample's index into the elites
        self.slot_sample = torch.zeros(share * n_members, dtype=torch.long, device=device)  # empty slots read sample 0
        self.slot_sample[slots] = torch.arange(batch_size, device=device)

    def gather(self, z: torch.Tensor) -> torch.Tensor:
        """``(B, n)`` rows into the members' blocks ``(E, share, n)``."""
        return z[self.slot_sample].view(self.n_members, self.share, -1)

    def scatter(self, y: torch.Tensor) -> torch.Tensor:
        """The members' blocks ``(E, share, n)`` back into sample order ``(B, n)``."""
        return y.reshape(self.n_members * self.share, -1)[self.sample_slot]


@dataclass
class TrainStats:
    """One ``train`` call: epochs run, final holdout MSE per member (normalised targets), time."""

    epochs: int
    holdout_mse: list
    elites: list
    n_train: int
    n_holdout: int
    time_s: float


class EnsembleDynamics:
    """The ensemble as a dynamics model of the shared protocol (see the module docstring).

    Args:
        nx, nu: state and action dimensions.
        dt_s: control period of the transitions it learns.
        settings: :class:`EnsembleSettings`.
        base_model: optional physics model (shared protocol); when given the ensemble learns the
            residual on top of ``base_model.step`` (semi-parametric mode).
    """

    #: Stepping a batch costs about as much as stepping one state (planners batch their searches).
    batched_step_is_cheap = True
    #: ``step`` evaluates batches up to this size in numpy, larger ones in torch (measured: 1.4-2x
    #: faster in numpy for 1-10 states of a 3x128 or 4x200 ensemble, slower from 16 on for 4x200).
    numpy_max_batch = 10

    def __init__(self, nx: int, nu: int, dt_s: float, settings: EnsembleSettings | None = None, base_model=None,
                 device: str | torch.device = "cpu") -> None:
        if nx < 1 or nu < 1 or not dt_s > 0.0:
            raise ValueError(f"need nx, nu >= 1 and dt_s > 0, got {nx}, {nu}, {dt_s}")
        if base_model is not None and (base_model.nx != nx or base_model.nu != nu):
            raise ValueError(f"base model dims ({base_model.nx}, {base_model.nu}) differ from ({nx}, {nu})")
        self.nx, self.nu, self.dt_s = int(nx), int(nu), float(dt_s)
        self.settings = settings or EnsembleSettings()
        self.base_model = base_model
        with torch.random.fork_rng(devices=[]):  # seeded initialisation without touching the global RNG
            torch.manual_seed(self.settings.seed)
            self.net = GaussianEnsembleNet(nx + nu, nx, self.settings)  # float32 weights
        self.device = torch.device(device)
        self.net.to(self.device)
        self._rng = np.random.default_rng(self.settings.seed)
        # Normalisation statistics (float64 tensors).
        self.in_mean = torch.zeros(nx + nu, dtype=torch.float64)
        self.in_std = torch.ones(nx + nu, dtype=torch.float64)
        self.out_mean = torch.zeros(nx, dtype=torch.float64)
        self.out_std = torch.ones(nx, dtype=torch.float64)
        self.elites = list(range(self.settings.n_elites))
        self._data_x = np.zeros((0, nx))
        self._data_u = np.zeros((0, nu))
        self._data_y = np.zeros((0, nx))
        self._holdout_mask = np.zeros(0, dtype=bool)
        self._member_index: torch.Tensor | None = None
        self._generator: torch.Generator | None = None
        self._slots: _SlotAssignment | None = None
        self._weights_version = 0
        self._elite_net: _EliteNet | None = None
        self.train_summary: dict = {"n_transitions": 0, "train_calls": 0}

    # ---- data -----------------------------------------------------------------------------------
    @property
    def residual(self) -> bool:
        return self.base_model is not None

    def _targets(self, x: np.ndarray, u: np.ndarray, xn: np.ndarray) -> np.ndarray:
        if self.base_model is not None:
            return xn - np.asarray(self.base_model.step(x, u), dtype=float)
        return xn - x

    def add_episodes(self, episodes: Episodes) -> None:
        """Add an episode batch's transitions to the training data (new holdout split for them)."""
        if episodes.nx != self.nx or episodes.nu != self.nu:
            raise ValueError(f"episodes (nx, nu) = ({episodes.nx}, {episodes.nu}) differ from the model's ({self.nx}, {self.nu})")
        x, u, xn = episodes.transitions()
        self.add_transitions(x, u, xn)

    def add_transitions(self, x: np.ndarray, u: np.ndarray, x_next: np.ndarray) -> None:
        x, u, x_next = (np.asarray(a, dtype=float) for a in (x, u, x_next))
        if x.ndim != 2 or x.shape[1] != self.nx or u.shape != (x.shape[0], self.nu) or x_next.shape != x.shape:
            raise ValueError(f"transitions must be (n, {self.nx}), (n, {self.nu}), (n, {self.nx}); got {x.shape}, {u.shape}, {x_next.shape}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(u)) and np.all(np.isfinite(x_next))):
            raise ValueError("transitions contain non-finite values")
        y = self._targets(x, u, x_next)
        holdout = self._rng.random(x.shape[0]) < self.settings.holdout_fraction
        if holdout.all() or (not holdout.any() and x.shape[0] > 1):
            holdout[self._rng.integers(x.shape[0])] = not holdout.all()
        self._data_x = np.concatenate([self._data_x, x])
        self._data_u = np.concatenate([self._data_u, u])
        self._data_y = np.concatenate([self._data_y, y])
        self._holdout_mask = np.concatenate([self._holdout_mask, holdout])
        keep = self.settings.max_transitions
        if self._data_x.shape[0] > keep:
            self._data_x, self._data_u = self._data_x[-keep:], self._data_u[-keep:]
            self._data_y, self._holdout_mask = self._data_y[-keep:], self._holdout_mask[-keep:]

    # ---- training -------------------------------------------------------------------------------
    def _normalise_in(self, z: torch.Tensor) -> torch.Tensor:
        """Normalised network input (float32) from raw ``[x; u]`` of any float dtype."""
        z = z.to(torch.float64)
        return ((z - self.in_mean) / self.in_std).to(torch.float32)

    def train(
        self, episodes: Episodes | None = None, max_epochs: int | None = None, progress: Callable[[int, int], None] | None = None
    ) -> TrainStats:
        """Add ``episodes`` (if given) and continue training on all data seen so far;
        ``progress(epoch, max epochs)`` is called after every epoch."""
        if episodes is not None:
            self.add_episodes(episodes)
        s = self.settings
        n = self._data_x.shape[0]
        if n < 4:
            raise ValueError(f"need at least 4 transitions to train, have {n}")
        start = time.perf_counter()
        z = np.concatenate([self._data_x, self._data_u], axis=1)
        self.in_mean = torch.from_numpy(z.mean(axis=0))
        self.in_std = torch.from_numpy(np.maximum(z.std(axis=0), 1e-6))
        self.out_mean = torch.from_numpy(self._data_y.mean(axis=0))
        self.out_std = torch.from_numpy(np.maximum(self._data_y.std(axis=0), 1e-8))
        zt = self._normalise_in(torch.from_numpy(z)).to(self.device)
        yt = ((torch.from_numpy(self._data_y) - self.out_mean) / self.out_std).to(self.device, torch.float32)
        train_idx = np.flatnonzero(~self._holdout_mask)
        hold_idx = np.flatnonzero(self._holdout_mask)
        if hold_idx.size == 0:
            hold_idx = train_idx
        E = s.n_members
        gen = torch.Generator().manual_seed(int(self._rng.integers(2**31)))
        opt = torch.optim.Adam(self.net.parameters(), lr=s.learning_rate, weight_decay=s.weight_decay)
        n_epochs = max_epochs or s.max_epochs_per_train
        best = self._holdout_mse(zt[hold_idx], yt[hold_idx])
        best_state = copy.deepcopy(self.net.state_dict())
        since_improved = 0
        epochs = 0
        n_train = train_idx.size
        for epoch in range(n_epochs):
            epochs = epoch + 1
            if s.bootstrap:
                idx = torch.from_numpy(train_idx)[torch.randint(n_train, (E, n_train), generator=gen)]
            else:
                idx = torch.from_numpy(train_idx)[torch.stack([torch.randperm(n_train, generator=gen) for _ in range(E)])]
            idx = idx.to(self.device)
            for b in range(0, n_train, s.batch_size):
                bi = idx[:, b : b + s.batch_size]
                mean, logvar = self.net(zt[bi])
                inv_var = torch.exp(-logvar)
                nll = ((mean - yt[bi]) ** 2 * inv_var + logvar).mean(dim=(1, 2)).sum()
                bound = s.logvar_bound_weight * (self.net.max_logvar.sum() - self.net.min_logvar.sum())
                opt.zero_grad()
                (nll + bound).backward()
                opt.step()
            mse = self._holdout_mse(zt[hold_idx], yt[hold_idx])
            if progress is not None:
                progress(epochs, n_epochs)
            improved = mse < best - 1e-4 * np.abs(best)
            if improved.any():
                since_improved = 0
                state = self.net.state_dict()
                for key, value in state.items():
                    if value.dim() >= 1 and value.shape[0] == E:
                        best_state[key][improved] = value[improved].clone()
                    else:
                        best_state[key] = value.clone()
                best = np.where(improved, mse, best)
            else:
                since_improved += 1
                if since_improved >= s.patience_epochs:
                    break
        self.net.load_state_dict(best_state)
        self.elites = [int(i) for i in np.argsort(best)[: s.n_elites]]
        self._invalidate()
        self.train_summary = {
            "n_transitions": int(n),
            "n_holdout": int(hold_idx.size),
            "train_calls": int(self.train_summary.get("train_calls", 0)) + 1,
            "holdout_mse": [float(v) for v in best],
            "elites": self.elites,
        }
        return TrainStats(epochs, [float(v) for v in best], list(self.elites), int(n_train), int(hold_idx.size), time.perf_counter() - start)

    @torch.no_grad()
    def _holdout_mse(self, z: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        mean, _ = self.net(z.unsqueeze(0).expand(self.settings.n_members, -1, -1))
        return ((mean - y) ** 2).mean(dim=(1, 2)).cpu().numpy()

    # ---- prediction -----------------------------------------------------------------------------
    def _inference(self) -> "_EliteNet":
        """The elites' weights, stacked once per weight change (every prediction uses only them)."""
        key = (self._weights_version, tuple(self.elites), self.device)
        if self._elite_net is None or self._elite_net.key != key:
            self._elite_net = _EliteNet(self, key)
        return self._elite_net

    def _invalidate(self) -> None:
        self._weights_version += 1

    def _base_torch(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        if self.base_model is None:
            return x
        return self.base_model.step_torch(x.detach(), u.detach()).to(x)

    def _base_np(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        return x if self.base_model is None else np.asarray(self.base_model.step(x, u), dtype=float)

    def predict(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, aleatoric_var, epistemic_var)`` of the next state, each ``(..., nx)``."""
        x, u, batch = self._flatten(x, u)
        net = self._inference()
        with torch.no_grad():
            z = net.normalise(torch.from_numpy(x).to(self.device), torch.from_numpy(u).to(self.device))
            mean, logvar = net.forward(z.unsqueeze(0).expand(net.n_elites, -1, -1), with_logvar=True)
            delta = net.denormalise(mean).double().cpu().numpy()
            var = (torch.exp(logvar) * net.out_std**2).double().cpu().numpy()
        base = self._base_np(x, u)
        mean = base + delta.mean(0)
        epistemic = delta.var(0)
        return tuple(a.reshape(batch + (self.nx,)) for a in (mean, var.mean(0), epistemic))

    def predict_variance(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Total predictive variance (aleatoric + epistemic) ``(..., nx)``."""
        _, ale, epi = self.predict(x, u)
        return ale + epi

    def _flatten(self, x, u):
        x = np.asarray(x, dtype=float)
        u = np.asarray(u, dtype=float)
        if x.shape[-1] != self.nx or u.shape[-1] != self.nu:
            raise ValueError(f"x must be (..., {self.nx}) and u (..., {self.nu}); got {x.shape}, {u.shape}")
        batch = np.broadcast_shapes(x.shape[:-1], u.shape[:-1])
        x = np.broadcast_to(x, batch + (self.nx,)).reshape(-1, self.nx).copy()
        u = np.broadcast_to(u, batch + (self.nu,)).reshape(-1, self.nu).copy()
        return x, u, batch

    # ---- protocol -------------------------------------------------------------------------------
    def step(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Mean next state over the elites (numpy, float64, deterministic)."""
        xf, uf, batch = self._flatten(x, u)
        net = self._inference()
        if net.numpy is not None and xf.shape[0] <= self.numpy_max_batch:
            delta = net.deltas_numpy(xf, uf).mean(0)
        else:
            with torch.no_grad():
                z = net.normalise(torch.from_numpy(xf).to(self.device), torch.from_numpy(uf).to(self.device))
                mean, _ = net.forward(z.unsqueeze(0).expand(net.n_elites, -1, -1))
                delta = net.denormalise(mean.mean(0)).double().cpu().numpy()
        return (self._base_np(xf, uf) + delta).reshape(batch + (self.nx,))

    def step_elites(self, x: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Each elite's next state ``(E', ..., nx)`` (numpy, float64), in the order of ``elites``."""
        xf, uf, batch = self._flatten(x, u)
        net = self._inference()
        if net.numpy is not None:
            delta = net.deltas_numpy(xf, uf)
        else:
            with torch.no_grad():
                z = net.normalise(torch.from_numpy(xf).to(self.device), torch.from_numpy(uf).to(self.device))
                delta = net.denormalise(net.forward(z.unsqueeze(0).expand(net.n_elites, -1, -1))[0]).double().cpu().numpy()
        return (self._base_np(xf, uf)[None] + delta).reshape((net.n_elites,) + batch + (self.nx,))

    def sample_members(self) -> torch.Tensor | None:
        """The elite (index into ``elites``) each sample of the last ``step_torch`` batch followed, or
        ``None`` when every sample used the elites' mean (``propagation="mean"``)."""
        return None if self.settings.propagation == "mean" else self._member_index

    def begin_rollout(self, batch_size: int, generator: torch.Generator | None = None) -> None:
        """Assign each of ``batch_size`` rollout samples an elite (trajectory sampling).

        The samples are dealt to the elites in a random order, in nearly equal shares (a share of
        ``ceil(B / E)`` slots, some left empty), so that every elite can run only its own samples
        as one block of a batched product (PETS' TS∞ bookkeeping; mbrl-lib does the same)."""
        self._generator = generator
        self._slots = _SlotAssignment(batch_size, len(self.elites), generator, self.device)
        self._member_index = self._slots.member

    def step_torch(self, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Batched next state ``(B, nx)`` by trajectory sampling (see ``settings.propagation``);
        the input's dtype and device."""
        s = self.settings
        net = self._inference()
        B = x.shape[0]
        with torch.no_grad():
            z = net.normalise(x, u)
            if s.propagation == "mean":
                mean, logvar = net.forward(z.unsqueeze(0).expand(net.n_elites, -1, -1), with_logvar=s.sample_aleatoric)
                mean = mean.mean(0)
                if s.sample_aleatoric:
                    std = torch.exp(0.5 * logvar).pow(2).mean(0).sqrt()
            else:
                if s.propagation == "ts1" or self._slots is None or self._slots.batch_size != B:
                    self._slots = _SlotAssignment(B, len(self.elites), self._generator, self.device)
                    self._member_index = self._slots.member
                slots = self._slots
                mean, logvar = net.forward(slots.gather(z), with_logvar=s.sample_aleatoric)
                mean = slots.scatter(mean)
                if s.sample_aleatoric:
                    std = slots.scatter(torch.exp(0.5 * logvar))
            if s.sample_aleatoric:
                mean = mean + torch.randn(mean.shape, generator=self._generator, dtype=mean.dtype, device=mean.device) * std
            out = self._base_torch(x, u) + net.denormalise(mean).to(x.dtype)
        return out

    def linearize(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Jacobians of the elite-mean prediction (plus the physics model's, if residual).

        Analytic: one forward pass keeps every layer's pre-activation, then the output rows are
        pulled back through the layers in batched products (reverse mode, ``nx`` rows per state)."""
        xf, uf, batch = self._flatten(x, u)
        net = self._inference()
        with torch.no_grad():
            z = net.normalise(torch.from_numpy(xf).to(self.device), torch.from_numpy(uf).to(self.device))
            J = net.input_jacobian(z.unsqueeze(0).expand(net.n_elites, -1, -1)).mean(0)  # (B, nx, nx+nu)
            J = (J * (net.out_std[:, None] / net.in_std)).double().cpu().numpy()
        A = J[..., : self.nx].copy()
        Bm = J[..., self.nx :].copy()
        if self.base_model is None:
            A += np.eye(self.nx)
        else:
            Ab, Bb = self.base_model.linearize(xf, uf)
            A += Ab
            Bm += Bb
        return A.reshape(batch + (self.nx, self.nx)), Bm.reshape(batch + (self.nx, self.nu))

    def to(self, device: str | torch.device) -> "EnsembleDynamics":
        """Move the network to ``device`` (``cpu`` or ``cuda``); predictions then run there."""
        self.device = torch.device(device)
        self.net.to(self.device)
        self._slots = None
        return self

    # ---- state for serialisation ----------------------------------------------------------------
    def state_arrays(self) -> dict[str, np.ndarray]:
        """Weights and normalisation statistics as named float64 arrays."""
        out = {f"net.{k}": v.detach().cpu().numpy().astype(np.float64) for k, v in self.net.state_dict().items()}
        out.update(
            in_mean=self.in_mean.numpy().copy(), in_std=self.in_std.numpy().copy(),
            out_mean=self.out_mean.numpy().copy(), out_std=self.out_std.numpy().copy(),
            elites=np.asarray(self.elites, dtype=np.float64),
        )
        return out

    def expected_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes = {f"net.{k}": tuple(v.shape) for k, v in self.net.state_dict().items()}
        shapes.update(in_mean=(self.nx + self.nu,), in_std=(self.nx + self.nu,), out_mean=(self.nx,), out_std=(self.nx,),
                      elites=(self.settings.n_elites,))
        return shapes

    def load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        """Inverse of :meth:`state_arrays`; raises ``ValueError`` on a missing or wrong-shape array."""
        expected = self.expected_shapes()
        missing = sorted(set(expected) - set(arrays))
        extra = sorted(set(arrays) - set(expected))
        if missing or extra:
            raise ValueError(f"ensemble arrays mismatch: missing {missing}, unexpected {extra}")
        for name, shape in expected.items():
            if tuple(arrays[name].shape) != shape:
                raise ValueError(f"ensemble array {name!r} has shape {tuple(arrays[name].shape)}, expected {shape}")
        state = {k[4:]: torch.from_numpy(np.array(arrays[k], dtype=np.float32)) for k in expected if k.startswith("net.")}
        self.net.load_state_dict(state)
        self.in_mean = torch.from_numpy(np.array(arrays["in_mean"]))
        self.in_std = torch.from_numpy(np.array(arrays["in_std"]))
        self.out_mean = torch.from_numpy(np.array(arrays["out_mean"]))
        self.out_std = torch.from_numpy(np.array(arrays["out_std"]))
        elites = [int(round(e)) for e in arrays["elites"]]
        if any(not 0 <= e < self.settings.n_members for e in elites):
            raise ValueError(f"ensemble elites {elites} out of range for {self.settings.n_members} members")
        self.elites = elites
        self._invalidate()

    def settings_dict(self) -> dict:
        return asdict(self.settings)
