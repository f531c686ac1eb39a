"""The Python library's README example, verbatim except the import line and the model path,
runs on a bert-base-shaped checkpoint and returns what the README documents."""

import random  # noqa: F401  (the README imports it)


def test_the_seed_readme_example_runs_unchanged(bert_base):
    from knowledge_neurons_rs import KnowledgeNeurons, initialize_model_and_tokenizer, model_type

    # first initialize some hyperparameters
    MODEL_NAME = str(bert_base)

    TEXTS = [
        "Sarah was visiting [MASK], the capital of france",
        "The capital of france is [MASK]",
        "[MASK] is the capital of france",
        "France's capital [MASK] is a hotspot for romantic vacations",
        "The eiffel tower is situated in [MASK]",
        "[MASK] is the most populous city in france",
        "[MASK], france's capital, is one of the most popular tourist destinations in the world",
    ]
    TEXT = TEXTS[0]
    GROUND_TRUTH = "paris"
    BATCH_SIZE = 20
    STEPS = 20
    ADAPTIVE_THRESHOLD = 0.3
    P = 0.5

    model, tokenizer = initialize_model_and_tokenizer(MODEL_NAME)
    kn = KnowledgeNeurons(model, tokenizer, model_type=model_type(MODEL_NAME))
    refined_neurons = kn.get_refined_neurons(
        TEXTS,
        GROUND_TRUTH,
        p=P,
        batch_size=BATCH_SIZE,
        steps=STEPS,
        coarse_adaptive_threshold=ADAPTIVE_THRESHOLD,
    )
    results_dict, unpatch_fn = kn.suppress_knowledge(TEXT, GROUND_TRUTH, refined_neurons)
    results_dict, unpatch_fn = kn.suppress_knowledge(
        "[MASK] is the official language of the solomon islands",
        "english",
        refined_neurons,
    )
    results_dict, unpatch_fn = kn.enhance_knowledge(TEXT, GROUND_TRUTH, refined_neurons)
    results_dict, unpatch_fn = kn.erase_knowledge(TEXT, refined_neurons, target=GROUND_TRUTH, erase_value="zero")
    results_dict, unpatch_fn = kn.erase_knowledge(TEXT, refined_neurons, target=GROUND_TRUTH, erase_value="unk")
    results_dict, unpatch_fn = kn.edit_knowledge(TEXT, target="london", neurons=refined_neurons)

    # The documented shapes.
    assert model_type(MODEL_NAME) == "bert"
    assert isinstance(refined_neurons, list) and all(
        isinstance(n, list) and len(n) == 2 and 0 <= n[0] < 12 and 0 <= n[1] < 3072 for n in refined_neurons
    )
    for side in ("before", "after"):
        assert set(results_dict[side]) >= {"gt_prob", "argmax_completion", "argmax_prob"}
        assert 0.0 <= results_dict[side]["gt_prob"] <= 1.0
    assert callable(unpatch_fn)
    scores = kn.get_scores(TEXT, GROUND_TRUTH, batch_size=BATCH_SIZE, steps=STEPS)
    assert scores.shape == (12, 3072) and str(scores.dtype) == "float32"


def test_the_readme_flow_on_a_real_model_antiberty(antiberty):
    """The same calls on AntiBERTy (a real antibody language model): a residue of a heavy chain
    in three contexts; suppressing its refined neurons lowers it more than another residue."""
    from knowledge_neurons_rs import KnowledgeNeurons, initialize_model_and_tokenizer

    heavy = "EVQLVESGGGLVQPGGSLRLSCAASGFTFSSYAMSWVRQAPGKGLEWVS"

    def prompt(pos, left, right):
        lo, hi = max(0, pos - left), min(len(heavy), pos + right + 1)
        return " ".join("[MASK]" if i == pos else heavy[i] for i in range(lo, hi))

    model, tokenizer = initialize_model_and_tokenizer(str(antiberty), ignore_prefix=["cls.species.", "cls.chain.", "cls.graft."])
    kn = KnowledgeNeurons(model, tokenizer, model_type="bert")
    pos, other = 18, 26
    texts = [prompt(pos, l, r) for l, r in [(12, 12), (20, 6), (6, 20)]]
    refined = kn.get_refined_neurons(texts, heavy[pos], p=0.5, batch_size=10, steps=10, coarse_adaptive_threshold=0.3, quiet=True)
    assert refined, "no refined neuron"
    related, _ = kn.suppress_knowledge(texts[0], heavy[pos], refined, quiet=True)
    unrelated, _ = kn.suppress_knowledge(prompt(other, 12, 12), heavy[other], refined, quiet=True)
    print(f"antiberty: {len(refined)} neurons; related {related['relative_change']:+.3f}, unrelated {unrelated['relative_change']:+.3f}")
    assert related["relative_change"] < unrelated["relative_change"]
    assert related["relative_change"] < -0.1
