# The web portal (its CDR export today: python -m portal.cdrs). Pure Python: the wheel is
# built without the mypyc hook. Build from the repository root:
#   docker build -f docker/portal.Dockerfile .
FROM python:3.11-slim-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml hatch_build.py README.md ./
COPY cloudpbx cloudpbx
COPY contracts contracts
COPY operator operator
COPY sipedge sipedge
COPY mediarelay mediarelay
COPY portal portal
RUN pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim-bookworm
# The wheel with its runtime dependencies only (pyproject's dependencies; no dev extras),
# and the unprivileged user it runs as.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/cloudpbx-*.whl \
    && useradd --system --no-log-init --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent cloudpbx
USER 10001:10001
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
ENTRYPOINT ["python", "-m", "portal.cdrs"]
CMD ["--help"]
