"""Decisions as pure functions of measured facts: the promotion gate and the retraining rule.

No I/O here, so every rule is unit-tested without MLflow or Airflow, and a decision always
comes with the reasons that produced it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from biotune.specs import Gate


@dataclass(frozen=True)
class Decision:
    yes: bool
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def gate(gate_spec: Gate, challenger: float, champion: float | None) -> Decision:
    """Promote when the challenger reaches ``min_absolute`` and beats the champion by
    ``min_improvement`` on the same held-out data. With no champion only ``min_absolute`` counts."""
    metric = gate_spec.metric
    sign = 1.0 if gate_spec.higher_is_better else -1.0
    reasons: list[str] = []
    ok = True
    if challenger is None or (isinstance(challenger, float) and math.isnan(challenger)):
        return Decision(False, [f"challenger {metric} is missing or NaN"])
    if sign * (challenger - gate_spec.min_absolute) >= 0:
        reasons.append(f"{metric} {challenger:.4f} reaches the minimum {gate_spec.min_absolute:.4f}")
    else:
        ok = False
        reasons.append(f"{metric} {challenger:.4f} misses the minimum {gate_spec.min_absolute:.4f}")
    if champion is None or (isinstance(champion, float) and math.isnan(champion)):
        reasons.append("no champion to beat")
    else:
        gain = sign * (challenger - champion)
        if gain >= gate_spec.min_improvement:
            reasons.append(f"{metric} beats the champion's {champion:.4f} by {gain:+.4f} "
                           f"(needs {gate_spec.min_improvement:+.4f})")
        else:
            ok = False
            reasons.append(f"{metric} {challenger:.4f} does not beat the champion's {champion:.4f} by "
                           f"{gate_spec.min_improvement:+.4f} (gain {gain:+.4f})")
    return Decision(ok, reasons)
