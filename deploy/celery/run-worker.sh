#!/usr/bin/env bash
# One Celery worker for the shard steps of `celery_sharded_import_job`; start one (or more) per machine.
#   deploy/celery/run-worker.sh NAME [extra celery worker options]
# Needs: DAGSTER_HOME (with deploy/dagster.yaml: the workers write step events to the same PostgreSQL),
# DAGSTER_PG_* for it, DAGSTER_CELERY_BROKER_URL, BULKOPS_DATABASE_URL (the record store) and
# BULKOPS_VAR_DIR (the failed-rows files) as the run worker sees them, and bulkops installed with the
# `celery` extra. The file to import and Dagster's step outputs (DAGSTER_HOME/storage) must be on a
# filesystem every worker mounts (see docs/deploy.md).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
name="${1:?worker name}"
shift
queue="$(python -c 'import sys, yaml; print(yaml.safe_load(open(sys.argv[1]))["execution"]["config"]["config_source"]["task_default_queue"])' "$here/celery.yaml")"
# one task at a time per worker: a shard is a long task; start more workers for more shards at once
exec dagster-celery worker start -A dagster_celery.app -y "$here/celery.yaml" -q "$queue" -n "$name" -- --concurrency 1 "$@"
