"""The lung check of the out-of-distribution guard: a frontal chest film shows two lung fields,
one each side of the spine, of comparable size.

A lateral view shows the lungs overlapping as one field, a CT slice or a knee none that look
like a radiograph's, so the lung model's mask (edge_runtime/lungs.py) tells them apart where
the image checks and the classifier's feature distance did not (81% of lateral chest X-rays
were accepted before this check).

The limits were tuned on ../shared/data/not-frontal-chest and the classifier's validation
split only (scripts/lung_guard_eval.py --tune prints the figures they were chosen from); the
evaluation is the cxr test split and the rest of ../shared/data/cxr-more.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from .lungs import LungGeometry

NOT_FRONTAL = "not a frontal chest X-ray"


@dataclass(frozen=True)
class LungRule:
    """The limits, chosen on the tuning sets (scripts/lung_guard_eval.py --tune): the two
    fields are the largest one each side of the picture's centre."""

    min_field_area: float = 0.01     # a lung field: at least this share of the picture
    min_balance: float = 0.30        # smaller / larger of the two fields
    max_height_offset: float = 0.20  # |difference of the fields' centroid heights|, 0..1
    # 0.10 until the tuning set grew by the validation split's 600 cxr-more films: 0.14 is
    # the smallest limit that accepts the most frontal tuning films while each not-frontal
    # set stays >= 95% refused (0.18 let a CT slice through; docs/lungs.md, --rule in
    # scripts/lung_guard_eval.py)
    max_top_offset: float = 0.14     # |difference of the fields' top edges|, 0..1
    min_confidence: float = 0.88     # mean lung probability inside the mask
    max_total: float = 0.70          # all lung, share of the picture (a sanity limit)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None) -> "LungRule":
        data = data or {}
        return cls(**{name: float(data[name]) for name in cls.__dataclass_fields__
                      if name in data})

    def reason(self, geometry: LungGeometry) -> str | None:
        """Why the picture is not a frontal chest film, or None when it passes."""
        fields, left, right = self._sides(geometry)
        if not fields:
            return f"{NOT_FRONTAL}: no lung fields found"
        if len(fields) == 1:
            return (f"{NOT_FRONTAL}: one lung field ({fields[0].area:.0%} of the picture), a "
                    "frontal film shows two (a lateral view shows one)")
        if not left or not right:
            return f"{NOT_FRONTAL}: lung fields on one side of the picture only"
        balance, height_offset, top_offset = self._pair_measures(left[0], right[0])
        if balance < self.min_balance:
            return (f"{NOT_FRONTAL}: lung fields of very different size (ratio {balance:.2f} "
                    f"< {self.min_balance:.2f})")
        if height_offset > self.max_height_offset:
            return (f"{NOT_FRONTAL}: the two lung fields lie at different heights (centres "
                    f"{height_offset:.0%} of the picture apart; a lateral view?)")
        if top_offset > self.max_top_offset:
            return (f"{NOT_FRONTAL}: the lung apices are at different heights ({top_offset:.0%} "
                    "of the picture apart; a lateral view?)")
        if geometry.confidence < self.min_confidence:
            return (f"{NOT_FRONTAL}: the lung model is unsure (mean lung probability "
                    f"{geometry.confidence:.2f} < {self.min_confidence:.2f})")
        if geometry.lung_fraction > self.max_total:
            return (f"{NOT_FRONTAL}: lung fields cover {geometry.lung_fraction:.0%} of the "
                    f"picture (more than {self.max_total:.0%})")
        return None

    def pair(self, geometry: LungGeometry) -> dict | None:
        """The measures the limits apply to, for the largest field each side (None without
        one each side): what scripts/lung_guard_eval.py tunes the limits on."""
        _, left, right = self._sides(geometry)
        if not left or not right:
            return None
        balance, height_offset, top_offset = self._pair_measures(left[0], right[0])
        return {"balance": balance, "height_offset": height_offset, "top_offset": top_offset}

    def _sides(self, geometry: LungGeometry) -> tuple[list, list, list]:
        """The lung fields, and those left and right of the picture's centre."""
        fields = [f for f in geometry.fields if f.area >= self.min_field_area]
        return (fields, [f for f in fields if f.centroid[0] < 0.5],
                [f for f in fields if f.centroid[0] >= 0.5])

    @staticmethod
    def _pair_measures(a, b) -> tuple[float, float, float]:
        """fields are sorted largest first, so a and b are the largest each side"""
        return (min(a.area, b.area) / max(a.area, b.area), abs(a.centroid[1] - b.centroid[1]),
                abs(a.bbox[1] - b.bbox[1]))
