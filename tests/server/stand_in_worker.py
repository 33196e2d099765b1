"""A stand-in training worker for the job runner's tests: a script that speaks the worker protocol
(JSON-line events on stdout, docs/training-jobs.md) without training; the job's suffix picks its
behaviour (``succeed``, ``fail``, ``crash``, ``garbage``, ``silent``, ``orphan``, ``hang``,
``stubborn``).
"""

STAND_IN = r"""
import json, os, signal, subprocess, sys, time
spec = json.load(open(sys.argv[1]))
mode = spec["suffix"].split("-")[0]  # the test names each job after its mode
def emit(**event):
    print(json.dumps(event), flush=True)
open(os.path.join(spec["work_dir"], "scratch.bin"), "wb").write(b"x" * 10)
emit(type="status", status="validating_files", message="Reading 1 file")
emit(type="status", status="running", message="Training")
if mode == "succeed":
    for step in (1, 2, 3):
        emit(type="progress", step=step, total_steps=3, train_loss=3.0 - step, elapsed_s=0.1 * step)
    emit(type="eval", stage="after", eval_loss=0.5, probe_recall=0.9)
    emit(type="succeeded", fine_tuned_model=f"{spec['tenant']}/{spec['suffix']}@1", trained_tokens=321,
         metrics={"eval_loss_after": 0.5})
    sys.exit(0)
if mode == "fail":
    emit(type="failed", code="invalid_training_file", message="handbook.md: no text")
    sys.exit(1)
if mode == "crash":
    emit(type="progress", step=1, total_steps=3, train_loss=2.0, elapsed_s=0.1)
    print("RuntimeError: boom in the trainer", file=sys.stderr, flush=True)
    sys.exit(3)
if mode == "garbage":
    print("not json at all", flush=True)
    print("[1, 2, 3]", flush=True)
    print(json.dumps({"no": "type"}), flush=True)
    print("x" * (3 * 1024 * 1024), flush=True)
    emit(type="mystery")
    emit(type="succeeded", fine_tuned_model="acme/x@1", trained_tokens="many", metrics=[1])
    sys.exit(0)
if mode == "silent":  # exits 0 without a result
    sys.exit(0)
if mode == "orphan":  # a child that outlives the worker, holding its stdout open
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open(spec["work_dir"] + ".child", "w").write(str(child.pid))  # outside the work dir, which is cleaned
    emit(type="succeeded", fine_tuned_model="acme/orphan@1", trained_tokens=1, metrics={})
    os._exit(0)
if mode in ("hang", "stubborn"):
    if mode == "stubborn":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    open(os.path.join(spec["work_dir"], "child.pid"), "w").write(str(child.pid))
    emit(type="message", level="info", message="child started")
    time.sleep(600)
"""
