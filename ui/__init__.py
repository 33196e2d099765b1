"""The Gradio UI (Chat, Train, Compare, Adapters): :func:`ui.app.build_ui`, mounted by
``swaplora serve`` at ``/ui`` or run alone by ``swaplora ui``. It talks to the server over its
HTTP API only, never importing server/, trainer/ or adapters/.

Importing the package switches Gradio's analytics off before Gradio itself is imported: a
server on the internet sends nothing home.
"""

import os

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
