"""``/v1``: OpenAI's audio API, so the official ``openai`` SDK works unchanged.
``request`` parses and checks a request (one form model), ``routes`` answers it,
``answers`` and ``schemas`` give OpenAI's shapes."""
