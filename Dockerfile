# The Lienthong hub image: one image for `hub serve`, `hub worker` and `hub simulate`.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends xmlsec1 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY hub hub
COPY broker broker
COPY adapters adapters
COPY mappings mappings
COPY schemas schemas
# /app/var: the hub's data folder (LIENTHONG_DATA_DIR), where `hub worker` writes the heartbeat `hub worker-health`
# reads; the code stays root-owned and read-only for the hub's user.
RUN pip install --no-cache-dir . && useradd --system --home /app lienthong \
    && install -d -m 0700 -o lienthong /app/var
USER lienthong
ENTRYPOINT ["hub"]
CMD ["serve", "--host", "0.0.0.0"]
