# The media relay (python -m mediarelay serve), as it ships: the wheel with the edge and the
# relay compiled by mypyc (hatch_build.py). Build from the repository root:
#   docker build -f docker/relay.Dockerfile .
# The full image has the C compiler mypyc needs; only the wheel leaves it.
FROM python:3.11-bookworm AS wheel
WORKDIR /src
COPY pyproject.toml hatch_build.py README.md ./
COPY cloudpbx cloudpbx
COPY contracts contracts
COPY operator operator
COPY sipedge sipedge
COPY mediarelay mediarelay
COPY portal portal
RUN HATCH_BUILD_HOOKS_ENABLE=1 pip wheel --no-cache-dir --no-deps -w /wheels .

FROM python:3.11-slim-bookworm
# The wheel with its runtime dependencies only (pyproject's dependencies; no dev extras),
# and the unprivileged user it runs as.
RUN --mount=type=bind,from=wheel,source=/wheels,target=/wheels \
    pip install --no-cache-dir /wheels/cloudpbx-*.whl \
    && useradd --system --no-log-init --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent cloudpbx
USER 10001:10001
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# ng control, STUN, metrics; the media range is relay.portRange (30000-39999 by default).
EXPOSE 2223/udp 3478/udp 9061/tcp
ENTRYPOINT ["python", "-m", "mediarelay"]
CMD ["serve", "--help"]
