"""Fixtures for the image source: loop devices and filesystems on them."""

from loopfs import loop_device, mounted

__all__ = ["loop_device", "mounted"]
