# The gateway image: Node 20, production dependencies only, runs TypeScript through tsx (no build step).
FROM node:20-bookworm-slim
WORKDIR /app
ENV NODE_ENV=production
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund
COPY schema.sql config.yaml ./
COPY src ./src
COPY public ./public
# The data directory (development outbox of emails when no SMTP_URL is set, the embedded database without
# DATABASE_URL) must be the node user's: /app itself is root's.
RUN mkdir -p /app/data && chown node:node /app/data
USER node
EXPOSE 3000
# node directly (not npm) so SIGTERM reaches the process and shutdown is graceful.
CMD ["node", "--max-semi-space-size=32", "--import", "tsx", "src/server.ts"]
