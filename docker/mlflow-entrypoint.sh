#!/usr/bin/env bash
# Start the MLflow server on the compose PostgreSQL (credentials from the env file) with proxied artifacts.
set -euo pipefail
: "${POSTGRES_USER:?}" "${POSTGRES_PASSWORD:?}" "${POSTGRES_DB:?}"
exec mlflow server \
  --backend-store-uri "postgresql://${POSTGRES_USER}:${POSTGRES_PASSWORD}@postgres:5432/${POSTGRES_DB}" \
  --artifacts-destination /mlartifacts \
  --serve-artifacts \
  --host 0.0.0.0 --port 5000 \
  --workers "${MLFLOW_WORKERS:-2}" \
  --allowed-hosts "${MLFLOW_ALLOWED_HOSTS:-mlflow:5000,localhost:*,127.0.0.1:*}"
