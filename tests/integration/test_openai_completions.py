"""``/v1/completions`` against the live server, through the official ``openai`` client: one
prompt, several prompts times ``n``, ``echo`` scoring the prompt, ``logprobs``, streaming, the
refused ``suffix`` and ``best_of``, and the tenant's adapters only."""

from __future__ import annotations

import openai
import pytest

from tests.integration.conftest import PROMPT
from tests.integration.helpers import refused

pytestmark = pytest.mark.integration


def test_text_completion_of_one_prompt(acme: openai.OpenAI) -> None:
    completion = acme.completions.create(
        model="base", prompt="The capital of France is", extra_body={"ignore_eos": True}
    )
    assert completion.object == "text_completion" and completion.model == "base"
    assert completion.choices[0].text and completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 16  # OpenAI's default max_tokens


def test_prompts_times_n_choices_are_indexed_prompt_major(acme: openai.OpenAI) -> None:
    prompts = ["One, two,", "Red, green,"]
    alone = [acme.completions.create(model="base", prompt=p, temperature=0, max_tokens=3).choices[0] for p in prompts]
    both = acme.completions.create(model="base", prompt=prompts, n=2, temperature=0, max_tokens=3)
    assert [c.index for c in both.choices] == [0, 1, 2, 3]
    assert [c.text for c in both.choices] == [alone[0].text, alone[0].text, alone[1].text, alone[1].text]
    assert both.usage.completion_tokens == 12


def test_echo_scores_the_prompt(acme: openai.OpenAI) -> None:
    prompt = "The capital of France is Paris"
    completion = acme.completions.create(model="base", prompt=prompt, echo=True, logprobs=2, max_tokens=0)
    choice = completion.choices[0]
    logprobs = choice.logprobs
    assert choice.text == prompt and "".join(logprobs.tokens) == prompt
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    assert all(v <= 0 for v in logprobs.token_logprobs[1:])
    assert logprobs.text_offset == [sum(map(len, logprobs.tokens[:i])) for i in range(len(logprobs.tokens))]
    assert completion.usage.completion_tokens == 0 and completion.usage.prompt_tokens == len(logprobs.tokens)


def test_completions_top_logprobs_include_the_sampled_token(acme: openai.OpenAI) -> None:
    """OpenAI: 'the API will always return the logprob of the sampled token, so there may be up to
    logprobs+1 elements'; vLLM does the same. Echoed prompt tokens are rarely the model's top pick."""
    completion = acme.completions.create(model="base", prompt=PROMPT, echo=True, logprobs=1, max_tokens=0)
    logprobs = completion.choices[0].logprobs
    for token, top in zip(logprobs.tokens[1:], logprobs.top_logprobs[1:], strict=True):
        assert token in top, (token, top)


def test_streamed_completion_matches_the_whole_one(acme: openai.OpenAI) -> None:
    prompt = "The capital of France is"
    whole = acme.completions.create(model="base", prompt=prompt, temperature=0, max_tokens=6, logprobs=1)
    chunks = list(
        acme.completions.create(model="base", prompt=prompt, temperature=0, max_tokens=6, logprobs=1, stream=True)
    )
    assert "".join(c.choices[0].text for c in chunks) == whole.choices[0].text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    # text_offset counts from the start of the prompt (OpenAI's rule; the whole reply follows it).
    offsets = [o for c in chunks if c.choices[0].logprobs for o in c.choices[0].logprobs.text_offset]
    assert whole.choices[0].logprobs.text_offset[0] == len(prompt)
    assert offsets == whole.choices[0].logprobs.text_offset


def test_completions_refuse_suffix_and_best_of(acme: openai.OpenAI) -> None:
    refused(lambda: acme.completions.create(model="base", prompt="def f(", suffix="\n"), "suffix")
    refused(lambda: acme.completions.create(model="base", prompt="Hi", n=1, best_of=2), "best_of")


def test_completions_use_the_tenants_adapters_only(acme: openai.OpenAI, support_v1, globex_private) -> None:
    completion = acme.completions.create(model="acme/support", prompt="Hello", temperature=0, max_tokens=3)
    assert completion.model.startswith("acme/support@") and completion.choices[0].text
    with pytest.raises(openai.NotFoundError):
        acme.completions.create(model="globex/private", prompt="Hello", max_tokens=1)
