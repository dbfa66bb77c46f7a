"""Export a sentence-transformers model to a self-contained ONNX folder (build time only).

The folder holds ``model.onnx`` (tokens in, one normalised sentence vector out: the model's
own pooling and any dense layers are inside the graph), ``tokenizer.json`` and
``embedder.json`` (name, maximum length, dimension). ``rag.embedding.OnnxEmbedder`` reads it
with onnxruntime and tokenizers only, so serving never imports torch. This module imports
torch and is only used when a folder must be made: by ``spacesec build`` for the configured
model (once; the export is kept with the index) and by training code for a tuned model.

Example::

    from sentence_transformers import SentenceTransformer
    from rag.onnx_export import export_onnx
    export_onnx(SentenceTransformer("path/to/tuned-model"), "index/query-model")
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import warnings
from pathlib import Path

from rag.embedding import CONFIG_FILE, MODEL_FILE, TOKENIZER_FILE, resolve_model_path

log = logging.getLogger(__name__)

#: The ONNX operator set written; onnxruntime 1.17+ runs it.
OPSET = 17
#: Format of ``embedder.json``; an OnnxEmbedder refuses a folder of another format.
EXPORT_FORMAT = 1


def _load_model(model):
    """A SentenceTransformer on the CPU from an object, a folder or a model package name."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise RuntimeError("Exporting the embedder to ONNX (done once per model, when an index is "
                           "first built) needs PyTorch and sentence-transformers: install "
                           "'space-security-rag[build]', or copy in an index built elsewhere.") from exc

    if isinstance(model, SentenceTransformer):
        return model
    return SentenceTransformer(str(resolve_model_path(str(model))), device="cpu")


def export_onnx(model, out_dir: str | Path, quantize: bool = False, name: str | None = None) -> Path:
    """Write ``model`` (a SentenceTransformer, its folder or a model package name) to
    ``out_dir`` as an ONNX folder that ``rag.embedding.OnnxEmbedder`` loads; returns it.

    ``quantize`` stores the weights as int8 (onnxruntime's dynamic quantisation): a quarter of
    the size, somewhat faster, slightly different vectors. The same model and versions give
    the same bytes. ``out_dir`` is replaced as a whole, through a temporary sibling folder,
    so a reader never sees half an export.
    """
    st = _load_model(model)
    st.eval()
    tokenizer = st.tokenizer
    sample = tokenizer(["an example sentence", "a second, longer example sentence"], padding=True,
                       return_tensors="pt")
    inputs = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    dimension = getattr(st, "get_embedding_dimension", None) or st.get_sentence_embedding_dimension
    config = {"format": EXPORT_FORMAT, "name": name or (str(model) if isinstance(model, str | Path) else "sentence-transformers model"), "inputs": inputs,
              "max_length": int(st.get_max_seq_length() or tokenizer.model_max_length),
              "dimension": int(dimension()), "weights": "int8" if quantize else "fp32"}
    return _export(_pipeline(st, inputs), tokenizer, sample, "sentence_embedding", config, Path(out_dir), quantize)


def export_pair_onnx(model, tokenizer, max_length: int, out_dir: str | Path, name: str) -> Path:
    """Write a one-output sequence classifier over (question, sentence) pairs (``rag.learn.pair_model``)
    to ``out_dir`` as an ONNX folder that ``rag.embedding.OnnxPairScorer`` loads; returns it."""
    import torch

    class Logit(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors):
            return self.model(**dict(zip(inputs, tensors, strict=True))).logits[:, 0]

    sample = tokenizer(["a question?", "a second, longer question?"], ["an example sentence", "another one"],
                       padding=True, return_tensors="pt")
    inputs = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in sample]
    config = {"format": EXPORT_FORMAT, "name": name, "inputs": inputs, "max_length": int(max_length),
              "dimension": 1, "weights": "fp32"}
    return _export(Logit().eval(), tokenizer, sample, "logit", config, Path(out_dir), quantize=False)


def _export(module, tokenizer, sample, output: str, config: dict, out: Path, quantize: bool) -> Path:
    """Trace ``module`` on ``sample`` into ``out`` with the tokenizer and ``config``; ``out`` is
    replaced as a whole, through a temporary sibling folder."""
    import torch

    inputs = config["inputs"]
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        axes = {n: {0: "batch", 1: "tokens"} for n in inputs} | {output: {0: "batch"}}
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on shapes and indexing; parity is tested
            torch.onnx.export(module, tuple(sample[n] for n in inputs), str(tmp / MODEL_FILE),
                              input_names=inputs, output_names=[output], dynamic_axes=axes,
                              opset_version=OPSET, dynamo=False, do_constant_folding=True)
        if quantize:
            _quantize(tmp / MODEL_FILE)
        tokenizer.backend_tokenizer.save(str(tmp / TOKENIZER_FILE))
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True), encoding="utf-8")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("exported %s to %s (%s)", config["name"], out, config["weights"])
    return out


def _quantize(path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_name("model-fp32.onnx")
    path.rename(fp32)
    # Matrix products only, one scale per output channel: quantising everything (the default)
    # moved MiniLM's vectors to a mean cosine of 0.965 from the fp32 ones; this keeps 0.994.
    quantize_dynamic(str(fp32), str(path), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"])
    fp32.unlink()


def _pipeline(st, inputs: list[str]):
    """The SentenceTransformer's forward pass as a module with positional tensor inputs and
    one output: the normalised sentence vector."""
    import torch

    class Pipeline(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.st = st

        def forward(self, *tensors):
            vector = self.st(dict(zip(inputs, tensors, strict=True)))["sentence_embedding"]
            return torch.nn.functional.normalize(vector, p=2, dim=1)

    return Pipeline().eval()  # the exporter restores the wrapper's mode, and with it the model's
