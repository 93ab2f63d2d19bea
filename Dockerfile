# syntax=docker/dockerfile:1

# Build a static binary.
FROM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first, so that a code change does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/ws2sse ./cmd/ws2sse

# Run it on a base with no shell and no package manager, as a non-root user
# (distroless "nonroot" is uid 65532). CA certificates are included, for
# wss:// upstreams.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ws2sse /usr/local/bin/ws2sse
USER nonroot:nonroot
WORKDIR /etc/ws2sse
EXPOSE 8080
# The binary checks itself: there is no curl in the image. It exits 0 when
# the URL answers 200 within the timeout. Change the port here if
# server.listen is not :8080.
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/ws2sse", "-healthcheck", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["/usr/local/bin/ws2sse"]
# Mount the configuration at /etc/ws2sse/ws2sse.toml.
CMD ["-config", "/etc/ws2sse/ws2sse.toml"]
