"""The tree engine: a directory tree mirrored entry by entry into
``STORE/NAME`` (the files source; any source that has a tree at a path).

mirror (TreeMirror: backup, scrub, verify) wires walker (selection,
resume pointer, bounds, full-pass sweep), copier (files, hard links,
symlinks, specials), metadata (owner, mode, xattrs, ACLs, mtime; fakesuper
as non-root) and scrubber; restore builds the rsync command."""
