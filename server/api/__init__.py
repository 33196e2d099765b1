"""The OpenAI-compatible API's shapes: request bodies validated at the edge, response bodies built once.

Contract: :mod:`~server.api.sampling_fields` holds what chat and text completions share (sampling,
penalties, ``n``, the fixed list of parameters accepted and ignored), :mod:`~server.api.chat_request`
and :mod:`~server.api.completion_request` the two bodies; anything not listed is a 400 naming it
(:func:`server.schemas.parse_json`). :mod:`~server.api.logprobs` and :mod:`~server.api.choices`
turn engine events into OpenAI's response and chunk shapes. Nothing here touches the model.
"""
