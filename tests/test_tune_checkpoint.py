"""Training checkpoints: atomic files, damaged ones never read, the newest two kept, and a run
continued from one ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from frugalml.tune.checkpoint import checkpoints, latest_checkpoint, read_checkpoint, save_checkpoint


def _state(step: int) -> dict:
    return {"step": step, "weights": torch.full((4,), float(step)), "history": [{"epoch": 1, "loss": 0.5}]}


def test_a_checkpoint_reads_back_as_written_and_leaves_no_temporary_file(tmp_path):
    path = save_checkpoint(tmp_path, 7, _state(7))
    assert path.name == "step-7.ckpt" and sorted(p.name for p in tmp_path.iterdir()) == ["step-7.ckpt"]
    state = read_checkpoint(path)
    assert state is not None and state["step"] == 7 and state["history"] == [{"epoch": 1, "loss": 0.5}]
    assert torch.equal(state["weights"], torch.full((4,), 7.0))


def test_only_the_newest_two_are_kept(tmp_path):
    for step in (5, 10, 15, 20):
        save_checkpoint(tmp_path, step, _state(step))
    assert [p.name for p in checkpoints(tmp_path)] == ["step-15.ckpt", "step-20.ckpt"]
    assert latest_checkpoint(tmp_path)["step"] == 20


@pytest.mark.parametrize("damage", ["truncated", "flipped byte", "empty", "no header"])
def test_a_damaged_checkpoint_is_skipped_for_the_one_before(tmp_path, damage):
    save_checkpoint(tmp_path, 10, _state(10))
    newest = save_checkpoint(tmp_path, 20, _state(20))
    data = newest.read_bytes()
    damaged = {
        "truncated": data[: len(data) // 2],
        "flipped byte": data[:-10] + bytes([data[-10] ^ 1]) + data[-9:],
        "empty": b"",
        "no header": data.partition(b"\n")[2],
    }[damage]
    newest.write_bytes(damaged)
    assert read_checkpoint(newest) is None
    assert latest_checkpoint(tmp_path)["step"] == 10


def test_a_write_killed_halfway_is_ignored_and_cleared_by_the_next(tmp_path):
    save_checkpoint(tmp_path, 10, _state(10))
    partial = tmp_path / ".step-20.ckpt.12345.tmp"  # what a kill during the write leaves
    partial.write_bytes(b"frugalml-checkpoint-v1 sha256=")
    assert [p.name for p in checkpoints(tmp_path)] == ["step-10.ckpt"]
    assert latest_checkpoint(tmp_path)["step"] == 10
    save_checkpoint(tmp_path, 30, _state(30))
    assert not partial.exists()


def test_no_folder_means_no_checkpoint(tmp_path):
    assert latest_checkpoint(tmp_path / "missing") is None


def test_a_checkpoint_holds_no_code(tmp_path):
    """Read with torch's weights-only unpickler: a payload naming a class is refused."""
    import hashlib
    import io

    buffer = io.BytesIO()
    torch.save({"step": 1, "callable": np.random.default_rng}, buffer)
    payload = buffer.getvalue()
    path = tmp_path / "step-1.ckpt"
    path.write_bytes(
        b"frugalml-checkpoint-v1 sha256=" + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload
    )
    with pytest.raises(Exception, match=r"[Ww]eights only"):
        read_checkpoint(path)


def test_training_continued_from_a_checkpoint_ends_as_an_uninterrupted_run(tiny_base, intent_files, tmp_path):
    """In process: the run checkpoints every 4 steps; a second run starts from the older of the two
    kept checkpoints (mid-training, epoch, step, optimizer, scheduler and random states restored)
    and ends with the same weights, bit for bit."""
    from frugalml.data import load_dataset
    from frugalml.tune import TuneConfig, tune
    from frugalml.tune.loop import Checkpointing

    data = load_dataset(intent_files["train"])
    config = TuneConfig(method="lora", base=str(tiny_base), epochs=3, batch_size=8, lr=5e-3, patience=5)
    folder = tmp_path / "ckpt"
    whole = tune(data, config, checkpointing=Checkpointing(folder, every=4, run_id="r1"))
    first = read_checkpoint(checkpoints(folder)[0])
    assert first is not None and first["run_id"] == "r1"
    assert first["global_step"] % 4 == 0 and first["epoch"] >= 2  # 7 steps an epoch: mid-epoch
    assert set(first["random"][0]) >= {"python", "numpy", "torch"}
    resumed = tune(
        data, config, checkpointing=Checkpointing(tmp_path / "second", every=0, run_id="r1", start=first)
    )
    for name, value in whole.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[name]), name
    assert _timeless(resumed.history) == _timeless(whole.history)


def _timeless(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in history]


def test_a_checkpoint_of_other_settings_is_refused(tiny_base, intent_files, tmp_path):
    from frugalml.data import load_dataset
    from frugalml.errors import FrugalError
    from frugalml.tune import TuneConfig, tune
    from frugalml.tune.loop import Checkpointing

    data = load_dataset(intent_files["train"])
    config = TuneConfig(method="full", base=str(tiny_base), epochs=2, batch_size=8, lr=5e-3)
    tune(data, config, checkpointing=Checkpointing(tmp_path, every=4, run_id="r1"))
    start = latest_checkpoint(tmp_path)
    other = TuneConfig(method="full", base=str(tiny_base), epochs=2, batch_size=8, lr=1e-3)
    with pytest.raises(FrugalError, match=r"other settings \(lr\)"):
        tune(data, other, checkpointing=Checkpointing(tmp_path, every=0, run_id="r1", start=start))
