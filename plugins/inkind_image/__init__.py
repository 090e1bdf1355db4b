"""The built-in ``image`` source: a block device or image file kept as a raw
image, updated block by block.

Registered through the "inkind" entry-point group, exactly like a
third-party plugin; the source is imported only when a config uses it.
"""

import inkind


@inkind.hookimpl
def inkind_source_types() -> dict[str, str]:
    return {"image": "inkind_image.source:ImageSource"}
