# Sluice gateway image (also runs the load test's mock upstream).
#   docker build -t sluice .
#   docker run -p 8080:8080 sluice          # serves the simulator model "sim", to anyone
#   docker run -p 8080:8080 -v $PWD/sluice.toml:/etc/sluice/sluice.toml:ro -e OPENAI_API_KEY \
#     sluice python -m gateway --config /etc/sluice/sluice.toml --host 0.0.0.0
#                                           # your models, behind [[auth.keys]]
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PROJECT_ENVIRONMENT=/opt/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

# The same pinned uv as the Makefile, so the image installs exactly uv.lock.
RUN pip install --no-cache-dir uv==0.13.8

WORKDIR /app
# Dependencies first: this layer is reused until pyproject.toml or uv.lock change.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY gateway ./gateway
COPY loadtest ./loadtest
COPY examples ./examples
RUN uv sync --frozen --no-dev

ENV PATH=/opt/venv/bin:$PATH
USER nobody
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]
CMD ["python", "-m", "gateway", "--config", "examples/docker.toml", "--host", "0.0.0.0", "--port", "8080"]
