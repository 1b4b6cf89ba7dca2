# qualia service image. Build: docker build -t qualia .
# Run:  docker run -p 8000:8000 -v qualia-data:/data qualia
# The server refuses to listen beyond loopback until API keys exist (see README, "Serving").
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    QUALIA_HOME=/data

WORKDIR /app

# torch first, in its own layer: it is by far the largest and changes least often.
RUN pip install "torch==2.14.1" "torchvision==0.29.1"

COPY pyproject.toml README.md ./
COPY qualia ./qualia
COPY crawler ./crawler
COPY service ./service
COPY samplesite ./samplesite
RUN pip install .

RUN useradd --create-home --uid 10001 qualia && mkdir -p /data && chown qualia /data
USER qualia
VOLUME ["/data"]
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"

CMD ["qualia", "serve", "--host", "0.0.0.0", "--port", "8000"]
