"""The Gradio UI (chat, train, compare, adapters). Not built yet (its own issue); it will talk to
the server over HTTP only, never importing server/ or trainer/."""
