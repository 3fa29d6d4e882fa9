"""The web app of `covid-edge serve`: upload and prediction pages, the live kiosk page, and the
same through a versioned JSON API (/api/v1, OpenAPI schema at /api/v1/openapi.json).

Uploads are read with a hard size limit (bodies over SPOOL_BYTES go to an anonymous temporary
file, so thirty uploads in flight do not hold thirty copies in memory), decoded off the event
loop (at most DECODE_WORKERS at once, each within covid_edge.limits' memory budget), classified
under the shared classifier's lock, and dropped: nothing is kept unless `save_uploads` names a
folder (upload_store: a quota, one copy per sha256). Slow or stalled clients, bursts and log
floods are handled by http_limits. Everything the pages need (CSS, JS) ships in the package: a kiosk
is often offline.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import anyio
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import ClientDisconnect

from .. import DISCLAIMER, __version__
from .feed import KioskFeed
from .http_limits import (BODY_IDLE_TIMEOUT_S, BODY_TOTAL_TIMEOUT_S, DEFAULT_MAX_INFLIGHT,
                          InflightLimit, note)
from .http_security import SecurityHeaders, TokenGate
from .upload_store import StoreSettings, UploadStore
from ..edge_runtime.guard import NOT_CHEST_XRAY
from ..edge_runtime.explain import (DEFAULT_DISPLAY, VERDICT, count_inferences, default_patch,
                                    default_stride)
from .inference import (ACCEPTED_MEDIA_TYPES, ACCEPTED_TEXT, CorruptImage, ExplainResult,
                        ImageResult, SharedClassifier, UnsupportedImage, lossless_png)
from .schemas import (ClassifyResponse, ErrorResponse, ExplainRefused, ExplainResponse,
                      HealthResponse, KioskAccepted, KioskFrame, KioskFrameIn, KioskLatest,
                      ModelResponse)

API = "/api/v1"
DEFAULT_MAX_UPLOAD_MB = 20
# Multipart boundaries and part headers around the file; generous, the file itself is checked
# exactly after parsing.
MULTIPART_OVERHEAD_BYTES = 64 * 1024
# Upload bodies larger than this are spooled to an anonymous temporary file (unlinked at once:
# no name on disk, gone when closed) instead of being held in memory.
SPOOL_BYTES = 1024 * 1024
DECODE_WORKERS = 2
# An explanation holds the shared model for ~170 inferences (0.5 s here, seconds on a Pi): one
# at a time, so a burst of them cannot take every worker thread from plain classifications.
EXPLAIN_WORKERS = 1
UPLOAD_FIELD = "file"
PACKAGE_DIR = Path(__file__).resolve().parent
# The page's own uploads are never cached by the browser: an X-ray is personal data.
NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class ServerSettings:
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    save_uploads: Path | None = None
    store: StoreSettings = StoreSettings()
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    # When set, every page and API call needs it (http_security.TokenGate).
    token: str | None = None

    @property
    def max_upload_mb(self) -> float:
        return self.max_upload_bytes / (1024 * 1024)


class ApiError(Exception):
    def __init__(self, status_code: int, message: str, filename: str | None = None,
                 **details):
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.filename = filename  # named on the page; the API client knows what it sent
        self.details = details  # more fields of the JSON answer


class _UploadTooLarge(Exception):
    pass


class _ClientGone(Exception):
    """The client closed the connection mid-request: nobody to answer."""


class _SpoolingMultiPartParser(MultiPartParser):
    """Starlette's parser, spooling file parts over SPOOL_BYTES to a temporary file."""

    spool_max_size = SPOOL_BYTES


@dataclass
class Upload:
    """An uploaded file: its name as sent, and its bytes as a file object (in memory or
    spooled); close it when done."""

    filename: str
    file: object
    size: int

    def close(self) -> None:
        self.file.close()


