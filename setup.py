"""ament_python package setup: console entry points, ament index marker, launch and config files."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "mbrl_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz")),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="mbrl_ros maintainers",
    maintainer_email="maintainers@mbrl-ros.dev",
    description="Model-based reinforcement learning for torque-controlled robot arms on ROS 2.",
    license="Apache-2.0",
    python_requires=">=3.10",
    entry_points={
        "console_scripts": [
            "sim_node = mbrl_ros.nodes.entry:sim_node",
            "trajectory_recorder = mbrl_ros.nodes.entry:trajectory_recorder",
            "dynamics_learner = mbrl_ros.nodes.entry:dynamics_learner",
            "mpc_controller = mbrl_ros.nodes.entry:mpc_controller",
            "mbrl-ros = mbrl_ros.cli:main",
        ],
    },
)
