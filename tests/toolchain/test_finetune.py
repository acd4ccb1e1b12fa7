"""Fine-tuning a tiny random Llama: the loss falls, the adapter loads as BASE+DIR and changes outputs
(through the native decode step too), checkpoints resume, Ctrl-C leaves an adapter, bad data is refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from llmasos.engine import models
from llmasos.engine.errors import ModelNotFound, ModelUnsupported
from llmasos.toolchain import tunedata
from llmasos.toolchain.finetune import TuneConfig, finetune
from llmasos.toolchain.tunedata import BadDataset, FinetuneError

from ..engine.test_hf import drive, make

COLORS = ["red", "blue", "green", "black", "white"]


def write_data(path: Path, n: int = 50) -> Path:
    """n chat examples: a question about a thing, answered `ANSWER: <color>`."""
    lines = []
    for i in range(n):
        thing = f"item {i}"
        lines.append({"messages": [{"role": "user", "content": f"What color is {thing}?"},
                                   {"role": "assistant", "content": f"ANSWER: {COLORS[i % 5]}"}]})
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def config(base: Path, tmp_path: Path, **kw: object) -> TuneConfig:
    kw = {"epochs": 3, "batch_size": 8, "lr": 1e-2, "rank": 8, "max_len": 64, "val_fraction": 0.2,
          "save_every": 4, **kw}
    return TuneConfig(base=str(base), data=write_data(tmp_path / "data.jsonl"), out=tmp_path / "tuned", **kw)


@pytest.fixture(scope="module")
def trained(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("tune")
    return finetune(config(tiny_model_dir, tmp))


def test_training_lowers_the_loss_and_writes_an_adapter(trained) -> None:
    first = sum(v for _, v in trained.train_loss[:3]) / 3
    last = sum(v for _, v in trained.train_loss[-3:]) / 3
    assert last < first * 0.7, (first, last)
    assert len(trained.val_loss) == 3 and trained.val_loss[-1][1] < trained.val_loss[0][1]
    assert trained.steps == trained.total_steps == 15  # 40 training examples, batches of 8, 3 epochs
    out = trained.out
    assert (out / "adapter_config.json").is_file() and (out / "adapter_model.safetensors").is_file()
    manifest = json.loads((out / "llmasos-adapter.json").read_text())
    assert manifest["steps"] == 15 and not manifest["interrupted"]
    assert manifest["data_sha256"] == tunedata.file_hash(out.parent / "data.jsonl")
    assert (out / "loss.png").read_bytes()[:4] == b"\x89PNG"


def test_adapter_loads_by_base_plus_dir_and_changes_output(trained, tiny_model_dir: Path) -> None:
    from llmasos.engine.hf import HFEngine

    name = f"{tiny_model_dir}+{trained.out}"
    assert models.resolve(name).adapter == trained.out.resolve()
    assert models.resolve(str(trained.out)).adapter == trained.out.resolve()  # the manifest names the base
    from llmasos import LLM

    assert LLM.from_pretrained(name).name_or_path == name  # the seed's handle finds it by the same name
    base = HFEngine.from_pretrained(tiny_model_dir)
    tuned = HFEngine.from_pretrained(name)
    assert tuned.name == name
    question = [{"role": "user", "content": "What color is item 3?"}]
    outs = {}
    for label, engine in (("base", base), ("tuned", tuned)):
        seq = make(engine, messages=question, max_tokens=6)
        drive(engine, [seq])
        outs[label] = engine.tokenizer.decode(seq.output_ids)
    assert outs["tuned"] != outs["base"]
    held_out = tunedata.Example(0, "ANSWER: blue", messages=({"role": "user", "content": "What color is item 51?"},))
    batch = tunedata.collate([tunedata.encode(held_out, base.tokenizer, 64)], 0)
    with torch.no_grad():
        assert tuned.model(**batch).loss < base.model(**batch).loss  # it learnt the answer's format


def test_merged_adapter_runs_the_native_step_with_the_same_tokens(trained, tiny_model_dir: Path) -> None:
    from llmasos.engine import native
    from llmasos.engine.hf import HFEngine

    try:
        native.library()
    except native.NativeUnavailable as exc:
        pytest.skip(f"native step unavailable here: {exc}")
    name = f"{tiny_model_dir}+{trained.out}"
    fast = HFEngine.from_pretrained(name, kv_dtype="fp32")  # bf16 KV would round; the merge is what is under test
    assert fast.native is not None, fast.native_reason
    slow = HFEngine.from_pretrained(name, native_decode=False, pack_weights=False)
    outs = []
    for engine in (fast, slow):
        seqs = [make(engine, messages=[{"role": "user", "content": f"What color is item {i}?"}], max_tokens=8)
                for i in range(3)]
        drive(engine, seqs)
        outs.append([s.output_ids for s in seqs])
    assert outs[0] == outs[1]


def test_resume_continues_the_step_count(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = config(tiny_model_dir, tmp_path, epochs=2, max_steps=6, save_every=3)
    first = finetune(cfg)
    assert first.steps == 6
    with pytest.raises(FinetuneError, match="--resume"):
        finetune(cfg)  # the folder holds a run: never overwritten silently
    cfg.max_steps = None
    again = finetune(cfg, resume=True)  # 2 epochs of 5 steps
    assert again.steps == 10 and [s for s, _ in again.train_loss] == list(range(1, 11))
    assert json.loads((cfg.out / "llmasos-adapter.json").read_text())["steps"] == 10


def test_ctrl_c_leaves_a_loadable_adapter(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = config(tiny_model_dir, tmp_path, save_every=100)

    def interrupt(step: int, total: int, loss: float, epoch: int) -> None:
        if step == 3:
            raise KeyboardInterrupt

    result = finetune(cfg, on_step=interrupt)
    assert result.interrupted and result.steps == 3
    manifest = json.loads((cfg.out / "llmasos-adapter.json").read_text())
    assert manifest["interrupted"] and manifest["steps"] == 3
    model, _ = models.load(f"{tiny_model_dir}+{cfg.out}")
    assert not hasattr(model, "peft_config")  # merged: a plain transformers model
    resumed = finetune(cfg, resume=True, on_step=None)
    assert resumed.steps == 15 and not resumed.interrupted


@pytest.mark.parametrize("content, message", [
    ("", "holds no examples"),
    ("\n\n", "holds no examples"),
    ('{"prompt": "a", "completion": "b"}\nnot json\n', r"data.jsonl:2: not JSON"),
    ('[1, 2]\n', "expected a JSON object"),
    ('{"text": "hello"}\n', "found the fields"),
    ('{"prompt": "a", "completion": 3}\n', "found the fields"),
    ('{"messages": [{"role": "user", "content": "hi"}]}\n', "at least a user and an assistant"),
    ('{"messages": [{"role": "user", "content": "hi"}, {"role": "user", "content": "x"}]}\n', "last message"),
    ('{"messages": [{"role": "wizard", "content": "hi"}, {"role": "assistant", "content": "x"}]}\n', "role"),
    ('{"messages": [{"role": "user", "content": 7}, {"role": "assistant", "content": "x"}]}\n', "a string"),
    ('{"prompt": "a", "completion": "  "}\n', "completion is empty"),
])
def test_bad_data_is_refused_with_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(content)
    with pytest.raises(BadDataset, match=message):
        tunedata.read_jsonl(path)


def test_out_must_be_new_or_empty(tmp_path: Path) -> None:
    cfg = TuneConfig(base="x", data=write_data(tmp_path / "d.jsonl", 4), out=tmp_path)
    with pytest.raises(FinetuneError, match="is not empty"):
        finetune(cfg)  # never spills adapter files into a folder of the user's
    cfg.out = tmp_path / "d.jsonl"
    with pytest.raises(FinetuneError, match="not a folder"):
        finetune(cfg)
    with pytest.raises(FinetuneError, match="nothing to resume"):
        finetune(TuneConfig(base="x", data=cfg.data, out=tmp_path / "new"), resume=True)


def test_bad_data_fails_before_the_model_loads(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_bytes(b'\xff\xfe{"prompt"\n')
    cfg = TuneConfig(base="no-such-model-anywhere", data=tmp_path / "d.jsonl", out=tmp_path / "o")
    with pytest.raises(BadDataset, match="not UTF-8"):
        finetune(cfg)
    cfg.data = tmp_path / "missing.jsonl"
    with pytest.raises(BadDataset, match="no such data file"):
        finetune(cfg)


@pytest.mark.parametrize("field, value", [
    ("epochs", 0), ("batch_size", -1), ("rank", 10**9), ("lr", 0.0), ("lr", float("nan")), ("max_len", 2),
    ("targets", ()), ("targets", ("q_proj; rm -rf /",)), ("epochs", True), ("max_steps", 0), ("dropout", 1.5),
])
def test_hostile_settings_are_refused(tmp_path: Path, field: str, value: object) -> None:
    cfg = TuneConfig(base="x", data=tmp_path / "d.jsonl", out=tmp_path / "o", **{field: value})
    with pytest.raises(FinetuneError, match=field.rstrip("s") if field != "targets" else "targets"):
        cfg.validate()


def test_prompt_completion_format_trains_on_the_completion_only(tiny_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ex = tunedata.Example(1, "world", prompt="hello")
    ids, labels = tunedata.encode(ex, tok, 64)
    n_prompt = len(tok.encode("hello", add_special_tokens=True))
    assert labels[:n_prompt] == [tunedata.IGNORE] * n_prompt
    assert labels[n_prompt:] == ids[n_prompt:] and labels[-1] == tok.eos_token_id
    long = tunedata.Example(1, "answer", prompt="word " * 500)
    ids, labels = tunedata.encode(long, tok, 32)
    assert len(ids) == 32 and labels[-1] == tok.eos_token_id  # the prompt's start is dropped, not the answer


def test_wrong_targets_and_missing_adapter_are_clear(tiny_model_dir: Path, tmp_path: Path) -> None:
    cfg = config(tiny_model_dir, tmp_path, targets=("attn_qkv",))
    with pytest.raises(FinetuneError, match="no layers named attn_qkv"):
        finetune(cfg)
    with pytest.raises(ModelNotFound, match="not a LoRA adapter"):
        models.resolve(f"{tiny_model_dir}+{tmp_path}")
    with pytest.raises(ModelNotFound):
        models.resolve(f"{tiny_model_dir}+{tmp_path}/nowhere")


def test_adapter_for_another_base_is_refused(trained, tmp_path: Path, tiny_model_dir: Path) -> None:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    other = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    torch.manual_seed(1)
    LlamaForCausalLM(other).save_pretrained(tmp_path / "other")
    tok.save_pretrained(tmp_path / "other")
    with pytest.raises(ModelUnsupported, match="does not fit this base model"):
        models.load(f"{tmp_path / 'other'}+{trained.out}")


async def test_base_and_adapter_are_served_side_by_side(trained, tiny_model_dir: Path, tmp_path: Path) -> None:
    """Two entries of the kernel's model table, one the base, one BASE+DIR: each answers as itself."""
    from llmasos.kernel import Kernel, KernelConfig

    if "models" not in KernelConfig.__dataclass_fields__:
        pytest.skip("needs the kernel's model table (KernelConfig.models, branch `models`)")
    question = [{"role": "user", "content": "What color is item 3?"}]
    alone = {}
    for label, name in (("base", str(tiny_model_dir)), ("tuned", f"{tiny_model_dir}+{trained.out}")):
        async with Kernel(KernelConfig(engine=name, home=tmp_path / label)) as k, k.session("test") as sys:
            alone[label] = (await sys.generate(messages=question, max_tokens=6)).text
    config = KernelConfig(models={"base": str(tiny_model_dir), "tuned": f"{tiny_model_dir}+{trained.out}"},
                          home=tmp_path / "both")
    async with Kernel(config) as k, k.session("test") as sys:
        both = {m: (await sys.generate(messages=question, max_tokens=6, model=m)).text for m in ("base", "tuned")}
    assert both == alone and both["base"] != both["tuned"]


