"""Fixtures of the history tests: real filesystems on loop devices."""

from loopfs import loop_device, mounted

__all__ = ["loop_device", "mounted"]
