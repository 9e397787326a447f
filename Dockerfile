# syntax=docker/dockerfile:1
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin writ

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* && useradd --system --uid 65532 writ
COPY --from=build /src/target/release/writ /usr/local/bin/writ
USER 65532
EXPOSE 8080 9901
ENTRYPOINT ["writ", "run"]
CMD ["--config", "/etc/writ/writ.yaml"]
