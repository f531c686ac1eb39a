"""Bad input raises the right exception, with the reason, instead of crashing the interpreter."""

import pytest

from knowledge_neurons_rs import (
    KnError,
    KnowledgeNeurons,
    ModelLoadError,
    NeuronError,
    PromptError,
    SettingError,
    initialize_model_and_tokenizer,
)


@pytest.fixture(scope="module")
def kn(tiny_bert):
    return KnowledgeNeurons.from_pretrained(str(tiny_bert))


def test_bad_input_raises_typed_exceptions(kn, tmp_path):
    with pytest.raises(PromptError, match="MASK"):
        kn.get_scores("the capital of france is paris .", "paris")
    with pytest.raises(PromptError, match="not in the vocabulary"):
        kn.get_scores("the capital of zanzibar is [MASK] .", "paris")
    with pytest.raises(ModelLoadError):
        initialize_model_and_tokenizer(str(tmp_path / "no-such-model"), offline=True)
    with pytest.raises(NeuronError, match="out of range"):
        kn.suppress_knowledge("the capital of france is [MASK] .", "paris", [[99, 0]], quiet=True)
    with pytest.raises(NeuronError):
        kn.suppress_knowledge("the capital of france is [MASK] .", "paris", "not neurons", quiet=True)
    with pytest.raises(SettingError, match="batch"):
        kn.get_scores("the capital of france is [MASK] .", "paris", batch_size=7, steps=20)
    with pytest.raises(SettingError, match="exactly one"):
        kn.get_coarse_neurons("the capital of france is [MASK] .", "paris", threshold=0.1, adaptive_threshold=0.3)
    with pytest.raises(SettingError):
        kn.get_refined_neurons(["the capital of france is [MASK] ."], "paris", p=1.5, quiet=True)
    assert issubclass(PromptError, KnError) and issubclass(KnError, Exception)
    # The model still works after every error.
    assert kn.get_scores("the capital of france is [MASK] .", "paris", steps=4, batch_size=2).shape == (3, 64)
