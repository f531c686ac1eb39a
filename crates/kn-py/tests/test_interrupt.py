"""Ctrl-C stops a long attribution within a pass: KeyboardInterrupt in the caller, the model
still usable afterwards."""

import signal
import subprocess
import sys
import textwrap
import time


def test_ctrl_c_interrupts_a_long_attribution(bert_base):
    script = textwrap.dedent(
        f"""
        import signal, time
        # Python's own Ctrl-C handler, as in a notebook kernel (a shell that starts the tests in
        # the background leaves SIGINT ignored, and Python then installs none).
        signal.signal(signal.SIGINT, signal.default_int_handler)
        from knowledge_neurons_rs import KnowledgeNeurons
        kn = KnowledgeNeurons.from_pretrained({str(bert_base)!r})
        prompts = ["The capital of france is [MASK]"] * 24
        print("ready", flush=True)
        t = time.perf_counter()
        try:
            kn.get_refined_neurons(prompts, "paris", steps=40, batch_size=20, quiet=True)
            print("finished", flush=True)
        except KeyboardInterrupt:
            print(f"interrupted after {{time.perf_counter() - t:.1f}} s", flush=True)
        s = kn.get_scores("The capital of france is [MASK]", "paris", steps=2, batch_size=2)
        print("usable", s.shape, flush=True)
        """
    )
    p = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(2.0)
    sent = time.perf_counter()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    waited = time.perf_counter() - sent
    print(out, err[-2000:], f"exit {waited:.1f} s after the signal")
    assert "interrupted" in out and "finished" not in out, out + err
    assert "usable (12, 3072)" in out
    # Within a few passes, not the whole call (24 prompts × 40 steps of bert-base: well over a
    # minute on 2 cores; the stop came 9.5 s after the signal with the machine also running CI).
    assert waited < 45.0
