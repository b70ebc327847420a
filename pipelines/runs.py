"""Launching, watching and terminating Dagster runs through the instance's run launcher, by public API.

Every import and bulk job is a run with its code location's origin: it is listed on its Dagster
job's page, and Terminate in the UI stops it. Two routes to the same kind of run:

- a Dagster webserver serving the instance answers (`$BULKOPS_DAGSTER_GRAPHQL_URL`, else `make
  dev`'s http://127.0.0.1:3000 when it serves the same run storage): the run is submitted over
  GraphQL, waits in the run queue under the instance's concurrency limits, and the daemon starts it;
- otherwise `dagster job launch` hands it to Dagster's run launcher at once, through an instance
  configuration next to the instance's (`$DAGSTER_HOME/launcher/`: the same storage, the default run
  coordinator), as no daemon is there to dequeue it. The command exits once the run is launched;
  its code server runs the run worker, answers Terminate, and exits when the run ends. No process of
  ours outlives the launch. A process launches a few runs this way at a time
  (`BULKOPS_DIRECT_LAUNCHES`, 2): the next launch waits until an earlier run's worker has started,
  so a burst of API requests does not start forty Python processes at once.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from connectors import settings
from pipelines.instance import (
    DEFAULT_GRAPHQL_URL,
    GRAPHQL_URL_ENV,
    code_location,
    graphql_client,
    reap_dead_runs,
    use_local_dagster_home,
)

# the repository name Dagster gives a code location's `Definitions`
REPOSITORY = "__repository__"
# the run tag the UI's job page filters on (`__repository__@<location>`)
REPOSITORY_TAG = ".dagster/repository"
LAUNCHER_DIR = "launcher"
TERMINAL = frozenset({dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED})
# a webserver answers this in milliseconds; anything slower is not `make dev` on this machine
PROBE_TIMEOUT_S = 2.0
LAUNCH_TIMEOUT_S = 600.0
# a launched run whose worker has not started by then no longer holds back the next launch
STARTED_WAIT_S = 120.0
# run statuses before the run worker has started
_STARTING = frozenset({dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.STARTING})
# how often a wait looks whether the processes of the run it waits for are gone
DEAD_CHECK_S = 10.0

_INSTANCE_INFO = "{ instance { info } }"
_TERMINATE = """
mutation Terminate($runId: String!) {
  terminateRun(runId: $runId) {
    __typename
    ... on TerminateRunFailure { message }
    ... on RunNotFoundError { message }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""


def dagster_home(instance: dg.DagsterInstance | None = None) -> Path:
    """INSTANCE's directory, else `$DAGSTER_HOME` (var/dagster with our dagster.yaml when unset)."""
    if instance is not None:
        return Path(instance.root_directory)
    use_local_dagster_home()
    return Path(os.environ["DAGSTER_HOME"]).resolve()


def repository_label() -> str:
    """The value of REPOSITORY_TAG on runs of our code location."""
    return f"{REPOSITORY}@{code_location()}"


def webserver(home: Path, url: str | None = None) -> str | None:
    """The webserver runs go to: URL, else `$BULKOPS_DAGSTER_GRAPHQL_URL`, else `make dev`'s when it
    serves the instance at HOME; None when there is none (runs are launched directly)."""
    explicit = url or os.environ.get(GRAPHQL_URL_ENV)
    if explicit:
        return explicit
    return DEFAULT_GRAPHQL_URL if _serves(DEFAULT_GRAPHQL_URL, home) else None


def _serves(url: str, home: Path) -> bool:
    """Whether the webserver at URL answers and keeps its runs where the instance at HOME does."""
    import httpx

    try:
        response = httpx.post(f"{url}/graphql", json={"query": _INSTANCE_INFO}, timeout=PROBE_TIMEOUT_S)
        info = response.json()["data"]["instance"]["info"]
    except (httpx.HTTPError, ValueError, KeyError, TypeError):
        return False
    if not info:
        return False
    try:
        return _storage_of(yaml.safe_load(info)) == _storage(str(home))
    except Exception:
        # an answer we cannot read, or an instance here we cannot open: not ours to use
        return False


def _storage_of(info: dict[str, Any]) -> tuple[Any, ...]:
    """What tells two instances' storage apart in `DagsterInstance.info_str()`: the storage classes
    (their settings are not shown) and the instance directory the SQLite files live under."""
    artifacts = info.get("local_artifact_storage") or {}
    base = artifacts.get("config", {}).get("base_dir") if isinstance(artifacts, dict) else None
    return (info.get("run_storage"), info.get("event_log_storage"), os.path.realpath(base) if base else None)


@functools.cache
def _storage(home: str) -> tuple[Any, ...]:
    with dg.DagsterInstance.from_config(home) as instance:
        return _storage_of(yaml.safe_load(instance.info_str()))


def launcher_home(home: Path) -> Path:
    """HOME/launcher: the instance's configuration with the default run coordinator (written when it changed)."""
    path = home / LAUNCHER_DIR
    text = files("pipelines").joinpath("dagster.launcher.yaml").read_text()
    config = yaml.safe_load(text.replace("__HOME__", str(home)))
    main = yaml.safe_load((home / "dagster.yaml").read_text()) if (home / "dagster.yaml").exists() else None
    main = dict(main or {})
    for key in ("run_coordinator", "run_queue"):
        main.pop(key, None)
    if isinstance(main.get("concurrency"), dict):
        main["concurrency"] = {k: v for k, v in main["concurrency"].items() if k != "runs"} or None
    main = {k: v for k, v in main.items() if v is not None}
    if any(key in main for key in ("run_storage", "event_log_storage", "schedule_storage")):
        config.pop("storage")
    config.update({k: v for k, v in main.items() if k != "telemetry"})
    # the launch command returns once the run is launched; its code server outlives it until the run ends
    config["code_servers"] = {**(config.get("code_servers") or {}), "wait_for_local_processes_on_shutdown": False}
    workspace = {
        "load_from": [
            {
                "python_module": {
                    "module_name": "pipelines.definitions",
                    "location_name": code_location(),
                    # the code the caller runs, wherever it was imported from
                    "working_directory": str(Path(__file__).resolve().parents[1]),
                }
            }
        ]
    }
    path.mkdir(parents=True, exist_ok=True)
    for name, content in (("dagster.yaml", config), ("workspace.yaml", workspace)):
        rendered = yaml.safe_dump(content, sort_keys=False)
        target = path / name
        if not target.exists() or target.read_text() != rendered:
            # unique per process and thread: the API launches runs from many threads at once
            tmp = target.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
            tmp.write_text(rendered)
            tmp.replace(target)
    return path


def launch_run(
    job_name: str,
    *,
    run_config: dict[str, Any],
    tags: dict[str, str],
    instance: dg.DagsterInstance | None = None,
    url: str | None = None,
    on_failure: Callable[[str, BaseException], None] | None = None,
    still_wanted: Callable[[str], bool] | None = None,
) -> str:
    """Launch a run of JOB_NAME through the instance's run launcher; its run id.

    Args:
        job_name: the Dagster job in our code location.
        run_config, tags: of the run.
        instance: the instance (default `$DAGSTER_HOME`'s).
        url: a webserver to submit to instead of finding one (see `webserver`).
        on_failure: given, a launch with `dagster job launch` returns the run id at once and goes on
            in a thread (which reaps the command), calling ON_FAILURE(run_id, error) if it fails.
        still_wanted: asked with the run id once a background launch has its slot
            (`BULKOPS_DIRECT_LAUNCHES`): False (say, its bulk job was cancelled meanwhile) and no
            run is launched; the caller forgets that run id.

    Raises:
        RuntimeError: the webserver or `dagster job launch` refused the run (its message included).
    """
    home = dagster_home(instance)
    server = webserver(home, url)
    if server:
        return submit_run(server, job_name, run_config=run_config, tags=tags)
    run_id = str(uuid.uuid4())
    if on_failure is None:
        _launch_directly(home, job_name, run_config, tags, run_id)
        return run_id

    def launch() -> None:
        try:
            _launch_directly(home, job_name, run_config, tags, run_id, still_wanted)
        except Exception as exc:
            on_failure(run_id, exc)

    threading.Thread(target=launch, name=f"launch-{run_id}", daemon=True).start()
    return run_id


def submit_run(url: str, job_name: str, *, run_config: dict[str, Any], tags: dict[str, str]) -> str:
    """Submit a run of JOB_NAME to the webserver at URL (queued; its daemon starts it); its run id."""
    import httpx
    from dagster_graphql import DagsterGraphQLClientError

    try:
        return graphql_client(url).submit_job_execution(
            job_name,
            repository_location_name=code_location(),
            repository_name=REPOSITORY,
            run_config=run_config,
            tags=tags,
        )
    except (DagsterGraphQLClientError, httpx.HTTPError) as exc:
        raise RuntimeError(graphql_failure(url, exc)) from exc


@functools.cache
def _launch_slots(count: int) -> threading.BoundedSemaphore:
    """The COUNT launches this process may have under way (one semaphore per setting's value)."""
    return threading.BoundedSemaphore(count)


def _launch_directly(
    home: Path,
    job_name: str,
    run_config: dict[str, Any],
    tags: dict[str, str],
    run_id: str,
    still_wanted: Callable[[str], bool] | None = None,
) -> None:
    """`dagster job launch` RUN_ID, in one of the process's launch slots, held until its worker started."""
    with _launch_slots(settings.direct_launches()):
        if still_wanted is not None and not still_wanted(run_id):
            return
        _launch_command(home, job_name, run_config, tags, run_id)
        _wait_until_started(home, run_id)


def _wait_until_started(home: Path, run_id: str) -> None:
    """Return once RUN_ID's worker has started (or the run ended), or after STARTED_WAIT_S."""
    deadline = time.monotonic() + STARTED_WAIT_S
    with dg.DagsterInstance.from_config(str(home)) as instance:
        while time.monotonic() < deadline:
            run = instance.get_run_by_id(run_id)
            if run is not None and run.status not in _STARTING:
                return
            time.sleep(0.1)


def _launch_command(home: Path, job_name: str, run_config: dict[str, Any], tags: dict[str, str], run_id: str) -> None:
    launcher = launcher_home(home)
    logs = launcher / "logs"
    logs.mkdir(exist_ok=True)
    log = logs / f"{run_id}.log"
    command = [
        sys.executable,
        "-m",
        "dagster",
        "job",
        "launch",
        "-w",
        str(launcher / "workspace.yaml"),
        "-j",
        job_name,
        "--run-id",
        run_id,
        "--config-json",
        json.dumps(run_config),
        "--tags",
        json.dumps(tags),
    ]
    with open(log, "wb") as out:
        # a session of its own: Ctrl-C on the caller terminates the run through Dagster, not by signal
        done = subprocess.run(
            command,
            env={**os.environ, "DAGSTER_HOME": str(launcher)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            timeout=LAUNCH_TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"dagster job launch of {job_name} failed: {_last_error(log, done.returncode)} (log: {log})")
    # the run's own events are in the instance; the file only keeps the code server's chatter
    log.unlink(missing_ok=True)


def _last_error(log: Path, code: int) -> str:
    """The exception line of a failed command's output (the code server's goodbye comes after it)."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in log.read_text(errors="replace").splitlines()]
    errors = [ln for ln in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b.*:", ln)]
    if errors:
        return errors[-1]
    lines = [ln for ln in lines if ln]
    return lines[-1] if lines else f"exit code {code}"


def _script(name: str) -> str:
    """The console script NAME of the Python environment running us."""
    beside = Path(sys.executable).with_name(name)
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def terminate_run(run_id: str, *, instance: dg.DagsterInstance | None = None, url: str | None = None) -> bool:
    """Terminate RUN_ID as the UI's Terminate does; True when Dagster accepted it.

    A queued run is cancelled at once; a started one is interrupted in its worker and ends CANCELED.
    """
    home = dagster_home(instance)
    server = webserver(home, url)
    variables = {"runId": run_id}
    if server:
        data = graphql(server, _TERMINATE, variables)
    else:
        done = subprocess.run(
            [
                _script("dagster-graphql"),
                "--empty-workspace",
                "-t",
                _TERMINATE,
                "-v",
                json.dumps(variables),
            ],
            env={**os.environ, "DAGSTER_HOME": str(launcher_home(home))},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=LAUNCH_TIMEOUT_S,
            check=False,
        )
        try:
            data = json.loads(done.stdout.strip().splitlines()[-1])["data"]
        except (IndexError, ValueError, KeyError, TypeError):
            raise RuntimeError(
                f"dagster-graphql could not terminate run {run_id}: {done.stderr.strip()[-500:]}"
            ) from None
    return data["terminateRun"]["__typename"] == "TerminateRunSuccess"


def run_status(
    run_id: str, *, instance: dg.DagsterInstance | None = None, url: str | None = None
) -> dg.DagsterRunStatus:
    """The status of RUN_ID, from the webserver runs go to, else from the instance."""
    home = dagster_home(instance)
    server = webserver(home, url)
    if server or instance is not None:
        return _status(run_id, server, instance)
    with dg.DagsterInstance.from_config(str(home)) as own:
        return _status(run_id, None, own)


def _status(run_id: str, server: str | None, instance: dg.DagsterInstance | None) -> dg.DagsterRunStatus:
    if server:
        from dagster_graphql import DagsterGraphQLClientError

        try:
            return graphql_client(server).get_run_status(run_id)
        except DagsterGraphQLClientError as exc:
            raise RuntimeError(graphql_failure(server, exc)) from exc
    run = instance.get_run_by_id(run_id) if instance is not None else None
    if run is None:
        raise LookupError(f"no dagster run {run_id}")
    return run.status


def wait_for_run(
    run_id: str,
    *,
    instance: dg.DagsterInstance | None = None,
    url: str | None = None,
    timeout: float | None = None,
    poll: float = 0.1,
) -> dg.DagsterRunStatus:
    """Poll until RUN_ID ends (every POLL seconds: one status query each); SUCCESS, FAILURE or CANCELED.

    Raises:
        TimeoutError: still going after TIMEOUT seconds (None: wait as long as it takes).
        RuntimeError: the webserver cannot be reached or refused the question (its message included).
    """
    home = dagster_home(instance)
    server = webserver(home, url)
    deadline = None if timeout is None else time.monotonic() + timeout
    own = None if server or instance is not None else dg.DagsterInstance.from_config(str(home))
    checked = time.monotonic()
    try:
        while True:
            status = _status(run_id, server, instance or own)
            if status in TERMINAL:
                return status
            if not server and time.monotonic() - checked > DEAD_CHECK_S:
                # a worker that died with its code server is noticed by nobody else without a daemon
                checked = time.monotonic()
                reap_dead_runs(instance or own, run_ids=[run_id])
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {run_id} is still {status.value} after {timeout:.0f} s")
            time.sleep(poll)
    finally:
        if own is not None:
            own.dispose()


def graphql(url: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    """The data of a GraphQL operation the client has no method for, posted as plain HTTP to URL/graphql."""
    import httpx

    try:
        response = httpx.post(f"{url.rstrip('/')}/graphql", json={"query": query, "variables": variables}, timeout=60)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise RuntimeError(graphql_failure(url, exc)) from exc
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(
            f"the Dagster webserver at {url} answered: {body['errors'][0].get('message', body['errors'][0])}"
        )
    return body["data"]


def graphql_failure(url: str, exc: BaseException) -> str:
    """What went wrong talking to the webserver, without the GraphQL query the client's message holds."""
    import httpx

    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    root = chain[-1]
    if any(isinstance(c, OSError | httpx.TransportError) for c in chain):
        why = root.strerror if isinstance(root, OSError) and root.strerror else str(root).splitlines()[0]
        return f"cannot reach the Dagster webserver at {url}: {why}; start it (make dev) or set {GRAPHQL_URL_ENV}"
    text = str(root if root is not exc else exc).split(" during execution of query", 1)[0]
    return f"the Dagster webserver at {url} answered: {text.splitlines()[0] if text.strip() else type(root).__name__}"


def run_page(run_id: str, url: str | None = None) -> str:
    """The run's page in the UI of the webserver at URL (default as for `webserver`)."""
    from pipelines.instance import graphql_url

    return f"{graphql_url(url).rstrip('/')}/runs/{run_id}"
