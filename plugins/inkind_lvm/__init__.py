"""The built-in ``lvm`` source: LVM logical volumes backed up from a
consistent snapshot as raw images; thin volumes by the pool's own record of
changed blocks.

Registered through the "inkind" entry-point group, exactly like a
third-party plugin.
"""

import inkind
from inkind_lvm.source import LvmSource


@inkind.hookimpl
def inkind_source_types():
    return [LvmSource]
