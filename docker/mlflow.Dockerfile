# MLflow tracking server: PostgreSQL backend store, artifacts proxied to a volume (--serve-artifacts).
FROM python:3.11-slim
RUN pip install --no-cache-dir "mlflow==3.17.2" "psycopg[binary]>=3.1"
ENV MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
EXPOSE 5000
COPY docker/mlflow-entrypoint.sh /usr/local/bin/mlflow-entrypoint.sh
ENTRYPOINT ["bash", "/usr/local/bin/mlflow-entrypoint.sh"]
