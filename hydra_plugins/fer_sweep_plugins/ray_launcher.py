"""Thin Hydra plugin class: Hydra instantiates launchers from the hydra_plugins namespace package.
The logic lives in fer_sweep.sweep.ray_launcher (which imports Ray only when a sweep launches); the config in
conf/hydra/launcher/ray.yaml."""
from fer_sweep.sweep.ray_launcher import RayLauncher as _RayLauncher


class RayLauncher(_RayLauncher):
    """`hydra/launcher=ray`: each job as a Ray task, on a local Ray or a cluster (address=auto)."""
