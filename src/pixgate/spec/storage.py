"""`[storage]`: where images live: the local files dir (default) or an S3-compatible bucket."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from pixgate.spec.fields import ENV_NAME, http_base


class StorageSpec(BaseModel):
    """`[storage]`: `backend = "local"` keeps images in `<data_dir>/files`; `backend = "s3"`
    keeps them in `bucket` (AWS S3 or any S3-compatible server: MinIO, SeaweedFS, R2, OSS)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "s3"] = Field(
        default="local", description="local: the data dir's files folder; s3: a bucket."
    )
    bucket: str | None = Field(default=None, min_length=3, max_length=63)
    endpoint_url: str | None = Field(
        default=None,
        description="The S3 API's base URL for a non-AWS server, e.g. http://minio:9000; "
        "default: AWS for `region`.",
    )
    region: str | None = Field(default=None, description="e.g. us-east-1; default: boto3's.")
    prefix: str = Field(
        default="pixgate",
        max_length=200,
        description="Key prefix objects are stored under ({prefix}/{YYYYMMDD}/{name}).",
    )
    access_key: SecretStr | None = None
    secret_key: SecretStr | None = None
    access_key_env: str | None = Field(
        default=None, description="Name of an environment variable holding the access key."
    )
    secret_key_env: str | None = Field(
        default=None, description="Name of an environment variable holding the secret key."
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        default="auto",
        description="path: endpoint/bucket/key (MinIO, SeaweedFS); virtual: bucket.endpoint/key.",
    )
    public_url: str | None = Field(
        default=None,
        description="A public base URL serving the bucket (a CDN): clients get pixgate's "
        "/files links, which redirect to public_url/<key>; unset, clients get presigned S3 "
        "URLs.",
    )

    @field_validator("endpoint_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return http_base("[storage] endpoint_url", value)

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        return http_base("[storage] public_url", value)

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        value = value.strip("/")  # "" is allowed: keys start at the day folder
        if value and any(part in ("", ".", "..") for part in value.split("/")):
            raise ValueError(f"[storage] prefix must be a/b/c segments, not {value!r}")
        return value

    @field_validator("access_key_env", "secret_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.fullmatch(value):
            raise ValueError(f"must be an environment variable name, not {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> StorageSpec:
        if self.backend != "s3":
            return self
        if not self.bucket:
            raise ValueError('[storage] backend = "s3" needs bucket (the bucket\'s name)')
        keys = (self.access_key is not None, self.secret_key is not None)
        envs = (self.access_key_env is not None, self.secret_key_env is not None)
        if any(keys) and any(envs):
            raise ValueError(
                "[storage] sets access_key/secret_key and access_key_env/secret_key_env: "
                "set only one pair"
            )
        if keys[0] != keys[1]:
            missing = "secret_key" if keys[0] else "access_key"
            raise ValueError(f"[storage] sets one of access_key/secret_key: set {missing} too")
        if envs[0] != envs[1]:
            missing = "secret_key_env" if envs[0] else "access_key_env"
            raise ValueError(
                f"[storage] sets one of access_key_env/secret_key_env: set {missing} too"
            )
        return self

    def credentials(self) -> tuple[str, str] | None:
        """(access key, secret key) from the settings or their env vars now; None for
        boto3's default chain (env, ~/.aws, instance role). Raises ValueError naming an
        env var that is not set."""
        if self.access_key is not None and self.secret_key is not None:
            return self.access_key.get_secret_value(), self.secret_key.get_secret_value()
        if self.access_key_env is not None and self.secret_key_env is not None:
            values = []
            for field, name in (
                ("access_key_env", self.access_key_env),
                ("secret_key_env", self.secret_key_env),
            ):
                value = os.environ.get(name)
                if not value:
                    raise ValueError(f"[storage] {field}: environment variable {name} is not set")
                values.append(value)
            return values[0], values[1]
        return None
