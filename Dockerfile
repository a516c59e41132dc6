# The hotvideo image: one image for the workers, the collectors, the API and the one-shot trainer.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LOG_FORMAT=json \
    DATA_DIR=/data \
    MODEL_DIR=/models

WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY core ./core
COPY broker ./broker
COPY hotvideo ./hotvideo
COPY ingest ./ingest
COPY stream ./stream
COPY model ./model
COPY sink ./sink
COPY api ./api
COPY schemas ./schemas
RUN pip install -c requirements.lock . && useradd --create-home --uid 10001 hotvideo \
    && mkdir -p /data /models && chown hotvideo /data /models
USER hotvideo

ENTRYPOINT ["hotvideo"]
CMD ["--help"]
