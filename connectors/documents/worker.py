"""Entry point of a document worker process: `python -m connectors.documents.worker` (see pool.py)."""

from connectors.documents.pool import worker_main

if __name__ == "__main__":
    worker_main()
