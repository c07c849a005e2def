"""The ``ray`` engine: ``finsent serve --engine ray``, N replicas of the same app on Ray Serve.

Each replica (:class:`Replica`) loads the model once and serves the app of
:func:`~finsent_cli.serve.app.create_app` through ``serve.ingress``, so endpoints, error bodies, limits, the
API key, CORS and the page are the local engine's, byte for byte: Ray Serve's HTTP proxy hands every request
to one replica as plain ASGI, which runs the app's middleware (the :class:`~finsent_cli.serve.app.Guard`)
and its lifespan (uvicorn's lifespan code, at replica start and stop), so each replica has its own
micro-batcher, gathering the concurrent requests routed to it, as one ``local`` process does. A replica
takes up to ``MAX_ONGOING`` requests at once (Ray Serve's default of 5 would starve the batcher); the
proxy queues the rest.

Where Ray runs: ``spec.ray_address``, else ``$RAY_ADDRESS``, else a local Ray started for this server,
sized to this machine (one CPU per replica, or ``--threads``; the dashboard off). The model folder must be
readable at the same path on every node (a shared file system), and finsent installed on every node. On a
cluster Ray Serve runs a proxy on ``host:port`` of every node that holds a replica.

Stopping (SIGTERM, Ctrl-C) drains as the local engine does: every replica answers new requests 503
(``status: draining``) while the ones in flight finish, up to ``--drain-timeout``; then the Ray this server
started is shut down, Serve with it, and the port closes. On a cluster it joined, only this app is deleted
(each replica's lifespan stops its batcher; requests that reach Serve's proxy after that get Ray's own 404),
and Serve too when nothing else runs there. The drain reaches every replica through one small actor
(:class:`DrainSignal`): Serve has no broadcast to the replicas of a deployment. A second signal stops
without waiting.

A replica that cannot start (a broken model folder, a backend the folder has no export for) stops the
server before it listens: the replica's one-line reason, exit code 1, Ray shut down.

``/metrics`` is per replica: each replica has its own Prometheus registry and a scrape is answered by
whichever replica the proxy picks, so successive scrapes may see different replicas' counters (a counter
can seem to go back). Summing them would take a call to every replica on each scrape; for numbers across
replicas use Ray Serve's own request metrics (per deployment and replica, from Ray's metrics agent), or
``--engine local --workers N``, whose registry is summed across its processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import replace
from typing import Any

from finsent_cli.errors import FinsentError
from finsent_cli.extras import install_hint
from finsent_cli.serve.engines import Note, ServeSpec, load_error
from finsent_cli.serve.engines.local import load, serving_line, url

APP_NAME = "finsent"
"""The Ray Serve application (one per cluster: it takes the route prefix ``/``)."""
MAX_ONGOING = 256
"""Requests a replica takes at once: enough for its micro-batcher to gather many."""
REPLICA_ERROR = "finsent replica: "
"""Opens the exception a replica raises when it cannot start; the driver finds its reason by it."""
NAMESPACE = "finsent"
"""The Ray namespace of the drain actor (the replicas live in Serve's own)."""
READY_TIMEOUT_S = 60.0
"""How long a local proxy may take to answer ``/health`` once the replicas are up (a hang guard)."""
CLUSTER_READY_TIMEOUT_S = 10.0
"""The same on a joined cluster, whose proxies may not run on this machine at all (then a warning)."""


class DrainSignal:
    """A tiny actor (no CPU) through which the driver tells every replica to drain and learns when each is idle."""

    def __init__(self) -> None:
        self._drain = asyncio.Event()
        self._idle = 0
        self._idle_changed = asyncio.Event()

    async def wait(self) -> None:
        """Return once the drain starts (a replica awaits this from its start)."""
        await self._drain.wait()

    def drain(self) -> None:
        self._drain.set()

    def idle(self) -> None:
        """A replica has nothing in flight any more (and refuses new requests)."""
        self._idle += 1
        self._idle_changed.set()

    async def wait_idle(self, replicas: int) -> int:
        """Return once ``replicas`` replicas are idle (the caller bounds the wait); the count so far."""
        while self._idle < replicas:
            self._idle_changed.clear()
            await self._idle_changed.wait()
        return self._idle


class Replica:
    """One Ray Serve replica: the model loaded once and the app of ``create_app`` around it.

    Wrapped by ``serve.ingress()`` with no app (built at replica start by :meth:`__serve_build_asgi_app__`).

    Args:
        spec: the server's spec (model, backend, device, threads, the app's settings).
        drain_actor: the name of the :class:`DrainSignal` actor (in :data:`NAMESPACE`).

    Raises:
        RuntimeError: the model could not be loaded (the message opens with :data:`REPLICA_ERROR`, one line).
    """

    def __init__(self, spec: ServeSpec, drain_actor: str) -> None:
        try:  # Ray gives each replica its CPUs (one by default); torch would take them all
            self.clf = load(replace(spec, threads=spec.threads or 1))
        except Exception as exc:  # noqa: BLE001 - any failure to load is reported as one line, by the driver
            raise RuntimeError(f"{REPLICA_ERROR}{load_error(spec, exc)}") from None
        import ray

        self.spec, self.signal = spec, ray.get_actor(drain_actor, namespace=NAMESPACE)
        self._watch: asyncio.Task[None] | None = None

    async def __serve_build_asgi_app__(self) -> Any:
        """The app (Ray Serve then runs its lifespan: the batcher starts); the drain watch starts too."""
        from finsent_cli.serve.app import ServeState, create_app

        self.state = ServeState()
        app = create_app(self.clf, self.spec.config, self.state)
        self._watch = asyncio.get_running_loop().create_task(self._drain_when_told())
        return app

    async def _drain_when_told(self) -> None:
        await self.signal.wait.remote()
        self.state.drain()  # from now on the Guard answers 503
        while self.state.in_flight:  # the app's idle event may not exist yet (lifespan not run): poll
            await asyncio.sleep(0.02)
        await self.signal.idle.remote()


def serve(spec: ServeSpec, note: Note, warn: Note) -> None:
    """Serve ``spec`` on Ray Serve until SIGTERM or Ctrl-C (drained first); see the module docstring.

    Args:
        spec: what to serve and how (``workers``: replicas; ``ray_address``: the cluster).
        note: progress lines (the "serving ... at URL" line once the replicas answer).
        warn: warnings.

    Raises:
        FinsentError: Ray is missing, Ray cannot start or be reached, the replicas need more CPUs than this
            machine has (local Ray), a replica could not start (its reason), or the proxy does not answer.
        OSError: the port is in use (local Ray).
    """
    ray, rserve = _import_ray()
    address = spec.ray_address or os.environ.get("RAY_ADDRESS") or None
    per_replica = float(spec.threads or 1)
    port = spec.port
    if address is None:  # a local Ray: its proxy listens here, so a busy port is said now
        cpus, need = os.cpu_count() or 1, per_replica * spec.workers
        if need > cpus:
            raise FinsentError(
                f"--workers {spec.workers}: {spec.workers} replica(s) of {per_replica:g} CPU need {need:g} CPUs; this machine has {cpus}",
                exit_code=2,
            )
        port = _check_port(spec.host, spec.port)
    elif port == 0:  # a cluster: its proxies listen on every node holding a replica; free here, at least
        port = _check_port(spec.host, 0)
    started_ray = _start_ray(ray, address)
    stop = threading.Event()
    signals = _on_signals(stop)
    drain_name = f"finsent-drain-{uuid.uuid4().hex[:12]}"
    try:
        drain = ray.remote(num_cpus=0)(DrainSignal).options(name=drain_name, namespace=NAMESPACE).remote()
        rserve.start(http_options={"host": spec.host, "port": port}, logging_config={"log_level": "WARNING"})
        deployment = rserve.deployment(
            rserve.ingress()(Replica), name="finsent", num_replicas=spec.workers,
            ray_actor_options={"num_cpus": per_replica}, max_ongoing_requests=MAX_ONGOING,
            max_constructor_retry_count=1, graceful_shutdown_wait_loop_s=0.2,
            graceful_shutdown_timeout_s=max(spec.config.drain_timeout_s, 1.0),
        )  # fmt: skip
        try:
            rserve.run(deployment.bind(spec, drain_name), name=APP_NAME, route_prefix="/")
        except Exception as exc:  # noqa: BLE001 - a replica failed: its own line, from the deployment's status
            raise FinsentError(f"--engine ray: {_replica_reason(rserve, exc)}") from None
        # the proxy learns the app's route a moment after the replicas start: answer before saying where
        base = url(_probe_host(spec.host), port)
        if not _wait_ready(base, stop, READY_TIMEOUT_S if started_ray else CLUSTER_READY_TIMEOUT_S):
            if started_ray:
                raise FinsentError(f"--engine ray: the replicas started but Ray Serve's proxy did not answer at {base}")
            warn(f"Ray Serve's proxy does not answer at {base} from here: it runs on the cluster's nodes")
        if not stop.is_set():
            how = (
                f" on Ray Serve with {spec.workers} replica{'s' if spec.workers > 1 else ''} ({per_replica:g} CPU each)"
            )
            note(serving_line(str(spec.model), spec.host, port, how))
        stop.wait()
        _drain(ray, drain, spec, note)
    finally:
        _stop(ray, rserve, started_ray)
        for sig, handler in signals.items():
            signal.signal(sig, handler)


def _import_ray() -> tuple[Any, Any]:
    """``ray`` and ``ray.serve``.

    Raises:
        FinsentError: Ray Serve is not installed (naming the extra).
    """
    try:
        import ray
        from ray import serve as rserve
    except ImportError:
        raise FinsentError(f"--engine ray needs Ray Serve: {install_hint('ray')}", exit_code=2) from None
    return ray, rserve


def _start_ray(ray: Any, address: str | None) -> bool:
    """Join ``address`` or start a local Ray; True when this call started one (so it is ours to stop).

    Raises:
        FinsentError: Ray could not start or be reached.
    """
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {
        "address": address, "include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR,
    }  # fmt: skip
    if address is None:
        kwargs["num_cpus"] = os.cpu_count() or 1
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise FinsentError(
            f"--engine ray: cannot start or reach Ray at {address or 'a local instance'} ({str(exc).splitlines()[0]})"
        ) from None
    for name in ("ray", "ray.serve"):  # finsent prints its own lines; Ray's would garble them
        logging.getLogger(name).setLevel(logging.ERROR)
    return address is None


def _on_signals(stop: threading.Event) -> dict[int, Any]:
    """SIGTERM and SIGINT set ``stop`` (the first) or stop at once (the second); the old handlers, to restore."""
    old = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}

    def handle(sig: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt  # a second signal: no more waiting
        stop.set()

    for sig in old:
        signal.signal(sig, handle)
    return old


def _drain(ray: Any, drain: Any, spec: ServeSpec, note: Note) -> None:
    """Tell every replica to refuse new requests and wait until none has one in flight (up to the drain timeout)."""
    timeout = spec.config.drain_timeout_s
    note(f"draining: new requests get 503 while those in flight finish (up to {timeout:g} s)")
    ray.get(drain.drain.remote())
    try:
        ray.get(drain.wait_idle.remote(spec.workers), timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        note("drain timeout: stopping with request(s) unanswered")


def _stop(ray: Any, rserve: Any, started_ray: bool) -> None:
    """Stop what this server started, once drained.

    A Ray started here is shut down whole (``ray.shutdown``): Serve's controller, proxy and replicas go with
    it and the port closes. Deleting the app first would open a window in which Serve's proxy answers
    Ray's own 404 (no route) instead of the drain's 503; nothing is in flight any more, so the replicas'
    lifespan shutdown has nothing to finish. On a cluster it joined: delete this app (each replica's
    lifespan stops its batcher), and shut Serve down too when nothing else runs there.
    """
    if started_ray:
        ray.shutdown()
        return
    with contextlib.suppress(Exception):  # Serve never started (an early failure) or is gone: nothing to stop
        rserve.delete(APP_NAME)
        if not rserve.status().applications:
            rserve.shutdown()


def _replica_reason(rserve: Any, exc: BaseException) -> str:
    """Why the replicas failed: the line a replica raised (after :data:`REPLICA_ERROR`), found in the
    deployment's status (``serve.run``'s own error only says that it failed), else Ray's first line."""
    texts = [str(exc)]
    with contextlib.suppress(Exception):  # the status is a nicety: Ray's own line below
        app = rserve.status().applications.get(APP_NAME)
        texts += [d.message for d in app.deployments.values()] if app is not None else []
    for text in reversed(texts):
        at = text.rfind(REPLICA_ERROR)
        if at >= 0:
            return text[at + len(REPLICA_ERROR) :].splitlines()[0].strip()
    first = next((line for line in texts[0].splitlines() if line.strip()), type(exc).__name__)
    return f"the replicas failed to start ({first[:300]})"


def _check_port(host: str, port: int) -> int:
    """``port``, or a free one for 0 (Ray Serve needs a real port), once it is known to be free.

    Raises:
        OSError: the address is in use, not this machine's, or not allowed.
    """
    from finsent_cli.serve.server import bind

    sock = bind(host, port)
    try:
        return int(sock.getsockname()[1])
    finally:
        sock.close()  # Ray's proxy binds it next; another process could take it meanwhile (rare)


def _wait_ready(base: str, stop: threading.Event, timeout_s: float) -> bool:
    """Wait until the proxy at ``base`` answers ``/health`` (or a signal stops the server); False after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=5) as res:
                if res.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass  # not listening yet, or no route yet (Ray's 404): try again
        time.sleep(0.1)
    return stop.is_set()


def _probe_host(host: str) -> str:
    """Where this machine reaches a proxy listening on ``host`` (every interface: the loopback)."""
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
