"""Connectors talk to the world (files, documents, databases, HTTP) and know nothing of Dagster."""

import os
import sys

# Arrow's allocator for the process, chosen before anything imports pyarrow (Arrow reads this once).
# pyarrow's own default, mimalloc, keeps the memory it freed: a Parquet export's resident memory grew
# by about 100 MB over a million rows while Arrow never held more than 15 MB. A value already set wins.
if sys.platform != "win32":  # pyarrow's Windows wheels have no jemalloc
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "jemalloc")
