"""`POST /v1/images/inspect`: whether an uploaded image carries a valid TC260 label (GB
45438's implicit label) made by this server for exactly these pixels."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field
from starlette.datastructures import FormData, UploadFile

from pixgate.api.bodies import form_body
from pixgate.api.deps import Authenticated, core
from pixgate.api.schemas import documented, request_body
from pixgate.errors import PixgateError, invalid
from pixgate.processing.inputs import MAX_INPUT_BYTES

router = APIRouter(tags=["labels"])

InspectForm = Annotated[
    FormData,
    Depends(
        form_body(
            MAX_INPUT_BYTES + 64 * 1024, max_files=1, max_fields=4, max_part_size=MAX_INPUT_BYTES
        )
    ),
]


class InspectFields(BaseModel):
    """The multipart form: one `file`."""


class LabelReport(BaseModel):
    verdict: Literal["valid", "invalid", "absent"] = Field(
        description="valid: labelled by this server for these pixels; invalid: a label that "
        "does not verify (other pixels, another server); absent: no label."
    )
    reason: str
    label: dict[str, Any] | None = Field(description="The TC260:AIGC object, when present.")


@router.post(
    "/v1/images/inspect",
    summary="Verify an image's implicit AI-generated label (TC260 XMP)",
    openapi_extra=request_body(InspectFields, files=("file",)),
    **documented(LabelReport),
)
async def inspect_image(request: Request, caller: Authenticated, form: InspectForm) -> dict:
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise PixgateError("missing_field", param="file")
    data = await upload.read()
    if not data:
        raise invalid("file", "must be a non-empty image file", "必须是非空的图片文件")
    seen = await core(request).inspect_image(data)
    return {"verdict": seen.verdict, "reason": seen.reason, "label": seen.label}
