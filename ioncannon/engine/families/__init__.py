"""Model families behind one interface (base.Family), one module each; `family_for(name)` looks one up lazily."""

from __future__ import annotations

from ioncannon.engine.models.registry import family_for

__all__ = ["family_for"]
