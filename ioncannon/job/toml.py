"""TOML reading on every supported Python: the standard library's tomllib, or tomli on Python 3.10."""

from __future__ import annotations

try:
    from tomllib import TOMLDecodeError, loads
except ModuleNotFoundError:  # Python 3.10: the same parser, published as tomli
    from tomli import TOMLDecodeError, loads  # type: ignore[assignment]

__all__ = ["TOMLDecodeError", "loads"]
