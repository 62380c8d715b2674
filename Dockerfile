# syntax=docker/dockerfile:1
# Multi-stage: build a static binary, ship it alone on a distroless base
# as a non-root user. The build flags are the ones TestDockerBuildFlags uses.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/pgpush ./cmd/pgpush

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pgpush /usr/local/bin/pgpush
USER nonroot:nonroot
EXPOSE 3000
ENTRYPOINT ["/usr/local/bin/pgpush"]
CMD ["serve"]
