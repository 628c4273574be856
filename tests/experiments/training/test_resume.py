"""Kill-and-resume: a run continued from its saved state ends with the same weights."""
import json
import os
import signal
import multiprocessing
import time

import pytest
import torch

from experiments.training import state as training_state
from experiments.training.loop import OptimConfig, packed_batches, train
from tests.experiments.training.support import RESUME_STEPS, Crash, flat_weights, llama, resume_run, token_docs, tokenizer

@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_resume_from_a_saved_state_is_bit_exact(tmp_path, one_thread):
    reference = flat_weights(resume_run(tmp_path / "full"))
    # Crash while fetching the batches of step 23 (2 per step): the last save was at step 21.
    partial = tmp_path / "partial"
    with pytest.raises(Crash):
        resume_run(partial, fail_after=2 * 22 + 1)
    assert json.loads((partial / "latest.json").read_text())["step"] == 21
    # The rerun builds everything from scratch (different RNG state on purpose) and resumes.
    torch.manual_seed(123)
    resumed = flat_weights(resume_run(partial))
    assert torch.equal(resumed, reference)


def test_a_finished_run_reloads_its_final_weights(tmp_path, one_thread):
    first = flat_weights(resume_run(tmp_path))
    again = flat_weights(resume_run(tmp_path))  # nothing left to train: loads the final state
    assert torch.equal(first, again)


def test_plain_generators_resume_by_skipping_consumed_batches(tmp_path, one_thread):
    tok = tokenizer()
    docs = token_docs(tok)

    def batches():
        yield from packed_batches(docs, 2, 16, seed=3)  # a generator: no state_dict

    def run(steps, state_dir):
        model = llama(len(tok))
        train(model, batches(), OptimConfig(steps=steps, lr=1e-2, schedule="constant"),
              state_dir=state_dir, save_every=4)
        return model

    reference = flat_weights(run(12, tmp_path / "a"))
    run(8, tmp_path / "b")  # constant lr: its step-8 state is that of a 12-step run
    saved = training_state.load_latest(tmp_path / "b")[1]
    assert saved["step"] == 8 and saved["batches_used"] == 8
    assert torch.equal(flat_weights(run(12, tmp_path / "b")), reference)


def test_an_unfinished_save_is_ignored(tmp_path, one_thread):
    resume_run(tmp_path)
    # A kill during a later save leaves a temp dir; latest.json still points at the good state.
    (tmp_path / ".tmp-step-000000099").mkdir()
    (tmp_path / ".tmp-step-000000099" / "tensors.safetensors").write_bytes(b"partial")
    tensors, state = training_state.load_latest(tmp_path)
    assert state["step"] == RESUME_STEPS and any(k.startswith("optim.") for k in tensors)


def _victim(state_dir):
    torch.set_num_threads(1)
    resume_run(state_dir, delay=0.03)
    os._exit(0)


def test_sigkill_mid_run_then_rerun_matches_uninterrupted_run(tmp_path, one_thread):
    """A forked child (no re-import, so fast) is SIGKILLed mid-run; this process then reruns
    the same script from scratch on the child's state directory."""
    state = tmp_path / "state"
    victim = multiprocessing.get_context("fork").Process(target=_victim, args=(state,), daemon=True)
    victim.start()
    deadline = time.time() + 60
    while time.time() < deadline:  # wait for a save past step 10, then kill without warning
        latest = state / "latest.json"
        if latest.is_file() and json.loads(latest.read_text())["step"] >= 10:
            break
        time.sleep(0.005)
    time.sleep(0.05)  # land between saves
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(timeout=30)
    assert victim.exitcode == -signal.SIGKILL
    saved_at = json.loads((state / "latest.json").read_text())["step"]
    assert 10 <= saved_at < RESUME_STEPS
    torch.manual_seed(99)
    resumed = flat_weights(resume_run(state))
    assert torch.equal(resumed, flat_weights(resume_run(tmp_path / "uninterrupted")))
