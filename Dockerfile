# videopipe: one image for the API, the CPU workers and (with a CUDA base and torch) the GPU workers.
FROM python:3.11-slim-bookworm

RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg tesseract-ocr-eng espeak-ng make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY videopipe ./videopipe
COPY workers ./workers
COPY api ./api
ARG TORCH_SPEC="torch==2.13.0"
RUN pip install --no-cache-dir "${TORCH_SPEC}" \
    && pip install --no-cache-dir -e ".[scenedetect,perception,postgres,s3,workers,vlm,api,search]"
ENV VIDEOPIPE_DATA_DIR=/data
VOLUME ["/data"]
ENTRYPOINT ["videopipe"]
