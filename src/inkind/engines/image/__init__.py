"""What the sources that store raw images share (``image``, ``lvm``): the
:class:`~.rawimage.RawImageSource` base with its block size option, and
opening and describing block devices and image files (:mod:`.blockdev`).
The copying itself is the block-copy engine's (:mod:`inkind.engines.blockcopy`)."""
