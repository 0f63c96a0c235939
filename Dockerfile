# pixgate images. UNTESTED HERE: no container engine runs on the machines this project is
# built and tested on, so these builds have not been run; docs/deploy.md says the same.
#
#   docker build --target api    -t pixgate-api .     # API node: no torch (~120 MB RSS)
#   docker build --target worker -t pixgate-worker .  # GPU worker: CUDA torch + engine
#
# Both read their settings from PIXGATE_* variables or PIXGATE_CONFIG (a TOML file).

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends fonts-wqy-microhei \
 && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 pixgate
WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src

# --- API node: FastAPI, the database and Redis clients, S3; never torch ------------------
FROM base AS api
RUN pip install ".[s3]"
USER pixgate
ENV PIXGATE_DATA_DIR=/home/pixgate/data PIXGATE_HOST=0.0.0.0 PIXGATE_RUN_WORKERS=false
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["pixgate", "serve", "--no-workers"]

# --- GPU worker: PyTorch's CUDA build first, then the engine -----------------------------
FROM base AS worker
ARG TORCH_INDEX=https://download.pytorch.org/whl/cu124
RUN pip install --index-url "$TORCH_INDEX" torch \
 && pip install ".[engine,s3,sr,c2pa]"
USER pixgate
ENV PIXGATE_DATA_DIR=/home/pixgate/data
# SIGTERM drains: running jobs finish within shutdown_grace_seconds, the rest are requeued
STOPSIGNAL SIGTERM
CMD ["pixgate", "worker"]