def create_app(shared: SharedClassifier, settings: ServerSettings | None = None,
               feed: KioskFeed | None = None) -> FastAPI:
    settings = settings or ServerSettings()
    feed = feed or KioskFeed()
    templates = Jinja2Templates(directory=str(PACKAGE_DIR / "templates"))
    templates.env.filters["percent"] = format_percent
    model = shared.model_info()
    spec = shared.classifier.spec
    patch = default_patch(min(spec.height, spec.width))
    explain_cost = count_inferences(spec.height, spec.width, patch, default_stride(patch))

    app = FastAPI(
        title="covid-edge kiosk API",
        version=__version__,
        summary="Chest X-ray COVID-19 screening classifier on an edge device.",
        description=(f"{DISCLAIMER}\n\nUpload limit: {settings.max_upload_mb:g} MB per image "
                     f"({ACCEPTED_TEXT}). Uploads are not stored unless the server was "
                     "started with --save-uploads. Errors are JSON `{\"error\": ...}` with "
                     "400 (malformed request), 403, 404, 413 (too large), 415 (not an accepted "
                     "kind of image) or 422 (corrupt image, invalid document)."),
        openapi_url=f"{API}/openapi.json",
        # Swagger UI and ReDoc load their scripts from a CDN, which an offline kiosk cannot reach.
        docs_url=None, redoc_url=None,
    )
    app.state.shared = shared
    app.state.settings = settings
    app.state.feed = feed
    store = (UploadStore(settings.save_uploads, settings.store)
             if settings.save_uploads is not None else None)
    # Outermost first: the token before anything else, then the in-flight limit.
    app.add_middleware(InflightLimit, limit=settings.max_inflight)
    app.add_middleware(SecurityHeaders)
    if settings.token:
        app.add_middleware(TokenGate, token=settings.token)
    app.mount("/static", StaticFiles(directory=str(PACKAGE_DIR / "static")), name="static")

    def page_context(**extra) -> dict:
        return {"model": model, "disclaimer": DISCLAIMER, "version": __version__,
                "max_upload_bytes": settings.max_upload_bytes,
                "max_upload_mb": f"{settings.max_upload_mb:g}",
                "accept": ",".join(ACCEPTED_MEDIA_TYPES + (".tif", ".tiff", ".dcm")),
                "accepted_text": ACCEPTED_TEXT,
                "uploads_saved": settings.save_uploads is not None,
                "not_chest_xray": NOT_CHEST_XRAY, **extra}

    async def classify_request(request: Request, preview: bool
                               ) -> tuple[ImageResult, str, str | None]:
        """Read, classify and (only when asked) save the request's upload, with the preview
        picture when the answer shows one. Raises ApiError."""
        upload = await read_upload(request, settings.max_upload_bytes)
        filename = upload.filename
        try:
            try:
                result = await anyio.to_thread.run_sync(
                    shared.classify_bytes, upload.file, filename, preview,
                    limiter=_decode_limiter(request.app))
            except UnsupportedImage as exc:
                raise ApiError(415, str(exc), filename) from None
            except CorruptImage as exc:
                raise ApiError(422, str(exc), filename) from None
            saved_as = None
            if store is not None:
                saved_as = await anyio.to_thread.run_sync(store.save, upload.file, result)
        finally:
            upload.close()
        return result, filename, saved_as

    # -- pages -----------------------------------------------------------------------------

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def upload_page(request: Request):
        return templates.TemplateResponse(request, "upload.html", page_context())

    @app.get("/classify", include_in_schema=False)
    async def classify_page_reload():
        return RedirectResponse("/", status_code=303)

    @app.post("/classify", response_class=HTMLResponse, include_in_schema=False)
    async def classify_page(request: Request):
        try:
            result, filename, saved_as = await classify_request(request, preview=True)
        except ApiError as exc:
            message = f"{exc.filename}: {exc.message}" if exc.filename else exc.message
            return templates.TemplateResponse(request, "upload.html",
                                              page_context(error=message),
                                              status_code=exc.status_code, headers=NO_STORE)
        prediction = result.prediction
        preview = base64.b64encode(result.preview_jpeg).decode("ascii")
        outcome = _outcome(prediction.verdict, shared.classifier.positive_label,
                           shared.classifier.labels)
        # The page sends the model's own input pixels (lossless, ~40 kB) back for the heatmap:
        # the same map as for the upload itself, and nothing has to be kept on the server.
        explain_input = None
        if outcome != "rejected" and result.model_pixels is not None:
            explain_input = "data:image/png;base64," + base64.b64encode(
                lossless_png(result.model_pixels)).decode("ascii")
        # The heatmap the page asks for shows the evidence for explain's default class.
        target = (prediction.verdict if len(model["labels"]) > 2 and outcome != "rejected"
                  else model["positive_label"])
        return templates.TemplateResponse(request, "prediction.html", page_context(
            prediction=prediction, filename=filename, image=result.image_info(),
            preview_url=f"data:image/jpeg;base64,{preview}", saved_as=saved_as,
            outcome=outcome, explain_input=explain_input, explain_cost=explain_cost,
            explain_target=target, explain_against=against_label(model["labels"], target)),
            headers=NO_STORE)

    @app.get("/kiosk", response_class=HTMLResponse, include_in_schema=False)
    async def kiosk_page(request: Request):
        return templates.TemplateResponse(request, "kiosk.html", page_context())

    # -- API -------------------------------------------------------------------------------

    error_responses = {code: {"model": ErrorResponse, "description": text} for code, text in (
        (400, "No file, or not a multipart/form-data request"),
        (413, f"Upload over {settings.max_upload_mb:g} MB"),
        (415, f"Not a {ACCEPTED_TEXT} image, or one of a kind covid-edge does not read "
              "(several pictures in one file, a 12-bit JPEG, a DICOM encoding without a "
              "decoder)"),
        (422, "Corrupt, truncated or oversized (pixels) image"))}

    @app.get(f"{API}/health", response_model=HealthResponse, tags=["service"])
    async def health():
        """Liveness: the server is up and its model is loaded."""
        return HealthResponse(status="ok", version=__version__,
                              model=f"{model['name']} {model['version']} ({model['variant']})",
                              max_upload_bytes=settings.max_upload_bytes,
                              uploads_saved=settings.save_uploads is not None)

    @app.get(f"{API}/model", response_model=ModelResponse, tags=["service"])
    async def model_description():
        """The model answering: name and version from its model card, threshold, runtime."""
        return ModelResponse(**model)

    @app.post(
        f"{API}/classify", response_model=ClassifyResponse, tags=["classify"],
        responses=error_responses,
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "required": [UPLOAD_FIELD], "properties": {
                UPLOAD_FIELD: {"type": "string", "format": "binary", "description": (
                    f"A chest X-ray: {ACCEPTED_TEXT}, at most "
                    f"{settings.max_upload_mb:g} MB.")}}}}}}})
    async def classify_api(request: Request):
        """Classify one chest X-ray sent as multipart/form-data in the field `file`, e.g.
        `curl -F file=@chest.png http://127.0.0.1:8000/api/v1/classify`."""
        result, filename, saved_as = await classify_request(request, preview=False)
        prediction = result.prediction
        return JSONResponse(ClassifyResponse(
            verdict=prediction.verdict, probability=prediction.probability,
            probabilities=getattr(prediction, "probabilities", None),
            raw_probability=getattr(prediction, "raw_probability", None),
            threshold=prediction.threshold, positive_label=shared.classifier.positive_label,
            reason=getattr(prediction, "reason", None),
            latency_ms=prediction.latency_ms, total_ms=prediction.total_ms,
            image=result.image_info(), model=model, runtime=prediction.runtime,
            saved_as=saved_as).model_dump(), headers=NO_STORE)

    explain_description = (
        "Where the model looked: an occlusion-sensitivity heatmap of one chest X-ray, as "
        "`covid-edge explain` draws it (docs/explain.md). Red: the region pushed the model "
        "toward the target class; blue: away from it. The target is the positive label for a "
        "two-class model and the verdict's class for a model of more classes; `for=covid` "
        "(any label) or `for=verdict` chooses it. It costs "
        f"{explain_cost} inferences, so it takes far longer than /classify (about 0.5 s on a "
        "desktop CPU, seconds on a Raspberry Pi). `view=overlay` returns the heatmap over the "
        "X-ray alone, without title, colour bar and disclaimer (for a page with its own "
        "legend). `format=json` returns the figures with the PNG as a data: URL; the PNG "
        "answer carries the main figures in X-Explanation-* headers. Pictures the "
        "out-of-distribution guard refuses get 422 with its reason, no heatmap. e.g. "
        "`curl -F file=@chest.png -o heatmap.png http://127.0.0.1:8000/api/v1/explain`")

    @app.post(
        f"{API}/explain", tags=["classify"], response_class=Response,
        summary="Explain", description=explain_description,
        responses={200: {"model": ExplainResponse,
                         "description": "The heatmap as a PNG (default), or its figures with "
                                        "the PNG inline (format=json).",
                         "content": {"image/png": {"schema": {"type": "string",
                                                              "format": "binary"}}}},
                   **{code: error_responses[code] for code in (400, 413, 415)},
                   422: {"model": ExplainRefused, "description": (
                       "Corrupt image, or not a chest X-ray (the guard's reason is given; no "
                       "heatmap)")}},
        openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {
            "schema": {"type": "object", "required": [UPLOAD_FIELD], "properties": {
                UPLOAD_FIELD: {"type": "string", "format": "binary", "description": (
                    f"A chest X-ray: {ACCEPTED_TEXT}, at most "
                    f"{settings.max_upload_mb:g} MB.")}}}}}}})
    async def explain_api(request: Request, format: Literal["png", "json"] = "png",
                          view: Literal["figure", "overlay"] = "figure",
                          target: str | None = Query(
                              None, alias="for", description=(
                                  "Whose evidence: 'verdict' or a label "
                                  f"({', '.join(model['labels'])})."))):
        if target is not None and target != VERDICT and target not in model["labels"]:
            raise ApiError(422, f"for={target}: choose {VERDICT} or one of "
                                f"{', '.join(model['labels'])}")
        upload = await read_upload(request, settings.max_upload_bytes)
        filename = upload.filename
        try:
            result: ExplainResult = await anyio.to_thread.run_sync(
                shared.explain_bytes, upload.file, filename, view, DEFAULT_DISPLAY, target,
                limiter=_limiter(request.app, "explain_limiter", EXPLAIN_WORKERS))
        except UnsupportedImage as exc:
            raise ApiError(415, str(exc), filename) from None
        except CorruptImage as exc:
            raise ApiError(422, str(exc), filename) from None
        finally:
            upload.close()
        if result.refused:
            check = result.check
            raise ApiError(422, f"{NOT_CHEST_XRAY}: {check.reason}. No heatmap: the model only "
                                "knows chest X-rays.", filename, verdict=check.verdict,
                           reason=check.reason)
        explanation = result.explanation
        figures = explanation.figures()
        if format == "json":
            png_width, png_height = _png_size(result.png)
            return JSONResponse(ExplainResponse(
                **{key: figures[key] for key in ExplainResponse.model_fields if key in figures},
                positive_label=explanation.positive_label, view=view, png_width=png_width,
                png_height=png_height, total_ms=result.total_ms, image=result.image_info(),
                runtime=result.check.runtime,
                image_url="data:image/png;base64," + base64.b64encode(result.png).decode("ascii"),
            ).model_dump(), headers=NO_STORE)
        return Response(result.png, media_type="image/png", headers={
            **NO_STORE,
            "X-Explanation-Verdict": explanation.verdict,
            "X-Explanation-Target": explanation.target,
            "X-Explanation-Probability": f"{explanation.probability:.6g}",
            "X-Explanation-Score": explanation.score,
            "X-Explanation-Inferences": str(explanation.inferences),
            "X-Explanation-Elapsed-Ms": f"{explanation.elapsed_ms:.1f}",
            "X-Explanation-Colour-Scale": f"{explanation.colour_scale:.4g}",
            "X-Disclaimer": DISCLAIMER})

    @app.get(f"{API}/kiosk/latest", response_model=KioskLatest, tags=["kiosk"])
    async def kiosk_latest():
        """The newest frame `covid-edge kiosk` sent; the /kiosk page polls this."""
        entry = feed.latest()
        frame = None
        if entry is not None:
            frame = KioskFrame(**entry.record, seq=entry.seq,
                               received_at=entry.received_at,
                               preview_url=(f"{API}/kiosk/frames/{entry.seq}/preview.jpg"
                                            if entry.preview_jpeg else None))
        latest = KioskLatest(seq=entry.seq if entry else 0, server_time=time.time(), frame=frame)
        return JSONResponse(latest.model_dump(), headers=NO_STORE)

    @app.post(f"{API}/kiosk/frames", response_model=KioskAccepted, status_code=201,
              tags=["kiosk"], responses={403: {"model": ErrorResponse}})
    async def kiosk_frame(request: Request, frame: KioskFrameIn):
        """For `covid-edge kiosk` on this device: publish one result to the /kiosk page.
        Accepted from loopback addresses only, so nobody on the network can put a verdict on
        the kiosk's screen."""
        if not _is_loopback(request):
            raise ApiError(403, "kiosk frames are accepted from this device only "
                                "(run covid-edge kiosk on the device itself)")
        preview = None
        if frame.preview_jpeg_base64:
            try:
                preview = base64.b64decode(frame.preview_jpeg_base64, validate=True)
            except binascii.Error:
                raise ApiError(422, "preview_jpeg_base64 is not base64") from None
            if not preview.startswith(b"\xff\xd8\xff"):
                raise ApiError(422, "preview_jpeg_base64 is not a JPEG")
        record = frame.model_dump(exclude={"preview_jpeg_base64"})
        return KioskAccepted(seq=feed.publish(record, preview))

    @app.get(f"{API}/kiosk/frames/{{seq}}/preview.jpg", tags=["kiosk"],
             response_class=Response, responses={404: {"model": ErrorResponse}})
    async def kiosk_preview(seq: int):
        """The picture of frame `seq`, while it is the newest."""
        entry = feed.latest()
        if entry is None or entry.seq != seq or entry.preview_jpeg is None:
            raise ApiError(404, f"frame {seq} is not the newest frame any more")
        return Response(entry.preview_jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=600"})

    # -- errors ----------------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        headers = {"Connection": "close"} if exc.status_code in (408, 413) else None
        return JSONResponse({"error": exc.message, **exc.details}, status_code=exc.status_code,
                            headers=headers)

    @app.exception_handler(_ClientGone)
    async def client_gone(request: Request, exc: _ClientGone):
        # The answer goes nowhere; one log line per minute says it happens, no traceback.
        note("client-disconnect", "clients closed the connection mid-upload")
        return Response(status_code=400, headers={"Connection": "close"})

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(str(part) for part in error.get('loc', ()))}: "
                             f"{error.get('msg')}" for error in exc.errors())
        return JSONResponse({"error": f"invalid request: {problems}"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": message}, status_code=exc.status_code,
                                headers=getattr(exc, "headers", None))
        return templates.TemplateResponse(request, "error.html",
                                          page_context(error=f"{exc.status_code}: {message}"),
                                          status_code=exc.status_code)

    return app


async def read_upload(request: Request, max_bytes: int) -> Upload:
    """The multipart field `file`, refusing more than `max_bytes` before reading it all, and
    a body that stalls (BODY_IDLE_TIMEOUT_S without data) or takes longer than
    BODY_TOTAL_TIMEOUT_S. Raises ApiError 400/408/413/415, or _ClientGone."""
    content_type = request.headers.get("content-type", "")
    if not content_type.lower().startswith("multipart/form-data"):
        raise ApiError(415, "send the image as multipart/form-data in a field named "
                            f"'{UPLOAD_FIELD}' (e.g. curl -F {UPLOAD_FIELD}=@chest.png URL)")
    too_large = ApiError(413, f"the upload is over the {max_bytes / (1024 * 1024):g} MB limit; "
                              "downscale the image or save it as JPEG")
    body_limit = max_bytes + MULTIPART_OVERHEAD_BYTES
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > body_limit:
        raise too_large

    async def limited_body():
        received = 0
        deadline = anyio.current_time() + BODY_TOTAL_TIMEOUT_S
        chunks = request.stream().__aiter__()
        while True:
            wait = min(BODY_IDLE_TIMEOUT_S, deadline - anyio.current_time())
            try:
                with anyio.fail_after(max(wait, 0.001)):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except TimeoutError:
                note("slow-upload", "uploads stalled or too slow: answered 408")
                raise ApiError(408, "the upload was too slow or stalled; send it again") \
                    from None
            received += len(chunk)
            if received > body_limit:
                raise _UploadTooLarge
            yield chunk

    parser = _SpoolingMultiPartParser(request.headers, limited_body(), max_files=1,
                                      max_fields=8)
    try:
        form = await parser.parse()
    except _UploadTooLarge:
        raise too_large from None
    except ClientDisconnect:
        raise _ClientGone from None
    except MultiPartException as exc:
        raise ApiError(400, f"malformed upload: {exc.message}") from None
    upload = form.get(UPLOAD_FIELD)
    # Only the file is kept: anything else the form held is closed now.
    for _, value in form.multi_items():
        if isinstance(value, UploadFile) and value is not upload:
            await value.close()
    if not isinstance(upload, UploadFile):
        raise ApiError(400, f"no file in the upload: send it in a field named "
                            f"'{UPLOAD_FIELD}'")
    size = upload.file.seek(0, 2)
    upload.file.seek(0)
    if size > max_bytes or not size:
        upload.file.close()
        if size:
            raise too_large
        raise ApiError(400, "the uploaded file is empty")
    # Some browsers on Windows send the full path; only the name is shown back.
    name = Path((upload.filename or "upload").replace("\\", "/")).name
    return Upload(name, upload.file, size)


def format_percent(value: float | None) -> str:
    """0.912 -> '91.2 %', 0.0076 -> '0.76 %', 0.00012 -> '0.012 %': small numbers keep two
    significant digits, because the screening threshold itself can be under 1 %."""
    if value is None:
        return "-"
    percent = value * 100.0
    if percent >= 10:
        return f"{percent:.1f} %"
    if percent >= 1:
        return f"{percent:.2f} %"
    if percent >= 0.01:
        return f"{percent:.2g} %"
    return "< 0.01 %"


def _outcome(verdict: str, positive_label: str, labels=()) -> str:
    """The page's colour scheme: positive, negative (normal, or the other class of a
    two-class model), finding (another class of a model with more: pneumonia is not a calm
    green), or rejected (not a chest X-ray)."""
    if verdict == NOT_CHEST_XRAY:
        return "rejected"
    if verdict == positive_label:
        return "positive"
    return "finding" if len(labels) > 2 and verdict != "normal" else "negative"


def _decode_limiter(app: FastAPI) -> anyio.CapacityLimiter:
    return _limiter(app, "decode_limiter", DECODE_WORKERS)


def _limiter(app: FastAPI, name: str, workers: int) -> anyio.CapacityLimiter:
    # Made on first use, inside the running event loop as anyio wants; no await between the
    # check and the assignment, so two requests cannot both make one.
    limiter = getattr(app.state, name, None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(workers)
        setattr(app.state, name, limiter)
    return limiter


def _png_size(png: bytes) -> tuple[int, int]:
    # Width and height are the first fields of the IHDR chunk, right after the signature.
    return int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")


def against_label(labels: list[str], target: str) -> str:
    """What evidence against `target` points to: the other class of a two-class model, else
    "not <target>" (as explain.against says it)."""
    others = [label for label in labels if label != target]
    return others[0] if len(others) == 1 else f"not {target}"


def _is_loopback(request: Request) -> bool:
    host = request.client.host if request.client else ""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"
