"""The one definition of special tokens and chat templates.

Every stage that formats conversations (SFT, DPO, RLVR, eval) and the exported tokenizer take the
template from here, and its hash goes into each stage's fingerprint, so a template change reruns
exactly the stages it affects. `{% generation %}` marks what the model is trained to produce
(TRL's assistant-only loss reads it).
"""
from __future__ import annotations

import hashlib

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_START, THINK_END = "<think>", "</think>"
TOOL_CALL_START, TOOL_CALL_END = "<tool_call>", "</tool_call>"
SPECIAL_TOKENS = [EOS_TOKEN, PAD_TOKEN, IM_START, IM_END, THINK_START, THINK_END, TOOL_CALL_START, TOOL_CALL_END]

def _conversation(assistant_open: str, assistant_turn: str, preamble: str = "") -> str:
    """The ChatML loop both styles share: they differ only in how an assistant turn opens (also the
    generation prompt) and what it holds. Only the assistant's own tokens sit inside `generation`."""
    return (
        preamble
        + "{%- for message in messages -%}"
        "{%- if message['role'] == 'assistant' -%}"
        "{{ '<|im_start|>assistant\\n" + assistant_open + "' }}"
        "{%- generation -%}" + assistant_turn + "{%- endgeneration -%}"
        "{{ '\\n' }}"
        "{%- else -%}"
        "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
        "{%- endif -%}"
        "{%- endfor -%}"
        "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\\n" + assistant_open + "' }}{%- endif -%}"
    )


# Instruct: system/user/assistant turns, tool calls in assistant turns, tool results as `tool` turns,
# and the available tools listed in a system block when `tools` is given.
INSTRUCT_TEMPLATE = _conversation(
    assistant_open="",
    assistant_turn="{{ message['content'] or '' }}"
    "{%- for call in message.get('tool_calls') or [] -%}"
    "{{ '<tool_call>' }}{{ call | tojson }}{{ '</tool_call>' }}"
    "{%- endfor -%}"
    "{{ '<|im_end|>' }}",
    preamble="{%- if tools -%}"
    "{{ '<|im_start|>system\\nYou can call these functions:\\n' }}"
    "{%- for tool in tools -%}{{ tool | tojson }}{{ '\\n' }}{%- endfor -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endif -%}",
)

# Think: the assistant turn carries its reasoning in <think>...</think> before the answer, and
# generation starts inside the reasoning section, as OLMo 3 Think does.
THINK_TEMPLATE = _conversation(
    assistant_open="<think>",
    assistant_turn="{{ (message.get('reasoning') or '') + '</think>' + message['content'] + '<|im_end|>' }}",
)

TEMPLATES = {"instruct": INSTRUCT_TEMPLATE, "think": THINK_TEMPLATE}


def chat_template(style: str) -> str:
    if style not in TEMPLATES:
        raise ValueError(f"unknown chat template style {style!r}; choose one of {sorted(TEMPLATES)}")
    return TEMPLATES[style]


def template_digest(style: str) -> str:
    return hashlib.sha256(chat_template(style).encode()).hexdigest()[:16]
