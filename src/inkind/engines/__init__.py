"""Engines that several sources share: block copy, tree mirror, dumps.

They are host code, written against the store primitives like any source,
and reach plugins through the names the top-level ``inkind`` package
exports (docs/architecture.md)."""
