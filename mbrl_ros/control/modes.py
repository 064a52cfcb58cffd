"""The controller's modes and model sources, by name (no imports: the command line and the launch
arguments offer them without loading the planners)."""

#: ``mpc_controller``'s ``mode`` (and ``final_mode``): learn by LQR-FLM trials, or plan with a
#: receding horizon on the global model.
MODES = ("lqr_flm", "ilqr", "mppi")
#: The model ilqr/mppi plan on: the learned ensemble from ``/mbrl/model``, or the URDF physics.
MODEL_SOURCES = ("learned", "physics")
