"""The end-of-turn token of a chat template, read from the template itself: generation has to stop
on it (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, `<|end|>`, ...) even where a file lists only
its end-of-text token as EOS, as many GGUFs do. No token text is hard-coded: the template renders a
one-turn conversation through edgert's own sandboxed renderer, and the special token the template
writes right after the assistant's words is the one that ends a turn (an added token of the
vocabulary, so plain text such as a newline never counts)."""
from __future__ import annotations

import json
from typing import Any

_SENTINEL = "EdgertAssistantWords"  # plain letters: survives a template's trim/strip filters


def _added_tokens(tok_json: dict[str, Any]) -> dict[str, int]:
    # Control and user-defined tokens alike: SentencePiece vocabularies (Gemma's) type their turn
    # markers user-defined, and both kinds are matched whole in text.
    return {t["content"]: int(t["id"]) for t in tok_json.get("added_tokens", [])}


def _token_text(tok_json: dict[str, Any], token_id: int | None) -> str:
    if token_id is None:
        return ""
    for t in tok_json.get("added_tokens", []):
        if int(t["id"]) == token_id:
            return t["content"]
    vocab = tok_json.get("model", {}).get("vocab")
    if isinstance(vocab, dict):
        return next((k for k, v in vocab.items() if v == token_id), "")
    return ""


def end_of_turn_ids(template: str | None, tokenizer: dict[str, Any]) -> list[int]:
    """Ids of the special token that follows an assistant turn in `template` (usually one; none
    when the template fails, ends turns with plain text, or there is no template). `tokenizer` is
    the metadata's tokenizer object (tokenizer.json text, bos/eos ids)."""
    if not template:
        return []
    from edgert.chat_template import ChatTemplate
    from edgert.errors import ChatTemplateError
    tok_json = json.loads(tokenizer["json"])
    eos = tokenizer.get("eos_token_ids") or []
    t = ChatTemplate(template, bos_token=_token_text(tok_json, tokenizer.get("bos_token_id")),
                     eos_token=_token_text(tok_json, eos[0] if eos else None))
    try:
        text = t.render([{"role": "user", "content": "Hello"}, {"role": "assistant", "content": _SENTINEL}],
                        add_generation_prompt=False)
    except ChatTemplateError:
        return []
    at = text.rfind(_SENTINEL)
    if at < 0:
        return []
    rest = text[at + len(_SENTINEL):].lstrip()
    specials = _added_tokens(tok_json)
    # The longest added token the rest starts with (the tokenizer would split it the same way).
    found = [s for s in specials if s and rest.startswith(s)]
    return [specials[max(found, key=len)]] if found else []