@pytest.mark.parametrize("same_question", [False, True])
def test_a_shared_prompt_prefix_runs_once_with_the_same_loss_and_gradients(tiny_model_dir: Path, tmp_path: Path,
                                                                           same_question: bool) -> None:
    """Tool-calling data repeats one long system prompt: answer_loss runs it once for the batch. The
    loss and every LoRA gradient must be what the whole rows give, with right padding and a prompt
    that differs after the prefix or only in the answer (and a single row takes the plain path)."""
    from llmasos.toolchain.finetune import SHARED_MIN, _model, answer_loss, shared_prefix

    system = "You are a careful assistant. " * 12
    rows = [tunedata.Example(i, f"ANSWER: {COLORS[i]}" + " and more" * i, messages=(
        {"role": "system", "content": system},
        {"role": "user", "content": "What color is it?" if same_question else f"What color is thing {i}?" + "!" * i},
    )) for i in range(4)]
    model, tok = _model(TuneConfig(base=str(tiny_model_dir), data=tmp_path / "d", out=tmp_path / "o", rank=4,
                                   dropout=0.0), None)
    torch.manual_seed(0)
    for p in model.parameters():  # LoRA's B starts at zero: give the adapter something to differ by
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.2)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    encoded = [tunedata.encode(r, tok, 256) for r in rows]
    batch = tunedata.collate(encoded, pad)
    shared = shared_prefix(batch)
    assert shared >= SHARED_MIN and shared < int((batch["labels"][0] != tunedata.IGNORE).nonzero()[0])

    def run(share: bool) -> tuple[float, list[torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        if share:
            loss = answer_loss(model, batch)
        else:  # the same rows, one at a time: no prefix to share
            alone = [tunedata.collate([e], pad) for e in encoded]
            losses = [answer_loss(model, b) for b in alone]
            counts = [int((b["labels"][:, 1:] != tunedata.IGNORE).sum()) for b in alone]
            loss = sum(x * n for x, n in zip(losses, counts)) / sum(counts)
        loss.backward()
        return float(loss.detach()), [p.grad.clone() for p in model.parameters() if p.requires_grad]

    shared_loss, shared_grads = run(True)
    plain_loss, plain_grads = run(False)
    assert shared_loss == pytest.approx(plain_loss, rel=1e-4)
    assert all(torch.allclose(a, b, rtol=1e-3, atol=1e-5) for a, b in zip(shared_grads, plain_grads))
    assert shared_prefix({**batch, "input_ids": batch["input_ids"][:1], "labels": batch["labels"][:1]}) == 0
