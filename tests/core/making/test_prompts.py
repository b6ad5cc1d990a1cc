"""Prompts follow the model: the exact Llama-2 format, or the GGUF's own chat template plus the cue."""

from __future__ import annotations

from convogen_tui.core.making.prompts import ChatFormat, choose_format, llama2_prompt, wrap_prompt

LLAMA2_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'system' %}<<SYS>>{{ message['content'] }}"
    "<</SYS>>{% else %}[INST] {{ message['content'] }} [/INST]{% endif %}{% endfor %}"
)


def test_llama2_format_is_exact_with_and_without_system() -> None:
    assert llama2_prompt("DO IT", "SYS", "(conversation)") == (
        "[INST] <<SYS>>\nSYS\n<</SYS>>\n\nDO IT[/INST]\n\n(conversation)\n\n"
    )
    assert llama2_prompt("DO IT", None, "(cue)") == "[INST]\n\nDO IT[/INST]\n\n(cue)\n\n"


def test_llama2_chat_ggufs_are_recognised_with_or_without_a_template() -> None:
    assert choose_format(ChatFormat("LLaMA v2 70B Chat")) == "llama2"
    assert choose_format(ChatFormat("whatever", LLAMA2_TEMPLATE)) == "llama2"
    chatml = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    assert choose_format(ChatFormat("SmolLM2", chatml)) == "chat-template"


def test_other_models_get_their_chat_template_with_the_cue_opening_the_answer(embedded_backend) -> None:
    fmt = embedded_backend.info.chat_format
    text = wrap_prompt("Write it.", "Be brief.", "(conversation)", fmt)
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>")
    assert text.endswith("<|im_start|>assistant\n(conversation)\n\n")
    assert "[INST]" not in text


def test_setup_can_force_the_llama2_format(embedded_backend) -> None:
    text = wrap_prompt("Write it.", "Be brief.", "(c)", embedded_backend.info.chat_format, "llama2")
    assert text == llama2_prompt("Write it.", "Be brief.", "(c)")
