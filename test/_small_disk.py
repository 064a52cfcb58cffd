"""A small file system to fill up, for the disk-full tests: a tmpfs, else a loop-mounted ext4 image
(both need root); and a thread that fills it to its last byte and keeps it full."""

from __future__ import annotations

import errno
import subprocess
import threading
import time
from pathlib import Path

import pytest


def mount_small_filesystem(where: Path, size_mb: int) -> str:
    """Mount a ``size_mb`` file system at ``where`` (created); returns which kind, or skips the
    test saying why neither could be mounted. Unmount with :func:`unmount`."""
    where.mkdir(parents=True)
    tmpfs = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
                           capture_output=True, text=True)
    if tmpfs.returncode == 0:
        return "tmpfs"
    image = where.with_suffix(".img")
    try:
        with open(image, "wb") as fh:
            fh.truncate(size_mb * 1024 * 1024)
        subprocess.run(["mkfs.ext4", "-q", "-m", "0", str(image)], check=True, capture_output=True, text=True)
        loop = subprocess.run(["mount", "-o", "loop", str(image), str(where)], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"no small file system to fill: tmpfs: {tmpfs.stderr.strip()}; ext4 image: {err}")
    if loop.returncode != 0:
        pytest.skip(f"no small file system to fill: tmpfs: {tmpfs.stderr.strip()}; loop mount: {loop.stderr.strip()}")
    return "ext4 (loop)"


def unmount(where: Path) -> None:
    subprocess.run(["umount", "-l", str(where)], check=False)


class Filler(threading.Thread):
    """Fills the file system of ``path`` to its last byte (ENOSPC), then keeps it full: what a
    writer frees is taken again, until ``done`` is set. ``full`` is set once it first is."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path, self.done, self.full = path, threading.Event(), threading.Event()
        self.written = 0

    def run(self) -> None:
        with open(self.path, "ab", buffering=0) as fh:
            while not self.done.is_set():
                for size in (1 << 20, 1 << 12, 1):
                    try:
                        while not self.done.is_set():
                            self.written += fh.write(b"\0" * size)
                    except OSError as err:
                        if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                            raise
                self.full.set()
                time.sleep(0.02)

    def stop(self) -> None:
        """Stop filling and delete the filler: the space is free again."""
        self.done.set()
        self.join(timeout=5.0)
        self.path.unlink()
