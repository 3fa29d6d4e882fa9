"""The lung check of the out-of-distribution guard: a frontal chest film shows two lung fields,
one each side of the spine, of comparable size.

A lateral view shows the lungs overlapping as one field, a CT slice or a knee none that look
like a radiograph's, so the lung model's mask (edge_runtime/lungs.py) tells them apart where
the image checks and the classifier's feature distance did not (81% of lateral chest X-rays
were accepted before this check).

The limits were tuned on ../shared/data/not-frontal-chest and the cxr validation split only
(scripts/lung_guard_eval.py --tune prints the figures they were chosen from); the evaluation
is the cxr test split and ../shared/data/cxr-more.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .lungs import LungGeometry

NOT_FRONTAL = "not a frontal chest X-ray"


@dataclass(frozen=True)
class LungRule:
    min_field_area: float = 0.03   # each of the two fields, share of the picture
    min_balance: float = 0.25      # smaller / larger field
    min_total: float = 0.08        # all lung, share of the picture
    max_total: float = 0.65
    min_confidence: float = 0.0    # mean lung probability inside the mask

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "LungRule":
        data = data or {}
        return cls(**{name: float(data[name]) for name in cls.__dataclass_fields__
                      if name in data})

    def reason(self, geometry: LungGeometry) -> str | None:
        """Why the picture is not a frontal chest film, or None when it passes."""
        fields = [f for f in geometry.fields if f.area >= self.min_field_area]
        if not fields:
            return f"{NOT_FRONTAL}: no lung fields found"
        left = [f for f in fields if f.centroid[0] < 0.5]
        right = [f for f in fields if f.centroid[0] >= 0.5]
        if len(fields) == 1:
            return (f"{NOT_FRONTAL}: one lung field ({fields[0].area:.0%} of the picture), a "
                    "frontal film shows two (a lateral view shows one)")
        if not left or not right:
            return f"{NOT_FRONTAL}: lung fields on one side of the picture only"
        balance = min(left[0].area, right[0].area) / max(left[0].area, right[0].area)
        if balance < self.min_balance:
            return (f"{NOT_FRONTAL}: lung fields of very different size (ratio {balance:.2f} "
                    f"< {self.min_balance:.2f})")
        total = geometry.lung_fraction
        if not self.min_total <= total <= self.max_total:
            return (f"{NOT_FRONTAL}: lung fields cover {total:.0%} of the picture (expected "
                    f"{self.min_total:.0%}-{self.max_total:.0%})")
        if geometry.confidence < self.min_confidence:
            return (f"{NOT_FRONTAL}: the lung model is unsure (mean lung probability "
                    f"{geometry.confidence:.2f} < {self.min_confidence:.2f})")
        return None
