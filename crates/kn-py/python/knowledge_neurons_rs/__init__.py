"""Knowledge neurons (Dai et al., ACL 2022) with the API of EleutherAI's ``knowledge_neurons``,
computed by the Rust core of knowledge-neurons-rs.

Switching a notebook is one line::

    from knowledge_neurons_rs import KnowledgeNeurons, initialize_model_and_tokenizer, model_type

Where the Python library is wrong, this package does the right thing (each method's docstring
says where it differs):

- GPT-2 / GPT-Neo neurons are the FFN *post*-activation (the library hooks ``mlp.c_fc``, before
  the GELU); for Llama-family models ``down_proj``'s input.
- ``edit_knowledge`` uses the word embeddings (``wte``), not GPT's position table ``wpe``, and
  moves each value vector in the direction its activation's sign gives it.
- A multi-piece target gets one ``[MASK]`` per piece (BERT) or teacher forcing (GPT), never a
  silent ``[UNK]``; a word outside the vocabulary is a ``PromptError``.
- ``negative_examples`` really removes the neurons coarse for other facts' prompts.
- Bad input raises a ``KnError`` subclass with the reason; nothing is ``assert``-ed.
"""

from __future__ import annotations

import json
import os
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np

from . import _native
from ._native import KnError, ModelLoadError, NeuronError, PromptError, SettingError

__all__ = [
    "KnowledgeNeurons",
    "initialize_model_and_tokenizer",
    "model_type",
    "KnError",
    "ModelLoadError",
    "PromptError",
    "NeuronError",
    "SettingError",
    "BACKEND",
]

BACKEND = _native.BACKEND

_MODEL_TYPES = {"bert": "bert", "gpt2": "gpt2", "gpt_neo": "gpt_neo", "llama": "llama", "mistral": "mistral", "qwen2": "qwen2"}


class Tokenizer:
    """The tokenizer of a loaded model (kept for the library's two-value
    ``initialize_model_and_tokenizer``; encoding happens inside the model calls)."""

    def __init__(self, model: "_native.Model"):
        self._model = model

    def __repr__(self) -> str:
        return f"Tokenizer({self._model.name!r})"


def initialize_model_and_tokenizer(
    name_or_path: str, device: str = "default", offline: bool = False, ignore_prefix: Sequence[str] = ()
):
    """Loads a model (a local folder, a ``.gguf`` file or a Hugging Face Hub name) and returns
    ``(model, tokenizer)`` handles for :class:`KnowledgeNeurons`.

    Differs from the library: any architecture kn-models loads (BERT, GPT-2, GPT-Neo, Llama,
    Mistral, Qwen2), not only its six Hub names; loading fails with ``ModelLoadError``, which
    names any checkpoint tensor the model does not use (``ignore_prefix`` lists heads to leave,
    e.g. AntiBERTy's ``"cls.species."``).
    """
    model = _native.load(str(name_or_path), device=device, offline=offline, ignore_prefix=list(ignore_prefix))
    return model, Tokenizer(model)


def model_type(name_or_path: str) -> str:
    """The library's model type string: ``"bert"``, ``"gpt2"``, ``"gpt_neo"`` (and ``"llama"``,
    ``"mistral"``, ``"qwen2"``). Known Hub names answer without loading; other names and folders
    are read (config.json or the GGUF header)."""
    name = str(name_or_path)
    if name.startswith("bert-"):
        return "bert"
    if name == "gpt2" or name.startswith("gpt2-"):
        return "gpt2"
    if "gpt-neo" in name:
        return "gpt_neo"
    config = os.path.join(name, "config.json")
    if os.path.isfile(config):
        with open(config, encoding="utf-8") as f:
            mt = json.load(f).get("model_type")
        if mt in _MODEL_TYPES:
            return _MODEL_TYPES[mt]
    return _native.load(name, offline=True).model_type


def _neurons(neurons) -> List[Tuple[int, int]]:
    try:
        return [(int(l), int(i)) for l, i in neurons]
    except (TypeError, ValueError) as e:
        raise NeuronError(f"neurons must be [[layer, index], ...], got {neurons!r}") from e


