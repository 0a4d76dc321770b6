"""seqlab.serve: trained runs behind OpenAI's HTTP API, with a web chat page (`seqlab serve`).

    from seqlab.serve import create_app, load_models
    app = create_app(load_models(["runs/chatbot"]), api_key=None)

Each model has a worker (seqlab.serve.worker) that decodes its requests together in a continuous batch
(`seqlab.decode.batching`: the token choice and text pieces of `seqlab.decode.stream`, the one streaming
generator `seqlab generate` and `seqlab chat` use) and passes every reply through the run's reply policy
(seqlab.safety). The pieces: protocol (the request and response models), requests (a request's checks
and decoding options), generation (a choice's tokens to its events), replies (events to OpenAI's
objects), sse, errors, auth, limits, registry (the loaded models), app (the routes), static/ (the page).
"""

from seqlab.serve.app import create_app
from seqlab.serve.registry import ServedModel, load_models

__all__ = ["ServedModel", "create_app", "load_models"]
