"""Headless pictures of recorded arm motion (no ROS): joint trajectories replayed into an animated GIF.

:func:`render_reaches` loads the robot's URDF into its own PyBullet ``DIRECT`` client, sets the joints
to each recorded configuration in turn (no physics: a replay, never in any torque path) and draws it
with PyBullet's software TinyRenderer, so it needs no display and no GPU. The goal is a red sphere in
the scene and, so that the arm never hides it, a red ring drawn over every frame; the end
effector's path so far is a green line; a caption names the clip, the time and the distance to the
goal. Frames are written with Pillow as one looping GIF.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

from .robots import robot_spec

#: The goal's colour in the frames (RGB): the sphere and the ring over it.
GOAL_RGB = (230, 20, 20)
#: The end effector's path so far (RGB).
PATH_RGB = (20, 160, 40)


@dataclass(frozen=True)
class Clip:
    """One recorded motion: ``positions_rad`` ``(N, nq)`` at ``times_s`` ``(N,)`` (increasing),
    towards ``goal_m`` (end-effector target in the base frame), titled ``label``."""

    label: str
    goal_m: tuple[float, float, float]
    times_s: np.ndarray
    positions_rad: np.ndarray


@dataclass(frozen=True)
class RenderSettings:
    """Frame size (px), frames per second of recorded time, and the camera (m, degrees) looking at
    ``target_m`` in the base frame from ``distance_m`` at ``yaw_deg``/``pitch_deg``."""

    width: int = 320
    height: int = 240
    fps: float = 5.0
    target_m: tuple[float, float, float] = (0.3, 0.0, 0.45)
    distance_m: float = 1.6
    yaw_deg: float = 50.0
    pitch_deg: float = -22.0
    fov_deg: float = 50.0
    goal_radius_m: float = 0.025


@dataclass(frozen=True)
class RenderReport:
    path: Path
    frames: int
    render_s: float
    size_bytes: int


class _Scene:
    """The robot, a floor and the goal sphere in a DIRECT client, and the camera's matrices."""

    def __init__(self, robot: str, settings: RenderSettings) -> None:
        self.spec = robot_spec(robot)
        self.settings = settings
        self.client = BulletClient(connection_mode=pybullet.DIRECT)
        self.client.loadURDF(pybullet_data.getDataPath() + "/plane.urdf")
        self.body = self.client.loadURDF(self.spec.urdf_path, useFixedBase=True)
        by_name = {}
        for j in range(self.client.getNumJoints(self.body)):
            info = self.client.getJointInfo(self.body, j)
            by_name[info[1].decode()] = j
            if info[12].decode() == self.spec.ee_link:
                self.ee_link = j
        self.arm = [by_name[n] for n in self.spec.joint_names]
        for name, q in self.spec.held_joints:
            self.client.resetJointState(self.body, by_name[name], q)
        sphere = self.client.createVisualShape(pybullet.GEOM_SPHERE, radius=settings.goal_radius_m,
                                               rgbaColor=[c / 255 for c in GOAL_RGB] + [1.0])
        self.goal = self.client.createMultiBody(baseMass=0.0, baseVisualShapeIndex=sphere)
        s = settings
        self.view = self.client.computeViewMatrixFromYawPitchRoll(list(s.target_m), s.distance_m, s.yaw_deg, s.pitch_deg,
                                                                  0.0, 2)
        self.projection = self.client.computeProjectionMatrixFOV(s.fov_deg, s.width / s.height, 0.05, 10.0)
        # Column-major 4x4 matrices, as OpenGL keeps them: world -> clip space.
        self._world_to_clip = np.asarray(self.projection).reshape(4, 4).T @ np.asarray(self.view).reshape(4, 4).T

    def pixel(self, point_m) -> tuple[float, float]:
        """Where a base-frame point lands in the image (x right, y down, px)."""
        clip = self._world_to_clip @ np.append(np.asarray(point_m, dtype=float), 1.0)
        ndc = clip[:3] / clip[3]
        return (ndc[0] + 1.0) * 0.5 * self.settings.width, (1.0 - ndc[1]) * 0.5 * self.settings.height

    def pose(self, q: np.ndarray, goal_m) -> np.ndarray:
        """Set the arm to ``q`` and the goal sphere to ``goal_m``; the end effector's position."""
        for j, v in zip(self.arm, q):
            self.client.resetJointState(self.body, j, float(v))
        self.client.resetBasePositionAndOrientation(self.goal, list(goal_m), [0.0, 0.0, 0.0, 1.0])
        return np.asarray(self.client.getLinkState(self.body, self.ee_link, computeForwardKinematics=True)[4])

    def image(self) -> np.ndarray:
        s = self.settings
        _, _, rgba, _, _ = self.client.getCameraImage(s.width, s.height, self.view, self.projection,
                                                      renderer=pybullet.ER_TINY_RENDERER,
                                                      flags=pybullet.ER_NO_SEGMENTATION_MASK)
        return np.asarray(rgba, dtype=np.uint8).reshape(s.height, s.width, 4)[..., :3]

    def close(self) -> None:
        self.client.disconnect()


