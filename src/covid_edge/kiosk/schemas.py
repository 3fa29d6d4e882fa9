"""The JSON API's documents (pydantic models), from which FastAPI writes the OpenAPI schema."""

from __future__ import annotations

from pydantic import BaseModel, Field

from .. import DISCLAIMER


class ErrorResponse(BaseModel):
    error: str = Field(description="What was wrong with the request and what to do about it.")


class ModelInfo(BaseModel):
    name: str | None = Field(description="Model name from the model card.")
    version: str | None = Field(description="Model version from the model card.")
    variant: str = Field(description="float32, float16, dynamic or int8.")
    file: str
    input_shape: list[int]
    input_dtype: str
    labels: list[str] = Field(description="The classes the model answers, in its output order.")
    positive_label: str
    output_kind: str = Field(description="sigmoid (two classes, one output: P(positive)) or "
                                         "softmax (one output per class).")
    decision_rule: str = Field(description="The screening rule: the positive label when its "
                                           "probability >= threshold, else the most probable "
                                           "other class.")
    threshold: float = Field(description="On the calibrated probability scale the API reports: "
                             "the verdict is the positive label when probability >= it.")
    threshold_rule: str | None = Field(description="How the threshold was chosen.")
    runtime: str = Field(description="TFLite interpreter and its version.")
    threads: int | None
    guard: bool = Field(description="Whether pictures that are no chest X-ray are refused "
                                    "(verdict 'not a chest X-ray').")


class ModelResponse(ModelInfo):
    disclaimer: str = Field(default=DISCLAIMER)


class ImageInfo(BaseModel):
    format: str | None = Field(description="PNG, JPEG, TIFF, BMP or DICOM, from the bytes.")
    width: int
    height: int


class ClassifyResponse(BaseModel):
    verdict: str = Field(description="The positive label (covid) when its probability reaches "
                                     "the threshold, else the most probable other class "
                                     "(normal, pneumonia...), or 'not a chest X-ray' (then "
                                     "`reason` says why).",
                         examples=["covid"])
    probability: float | None = Field(
        description="Calibrated probability of the positive label, 0..1; null when the picture "
                    "is not a chest X-ray.")
    probabilities: dict[str, float] | None = Field(
        default=None, description="Every class's calibrated probability (label -> 0..1, in the "
                                  "model's label order); null when the picture is not a chest "
                                  "X-ray.", examples=[{"normal": 0.17, "covid": 0.83}])
    raw_probability: float | None = Field(default=None,
                                          description="The model's own output, uncalibrated.")
    threshold: float = Field(description="On the same scale as probability.")
    positive_label: str
    reason: str | None = Field(default=None,
                               description="Why the picture is not taken for a chest X-ray.")
    latency_ms: float | None = Field(description="Interpreter invoke time only (null when the "
                                                 "picture was refused before inference).")
    total_ms: float = Field(description="Decode + resize + checks + quantize + invoke.")
    image: ImageInfo
    model: ModelInfo
    runtime: str
    saved_as: str | None = Field(
        default=None, description="File name on the device, only with serve --save-uploads.")
    disclaimer: str = Field(default=DISCLAIMER)


class ExplainRefused(ErrorResponse):
    """HTTP 422: a corrupt image (verdict and reason null), or a picture the out-of-distribution
    guard refuses, which gets no heatmap."""
    verdict: str | None = Field(default=None, examples=["not a chest X-ray"])
    reason: str | None = Field(default=None, description="Why the guard refused the picture.")


class ExplainResponse(BaseModel):
    """`?format=json`: the occlusion map's figures and the PNG inline."""
    verdict: str
    probability: float = Field(description="Calibrated P(positive label) of the unhidden image.")
    raw_probability: float
    threshold: float
    positive_label: str
    target: str = Field(description="The class the map shows evidence for: the positive label "
                                    "for a two-class model, the verdict's class for a model of "
                                    "more classes, or the one `for` names.")
    probabilities: dict[str, float] | None = Field(
        default=None, description="Every class's calibrated probability of the unhidden image.")
    method: str = Field(examples=["occlusion sensitivity"])
    score: str = Field(description="What the colours measure: 'log-odds' of the target class "
                                   "(or 'probability' for models without a readable last "
                                   "layer). Red: hiding the region lowered it.")
    base_score: float
    patch: int = Field(description="Side of a hidden square, in model-input pixels.")
    stride: int
    occluder: str
    grid: list[int] = Field(description="Patch positions: rows, columns.")
    inferences: int = Field(description="1 + rows x columns model runs.")
    elapsed_ms: float = Field(description="All the map's inferences and input assembly.")
    ms_per_inference: float
    invoke_ms: float
    max_drop: float = Field(description="Strongest evidence for the target class.")
    max_rise: float = Field(description="Strongest evidence against it.")
    peak_xy: list[int] = Field(description="Where the strongest evidence for it lies, in "
                                           "model-input pixels (x, y).")
    colour_scale: float = Field(description="The score at full red (and, negated, full blue).")
    view: str = Field(description="figure or overlay.")
    png_width: int
    png_height: int
    image_url: str = Field(description="The PNG as a data: URL.")
    total_ms: float = Field(description="Decode + guard + map + drawing.")
    image: ImageInfo
    runtime: str
    disclaimer: str = Field(default=DISCLAIMER)


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])
    version: str = Field(description="covid-edge version.")
    model: str
    max_upload_bytes: int
    uploads_saved: bool


class KioskRecord(BaseModel):
    """One result of `covid-edge kiosk`."""
    frame: int
    source: str
    label: str
    captured_at: str
    verdict: str | None = None
    probability: float | None = None
    probabilities: dict[str, float] | None = Field(
        default=None, description="Every class's calibrated probability.")
    threshold: float
    positive_label: str = "covid"
    labels: list[str] | None = Field(default=None, description="The model's classes.")
    reason: str | None = None
    latency_ms: float | None = None
    total_ms: float | None = None
    runtime: str
    model: dict
    interval_s: float = 2.0
    error: str | None = None


class KioskFrameIn(KioskRecord):
    """A kiosk result as `covid-edge kiosk` POSTs it, with the frame's preview picture."""
    preview_jpeg_base64: str | None = Field(default=None, max_length=4_000_000)


class KioskFrame(KioskRecord):
    seq: int = Field(description="Increases by one with every frame the server receives.")
    received_at: float = Field(description="Server time (Unix seconds) it arrived.")
    preview_url: str | None = None


class KioskLatest(BaseModel):
    seq: int = Field(description="0 until the first frame arrives.")
    server_time: float = Field(description="Unix seconds, to compute the frame's age.")
    frame: KioskFrame | None
    disclaimer: str = Field(default=DISCLAIMER)


class KioskAccepted(BaseModel):
    seq: int
