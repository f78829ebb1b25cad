# ades: the server, the status consumer and Dask workers all run from this one image (see docker-compose.yml).
# Build: docker build -t ades:0.1.0 .
FROM python:3.11.13-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY ades ./ades
RUN python -m venv /opt/ades && /opt/ades/bin/pip install --no-cache-dir --disable-pip-version-check .

FROM python:3.11.13-slim-bookworm
# nodejs: cwltool evaluates the JavaScript expressions of CWL packages (InlineJavascriptRequirement) with it;
# bubblewrap: the sandbox every job tool runs in (ADES_SANDBOX=bwrap).
RUN apt-get update \
    && apt-get install -y --no-install-recommends nodejs bubblewrap \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin ades \
    && mkdir -p /home/ades/data \
    && chown ades:ades /home/ades/data
COPY --from=build /opt/ades /opt/ades
COPY cwl /opt/ades/share/cwl
# The data dir is created here, owned by ades, so a named volume mounted on it starts with that owner.
ENV PATH=/opt/ades/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    ADES_DATA_DIR=/home/ades/data \
    ADES_CACHE_DIR=/home/ades/.cache/ades
USER ades
WORKDIR /home/ades
EXPOSE 5000
ENTRYPOINT ["ades"]
# Listening on every interface needs auth: give ADES_AUTH_TOKENS_FILE (a mounted secret) or ADES_AUTH_JWT_KEY at run
# time, or `ades serve` refuses to start (docker-compose.yml and infra/ades.yaml do).
CMD ["serve", "--host", "0.0.0.0", "--port", "5000"]
