"""Block-level copy of a device or image file into a stored raw image.

The engine behind the ``image`` and ``lvm`` sources (and the sqlite
source's copies). It reads the source sequentially, hashes each block with
xxh3-128 and compares the hash with a per-block *manifest*, so an
incremental run reads the source once and writes only the blocks that
changed (blocks that became zero become holes) through
:class:`~inkind.store.image.UpdateImage`.

Memory stays flat: a few read buffers (a thread reads ahead while the main
thread hashes, see :mod:`.readahead`) and a small window of the manifest,
whatever the size of the source.

The modules: :mod:`.manifest` (the manifest's format, reader and writer),
:mod:`.ranges` (block and span arithmetic, what to read), :mod:`.digest`
(block hashes, holes and zeros), :mod:`.readahead` (reading the source),
:mod:`.stored` (where an image and its manifest live), :mod:`.copy` (the
copy pass), :mod:`.check` (scrub and verify) and :mod:`.engine`
(:class:`~.engine.BlockCopy`, what a source uses).
"""