class KnowledgeNeurons:
    """The Python library's ``KnowledgeNeurons``, on the Rust core.

    ``model`` is the handle :func:`initialize_model_and_tokenizer` returns (``tokenizer`` is
    accepted for compatibility). ``model_type`` is checked against the checkpoint; ``device`` is
    where :meth:`from_pretrained` loads (``"cpu"``, ``"cuda:0"`` with the tch build, ``"gpu"``
    with the wgpu build); a loaded model stays on its device.

    Options beyond the library, on every attribution method: ``attribution_method``
    (``"integrated_grads"``, ``"max_activations"``, ``"grad_times_activation"``), ``quadrature``
    (``"eai"`` = linspace(0, 1, steps), ``"left"``, ``"right"``, ``"midpoint"``, ``"trapezoid"``),
    ``objective`` (``"prob"`` or ``"log_prob"``), ``pieces`` (``"joint"`` or ``"mean"`` over a
    multi-piece target), ``raw_target`` (causal models: the target's own tokens instead of those
    it has after the prompt).
    """

    def __init__(self, model, tokenizer=None, model_type: Optional[str] = None, device: Optional[str] = None):
        if not isinstance(model, _native.Model):
            raise ModelLoadError(
                "model must come from knowledge_neurons_rs.initialize_model_and_tokenizer "
                f"(or use KnowledgeNeurons.from_pretrained), got {type(model).__name__}"
            )
        self.model = model
        self.tokenizer = tokenizer if tokenizer is not None else Tokenizer(model)
        actual = model.model_type
        if model_type is not None and _MODEL_TYPES.get(model_type, model_type) != actual:
            raise SettingError(f"model_type {model_type!r} does not match the checkpoint, which is {actual!r}")
        self.model_type = actual
        self.device = device

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str = "default", offline: bool = False, ignore_prefix: Sequence[str] = ()
    ) -> "KnowledgeNeurons":
        """Loads ``name_or_path`` and wraps it."""
        model, tok = initialize_model_and_tokenizer(name_or_path, device=device, offline=offline, ignore_prefix=ignore_prefix)
        return cls(model, tok, device=device)

    def n_layers(self) -> int:
        return self.model.n_layers

    def intermediate_size(self) -> int:
        return self.model.d_ff

    # ---- attribution ----

    def _cfg(self, batch_size, steps, attribution_method, quadrature, objective, pieces, raw_target):
        return dict(
            batch_size=int(batch_size),
            steps=int(steps),
            method=attribution_method,
            quadrature=quadrature,
            objective=objective,
            pieces=pieces,
            raw_target=bool(raw_target),
        )

    def attribute_many(
        self,
        pairs: Sequence[Tuple[str, str]],
        batch_size: int = 10,
        steps: int = 20,
        attribution_method: str = "integrated_grads",
        quadrature: str = "eai",
        objective: str = "prob",
        pieces: str = "joint",
        raw_target: bool = False,
    ):
        """Scores of many ``(prompt, ground_truth)`` pairs at once (their passes share the cores):
        a list of ``(scores, info)``, ``scores`` a float32 array ``[n_layers, d_ff]``, ``info`` a
        dict (target tokens, base probability, completeness per layer)."""
        cfg = self._cfg(batch_size, steps, attribution_method, quadrature, objective, pieces, raw_target)
        out = self.model.scores([(str(p), str(t)) for p, t in pairs], cfg)
        shape = (self.model.n_layers, self.model.d_ff)
        return [(np.frombuffer(b, dtype="<f4").reshape(shape), json.loads(meta)) for b, meta in out]

    def get_scores(
        self,
        prompt: str,
        ground_truth: str,
        batch_size: int = 10,
        steps: int = 20,
        pbar: bool = True,
        attribution_method: str = "integrated_grads",
        quadrature: str = "eai",
        objective: str = "prob",
        pieces: str = "joint",
        raw_target: bool = False,
        return_torch: bool = False,
    ):
        """Integrated-gradients scores ``[n_layers, d_ff]`` (numpy float32; a torch tensor with
        ``return_torch=True``). ``pbar`` is accepted and ignored (no progress bar in notebooks).

        Differs from the library: GPT neurons are post-activation; a multi-token ground truth is
        scored jointly (BERT: one [MASK] per piece) instead of ``[UNK]`` or a crash."""
        scores, _ = self.attribute_many(
            [(prompt, ground_truth)], batch_size, steps, attribution_method, quadrature, objective, pieces, raw_target
        )[0]
        if return_torch:
            import torch

            return torch.from_numpy(scores.copy())
        return scores

    def get_coarse_neurons(
        self,
        prompt: str,
        ground_truth: str,
        batch_size: int = 10,
        steps: int = 20,
        threshold: Optional[float] = None,
        adaptive_threshold: Optional[float] = None,
        percentile: Optional[float] = None,
        pbar: bool = True,
        **options,
    ) -> List[List[int]]:
        """Neurons scoring above the threshold (exactly one of ``threshold``,
        ``adaptive_threshold`` = ratio of the maximum, ``percentile``), as ``[[layer, index]]``."""
        r = self._refined([prompt], ground_truth, [], threshold, adaptive_threshold, percentile, 0.0, False, 0.0, batch_size, steps, options)
        return [list(n) for n in r["coarse"][0]]

    def _refined(self, prompts, ground_truth, negatives, threshold, adaptive, percentile, p, adaptive_p, negative_share, batch_size, steps, options):
        cfg = self._cfg(
            batch_size,
            steps,
            options.pop("attribution_method", "integrated_grads"),
            options.pop("quadrature", "eai"),
            options.pop("objective", "prob"),
            options.pop("pieces", "joint"),
            options.pop("raw_target", False),
        )
        if options:
            raise SettingError(f"unknown options {sorted(options)}")
        text = self.model.refined(
            [str(x) for x in prompts],
            str(ground_truth),
            [(str(a), str(b)) for a, b in negatives],
            threshold,
            adaptive,
            percentile,
            float(p),
            bool(adaptive_p),
            float(negative_share),
            cfg,
        )
        return json.loads(text)

    def get_refined_neurons(
        self,
        prompts: List[str],
        ground_truth: str,
        p: float = 0.5,
        batch_size: int = 10,
        steps: int = 20,
        coarse_adaptive_threshold: Optional[float] = 0.3,
        coarse_threshold: Optional[float] = None,
        coarse_percentile: Optional[float] = None,
        quiet: bool = False,
        negative_examples: Optional[Sequence[Tuple[str, str]]] = None,
        negative_share: float = 0.0,
        adaptive_p: bool = False,
        **options,
    ) -> List[List[int]]:
        """Neurons coarse for more than ``p`` of the prompts, as ``[[layer, index]]``.

        ``negative_examples``: ``(prompt, ground_truth)`` pairs of other facts; a neuron coarse
        for more than ``negative_share`` of them is removed (the library's version compares the
        wrong types and removes nothing). ``adaptive_p``: the paper's p (0.7 ± 0.05 until 2-5
        neurons). The coarse rule is exactly one of the three ``coarse_*`` (the default adaptive
        0.3 gives way when another is set, as in the library)."""
        if not isinstance(prompts, (list, tuple)):
            raise PromptError("Must provide a list of different prompts to get refined neurons")
        if coarse_threshold is not None or coarse_percentile is not None:
            coarse_adaptive_threshold = None
        r = self._refined(
            prompts,
            ground_truth,
            list(negative_examples or []),
            coarse_threshold,
            coarse_adaptive_threshold,
            coarse_percentile,
            p,
            adaptive_p,
            negative_share,
            batch_size,
            steps,
            options,
        )
        if not quiet:
            total = sum(len(c) for c in r["coarse"])
            print(f"\n{total} coarse neurons found - refining")
            print(f"{len(r['neurons'])} neurons remaining after refining")
        return [list(n) for n in r["neurons"]]

    # ---- PARAREL ----

    def pararel_evaluate(
        self,
        fact: dict,
        unrelated: Optional[dict] = None,
        uuid: str = "fact",
        unrelated_uuid: str = "unrelated",
        paper: bool = False,
        steps: int = 20,
        batch_size: int = 20,
        multi_token: bool = False,
    ) -> dict:
        """One PARAREL fact (``{"sentences", "relation_name", "obj_label"}``, as the library's
        ``pararel()`` returns them) evaluated as ``pararel_evaluate.py`` does and as
        ``kn-pararel run`` does: refined neurons, suppression and enhancement on its prompts
        (related) and on ``unrelated``'s, the activation baseline. Returns a dict: ``"eai"`` (the
        library's per-fact entry: ``suppression`` / ``enhancement`` → ``related`` /
        ``unrelated`` → ``pct_change``, ``correct_before``, ``correct_after``, ``n_prompts``) and
        ``"record"`` (kn-pararel's: neurons, probabilities before and after, baseline).

        Differs from the library: the unrelated enhancement enhances (the library's suppresses),
        ``paper=True`` gives the paper's settings (threshold 0.2, adaptive p, left Riemann sum).
        A multi-token object is skipped (``record["skipped"]`` says why) unless ``multi_token``."""
        other = None
        if unrelated is not None:
            other = (str(unrelated_uuid), json.dumps(unrelated))
        ours, eai = self.model.pararel_fact(str(uuid), json.dumps(fact), other, bool(paper), int(steps), int(batch_size), bool(multi_token))
        return {"record": json.loads(ours), "eai": json.loads(eai)}

    # ---- interventions ----

    @staticmethod
    def _results(text: str) -> dict:
        r = json.loads(text)
        for side in ("before", "after"):
            r[side]["argmax_completion"] = r[side].get("argmax_completion") or ""
        return r

    def _activations(self, prompt, ground_truth, neurons, factor, undo_modification, quiet, raw_target):
        if not undo_modification:
            raise SettingError(
                "undo_modification=False is not supported for activation patches: they act within the call. "
                "Use erase_knowledge / edit_knowledge (weight changes, undone by the returned function) "
                "to keep a change across calls."
            )
        r = self._results(self.model.patch(str(prompt), str(ground_truth), _neurons(neurons), float(factor), bool(raw_target)))
        if not quiet:
            _print(r)
        return r, (lambda *args: args)

    def suppress_knowledge(self, prompt: str, ground_truth: str, neurons, undo_modification: bool = True, quiet: bool = False, raw_target: bool = False):
        """Sets the neurons' activations to 0 at the target position; returns
        ``(results_dict, unpatch_fn)`` with ``before`` / ``after`` = ``{gt_prob,
        argmax_completion, argmax_prob, argmax_ids}``."""
        return self._activations(prompt, ground_truth, neurons, 0.0, undo_modification, quiet, raw_target)

    def enhance_knowledge(self, prompt: str, ground_truth: str, neurons, undo_modification: bool = True, quiet: bool = False, enhance_value: float = 2.0, raw_target: bool = False):
        """Multiplies the neurons' activations by ``enhance_value`` (2) at the target position."""
        return self._activations(prompt, ground_truth, neurons, enhance_value, undo_modification, quiet, raw_target)

    def _weights(self, text_and_undo, quiet) -> Tuple[dict, Callable]:
        text, handle = text_and_undo
        r = self._results(text)
        if not quiet:
            _print(r)
        return r, (handle if handle is not None else (lambda *args: args))

    def erase_knowledge(self, prompt: str, neurons, target: Optional[str] = None, erase_value: str = "zero", undo_modification: bool = True, quiet: bool = False, raw_target: bool = False):
        """Sets the neurons' value vectors (rows of the FFN output weight) to zeros or to the
        unknown token's embedding (``erase_value="unk"``; byte-level vocabularies have none) and
        measures ``target``. With ``undo_modification=False`` the returned function restores
        the weights bit for bit."""
        if target is None:
            raise PromptError("erase_knowledge needs target= (the answer whose probability is measured)")
        return self._weights(
            self.model.erase(str(prompt), str(target), _neurons(neurons), erase_value, bool(undo_modification), bool(raw_target)),
            quiet,
        )

    def edit_knowledge(self, prompt: str, target: str, neurons, mode: str = "edit", erase_value: str = "zero", undo_modification: bool = True, quiet: bool = False, rule: str = "eai", old_target: Optional[str] = None, raw_target: bool = False):
        """Moves the neurons' value vectors from the current answer (or ``old_target``) towards
        ``target``: the library's rule (``rule="eai"``, λ = 2) or the paper's (``"paper"``,
        λ1 = 1, λ2 = 8, norm-scaled). Differs from the library: every architecture, GPT word
        embeddings (``wte``, not ``wpe``), and each vector moves by the sign of its neuron's
        activation (SwiGLU neurons fire negatively; unsigned, the edit pushes the old answer up).
        ``results_dict["new_target"]`` has the new target's probability before and after."""
        if mode != "edit":
            raise SettingError(f"mode {mode!r}: use erase_knowledge to erase")
        return self._weights(
            self.model.edit(str(prompt), str(target), _neurons(neurons), rule, old_target, bool(undo_modification), bool(raw_target)),
            quiet,
        )


def _print(r: dict) -> None:
    for side, label in (("before", "Before"), ("after", "After")):
        s = r[side]
        print(
            f"\n{label} modification - groundtruth probability: {s['gt_prob']}\n"
            f"Argmax completion: `{s['argmax_completion']}`\nArgmax prob: {s['argmax_prob']}"
        )
