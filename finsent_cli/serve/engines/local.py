"""The ``local`` engine: uvicorn on this machine, one process or ``--workers N`` on one port.

One worker: the app runs in this process (:class:`~finsent_cli.serve.server.DrainingServer`).
"""

from __future__ import annotations

from finsent_cli.serve.engines import Note, ServeSpec


def serve(spec: ServeSpec, note: Note, warn: Note) -> None:
    """Serve ``spec`` with uvicorn until SIGTERM or Ctrl-C (drained first)."""
    from finsent_cli.serve.server import DrainingServer, bind, uvicorn_config

    sock = bind(spec.host, spec.port)  # a busy port fails now, before the model loads
    port = sock.getsockname()[1]
    clf = load(spec)
    from finsent_cli.serve.app import ServeState, create_app

    state = ServeState()
    app = create_app(clf, spec.config, state)
    server = DrainingServer(uvicorn_config(app, spec.host, port, spec.log_level), state, spec.config.drain_timeout_s, note=note)
    where = url(spec.host, port)
    note(f"serving {clf.path or spec.model} at {where} (page {where}/, API {where}/v1/predict, docs {where}/docs); Ctrl-C or SIGTERM stops")
    server.run(sockets=[sock])


def load(spec: ServeSpec):  # type: ignore[no-untyped-def]
    """The classifier of ``spec`` (its threads set first)."""
    import torch

    from finsent_cli.core.inference.loading import load_classifier

    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    return load_classifier(spec.model, device=spec.device, backend=spec.backend)


def url(host: str, port: int) -> str:
    """``http://host:port`` (IPv6 addresses in brackets)."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
