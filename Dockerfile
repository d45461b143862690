# credential-sidecar: a small image that runs the daemon on Node 24.
# Node 24 runs the TypeScript sources directly (type stripping), so there is no build step.
FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY sidecar/package.json sidecar/package.json
COPY client-sdk/package.json client-sdk/package.json
RUN npm ci --omit=dev --workspace sidecar --include-workspace-root=false --no-audit --no-fund

FROM node:24-bookworm-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY sidecar ./sidecar
# Unprivileged; the token routes listen on loopback inside the pod's network namespace.
USER node
EXPOSE 7780
HEALTHCHECK --interval=10s --timeout=2s CMD ["node", "-e", "fetch('http://127.0.0.1:7780/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "sidecar/bin/credential-sidecar.js"]
CMD ["--config", "/etc/credential-sidecar/config.yaml"]
