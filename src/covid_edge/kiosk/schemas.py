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
    labels: list[str]
    positive_label: str
    threshold: float = Field(description="Verdict is the positive label when probability >= it.")
    threshold_rule: str | None = Field(description="How the threshold was chosen.")
    runtime: str = Field(description="TFLite interpreter and its version.")
    threads: int | None


class ModelResponse(ModelInfo):
    disclaimer: str = Field(default=DISCLAIMER)


class ImageInfo(BaseModel):
    format: str | None = Field(description="PNG, JPEG, TIFF or BMP, from the file's bytes.")
    width: int
    height: int


class ClassifyResponse(BaseModel):
    verdict: str = Field(description="The positive label (covid) or the other label (normal).",
                         examples=["covid"])
    probability: float = Field(description="Model probability of the positive label, 0..1.")
    threshold: float
    positive_label: str
    latency_ms: float = Field(description="Interpreter invoke time only.")
    total_ms: float = Field(description="Decode + resize + quantize + invoke.")
    image: ImageInfo
    model: ModelInfo
    runtime: str
    saved_as: str | None = Field(
        default=None, description="File name on the device, only with serve --save-uploads.")
    disclaimer: str = Field(default=DISCLAIMER)


class HealthResponse(BaseModel):
    status: str = Field(examples=["ok"])
    version: str = Field(description="covid-edge version.")
    model: str
    max_upload_bytes: int
    uploads_saved: bool


class KioskFrameIn(BaseModel):
    """One result of `covid-edge kiosk`, as it POSTs it."""
    frame: int
    source: str
    label: str
    captured_at: str
    verdict: str | None = None
    probability: float | None = None
    threshold: float
    positive_label: str = "covid"
    latency_ms: float | None = None
    total_ms: float | None = None
    runtime: str
    model: dict
    interval_s: float = 2.0
    error: str | None = None
    preview_jpeg_base64: str | None = Field(default=None, max_length=4_000_000)


class KioskFrame(KioskFrameIn):
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
