"""Field mapping: YAML mapping or automatic mapping by normalised header names."""

from __future__ import annotations


def parse_mapping(path_or_text):  # filled in below
    raise NotImplementedError
