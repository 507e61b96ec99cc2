"""Model shapes ("profiles"): what the performance model needs to know about a model.

Shapes come from each model's ``config.json`` on Hugging Face:
- DeepSeek-R1-Distill-Qwen-7B is a Qwen2-7B/Qwen2.5-Math-7B body: hidden 3584,
  28 layers, 28 query heads, 4 KV heads (GQA), head dim 128, intermediate 18944,
  vocab 152064; 7.62e9 parameters.
- Llama-3.1-8B: hidden 4096, 32 layers, 32 query heads, 8 KV heads, head dim 128,
  intermediate 14336, vocab 128256; 8.03e9 parameters (used for calibration,
  since most published vLLM numbers are for it).
- ``tiny``: a made-up 0.1B shape for fast tests.

Chat-template overhead: DeepSeek-R1-Distill's template wraps a single user turn as
``<bos><|User|>...<|Assistant|><think>\\n``; with the emulator's word tokenizer this
makes the seed's "Say this is a test!" 11 prompt tokens, as the seed's real
response reports (``"prompt_tokens":11``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class ModelProfile:
    """The shape of a dense decoder-only transformer.

    ``params``: parameter count. ``layers``, ``q_heads``, ``kv_heads``, ``head_dim``,
    ``hidden``, ``intermediate``: the config.json values. ``chat_overhead_tokens``:
    template tokens around a conversation; ``message_overhead_tokens``: per message.
    """

    name: str
    params: float
    layers: int
    q_heads: int
    kv_heads: int
    head_dim: int
    hidden: int
    intermediate: int
    vocab: int
    chat_overhead_tokens: int = 4
    message_overhead_tokens: int = 1

    def weight_bytes(self, dtype_bytes: int) -> float:
        """Bytes of weights in memory (bytes)."""
        return self.params * dtype_bytes

    def kv_bytes_per_token(self, dtype_bytes: int) -> int:
        """KV-cache bytes one token occupies: K and V, every layer, every KV head."""
        return self.layers * 2 * self.kv_heads * self.head_dim * dtype_bytes


PROFILES: dict[str, ModelProfile] = {
    p.name: p
    for p in (
        ModelProfile(
            "deepseek-r1-distill-qwen-7b",
            params=7.62e9,
            layers=28,
            q_heads=28,
            kv_heads=4,
            head_dim=128,
            hidden=3584,
            intermediate=18944,
            vocab=152064,
        ),
        ModelProfile(
            "llama-3.1-8b",
            params=8.03e9,
            layers=32,
            q_heads=32,
            kv_heads=8,
            head_dim=128,
            hidden=4096,
            intermediate=14336,
            vocab=128256,
        ),
        ModelProfile(
            "tiny",
            params=0.1e9,
            layers=4,
            q_heads=4,
            kv_heads=2,
            head_dim=64,
            hidden=256,
            intermediate=1024,
            vocab=32000,
        ),
    )
}
"""The registry of shipped profiles, by the name ``--model-profile`` takes."""

ALIASES: dict[str, str] = {
    "qwen2-7b": "deepseek-r1-distill-qwen-7b",
    "qwen2.5-7b": "deepseek-r1-distill-qwen-7b",
    "llama-3-8b": "llama-3.1-8b",
    "deepseek-r1-distill-llama-8b": "llama-3.1-8b",
}

DEFAULT_PROFILE = "deepseek-r1-distill-qwen-7b"


def _lookup(name: str) -> ModelProfile | None:
    key = name.lower()
    key = ALIASES.get(key, key)
    return PROFILES.get(key)


def parse_custom(spec: str) -> ModelProfile:
    """Build a profile from ``key=value,...`` (every ModelProfile field but ``name``).

    Raises ``ValueError`` naming the bad key or value.
    """
    values: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise ValueError(f"model profile {spec!r}: {part!r} is not key=value")
        values[key.strip()] = value.strip()
    known = {f.name: f for f in fields(ModelProfile) if f.name != "name"}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"model profile: unknown keys {unknown}; expected {sorted(known)}")
    kwargs: dict[str, float | int] = {}
    for key, value in values.items():
        try:
            kwargs[key] = float(value) if key == "params" else int(float(value))
        except ValueError as exc:
            raise ValueError(f"model profile: {key}={value!r} is not a number") from exc
    base = PROFILES[DEFAULT_PROFILE]
    merged = {f.name: getattr(base, f.name) for f in fields(ModelProfile)}
    merged.update(kwargs)
    merged["name"] = "custom"
    return ModelProfile(**merged)


def resolve_profile(requested: str | None, model_path: str) -> tuple[ModelProfile, str | None]:
    """Pick a profile: the requested one, else one named like the model folder, else default.

    Returns the profile and a warning to log (or None).
    Raises ``ValueError`` for an unknown requested name.
    """
    if requested:
        if "=" in requested:
            return parse_custom(requested), None
        found = _lookup(requested)
        if found is None:
            choices = ", ".join([*PROFILES, *ALIASES])
            raise ValueError(f"unknown model profile {requested!r}; expected one of {choices}")
        return found, None
    base = model_path.rstrip("/").rsplit("/", 1)[-1]
    found = _lookup(base)
    if found is not None:
        return found, None
    return PROFILES[DEFAULT_PROFILE], (
        f"no model profile named like {base!r}; using {DEFAULT_PROFILE} (pass --model-profile)"
    )
