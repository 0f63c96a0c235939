"""Response models of the Yuecheng, Volcengine and aichat dialects, for `/openapi.json`
only (see `pixgate.api.schemas.documented`): each mirrors the seed's own response shape."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from pixgate.api.schemas import ImageUrl


# --- Yuecheng (seed 000) ------------------------------------------------------------------
class ApiUsage(BaseModel):
    used_images: int
    remaining_images: int | None = Field(description="None: no cap and no price limit.")


class YuechengTimings(BaseModel):
    inference: float


class YuechengResponse(BaseModel):
    success: bool = True
    images: list[ImageUrl]
    model: str
    images_generated: int
    api_usage: ApiUsage
    timings: YuechengTimings
    seed: int


# --- Volcengine (seed 002) ----------------------------------------------------------------
class AlgorithmStatus(BaseModel):
    status_code: int
    status_message: str


class VolcImagesData(BaseModel):
    """CVProcess's `data`, and GetResult's once `status` is `done`."""

    status: str | None = Field(
        default=None, description="GetResult only: in_queue, generating, done, not_found, expired."
    )
    algorithm_base_resp: AlgorithmStatus | None = None
    binary_data_base64: list[str] | None
    image_urls: list[str] | None
    pe_result: str | None = None
    predict_tags_result: str | None = None
    rephraser_result: str | None = None
    request_id: str | None = None
    upscaler: str | None = Field(
        default=None, description="pixgate: what ran for use_sr (lanczos or the SR network)."
    )
    rewriter: str | None = Field(
        default=None, description="pixgate: what wrote rephraser_result (llm or offline)."
    )


class VolcTaskId(BaseModel):
    """CVSync2AsyncSubmitTask's `data`."""

    task_id: str


class VolcResponse(BaseModel):
    """The service layer's answer (`code` 10000 on success)."""

    code: int
    data: VolcImagesData | VolcTaskId | None
    message: str
    request_id: str
    status: int
    time_elapsed: str = Field(description="As Go prints a duration: '10.887140906s'.")


# --- aichat (seed 003) --------------------------------------------------------------------
class AichatImage(BaseModel):
    url: str
    seed: int
    width: int
    height: int


class AichatError(BaseModel):
    code: str | None
    param: str | None
    message: str


class AichatTask(BaseModel):
    task_id: str | None
    status: str
    progress: int
    images: list[AichatImage]
    seed: int | None = None
    number: int | None = None
    images_generated: int | None = None
    inference_seconds: float | None = None
    created_at: str | None = None
    finished_at: str | None = None
    error: AichatError | None


class AichatTaskResponse(BaseModel):
    code: int = 200
    msg: str
    data: AichatTask


class AichatSubmitted(AichatTaskResponse):
    task_id: str = Field(description="The seed: 返回的参数里会有一个task_id.")


class AichatModel(BaseModel):
    model_id: str
    name: str
    description: str
    size_ids: list[str]
    sizes: list[str]
    max_number: int
    max_steps: int
    default_steps: int
    price: str
    loras: list[str]


class AichatModels(BaseModel):
    code: int = 200
    msg: str
    data: list[AichatModel]


class AichatStyle(BaseModel):
    style_id: str
    id: str
    name: str
    template: str
    negative_prompt: str


class AichatStyles(BaseModel):
    code: int = 200
    msg: str
    data: list[AichatStyle]


class AichatSamplers(BaseModel):
    code: int = 200
    msg: str
    data: list[dict[str, Any]]
