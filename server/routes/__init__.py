"""HTTP routes, one file per resource; each module exposes ``routes: list[Route]``."""