def frame_times(times_s: np.ndarray, fps: float) -> np.ndarray:
    """Indices into ``times_s`` of the samples nearest to every ``1/fps`` s of recorded time, the
    first and the last sample included."""
    times_s = np.asarray(times_s, dtype=float)
    wanted = np.arange(times_s[0], times_s[-1], 1.0 / fps)
    idx = np.clip(np.searchsorted(times_s, wanted), 0, len(times_s) - 1)
    return np.unique(np.append(idx, len(times_s) - 1))


def render_reaches(robot: str, clips: list[Clip], path: Path, settings: RenderSettings | None = None) -> RenderReport:
    """Replay ``clips`` one after the other into the GIF ``path`` (see the module docstring); the
    last frame of each clip is held for a second."""
    from PIL import Image, ImageDraw

    if not clips:
        raise ValueError("nothing to render")
    settings = settings or RenderSettings()
    started = time.perf_counter()
    scene = _Scene(robot, settings)
    frames: list[Image.Image] = []
    durations_ms: list[int] = []
    frame_ms = round(1000.0 / settings.fps)
    try:
        for clip in clips:
            q = np.asarray(clip.positions_rad, dtype=float)
            t = np.asarray(clip.times_s, dtype=float)
            if q.ndim != 2 or q.shape[1] != len(scene.arm) or t.shape != (q.shape[0],) or q.shape[0] < 1:
                raise ValueError(f"clip {clip.label!r}: positions {q.shape} and times {t.shape} do not match "
                                 f"{len(scene.arm)} joints")
            goal_px = scene.pixel(clip.goal_m)
            trail: list[tuple[float, float]] = []
            for i in frame_times(t, settings.fps):
                ee = scene.pose(q[i], clip.goal_m)
                trail.append(scene.pixel(ee))
                frame = Image.fromarray(scene.image())
                draw = ImageDraw.Draw(frame)
                if len(trail) > 1:
                    draw.line(trail, fill=PATH_RGB, width=2)
                r = 7
                draw.ellipse([goal_px[0] - r, goal_px[1] - r, goal_px[0] + r, goal_px[1] + r], outline=GOAL_RGB, width=2)
                distance_cm = float(np.linalg.norm(ee - np.asarray(clip.goal_m))) * 100
                draw.text((6, 4), clip.label, fill=(0, 0, 0))
                draw.text((6, settings.height - 16), f"t = {t[i] - t[0]:4.1f} s   {distance_cm:5.1f} cm to the goal",
                          fill=(0, 0, 0))
                frames.append(frame)
                durations_ms.append(frame_ms)
            durations_ms[-1] = 1000
    finally:
        scene.close()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations_ms, loop=0, optimize=False)
    return RenderReport(path, len(frames), time.perf_counter() - started, path.stat().st_size)
