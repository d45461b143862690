# credential-sidecar container image (docs/install.md, "Container image").
#
#   docker build -t REGISTRY/credential-sidecar:0.1.0 .      (or podman build)
#
# Three stages: `build` compiles the daemon and packs it exactly as npm would publish it; `install`
# installs that tarball with production dependencies only; the runtime stage holds Node.js and
# that install, nothing else: no TypeScript sources, no dev dependencies, no npm cache. It runs as
# a numeric non-root uid, needs no shell, no capability and no writable path (run it with a
# read-only root filesystem), and has no HEALTHCHECK: orchestrators probe the ops listener
# (CREDENTIAL_SIDECAR_OPS_LISTEN or listen.ops) instead. test/deploy/image.test.ts builds this file
# with podman and runs the image that way.

FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json tsconfig.json ./
COPY sidecar/package.json sidecar/package.json
COPY client-sdk/package.json client-sdk/package.json
RUN npm ci --no-audit --no-fund
COPY sidecar sidecar
RUN mkdir /pack && npm pack --workspace sidecar --pack-destination /pack

FROM node:24-bookworm-slim AS install
WORKDIR /app
COPY --from=build /pack /pack
RUN npm install --omit=dev --no-audit --no-fund --no-save /pack/credential-sidecar-*.tgz \
  && rm -rf /root/.npm
# Node's compile cache for the daemon's start-up (docs/operations.md, "Memory and start-up"): one start as
# the runtime uid with the ENTRYPOINT's Node options, a YAML config and a first token from a
# loopback IMDS stub writes V8's code for the bundle, undici's chunk included; at run time it is
# only read (read-only root filesystem: fine; another uid: starts without it).
COPY sidecar/scripts/warm-compile-cache.mjs /warm-compile-cache.mjs
RUN mkdir -m 0755 /app/compile-cache && chown 65532:65532 /app/compile-cache
USER 65532:65532
RUN node /warm-compile-cache.mjs /app/node_modules/credential-sidecar/bin/credential-sidecar.js \
  /app/compile-cache --max-semi-space-size=1 --max-old-space-size=128

FROM node:24-bookworm-slim
ENV NODE_ENV=production NODE_COMPILE_CACHE=/app/compile-cache
COPY --from=install /app/node_modules /app/node_modules
COPY --from=install /app/compile-cache /app/compile-cache
# Numeric, so the kubelet can check runAsNonRoot without resolving a name.
USER 65532:65532
# 7780: token routes (loopback inside the pod); 7781: the ops listener when configured;
# 8443: the admission webhook (`webhook` command).
EXPOSE 7781 8443
# V8 heap flags for a small resident process (docs/operations.md, "Memory and start-up"): a 1 MB young
# generation instead of one that grows to 32 MB, and an old generation that is collected before it
# nears the pod's memory limit (inject writes 192Mi) instead of growing under connection churn.
ENTRYPOINT ["node", "--max-semi-space-size=1", "--max-old-space-size=128", "/app/node_modules/credential-sidecar/bin/credential-sidecar.js"]
