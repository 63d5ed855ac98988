"""The device seam: ``--device`` and ``--precision``, and every tensor made on the model's device.

No GPU is needed: the audit below records every tensor that jifr's own code creates without
naming a device (it would land on the CPU beside a model on a GPU), while the models train,
evaluate, rank and score frames and new items. ``bench/gpu_check.sh`` runs the same paths on
a GPU where there is one."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode
from typer.testing import CliRunner

import jifr
from jifr.cli import app
from jifr.data.prepare import prepare_dataset
from jifr.data.prepared import PreparedData
from jifr.device import autocast, resolve_device, reused_memory
from jifr.experiment import evaluate_model
from jifr.items.score import new_frame_orders, new_item_scores
from jifr.items.store import NewItems
from jifr.models import ModelInputs, build_model
from jifr.models.base import Recommender
from jifr.models.diagnostic import MeanUserFrames
from jifr.ranking import top_k_items
from jifr.recommend import ranked_frames
from jifr.train import TrainConfig, fit

FACTORIES = {
    torch.zeros,
    torch.ones,
    torch.empty,
    torch.full,
    torch.arange,
    torch.rand,
    torch.randn,
    torch.randint,
    torch.randperm,
    torch.eye,
    torch.linspace,
}
SOURCE = str(Path(jifr.__file__).parent)


class UnplacedTensors(TorchFunctionMode):
    """Records each call of a tensor factory from jifr's own code that names no device."""

    def __init__(self) -> None:
        super().__init__()
        self.sites: set[str] = set()

    def __torch_function__(self, func: Callable[..., Any], types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in FACTORIES and "device" not in kwargs:
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(SOURCE):
                self.sites.add(f"{Path(caller.f_code.co_filename).name}:{caller.f_lineno}")
        return func(*args, **kwargs)


@pytest.fixture(scope="module")
def with_feedback(tmp_path_factory: pytest.TempPathFactory) -> PreparedData:
    from test_frame_feedback import write_planted

    root = tmp_path_factory.mktemp("device")
    return prepare_dataset(write_planted(root / "data"), root / "prepared")


def _workload(model: Recommender, data: PreparedData) -> None:
    """Everything a run does with a model once built (on the CPU, then placed): train, evaluate,
    rank, score frames and new items."""
    fit(model, data, TrainConfig(epochs=1, batch_size=64, n_negatives=2, eval_every=1), show_progress=False)
    evaluate_model(model, data, repeats=1, sampled_negatives=20)
    top_k_items(model, torch.arange(data.n_users), 5, data.n_items, data.interacted)
    if model.scores_new_items():  # the first two items again, as new items
        end = int(data.frames.indptr[2])
        new = NewItems(
            ("n0", "n1"),
            (None, None),
            data.frames.indptr[:3].astype(np.int64),
            tuple(f"nf{k}" for k in range(end)),
            (None,) * end,
            np.asarray(data.frames.features[:end]),
        )
        new_item_scores(model, [0, 1], new)
        if model.ranks_frames:
            new_frame_orders(model, [0, 1], [0, 1], new)
    if model.ranks_frames:
        ranked_frames(model, data, torch.tensor([0, 1]), torch.tensor([0, 1]))
        mean_user = MeanUserFrames(model, data, max_users=8)
        ranked_frames(mean_user, data, torch.tensor([0, 0]), torch.tensor([0, 1]))


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        ("jifr", {}),
        ("jifr", {"frame_feedback_weight": 1.0}),
        ("jifr_na", {}),
        ("vbpr", {}),
        ("cdl", {}),
        ("acf", {}),
        ("vpoi", {}),
        ("bpr", {}),
    ],
)
def test_every_tensor_jifr_creates_names_its_device(
    name: str, settings: dict[str, Any], with_feedback: PreparedData
) -> None:
    """A factory call without ``device=`` makes a CPU tensor, which meets the model's tensors on a
    GPU and fails there: none may remain in what a run does."""
    model = build_model(name, ModelInputs.from_data(with_feedback), settings, seed=0).place(torch.device("cpu"))
    audit = UnplacedTensors()
    with audit:
        _workload(model, with_feedback)
    assert not audit.sites, f"tensors made without a device at {sorted(audit.sites)}"


