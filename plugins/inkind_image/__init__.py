"""The built-in ``image`` source: a block device or image file kept as a raw
image, updated block by block.

Registered through the "inkind" entry-point group, exactly like a
third-party plugin.
"""

import inkind
from inkind_image.source import ImageSource


@inkind.hookimpl
def inkind_source_types():
    return [ImageSource]
