"""The built-in ``lvm`` source: LVM logical volumes backed up from a
consistent snapshot as raw images; thin volumes by the pool's own record of
changed blocks.

Registered through the "inkind" entry-point group, exactly like a
third-party plugin; the source is imported only when a config uses it.
"""

import inkind


@inkind.hookimpl
def inkind_source_types() -> dict[str, str]:
    return {"lvm": "inkind_lvm.source:LvmSource"}
