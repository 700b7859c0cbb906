"""The layout's rule that import-linter can't state: only the families seam and the planner ask which family runs."""

from __future__ import annotations

import ast
from pathlib import Path

from ioncannon.job.families import FAMILY_NAMES

ROOT = Path(__file__).resolve().parent.parent / "ioncannon"
# where a family may be named in a comparison: the seam's modules, the families' table and the planner
ALLOWED = ("engine/families/", "job/families.py", "job/plan/")


def family_comparisons(source: str) -> list[int]:
    """Lines comparing a family (something named *family*) with a family's name, e.g. `spec.family != "sd15"`."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        names = [o for o in operands for c in ast.walk(o)
                 if isinstance(c, ast.Constant) and isinstance(c.value, str) and c.value in FAMILY_NAMES]
        if names and any("family" in ast.unparse(o).lower() for o in operands if o not in names):
            lines.append(node.lineno)
    return lines


def test_no_family_is_compared_outside_the_families_seam_and_the_planner() -> None:
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        where = path.relative_to(ROOT).as_posix()
        if where.startswith(ALLOWED):
            continue
        lines = family_comparisons(path.read_text(encoding="utf-8"))
        if lines:
            found[where] = lines
    assert found == {}, "ask the family (engine/families) or the planner (job/plan) instead"


def test_the_rule_sees_a_comparison() -> None:
    assert family_comparisons('if spec.family != "sd15":\n    pass\n') == [1]
    assert family_comparisons('x = family in ("sdxl", "flux")\n') == [1]
    assert family_comparisons('if size == "sd15":\n    pass\n') == []  # a model size, not a family
