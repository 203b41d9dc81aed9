# syntax=docker/dockerfile:1
FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/bridge ./cmd/bridge

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bridge /bridge
# Numeric, so Kubernetes can verify runAsNonRoot without a passwd lookup
# (distroless's nonroot user is 65532).
USER 65532:65532
EXPOSE 8080 4222
ENTRYPOINT ["/bridge"]
CMD ["run", "--config", "/etc/bridge/config.toml"]
