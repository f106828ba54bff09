"""Device compatibility pre-flight: which ops an accelerator runs, where the graph splits.

``check(model_path, rules)`` reads a .tflite and applies rule tables (edgepack/compat/rules/
*.toml: Edge TPU, GPU delegate, XNNPACK) to every op. The result, a :class:`CompatReport`, goes
into the package manifest under ``"compat"``.
"""

from edgepack.compat.engine import check, check_model, evaluate_op
from edgepack.compat.report import (
    CompatReport,
    FullDelegationError,
    OpPlacement,
    Placement,
    Reason,
    TableResult,
    require_full_delegation,
)
from edgepack.compat.rules import RuleTable, available_rules, load_table

__all__ = [
    "CompatReport",
    "FullDelegationError",
    "OpPlacement",
    "Placement",
    "Reason",
    "RuleTable",
    "TableResult",
    "available_rules",
    "check",
    "check_model",
    "evaluate_op",
    "load_table",
    "require_full_delegation",
]