def test_the_audit_sees_a_tensor_made_without_a_device() -> None:
    """The audit above can fail: a factory call without a device in a file of jifr's package is
    recorded; one that names its device, or one made outside jifr, is not."""
    code = "import torch\ntorch.arange(3, device='cpu')\ntorch.arange(3)\n"
    with UnplacedTensors() as seen:
        torch.zeros(3)
        exec(compile(code, str(Path(SOURCE) / "unplaced.py"), "exec"))
    assert seen.sites == {"unplaced.py:3"}


def test_devices_resolve_or_say_why_not() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be cpu, cuda, cuda:N or auto, got 'tpu'"):
        resolve_device("tpu")
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(ValueError, match="this machine has no CUDA GPU"):
            resolve_device("cuda")


def test_commands_refuse_a_device_they_do_not_have_before_writing(
    tiny: PreparedData, tiny_dir: Path, tmp_path: Path
) -> None:
    """train, evaluate, compare, tune and serve take --device; one the machine lacks is exit
    code 2 with one message, before any output is written or any server starts."""
    runner = CliRunner()
    missing = "cuda:7" if torch.cuda.is_available() else "cuda"
    why = "CUDA GPU(s)" if torch.cuda.is_available() else "this machine has no CUDA GPU"
    run = tmp_path / "run"
    train = ["train", str(tiny.directory), "--out", str(run), "--model", "bpr", "--epochs", "1"]
    for device, message in (("tpu", "device must be cpu, cuda, cuda:N or auto, got 'tpu'"), (missing, why)):
        result = runner.invoke(app, [*train, "--device", device])
        assert result.exit_code == 2 and message in result.output and not run.exists(), result.output
    result = runner.invoke(app, [*train, "--optimizer", "sgd", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["evaluate", str(run), "--protocol", "item_full", "--device", "cpu"])
    assert result.exit_code == 0 and "item_full" in result.output, result.output
    for command in (["evaluate", str(run), "--out", str(tmp_path / "results")], ["serve", str(run)]):
        result = runner.invoke(app, [*command, "--device", "tpu"])
        assert result.exit_code == 2 and "device must be" in result.output, result.output
    assert not (tmp_path / "results.json").exists()
    compare = ["compare", str(tiny_dir), "--out", str(tmp_path / "cmp"), "--models", "bpr", "--seeds", "0"]
    result = runner.invoke(app, [*compare, "--device", "tpu"])
    assert result.exit_code == 2 and "device must be" in result.output and not (tmp_path / "cmp").exists()
    result = runner.invoke(app, [*compare, "--optimizer", "sgd", "--device", missing])
    assert result.exit_code == 2 and not (tmp_path / "cmp").exists(), result.output
    tune = ["tune", str(tiny_dir), "--out", str(tmp_path / "tune"), "--models", "bpr", "--device", "tpu"]
    result = runner.invoke(app, tune)
    assert result.exit_code == 2 and "device must be" in result.output and not (tmp_path / "tune").exists()
    bad = runner.invoke(app, ["train", str(tiny.directory), "--out", str(tmp_path / "p"), "--precision", "fp8"])
    assert bad.exit_code == 2 and "precision must be one of fp32, bf16" in bad.output
    assert not (tmp_path / "p").exists()


def test_bf16_trains_jifr_close_to_fp32_and_records_it(tiny: PreparedData, tmp_path: Path) -> None:
    """bf16 runs the step's products in bfloat16 (weights stay float32): over two epochs the
    losses and validation NDCG follow fp32's, and the run records its precision."""
    runs = {}
    for precision in ("fp32", "bf16"):
        model = build_model("jifr", ModelInputs.from_data(tiny), seed=0)
        config = TrainConfig(epochs=2, batch_size=128, n_negatives=2, precision=precision)
        history = fit(model, tiny, config, show_progress=False)
        runs[precision] = (model, history)
        assert all(p.dtype == torch.float32 for p in model.parameters())
    (fp32, fp32_history), (bf16, bf16_history) = runs["fp32"], runs["bf16"]
    differs = max(
        float((a - b).detach().abs().max()) for a, b in zip(fp32.parameters(), bf16.parameters(), strict=True)
    )
    assert differs > 0  # the products were rounded to bfloat16 ...
    for fp32_epoch, bf16_epoch in zip(fp32_history.epochs, bf16_history.epochs, strict=True):
        # ... and the model learned the same: the same losses and validation NDCG, up to rounding
        assert bf16_epoch["loss"] == pytest.approx(fp32_epoch["loss"], rel=1e-3)
        assert bf16_epoch["valid_NDCG@10"] == pytest.approx(fp32_epoch["valid_NDCG@10"], abs=0.01)
    runner = CliRunner()
    out = tmp_path / "bf16"
    args = ["train", str(tiny.directory), "--out", str(out), "--epochs", "1", "--precision", "bf16"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    described = json.loads((out / "checkpoint.json").read_text())
    assert described["train_config"]["precision"] == "bf16"


def test_reused_memory_keeps_a_buffer_that_fits_and_replaces_one_that_does_not() -> None:
    cpu = torch.device("cpu")
    first = reused_memory(None, 100, torch.float32, cpu, headroom=0.25)
    assert first.numel() == 125 and first.dtype == torch.float32 and first.device == cpu
    assert reused_memory(first, 125, torch.float32, cpu) is first  # fits: the same memory
    assert reused_memory(first, 126, torch.float32, cpu).numel() == 126  # too small: a new one
    other = reused_memory(first, 10, torch.bfloat16, cpu)
    assert other is not first and other.dtype == torch.bfloat16


def test_autocast_runs_products_in_bfloat16_only_when_asked() -> None:
    cpu = torch.device("cpu")
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast(cpu, "fp32"):
        assert (a @ b).dtype == torch.float32
    with autocast(cpu, "bf16"):
        assert (a @ b).dtype == torch.bfloat16


def test_the_torch_rating_attention_of_gpus_equals_the_compiled_loop(tiny: PreparedData) -> None:
    """Off the CPU, JIFR's score_all runs eqs. (8)-(10) in torch, a block of items at a time
    (``_attended_blocks``): on the CPU it gives the compiled loop's scores up to float rounding,
    whatever the block size."""
    from jifr.models import jifr as jifr_module

    model = build_model("jifr", ModelInputs.from_data(tiny), seed=3).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # weights far from their initial scale: betas far from 1/2
            parameter.mul_(4)
        users = torch.arange(tiny.n_users)
        compiled = model.score_all(users)
        collab, visual = model._dot_products(users)
        cache = model.item_cache()
        inputs = (collab, visual, *model._user_parts(users), cache["collab_w2"], cache["visual_w2"])
        for budget in (jifr_module.BLOCK_BUDGET, 7 * len(users)):
            jifr_module.BLOCK_BUDGET, saved = budget, jifr_module.BLOCK_BUDGET
            try:
                in_torch = jifr_module._attended_blocks((*inputs, model.rating_out.weight[0]))
            finally:
                jifr_module.BLOCK_BUDGET = saved
            # float32 sums in another order: within a few roundings of the largest score
            torch.testing.assert_close(in_torch, compiled, rtol=1e-5, atol=1e-5 * float(compiled.abs().max()))
    with torch.no_grad():
        beta = model.visual_weight(users[:50], torch.arange(50) % tiny.n_items)
    assert float(beta.std()) > 0.05  # the attention is not flat, so the test compares something


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here (bench/gpu_check.sh runs this on one)")
def test_a_model_on_the_gpu_trains_and_ranks_as_on_the_cpu(with_feedback: PreparedData) -> None:
    results = {}
    for device in ("cpu", "cuda"):
        model = build_model("jifr", ModelInputs.from_data(with_feedback), {"frame_feedback_weight": 1.0}, seed=0)
        model.place(torch.device(device))
        fit(model, with_feedback, TrainConfig(epochs=2, batch_size=64, n_negatives=2), show_progress=False)
        assert all(p.device.type == device for p in model.parameters())
        metrics = {r.protocol: r.metrics for r in evaluate_model(model, with_feedback, repeats=1, sampled_negatives=20)}
        _workload(model, with_feedback)
        results[device] = metrics
    for protocol, metrics in results["cpu"].items():
        for name, value in metrics.items():
            assert results["cuda"][protocol][name] == pytest.approx(value, abs=0.02), (protocol, name)
