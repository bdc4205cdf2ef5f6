"""SmolLM2-135M-Instruct behind a real server (on the paged engine), through the official openai client (slow:
loads smollm2-135m; a few greedy generations of at most 16 tokens)."""

from __future__ import annotations

import copy
from typing import Any

import openai
import pytest
import torch
from openai.types.chat import ChatCompletionMessageParam

from infopt.serve import ModelSpec, ServeConfig, create_app

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.mark.slow
def test_smollm2_through_the_openai_client(live: Any, one_torch_thread: None) -> None:
    server = live(create_app(ServeConfig(models=(ModelSpec("smol", "smollm2-135m"),)))).wait_ready(300)
    client = openai.OpenAI(base_url=server.url + "/v1", api_key="x", max_retries=0, timeout=120)

    reply = client.chat.completions.create(model="smol", messages=QUESTION, max_tokens=12, temperature=0)
    content = reply.choices[0].message.content or ""
    assert reply.choices[0].message.role == "assistant" and "Paris" in content, content
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 12
    assert reply.choices[0].finish_reason in ("stop", "length")
    served = server.state.models["smol"]
    assert served.engine == "paged"
    tok = copy.deepcopy(served.loaded.tokenizer)
    ids = tok(tok.apply_chat_template(QUESTION, tokenize=False, add_generation_prompt=True),
              add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        mask = torch.ones(1, len(ids), dtype=torch.long)
        out = served.loaded.model.generate(torch.tensor([ids]), attention_mask=mask,
                                           max_new_tokens=12, do_sample=False)
    assert content == tok.decode(out[0, len(ids):], skip_special_tokens=True)  # the engine's greedy = HF generate

    chunks = list(client.chat.completions.create(model="smol", messages=QUESTION, max_tokens=12, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == content
    assert chunks[-1].choices == [] and chunks[-1].usage == reply.usage

    stopped = client.chat.completions.create(model="smol", messages=QUESTION, max_tokens=12, temperature=0,
                                             stop=["Paris"])
    assert stopped.choices[0].finish_reason == "stop"
    assert stopped.choices[0].message.content == content.split("Paris")[0]

    done = client.completions.create(model="smol", prompt="The capital of France is", max_tokens=6, temperature=0)
    assert done.choices[0].text.strip() and done.usage is not None and done.usage.completion_tokens <= 6
    streamed = client.completions.create(model="smol", prompt="The capital of France is", max_tokens=6,
                                         temperature=0, stream=True)
    assert "".join(c.choices[0].text for c in streamed if c.choices) == done.choices[0].text

    two = client.completions.create(model="smol", prompt="The capital of France is", max_tokens=6, temperature=0,
                                    n=2)
    assert [c.text for c in two.choices] == [done.choices[0].text] * 2  # greedy: n equal choices
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="smol", prompt="x", n=0)
