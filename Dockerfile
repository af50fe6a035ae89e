# syntax=docker/dockerfile:1
# One image for every Python process of the platform (api, worker, dashboard, migrate);
# docker-compose.yml picks the command. Two stages so compilers never reach the runtime image.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A compiler for any dependency without a wheel for this platform (e.g. on arm64).
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Metadata first, so a code-only change reuses the cached dependency layer.
COPY pyproject.toml README.md ./
RUN python - <<'PY'
import subprocess, sys, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
subprocess.run([sys.executable, "-m", "pip", "install", *deps], check=True)
PY
COPY . .
RUN pip install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH
RUN groupadd --system --gid 10001 ivr \
    && useradd --system --uid 10001 --gid ivr --create-home --home-dir /home/ivr ivr
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The source tree too: `python worker.py` and `streamlit run dashboard/app.py` take file paths.
COPY --chown=root:root . .
USER ivr
EXPOSE 8000 8501
CMD ["uvicorn", "api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
