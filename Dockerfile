# berth as a container: a sidecar next to the application, or a small pool tier.
# Configured by the environment alone: DATABASE_URL plus BERTH_<SETTING> (see
# doc/deploy.md and doc/config.md). Build: docker build -t berth .

# --- build stage: the README's set-up, without running or testing -------------------
# `./setup.sh build` is the code path of the README's `./setup.sh run` and
# `./setup.sh check` (same package installer, same configure and make), so
# CI, which runs `./setup.sh check`, proves these steps.
FROM debian:12-slim AS build
WORKDIR /src
COPY . .
RUN ./setup.sh build

# --- runtime stage: berth and the libraries it links, nothing else -------------------
FROM debian:12-slim
# Shared libraries of src/berth (readelf -d, mapped with dpkg -S): libevent-2.1.so.7,
# libpq.so.5, libssl.so.3 + libcrypto.so.3, libidn.so.12. ca-certificates: the public CAs
# for DATABASE_URL's sslrootcert=/etc/ssl/certs/ca-certificates.crt. curl is for
# HEALTHCHECK only: slim has no HTTP client, and curl -f fails on a non-2xx answer.
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		libevent-2.1-7 libpq5 libssl3 libidn12 ca-certificates curl \
	&& rm -rf /var/lib/apt/lists/* \
	&& groupadd --system --gid 10001 berth \
	&& useradd --system --uid 10001 --gid berth --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin berth
COPY --from=build /src/src/berth /usr/local/bin/berth

# In a container loopback-only listening is useless: the app container and the
# kubelet reach berth through the pod's or container's address.
ENV BERTH_LISTEN=0.0.0.0:6432 \
	BERTH_HTTP_LISTEN=0.0.0.0:8080
EXPOSE 6432 8080

# Numeric user, so Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# The port follows BERTH_HTTP_LISTEN if it is overridden at run time.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
	CMD curl -fsS -o /dev/null "http://127.0.0.1:${BERTH_HTTP_LISTEN##*:}/health" || exit 1
# SIGTERM: stop accepting, wait for clients up to shutdown_timeout (default 30 s);
# give the container a stop timeout above that (docker stop -t / stop_grace_period /
# terminationGracePeriodSeconds).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/berth"]
