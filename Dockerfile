# Builds the codelayer binary and a small runtime image (used by docker-compose.yml).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* && useradd --system --home /data codelayer \
    && mkdir /data && chown codelayer /data
COPY --from=build /src/target/release/codelayer /usr/local/bin/codelayer
USER codelayer
ENV CODELAYER_LISTEN=0.0.0.0:3000 CODELAYER_DATA_DIR=/data
EXPOSE 3000
ENTRYPOINT ["codelayer"]
CMD ["serve"]
