"""The C library, for the few calls Python's os module lacks (fallocate
with PUNCH_HOLE, syncfs, renameat2).

``CDLL(None)`` is the process's own symbol namespace, which holds libc:
``ctypes.util.find_library`` would run ``ldconfig -p`` at every start.
"""

import ctypes

libc = ctypes.CDLL(None, use_errno=True)
