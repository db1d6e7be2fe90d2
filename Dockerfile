# syntax=docker/dockerfile:1
FROM node:20-slim AS web
WORKDIR /web
COPY handlers/dashboard/package.json handlers/dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY server server
COPY handlers handlers
COPY realtime realtime
COPY services services
COPY storage storage
COPY integrations integrations
COPY --from=web /web/node_modules handlers/dashboard/node_modules
RUN python -m venv /opt/lifeline && /opt/lifeline/bin/pip install --no-cache-dir .

FROM python:3.12-slim
RUN useradd --system --uid 10001 --home-dir /app lifeline
COPY --from=build /opt/lifeline /opt/lifeline
ENV PATH=/opt/lifeline/bin:$PATH \
    LIFELINE_HOST=0.0.0.0 \
    LIFELINE_PORT=8080 \
    LIFELINE_DATA_DIR=/app/var \
    PYTHONUNBUFFERED=1
WORKDIR /app
USER lifeline
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
STOPSIGNAL SIGTERM
CMD ["lifeline"]
