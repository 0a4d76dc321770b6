"""`seqlab serve RUN [RUN ...]`: an OpenAI-compatible HTTP API and a web chat page for trained runs."""

from __future__ import annotations

import socket
import sys

import typer

from seqlab.cli.options import DeviceOpt
from seqlab.errors import SeqlabError

KEEP_ALIVE_S = 75  # seconds an idle HTTP/1.1 connection stays open (nginx's default)


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    runs: list[str] = typer.Argument(..., help="Run directories to serve; a run's directory name is its model id."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. 127.0.0.1 answers this machine "
                             "only; 0.0.0.0 every network interface (then set an API key)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on (0: a free one; the URL printed says which)."),
    api_key: str = typer.Option(None, "--api-key", envvar="SEQLAB_API_KEY", show_envvar=True,
                                help="Every route but /health and the page's files needs the header "
                                "'Authorization: Bearer KEY'. Default: none, the server is open."),
    max_batch: int = typer.Option(8, "--max-batch", help="Replies each model decodes at once: the rows of its "
                                  "continuous batch (each choice of a request is one), decoded together, a step at "
                                  "a time."),
    max_queue: int = typer.Option(64, "--max-queue", help="Requests each model keeps waiting for a slot; "
                                  "more are answered 429 (try again)."),
    checkpoint: str = typer.Option("best", "--checkpoint", help="Weights to load: best | last."),
    device: str = DeviceOpt,
    compile_step: bool = typer.Option(False, "--compile", help="Transformer LM on a CPU: decode with Inductor-"
                                      "compiled steps, one per batch size 1, 2, 4, ... up to --max-batch, compiled "
                                      "before the server starts (tens of seconds each); beam search too (compiled on "
                                      "its first request). Other models decode eagerly."),
) -> None:
    """Serve trained runs over HTTP until Ctrl-C: OpenAI's /v1/models, /v1/completions (language models) and
    /v1/chat/completions (language models and seq2seq chatbots), streaming or not; /health; and a web chat
    page at /. Decoding options a request leaves out come from the run's `decode` config section."""
    if max_batch < 1 or max_queue < 1:
        raise SeqlabError(f"--max-batch and --max-queue must be >= 1, got {max_batch} and {max_queue}")
    import uvicorn

    from seqlab.device import resolve_device
    from seqlab.serve import create_app, load_models
    from seqlab.serve.registry import model_ids

    model_ids(runs)  # bad runs, a missing device, then a port in use fail before any model loads
    resolve_device(device)
    listener = listen(host, port)
    models = load_models(runs, device=device, checkpoint=checkpoint, max_batch=max_batch, max_queue=max_queue,
                         compile_step=compile_step)
    app = create_app(models, api_key=api_key or None)
    # keep-alive longer than clients' own (httpx, and so the openai client, drop idle connections after 5 s):
    # with equal timeouts a client may send its next request on a connection the server is just closing
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5,
                            timeout_keep_alive=KEEP_ALIVE_S)
    bound_host, bound_port = listener.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    key = "; API key required" if api_key else ""
    print(f"seqlab serve: http://{shown}:{bound_port}/ (models: {', '.join(models)}{key})", file=sys.stderr, flush=True)
    uvicorn.Server(config).run(sockets=[listener])


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or a one-line error saying why not (in use, no such address)."""
    if not 0 <= port <= 65535:
        raise SeqlabError(f"--port must be in [0, 65535], got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as e:
        raise SeqlabError(f"cannot listen on {host!r}: {e.strerror}; give an address such as 127.0.0.1") from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise SeqlabError(f"cannot listen on {host}:{port}: {e.strerror}; choose another --port "
                          "(or stop what is using it)") from None
    return sock
